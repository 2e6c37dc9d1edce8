"""The agent's recent history: an in-memory ring of samples per series, indexed by metric name.

Collectors feed it one collection at a time (``append``); the PromQL engine reads it through
``select`` (index lookup by metric name, cached per label matcher set) and ``instant``/``window``
(bisect on timestamps, no copy of the whole history). Series that a source stops reporting get a
staleness marker, as Prometheus does, so they vanish from instant vectors at once.
"""

from __future__ import annotations

import math
import struct
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from collector.model import Sample

if TYPE_CHECKING:
    from rules.promql.ast import Matcher

# Prometheus' staleness marker: a NaN with a distinct bit pattern (value.StaleNaN).
_STALE_BITS = 0x7FF0000000000002
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", _STALE_BITS))[0]
_STALE_BYTES = struct.pack("<d", STALE_NAN)

SeriesKey = tuple[tuple[str, str], ...]

# How long a series that went away is remembered at least when the rules keep less of it:
# Prometheus' lookback, so the staleness marker still tells it from a series never seen.
GONE_GRACE_MS = 300_000.0


def is_stale(v: float) -> bool:
    """True for Prometheus' staleness marker (and not for an ordinary NaN)."""
    return v != v and struct.pack("<d", v) == _STALE_BYTES


class Ring:
    """The retained points of one series: timestamps in milliseconds and values, from ``start`` on."""

    __slots__ = ("keep_ms", "labels", "stale", "start", "ts", "vs")

    def __init__(self, labels: dict[str, str], keep_ms: float = math.inf):
        self.labels = labels  # includes __name__; shared, never mutated
        self.ts = array("d")
        self.vs = array("d")
        self.start = 0
        self.stale = 0  # staleness markers held, so readers skip filtering when there are none
        self.keep_ms = keep_ms  # how far behind the newest append this series' points are read

    def add(self, t_ms: float, v: float) -> None:
        ts = self.ts
        if len(ts) > self.start and t_ms <= ts[-1]:
            if t_ms == ts[-1]:  # same timestamp: the newer value wins
                if is_stale(self.vs[-1]):
                    self.stale -= 1
                self.vs[-1] = v
                if v != v and is_stale(v):
                    self.stale += 1
            return  # out of order: dropped, as Prometheus does
        ts.append(t_ms)
        self.vs.append(v)
        if v != v and is_stale(v):
            self.stale += 1

    def trim(self, cutoff_ms: float, keep_last: bool = False) -> None:
        """Drop points older than ``cutoff_ms`` (all but the newest one with ``keep_last``)."""
        ts = self.ts
        if self.start >= len(ts) or ts[self.start] >= cutoff_ms:
            return
        new_start = bisect_left(ts, cutoff_ms, self.start)
        if keep_last and new_start >= len(ts):
            # the newest point still answers instant selectors, and tells a series that
            # went away (staleness marker) from one that is still reported
            new_start = len(ts) - 1
            if new_start <= self.start:
                return
        if self.stale:
            self.stale -= sum(1 for i in range(self.start, new_start) if is_stale(self.vs[i]))
        self.start = new_start
        if new_start > 32 and new_start * 2 > len(ts):  # compact: amortised O(1) per point
            del ts[:new_start]
            del self.vs[:new_start]
            self.start = 0

    def __len__(self) -> int:
        return len(self.ts) - self.start

    def last_ms(self) -> float:
        return self.ts[-1] if len(self.ts) > self.start else -math.inf

    def at(self, ref_ms: float, lookback_ms: float) -> tuple[float, float] | None:
        """The (timestamp ms, value) an instant selector sees at ``ref_ms``, or None (absent or stale)."""
        ts = self.ts
        n = len(ts)
        if n <= self.start:
            return None
        if ts[-1] <= ref_ms:
            i = n - 1
        else:
            i = bisect_right(ts, ref_ms, self.start) - 1
            if i < self.start:
                return None
        t = ts[i]
        if t < ref_ms - lookback_ms:
            return None
        v = self.vs[i]
        if v != v and is_stale(v):
            return None
        return t, v

    def window(self, lo_ms: float, hi_ms: float) -> tuple[Sequence[float], Sequence[float]]:
        """Timestamps (ms) and values with lo_ms <= t <= hi_ms, staleness markers removed."""
        ts = self.ts
        lo = bisect_left(ts, lo_ms, self.start)
        hi = len(ts) if ts and ts[-1] <= hi_ms else bisect_right(ts, hi_ms, lo)
        if lo >= hi:
            return (), ()
        t_slice, v_slice = ts[lo:hi], self.vs[lo:hi]
        if self.stale:
            keep = [i for i, v in enumerate(v_slice) if not (v != v and is_stale(v))]
            if len(keep) != len(v_slice):
                return [t_slice[i] for i in keep], [v_slice[i] for i in keep]
        return t_slice, v_slice


