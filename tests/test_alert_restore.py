"""Alert state survives a restart: ``for`` timers resume as Prometheus restores ALERTS_FOR_STATE."""

from __future__ import annotations

import json
import re

import pytest

from agent.rules_stage import RulesStage, read_alert_states
from agent.store import Store
from collector.model import Sample
from rules.evaluator import RuleEvaluator, SavedAlert, restored_active_at
from rules.history import History
from rules.loader import RulesOptions, parse_rules
from tests.daemon_harness import Agent, cli, example_config, wait_for, write_config

T0 = 1_700_000_000.0
MIN = 60.0
TOLERANCE, GRACE = 3600.0, 600.0


def rules(for_: str) -> str:
    return f"""
groups:
- name: g
  rules:
  - alert: Hot
    expr: temp > 50
    for: {for_}
    levels: {{P2: "> 90", P3: "> 50"}}
"""


class Run:
    """One agent run: an evaluator over its own history (a restart loses both)."""

    def __init__(self, text: str):
        self.history = History(3 * 3600)
        self.ev = RuleEvaluator(parse_rules(text), RulesOptions())

    def at(self, now: float, temp: float | None = 80.0):
        samples = [] if temp is None else [Sample("temp", {"dev": "a"}, temp)]
        self.history.append(samples, now)
        return self.ev.evaluate(self.history, now)


def hot(alerts):
    found = [a for a in alerts if a.name == "Hot"]
    assert len(found) <= 1
    return found[0] if found else None


def run_until(text: str, start: float, end: float, step: float = 15.0) -> Run:
    r = Run(text)
    t = start
    while t <= end:
        r.at(t)
        t += step
    return r


def restart(previous: Run, down_at: float, text: str, now: float,
            tolerance: float = TOLERANCE, grace: float = GRACE) -> Run:
    r = Run(text)
    r.ev.restore(previous.ev.saved_alerts(down_at), now, tolerance, grace)
    return r


# ---------------------------------------------------------------- the rule itself (pure)


def saved(active_at: float, last_seen: float, state: str = "pending") -> SavedAlert:
    return SavedAlert(("f", "g", "Hot", "x"), {"alertname": "Hot"}, state,  # type: ignore[arg-type]
                      active_at, None, None, last_seen)


@pytest.mark.parametrize(("for_", "active", "down", "now", "expected"), [
    (10 * MIN, 0, 20 * MIN, 25 * MIN, 0),                          # was firing: fires again at once
    (10 * MIN, 0, 20 * MIN, 20 * MIN + TOLERANCE + 1, None),        # down too long: starts over
    (20 * MIN, 0, 15 * MIN, 16 * MIN, 16 * MIN + GRACE - 20 * MIN),  # due within grace: at restart + grace
    (30 * MIN, 0, 5 * MIN, 15 * MIN, 10 * MIN),                     # resumes: outage added to active_at
    (5 * MIN, 0, 3 * MIN, 4 * MIN, None),                           # for shorter than grace: starts over
    (1 * MIN, 0, 3 * MIN, 4 * MIN, 0),                              # ... unless it was firing
])
def test_restored_active_at_follows_prometheus(for_, active, down, now, expected):
    got = restored_active_at(saved(T0 + active, T0 + down), for_, T0 + now, TOLERANCE, GRACE)
    assert got == (None if expected is None else T0 + expected)


# ---------------------------------------------------------------- the evaluator


def test_a_firing_alert_fires_again_at_the_first_evaluation_after_a_restart():
    first = run_until(rules("10m"), T0, T0 + 20 * MIN)
    before = hot(first.at(T0 + 20 * MIN))
    assert before.state == "firing"
    second = restart(first, T0 + 20 * MIN, rules("10m"), T0 + 25 * MIN)
    after = hot(second.at(T0 + 25 * MIN))
    assert after.state == "firing"
    assert after.active_at == before.active_at == T0 and after.fired_at == before.fired_at == T0 + 10 * MIN
    assert after.fingerprint == before.fingerprint
    assert after.level == "P3" and not after.flapping


