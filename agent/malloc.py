"""The C allocator's settings for a process that runs for years.

glibc raises its mmap threshold to the size of each large block freed
(up to 32 MiB) and its trim threshold to twice that: after the first
multi-megabyte buffer, later large buffers come from the heaps instead
of mmap, and freed heap memory is returned to the kernel only once more
than that lies free at the top. In the agent (a log read of a few MiB,
a big scrape, an SQLite sort now and then) this showed as RSS creeping
by about a megabyte every several simulated hours that never came back
(issue 2; ``bench/hours.py``). Setting either threshold explicitly turns
the adjustment off, so buffers above :data:`MMAP_THRESHOLD` go back to
the kernel when freed, as they did before the first one.
"""

from __future__ import annotations

import logging

log = logging.getLogger("opsagent.malloc")

# glibc's own defaults before its dynamic adjustment (mallopt(3))
MMAP_THRESHOLD = 128 << 10
TRIM_THRESHOLD = 128 << 10
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def pin_malloc_thresholds(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Fix glibc's mmap and trim thresholds (see the module doc); False where there is no glibc."""
    import ctypes  # lazily: only the daemon needs it (the timex collector loads it anyway)

    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to pin
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
    if not ok:
        log.warning("mallopt refused the thresholds; memory freed may be kept by the allocator")
    return ok