def series_key(labels: Mapping[str, str]) -> SeriesKey:
    """A hashable identity of a label set (including __name__)."""
    return tuple(sorted(labels.items()))


class History:
    """Recent samples of every series, kept for ``retention`` seconds behind the newest point.

    ``keep`` (seconds per metric name, see ``set_keep``) lets the rules stage keep of each
    series only what its rules read: the disk-full forecast's 6 h of free bytes, 5 minutes of
    a rate's counters, the newest point of series no rule reads over a range. Without it (the
    default, and for rule unit tests) every series is kept for ``retention``.
    """

    def __init__(self, retention: float = 7200.0, keep: Mapping[str, float] | None = None):
        if retention <= 0:
            raise ValueError("retention must be positive")
        self.retention = retention
        self.keep: dict[str, float] | None = dict(keep) if keep is not None else None
        self._series: dict[SeriesKey, Ring] = {}
        self._by_name: dict[str, dict[SeriesKey, Ring]] = {}
        self._sources: dict[str, set[SeriesKey]] = {}
        self._select_cache: dict[tuple[object, ...], list[Ring]] = {}
        # (name, label items as the sample has them) -> its series and ring, for append():
        # collectors report the same series every cycle, and merging and sorting each label
        # set again was most of the append cost. Cleared when a ring is forgotten.
        self._appended: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[SeriesKey, Ring]] = {}
        self._appended_extra: tuple[tuple[str, str], ...] = ()
        self._newest_ms = -math.inf
        self._last_sweep_ms = -math.inf
        self.generation = 0  # bumped when the set of series changes; selection caches key on it

    # ------------------------------------------------------------ writing
    def _ring(self, labels: Mapping[str, str], key: SeriesKey | None = None) -> Ring:
        if key is None:
            key = series_key(labels)
        ring = self._series.get(key)
        if ring is None:
            ring = Ring(dict(labels), self._keep_ms(labels.get("__name__", "")))
            self._series[key] = ring
            self._by_name.setdefault(ring.labels.get("__name__", ""), {})[key] = ring
            self._bump()
        return ring

    def _keep_ms(self, name: str) -> float:
        if self.keep is None:
            return math.inf
        return self.keep.get(name, 0.0) * 1000

    def set_keep(self, keep: Mapping[str, float] | None) -> None:
        """Keep only ``keep[name]`` seconds (and the newest point) of each metric; None: everything.

        Points already dropped do not come back: after a reload that makes a rule read
        further back, that rule sees the longer range once the history has filled it.
        """
        self.keep = dict(keep) if keep is not None else None
        for ring in self._series.values():
            ring.keep_ms = self._keep_ms(ring.labels.get("__name__", ""))

    def _bump(self) -> None:
        self.generation += 1
        self._select_cache.clear()

    def append(
        self,
        samples: Iterable[Sample],
        ts: float,
        source: str = "",
        target_labels: Mapping[str, str] | None = None,
    ) -> None:
        """Add one collection of one source at time ``ts`` (seconds).

        Series the source reported last time and not now get a staleness marker at ``ts``. A sample's
        own ``ts`` wins over the collection time when it is set. ``target_labels`` (the local
        ``instance``) are added where a sample lacks them, as Prometheus adds target labels at
        scrape time with ``honor_labels: true``; so local alerts name their host.
        """
        t_ms = float(round(ts * 1000))
        seen: set[SeriesKey] = set()
        retention_ms = self.retention * 1000
        cutoff = t_ms - retention_ms
        extra = dict(target_labels or {})
        known = self._appended
        extra_items = tuple(extra.items())
        if extra_items != self._appended_extra or len(known) > 4 * len(self._series) + 1024:
            known.clear()
            self._appended_extra = extra_items
        for s in samples:
            ck = (s.name, tuple(s.labels.items()))
            hit = known.get(ck)
            if hit is None:
                labels = {**extra, **s.labels, "__name__": s.name}
                key = series_key(labels)
                ring = self._ring(labels, key)
                known[ck] = (key, ring)
            else:
                key, ring = hit
            seen.add(key)
            ring.add(float(round(s.ts * 1000)) if s.ts else t_ms, float(s.value))
            keep_ms = ring.keep_ms
            if keep_ms < retention_ms:
                ring.trim(t_ms - keep_ms, keep_last=True)
            else:
                ring.trim(cutoff)
        previous = self._sources.get(source, set())
        for key in previous - seen:
            gone = self._series.get(key)
            if gone is not None and len(gone) and not is_stale(gone.vs[-1]):
                gone.add(t_ms, STALE_NAN)
        self._sources[source] = seen
        self._advance(t_ms)

    def add_point(self, labels: Mapping[str, str], t: float, value: float) -> None:
        """Add one point (labels include ``__name__``); for tests and the rule unit-test runner."""
        t_ms = float(round(t * 1000))
        self._ring(labels).add(t_ms, float(value))
        self._advance(t_ms)

    def add_stale(self, labels: Mapping[str, str], t: float) -> None:
        """Add a staleness marker to one series at ``t`` seconds."""
        self.add_point(labels, t, STALE_NAN)

    def _advance(self, t_ms: float) -> None:
        if t_ms > self._newest_ms:
            self._newest_ms = t_ms
        # Sweep all series now and then, so series nobody reports any more are forgotten.
        if self._newest_ms - self._last_sweep_ms >= min(60_000.0, self.retention * 125):
            self._last_sweep_ms = self._newest_ms
            self.trim(self._newest_ms / 1000)

    def trim(self, now: float) -> None:
        """Forget points older than ``now - retention`` and series left empty."""
        newest_ms = now * 1000
        retention_ms = self.retention * 1000
        cutoff = newest_ms - retention_ms
        gone = []
        for key, ring in self._series.items():
            if ring.keep_ms < retention_ms:
                ring.trim(newest_ms - ring.keep_ms, keep_last=True)
                last = ring.last_ms()
                unseen_since = newest_ms - max(ring.keep_ms, GONE_GRACE_MS)
                if len(ring) and last < unseen_since and is_stale(ring.vs[-1]):
                    # gone (its newest point is the staleness marker) longer ago than any rule
                    # reads back: invisible to every query, so forgotten now rather than after
                    # the whole retention -- a label that changes every cycle (a pid) would
                    # otherwise hold retention / interval series (1,440 in 6 h at 15 s)
                    gone.append(key)
                    continue
                if last < cutoff:
                    ring.trim(cutoff)
            else:
                ring.trim(cutoff)
            if not len(ring):
                gone.append(key)
        for key in gone:
            ring = self._series.pop(key)
            by_name = self._by_name.get(ring.labels.get("__name__", ""), {})
            by_name.pop(key, None)
        if gone:
            self._appended.clear()
            self._bump()

    # ------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self._series)

    def names(self) -> list[str]:
        """Metric names held."""
        return sorted(n for n, s in self._by_name.items() if s)

    def select(self, name: str | None, matchers: Sequence[Matcher]) -> list[Ring]:
        """Series matching all ``matchers``, sorted by label set (Prometheus' order); cached until the
        set of series changes."""
        ck = (name, *((m.name, m.op, m.value) for m in matchers))
        hit = self._select_cache.get(ck)
        if hit is not None:
            return hit
        if name is not None:
            candidates: Iterable[tuple[SeriesKey, Ring]] = self._by_name.get(name, {}).items()
            rest = [m for m in matchers if not (m.name == "__name__" and m.op == "=")]
        else:
            candidates = self._series.items()
            rest = list(matchers)
        out = []
        for key, ring in candidates:
            labels = ring.labels
            if all(m.test(labels.get(m.name, "")) for m in rest):
                out.append((key, ring))
        out.sort(key=lambda kr: kr[0])
        rings = [r for _, r in out]
        self._select_cache[ck] = rings
        return rings