def test_beyond_the_outage_tolerance_the_for_timer_starts_over():
    first = run_until(rules("10m"), T0, T0 + 20 * MIN)
    now = T0 + 20 * MIN + 2 * 3600
    second = restart(first, T0 + 20 * MIN, rules("10m"), now)
    a = hot(second.at(now))
    assert a.state == "pending" and a.active_at == now
    assert hot(second.at(now + 10 * MIN)).state == "firing"


def test_grace_period_a_restart_never_fires_an_alert_sooner_than_grace():
    # for 20m, pending 15m when the agent stops: 5m were left, the grace gives it 10m
    first = run_until(rules("20m"), T0, T0 + 15 * MIN)
    restart_at = T0 + 16 * MIN
    second = restart(first, T0 + 15 * MIN, rules("20m"), restart_at)
    t = restart_at
    while t < restart_at + GRACE:
        assert hot(second.at(t)).state == "pending", t - restart_at
        t += 15.0
    a = hot(second.at(restart_at + GRACE))
    assert a.state == "firing" and a.fired_at == restart_at + GRACE


def test_a_long_pending_alert_resumes_its_remaining_for():
    # for 30m, pending 5m, down 10m: 25m left after the restart, not 30m
    first = run_until(rules("30m"), T0, T0 + 5 * MIN)
    second = restart(first, T0 + 5 * MIN, rules("30m"), T0 + 15 * MIN)
    assert hot(second.at(T0 + 15 * MIN)).active_at == T0 + 10 * MIN
    assert hot(second.at(T0 + 39 * MIN)).state == "pending"
    assert hot(second.at(T0 + 40 * MIN)).state == "firing"


def test_short_for_pending_alerts_start_over():
    first = run_until(rules("5m"), T0, T0 + 3 * MIN)
    second = restart(first, T0 + 3 * MIN, rules("5m"), T0 + 4 * MIN)
    assert hot(second.at(T0 + 4 * MIN)).active_at == T0 + 4 * MIN


def test_only_alerts_active_at_the_first_evaluation_are_restored():
    first = run_until(rules("10m"), T0, T0 + 20 * MIN)
    second = restart(first, T0 + 20 * MIN, rules("10m"), T0 + 21 * MIN)
    assert second.at(T0 + 21 * MIN, temp=20.0) == []  # not hot now: nothing resolves, nothing kept
    a = hot(second.at(T0 + 22 * MIN))
    assert a.state == "pending" and a.active_at == T0 + 22 * MIN


def test_a_changed_rule_starts_over():
    first = run_until(rules("10m"), T0, T0 + 20 * MIN)
    changed = rules("10m").replace("temp > 50", "temp > 60")
    second = restart(first, T0 + 20 * MIN, changed, T0 + 21 * MIN)
    assert hot(second.at(T0 + 21 * MIN)).state == "pending"


def test_level_is_the_current_one_and_a_restored_alert_is_not_flapping():
    first = run_until(rules("10m"), T0, T0 + 20 * MIN)
    assert first.ev.saved_alerts(T0)[0].level == "P3"
    second = restart(first, T0 + 20 * MIN, rules("10m"), T0 + 21 * MIN)
    a = hot(second.at(T0 + 21 * MIN, temp=95.0))  # worse meanwhile: same alert, worse level
    assert (a.state, a.level, a.labels["level"], a.flapping) == ("firing", "P2", "P2", False)
    assert a.active_at == T0


def test_changes_count_only_what_the_store_keeps():
    r = run_until(rules("1m"), T0, T0 + 5 * MIN)
    n = r.ev.changes
    r.at(T0 + 6 * MIN)
    r.at(T0 + 7 * MIN, temp=81.0)
    assert r.ev.changes == n  # steady state: nothing to write
    r.at(T0 + 8 * MIN, temp=95.0)
    assert r.ev.changes == n + 1  # level changed
    r.at(T0 + 9 * MIN, temp=None)
    assert r.ev.changes > n + 1  # resolved


# ---------------------------------------------------------------- the rules stage and the store


