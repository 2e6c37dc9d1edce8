"""The alert state machine over the real History and PromQL engine."""

from __future__ import annotations

from collector.model import Sample
from rules.evaluator import RuleEvaluator, actionable, alert_samples
from rules.history import History
from rules.loader import RulesOptions, parse_rules

T0 = 1_700_000_000.0
STEP = 15.0


class Feed:
    """A history fed one collection per step, and an evaluator run after each."""

    def __init__(self, text: str, options: RulesOptions | None = None):
        self.history = History(3600)
        self.ev = RuleEvaluator(parse_rules(text), options)
        self.i = 0

    def step(self, *samples: tuple[str, dict[str, str], float]):
        now = T0 + self.i * STEP
        self.i += 1
        self.history.append([Sample(n, lab, v) for n, lab, v in samples], now)
        return self.ev.evaluate(self.history, now)


def states(alerts):
    return sorted((a.name, a.state) for a in alerts)


DISK = """
groups:
- name: g
  rules:
  - alert: Disk
    expr: used
    for: 30s
    levels: {P2: "> 0.95", P3: "> 0.90"}
    recover: "< 0.85"
"""


def test_pending_then_firing_then_resolved_once():
    f = Feed("""
groups:
- name: g
  rules:
  - alert: Down
    expr: up == 0
    for: 30s
    labels: {severity: critical}
""")
    up = lambda v: ("up", {"instance": "a"}, v)  # noqa: E731
    assert f.step(up(1)) == []
    assert states(f.step(up(0))) == [("Down", "pending")]
    assert states(f.step(up(0))) == [("Down", "pending")]
    firing = f.step(up(0))
    assert states(firing) == [("Down", "firing")]
    a = firing[0]
    # a plain Prometheus rule: level from severity, labels exactly as Prometheus gives them
    assert a.level == "P1"
    assert dict(a.labels) == {"alertname": "Down", "instance": "a", "severity": "critical"}
    resolved = f.step(up(1))
    assert states(resolved) == [("Down", "resolved")] and resolved[0].resolved_at == T0 + 4 * STEP
    assert f.step(up(1)) == []  # reported once, then forgotten


def test_for_zero_fires_at_once_and_pending_that_stops_is_dropped():
    f = Feed("""
groups:
- name: g
  rules:
  - {alert: Now, expr: x > 1}
  - {alert: Later, expr: x > 1, for: 5m}
""")
    assert states(f.step(("x", {}, 2))) == [("Later", "pending"), ("Now", "firing")]
    # the pending one never fired: it just disappears, not "resolved"
    assert states(f.step(("x", {}, 0))) == [("Now", "resolved")]


def test_keep_firing_for_holds_a_firing_alert():
    f = Feed("""
groups:
- name: g
  rules:
  - {alert: K, expr: x > 1, keep_firing_for: 30s}
""", RulesOptions(flapping=False))
    assert states(f.step(("x", {}, 2))) == [("K", "firing")]
    assert states(f.step(("x", {}, 0))) == [("K", "firing")]
    assert states(f.step(("x", {}, 0))) == [("K", "firing")]
    assert states(f.step(("x", {}, 0))) == [("K", "resolved")]


def test_level_follows_the_value_without_refiring_and_recover_adds_hysteresis():
    f = Feed(DISK)
    used = lambda v: ("used", {"instance": "a", "mountpoint": "/"}, v)  # noqa: E731
    seen = [f.step(used(v)) for v in (0.5, 0.91, 0.92, 0.96, 0.97, 0.91, 0.87, 0.84)]
    assert seen[0] == []
    assert [(a[0].state, a[0].level) for a in seen[1:6]] == [
        ("pending", "P3"), ("pending", "P3"), ("firing", "P2"), ("firing", "P2"), ("firing", "P3")]
    fired = {a[0].fired_at for a in seen[3:6]}
    assert len(fired) == 1  # one alert, fired once, whatever its level
    assert len({a[0].fingerprint for a in seen[1:7]}) == 1
    assert seen[5][0].labels["level"] == "P3"
    # 0.87: below every threshold but not yet recovered (< 0.85): still firing, last level kept
    assert (seen[6][0].state, seen[6][0].level, seen[6][0].value) == ("firing", "P3", 0.87)
    assert seen[7][0].state == "resolved"


def test_recover_expression_must_hold_for_the_series():
    f = Feed("""
groups:
- name: g
  rules:
  - alert: Load
    expr: load > 4
    recover: load < 2
""")
    load = lambda v: ("load", {"instance": "a"}, v)  # noqa: E731
    assert [states(f.step(load(v))) for v in (5, 3, 3, 1)] == [
        [("Load", "firing")], [("Load", "firing")], [("Load", "firing")], [("Load", "resolved")]]


