"""SHA-256 of small texts without loading libcrypto.

``hashlib`` imports ``_hashlib``, which maps OpenSSL's libcrypto: 3.6 MB of
resident memory in an agent whose whole budget is 30 MB. CPython also
builds its own SHA-256 (``_sha256``; ``_sha2`` from 3.12), which is slower
on large inputs but plenty for config files and baseline items. Large files
(backup checksums) keep using ``hashlib``, imported where that is needed.
"""

from __future__ import annotations

from typing import Any


def sha256(data: bytes = b"") -> Any:
    """A SHA-256 hash object (``update``, ``digest``, ``hexdigest``) fed with ``data``."""
    try:
        from _sha256 import sha256 as builtin  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        try:
            from _sha2 import sha256 as builtin  # type: ignore[import-not-found,unused-ignore]
        except ImportError:  # pragma: no cover - a CPython built without its own hashes
            from hashlib import sha256 as builtin
    return builtin(data)
