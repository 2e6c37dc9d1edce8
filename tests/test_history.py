"""History: the in-memory ring that feeds PromQL; staleness, retention, selection by name."""

from __future__ import annotations

import math

from collector.model import Sample
from rules.history import History, is_stale
from rules.promql import Engine, parse


def _values(h: History, q: str, t: float) -> dict[str, float]:
    out = Engine(h).instant(parse(q), t)
    assert isinstance(out, list)
    return {s.labels.get("path", s.labels.get("__name__", "")): s.value for s in out}  # type: ignore[union-attr]


def test_series_missing_from_a_collection_vanish_at_once():
    h = History()
    h.append([Sample("disk_free", {"path": "/"}, 1.0), Sample("disk_free", {"path": "/var"}, 2.0)], 100, "fs")
    h.append([Sample("disk_free", {"path": "/"}, 3.0)], 115, "fs")
    # Without staleness /var would linger for 5 minutes of lookback.
    assert _values(h, "disk_free", 116) == {"/": 3.0}
    # Before the collection that dropped it, it is still there.
    assert _values(h, "disk_free", 110) == {"/": 1.0, "/var": 2.0}


def test_other_sources_do_not_mark_series_stale():
    h = History()
    h.append([Sample("up", {"path": "a"}, 1.0)], 100, "one")
    h.append([Sample("load", {"path": "b"}, 2.0)], 101, "two")
    assert _values(h, "up", 102) == {"a": 1.0}


def test_lookback_is_five_minutes():
    h = History()
    h.append([Sample("x", {}, 7.0)], 1000, "s")
    assert _values(h, "x", 1300) == {"x": 7.0}
    assert _values(h, "x", 1300.001) == {}


def test_retention_forgets_old_points_and_series():
    h = History(retention=600)
    for i in range(100):
        h.append([Sample("a", {}, float(i))] + ([Sample("b", {}, 1.0)] if i < 5 else []), i * 15.0, "s")
    assert _values(h, "count_over_time(a[1h])", 99 * 15) == {"": 41.0}  # 600 s / 15 s + 1
    assert "b" not in h.names()


def test_stale_marker_is_not_an_ordinary_nan():
    h = History()
    h.add_point({"__name__": "x"}, 10, math.nan)
    assert _values(h, "x", 10)["x"] != _values(h, "x", 10)["x"]  # a NaN sample is still a sample
    h.add_stale({"__name__": "x"}, 20)
    assert _values(h, "x", 20) == {}
    assert not is_stale(math.nan)


def test_a_series_forgotten_by_retention_comes_back_when_reported_again():
    # append() remembers each reported label set's series; a forgotten one must not be written to
    h = History(retention=60)
    h.append([Sample("up", {"path": "a"}, 1.0), Sample("up", {"path": "b"}, 1.0)], 100, "s")
    h.append([Sample("up", {"path": "b"}, 2.0)], 115, "s")  # a: stale
    h.append([Sample("up", {"path": "b"}, 2.0)], 250, "s")
    h.trim(250)  # a: forgotten
    assert len(h) == 1
    h.append([Sample("up", {"path": "a"}, 3.0), Sample("up", {"path": "b"}, 4.0)], 300, "s")
    assert _values(h, "up", 300) == {"a": 3.0, "b": 4.0}


def test_target_labels_apply_to_repeated_label_sets():
    h = History()
    h.append([Sample("up", {"path": "a"}, 1.0)], 100, "s", target_labels={"instance": "one"})
    h.append([Sample("up", {"path": "a"}, 2.0)], 115, "s", target_labels={"instance": "two"})
    own = Sample("up", {"path": "a", "instance": "own"}, 3.0)
    h.append([own], 130, "s", target_labels={"instance": "two"})
    out = Engine(h).instant(parse("up"), 115)
    assert isinstance(out, list)
    # the series of instance "one" went stale when the source reported "two" instead
    assert [(s.labels["instance"], s.value) for s in out] == [("two", 2.0)]  # type: ignore[union-attr]
    out = Engine(h).instant(parse("up"), 130)
    assert isinstance(out, list)
    assert sorted((s.labels["instance"], s.value) for s in out) == [("own", 3.0)]  # type: ignore[union-attr]
