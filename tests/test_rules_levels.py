"""Fault levels: severity mapping, thresholds, impact matrix, Nagios flap percentage."""

from __future__ import annotations

import pytest

from rules import levels as lv
from rules.model import Alert, fingerprint


def test_severity_maps_to_levels_case_insensitively():
    m = lv.DEFAULT_SEVERITY_LEVELS
    assert [lv.level_for_severity(s, m) for s in ("critical", "error", "major", "Warning", "info")] == [
        "P1", "P2", "P2", "P3", "P4"]
    assert lv.level_for_severity("page", m) is None
    assert lv.level_for_severity(None, m) is None


def test_export_maps_levels_back_to_the_first_severity():
    m = lv.DEFAULT_SEVERITY_LEVELS
    assert [lv.severity_for_level(x, m) for x in ("P1", "P2", "P3", "P4")] == [
        "critical", "error", "warning", "info"]


def test_worst_level_that_holds_wins():
    ths = [("P2", lv.parse_threshold("> 0.95")), ("P3", lv.parse_threshold(">0.90"))]
    assert lv.level_for_value(0.97, ths) == "P2"
    assert lv.level_for_value(0.92, ths) == "P3"
    assert lv.level_for_value(0.5, ths) is None
    assert lv.level_for_value(float("nan"), ths) is None


@pytest.mark.parametrize("text", ["0.95", "> abc", "=> 1", ""])
def test_bad_thresholds_say_how_to_write_one(text):
    with pytest.raises(ValueError, match="threshold"):
        lv.parse_threshold(text)


def test_default_impact_matrix_reproduces_spec():
    m = lv.DEFAULT_IMPACT_MATRIX
    assert lv.level_for_impact("production", "high", m) == "P1"
    assert lv.level_for_impact("important", "high", m) == "P2"
    assert lv.level_for_impact("test", "high", m) == "P3"
    assert lv.level_for_impact("production", "planning", m) == "P4"
    # no tier label, or an unknown one: the default tier (production)
    assert lv.level_for_impact(None, "high", m) == "P1"
    assert lv.level_for_impact("lab", "medium", m) == "P2"
    assert lv.check_matrix(m) == []
    assert lv.check_matrix({"a": {"x": "P9"}, "b": {"y": "P1"}}) == [
        ("a.x", "unknown level 'P9' (use one of P1, P2, P3, P4)"),
        ("b", "must name the same urgencies as the other rows: x"),
    ]


def test_flap_percent_weighs_recent_changes_more():
    steady = [False] * 21
    assert lv.flap_percent(steady) == 0
    alternating = [i % 2 == 0 for i in range(21)]
    assert lv.flap_percent(alternating) == pytest.approx(100)
    old_change = [True] + [False] * 20
    new_change = [False] * 20 + [True]
    assert lv.flap_percent(old_change) == pytest.approx(4.0)   # weight 0.8 / 20
    assert lv.flap_percent(new_change) == pytest.approx(6.0)   # weight 1.2 / 20


def test_fingerprint_ignores_the_level_so_a_worse_level_is_the_same_ticket():
    base = {"alertname": "Disk", "instance": "a"}
    p3 = Alert("Disk", {**base, "level": "P3"}, "P3", 0.91, "firing")
    p2 = Alert("Disk", {**base, "level": "P2"}, "P2", 0.96, "firing")
    assert p3.fingerprint == p2.fingerprint == fingerprint(base)
    other = Alert("Disk", {**base, "instance": "b"}, "P3", 0.91, "firing")
    assert other.fingerprint != p3.fingerprint


def test_fingerprint_is_alertmanagers():
    # the reference vectors of prometheus/common model (TestMetricToFingerprint): a ticket opened
    # from a local rule and one from an Alertmanager webhook for the same labels must coincide
    assert int(fingerprint({}), 16) == 14695981039346656037
    labels = {"name": "garland, briggs", "fear": "love is not enough"}
    assert int(fingerprint(labels), 16) == 5799056148416392346
    assert fingerprint(labels) == "507a62d79ee76c9a"  # as Alertmanager prints it (%016x)