def test_impact_level_from_the_tier_label():
    f = Feed("""
groups:
- name: g
  rules:
  - alert: Down
    expr: up == 0
    impact: {urgency: high}
""")
    alerts = f.step(("up", {"instance": "db", "tier": "production"}, 0),
                    ("up", {"instance": "ci", "tier": "test"}, 0),
                    ("up", {"instance": "x"}, 0))
    got = {a.labels["instance"]: (a.level, a.labels["level"]) for a in alerts}
    assert got == {"db": ("P1", "P1"), "ci": ("P3", "P3"), "x": ("P1", "P1")}


def test_a_flapping_alert_stays_firing_marked_until_it_settles():
    f = Feed("""
groups:
- name: g
  rules:
  - {alert: F, expr: x > 1}
""")
    x = lambda v: ("x", {}, v)  # noqa: E731
    out = [f.step(x(2 if i % 2 == 0 else 0)) for i in range(8)]
    # the first fire and resolve are ordinary
    assert states(out[0]) == [("F", "firing")] and states(out[1]) == [("F", "resolved")]
    assert states(out[2]) == [("F", "firing")]
    # then it flaps: it stays firing (no new resolve/fire pair), marked
    tail = out[4:]
    assert all(states(a) == [("F", "firing")] for a in tail)
    assert all(a[0].flapping for a in tail)
    assert len({a[0].fired_at for a in tail}) == 1
    # once quiet long enough, the flapping mark goes and the alert resolves
    quiet = [f.step(x(0)) for _ in range(25)]
    assert ("F", "resolved") in [s for a in quiet for s in states(a)]
    assert quiet[-1] == []


def test_firing_parent_inhibits_children_with_equal_labels():
    f = Feed("""
groups:
- name: g
  rules:
  - alert: HostDown
    expr: up == 0
    inhibits: [{alerts: ["*"], equal: [instance]}]
  - {alert: Disk, expr: used > 0.9}
  - alert: Service
    expr: svc == 0
    depends_on: [{alert: HostDown, equal: [instance]}]
""")
    alerts = f.step(("up", {"instance": "a"}, 0), ("used", {"instance": "a"}, 0.95),
                    ("used", {"instance": "b"}, 0.95), ("svc", {"instance": "a"}, 0))
    flags = {(a.name, a.labels["instance"]): a.inhibited for a in alerts}
    assert flags == {("HostDown", "a"): False, ("Disk", "a"): True, ("Disk", "b"): False,
                     ("Service", "a"): True}
    assert sorted((a.name, a.labels["instance"]) for a in actionable(alerts)) == [
        ("Disk", "b"), ("HostDown", "a")]


def test_recording_rules_feed_later_rules_and_failures_do_not_stop_others():
    f = Feed("""
groups:
- name: g
  rules:
  - record: job:x:sum
    expr: sum without (instance) (x)
  - {alert: Many, expr: "job:x:sum > 3"}
  - {alert: Broken, expr: "x + on() x"}
""")
    alerts = f.step(("x", {"instance": "a"}, 2), ("x", {"instance": "b"}, 2))
    assert states(alerts) == [("Many", "firing")]
    assert f.ev.failures_total == 1 and "Broken" in f.ev.last_errors[0]


def test_state_survives_a_reload_of_unchanged_rules():
    text = """
groups:
- name: g
  rules:
  - {alert: A, expr: x > 1, for: 30s}
"""
    f = Feed(text)
    f.step(("x", {}, 2))
    f.ev.replace(parse_rules(text))
    assert states(f.step(("x", {}, 2))) == [("A", "pending")]
    assert states(f.step(("x", {}, 2))) == [("A", "firing")]
    f.ev.replace(parse_rules(text.replace("x > 1", "x > 0")))
    assert states(f.step(("x", {}, 2))) == [("A", "pending")]  # a changed rule starts over


def test_alerts_series_as_prometheus_writes_them():
    f = Feed(DISK)
    f.step(("used", {"instance": "a"}, 0.97))
    alerts = f.step(("used", {"instance": "a"}, 0.97))
    samples = {(s.name, s.labels.get("alertstate", "")): s for s in alert_samples(alerts, T0)}
    assert samples[("ALERTS", "pending")].labels == {
        "alertname": "Disk", "alertstate": "pending", "instance": "a", "level": "P2"}
    assert samples[("ALERTS_FOR_STATE", "")].value == T0
