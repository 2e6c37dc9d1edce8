"""Kernel clock discipline from adjtimex(2), as node_exporter's timex collector.

``node_timex_sync_status`` says whether NTP (chrony, ntpd, timesyncd) keeps
the clock synchronised; ``node_timex_offset_seconds`` how far off it is.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable, Iterator

from collector.model import Sample, counter, gauge
from collector.registry import CollectorFailure, Context, EmptyConfig, register

TIME_ERROR = 5  # adjtimex's return value when the clock is not synchronised
STA_NANO = 0x2000  # offset and jitter are in ns rather than µs
PPM16 = 1_000_000.0 * 65536.0  # freq, ppsfreq and stabil are ppm with a 16-bit fraction (adjtimex(2) NOTES)
MICRO = 1_000_000.0


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class Timex(ctypes.Structure):
    """``struct timex`` of <sys/timex.h> (ctypes keeps the C alignment)."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


SYNC_STATUS = gauge("node_timex_sync_status", "Is clock synchronized to a reliable server (1 = yes, 0 = no).")
OFFSET = gauge("node_timex_offset_seconds", "Time offset in between local system and reference clock.")
FREQ = gauge("node_timex_frequency_adjustment_ratio", "Local clock frequency adjustment.")
MAXERROR = gauge("node_timex_maxerror_seconds", "Maximum error in seconds.")
ESTERROR = gauge("node_timex_estimated_error_seconds", "Estimated error in seconds.")
STATUS = gauge("node_timex_status", "Value of the status array bits.")
CONSTANT = gauge("node_timex_loop_time_constant", "Phase-locked loop time constant.")
TICK = gauge("node_timex_tick_seconds", "Seconds between clock ticks.")
PPS_FREQ = gauge("node_timex_pps_frequency_hertz", "Pulse per second frequency.")
PPS_JITTER = gauge("node_timex_pps_jitter_seconds", "Pulse per second jitter.")
PPS_SHIFT = gauge("node_timex_pps_shift_seconds", "Pulse per second interval duration.")
PPS_STABIL = gauge(
    "node_timex_pps_stability_hertz", "Pulse per second stability, average of recent frequency changes."
)
PPS_JITCNT = counter("node_timex_pps_jitter_total", "Pulse per second count of jitter limit exceeded events.")
PPS_CALCNT = counter("node_timex_pps_calibration_total", "Pulse per second count of calibration intervals.")
PPS_ERRCNT = counter("node_timex_pps_error_total", "Pulse per second count of calibration errors.")
PPS_STBCNT = counter(
    "node_timex_pps_stability_exceeded_total", "Pulse per second count of stability limit exceeded events."
)
TAI = gauge("node_timex_tai_offset_seconds", "International Atomic Time (TAI) offset.")

Adjtimex = Callable[[], tuple[int, Timex]]


@functools.cache
def _libc() -> ctypes.CDLL:
    # dlopen(NULL): the process's own symbols, libc included. ctypes.util.find_library
    # would import subprocess and shutil (1.3 MB) and run ldconfig.
    return ctypes.CDLL(None, use_errno=True)


def adjtimex() -> tuple[int, Timex]:
    """Read (never set: modes = 0) the kernel clock state; returns (clock state, struct timex)."""
    tx = Timex()
    state = _libc().adjtimex(ctypes.byref(tx))
    if state < 0:
        raise CollectorFailure(f"adjtimex failed: {os.strerror(ctypes.get_errno())}")
    return state, tx


def timex_samples(state: int, tx: Timex) -> list[Sample]:
    """node_exporter's timex metrics from an adjtimex result (pure)."""
    div = 1e9 if tx.status & STA_NANO else MICRO
    return [
        SYNC_STATUS.sample(0 if state == TIME_ERROR else 1),
        OFFSET.sample(tx.offset / div),
        FREQ.sample(1 + tx.freq / PPM16),
        MAXERROR.sample(tx.maxerror / MICRO),
        ESTERROR.sample(tx.esterror / MICRO),
        STATUS.sample(tx.status),
        CONSTANT.sample(tx.constant),
        TICK.sample(tx.tick / MICRO),
        PPS_FREQ.sample(tx.ppsfreq / PPM16),
        PPS_JITTER.sample(tx.jitter / div),
        PPS_SHIFT.sample(tx.shift),
        PPS_STABIL.sample(tx.stabil / PPM16),
        PPS_JITCNT.sample(tx.jitcnt),
        PPS_CALCNT.sample(tx.calcnt),
        PPS_ERRCNT.sample(tx.errcnt),
        PPS_STBCNT.sample(tx.stbcnt),
        TAI.sample(tx.tai),
    ]


@register("timex", config=EmptyConfig)
class TimexCollector:
    """Whether the clock is NTP-synchronised, its offset, error and frequency adjustment."""

    name = "timex"

    def __init__(self, config: EmptyConfig, read: Adjtimex = adjtimex):
        self.config = config
        self.read = read

    def collect(self, ctx: Context) -> Iterator[Sample]:
        state, tx = self.read()
        yield from timex_samples(state, tx)