def stage(text: str, store: Store, restore=None) -> RulesStage:
    return RulesStage(parse_rules(text), RulesOptions(), store=store, key=f"test-{id(store)}",
                      restore=restore)


def test_the_stage_writes_on_change_and_a_new_stage_resumes_from_the_store(tmp_path):
    store = Store(tmp_path / "state.db")
    try:
        s = stage(rules("10m"), store)
        temp = [Sample("temp", {"dev": "a"}, 80.0)]
        s(temp, T0)
        rows = read_alert_states(store)
        assert [(r.state, r.active_at, r.last_seen) for r in rows] == [("pending", T0, T0)]
        s(temp, T0 + 30)
        assert read_alert_states(store)[0].last_seen == T0  # unchanged: not written
        t = T0
        while t < T0 + 11 * MIN:
            t += 30
            s(temp, t)
        fired = read_alert_states(store)[0]
        assert (fired.state, fired.fired_at) == ("firing", T0 + 10 * MIN)
        assert t - fired.last_seen < 61  # refreshed at least once a minute
        s.close()
        assert read_alert_states(store)[0].last_seen == t  # a stop records when it was last seen
        with store.read() as db:
            row = db.execute("SELECT fingerprint, labels FROM alert_state").fetchone()
        assert json.loads(row["labels"]) == {"alertname": "Hot", "dev": "a"}

        again = stage(rules("10m"), store, restore=read_alert_states(store))
        again(temp, t + 20)
        a = hot(again.alerts)
        assert (a.state, a.active_at, a.fired_at) == ("firing", T0, T0 + 10 * MIN)
        assert a.fingerprint == row["fingerprint"]
        again([], t + 50)
        assert read_alert_states(store) == []  # resolved: nothing left to restore
    finally:
        store.close()


# ---------------------------------------------------------------- the real daemon


def test_real_daemon_keeps_a_firing_alert_and_its_ticket_across_a_restart(tmp_path):
    rules_file = tmp_path / "hold.yml"
    rules_file.write_text("groups:\n- name: t\n  rules:\n  - alert: HoldProbe\n    expr: vector(1)\n"
                          "    for: 5s\n    labels: {severity: warning}\n")
    cfg = example_config(tmp_path, schedule={"interval": "1s"}, tickets={"reconcile_after": "2s"},
                         rules={"packs": False, "files": [str(rules_file)], "evaluation_interval": "0s"})
    path = write_config(tmp_path / "c.yaml", cfg)
    firing = re.compile(r'^ALERTS\{[^}]*alertname="HoldProbe"[^}]*alertstate="firing"', re.M)
    pending = re.compile(r'^ALERTS\{[^}]*alertname="HoldProbe"[^}]*alertstate="pending"', re.M)

    def metrics(agent):
        return agent.get("/metrics")[1].decode()

    def ticket():
        r = cli("tickets", "show", "1", "--json", "-c", str(path))
        return json.loads(r.stdout) if r.returncode == 0 else None

    agent = Agent(path, cfg)
    try:
        agent.wait_ready()
        assert wait_for(lambda: pending.search(metrics(agent)), timeout=20), agent.log()
        assert wait_for(lambda: firing.search(metrics(agent)), timeout=90, step=0.5), agent.log()
        assert wait_for(lambda: (t := ticket()) and t["status"] == "open", timeout=20), agent.log()
    finally:
        agent.stop()
    journal_before = len(ticket()["journal"])

    agent = Agent(path, cfg)
    try:
        agent.wait_ready()
        # the first evaluation after the restart already fires: it never shows pending
        first = wait_for(lambda: m if "ALERTS{" in (m := metrics(agent)) else None, timeout=20)
        assert first and firing.search(first) and not pending.search(first), first
        wait_for(lambda: False, timeout=4)  # past tickets.reconcile_after (2s) + a few cycles
        assert firing.search(metrics(agent))
    finally:
        agent.stop()
    t = ticket()
    assert t["status"] == "open", t
    texts = " ".join(e["text"] for e in t["journal"][journal_before:])
    assert "resolved" not in texts and "recovered" not in texts, t["journal"]
    assert "Traceback" not in agent.log()
