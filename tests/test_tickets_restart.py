"""Tickets left open by alerts that resolved while the agent was down: reconciled after a restart.

The stage with a fake clock over a real store (each case of the grace), and
the real daemon stopped and started again with a rule that no longer fires.
"""

import json
from types import SimpleNamespace

import pytest

from agent.config import load_config
from agent.store import Store
from agent.tickets import AlertEvent, TicketBook, TicketPolicy, identity
from agent.tickets_stage import TicketStage, restart_grace, setup
from rules.loader import parse_rules
from rules.model import Alert
from tests.daemon_harness import Agent, cli, example_config, wait_for, write_config
from tests.test_tickets import ROUTE

T0 = 1_726_000_000.0
T1 = T0 + 3 * 86400  # the agent comes back three days later
RULES = parse_rules("""
groups:
- name: g
  rules:
  - {alert: DiskFull, expr: disk > 0.9, for: 5m}
  - {alert: Down, expr: up == 0}
  - {alert: LoadHigh, expr: load > 8, for: 30m}
""")


def alert(rule, instance, state="firing", started=T0):
    labels = {"alertname": rule, "instance": instance}
    return Alert(rule, labels, "P2", 1.0, state, {"summary": f"{rule} on {instance}"},
                 active_at=started, fired_at=started if state == "firing" else None)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "state.db")
    yield s
    s.close()


def run(store, alerts, restart=None):
    """A ticket stage as the daemon builds it; ``alerts`` is the list the rules stage shows."""
    def actionable():
        return [a for a in alerts if a.state != "pending"]

    return TicketStage(store, TicketPolicy(routes=(ROUTE,)), {}, actionable, clock=lambda: T1,
                       restart=restart, active=lambda: alerts)


def status(store, rule):
    [t] = [t for t in TicketBook(store).list_tickets() if t["rule"] == rule]
    return t["status"]


def test_grace_is_for_plus_two_intervals_at_least_reconcile_after():
    grace = restart_grace(RULES, 60.0, 600.0)
    assert grace("Down") == 600.0  # 0 + 2 min < 10 min
    assert grace("DiskFull") == 600.0  # 5 + 2 min
    assert grace("LoadHigh") == 30 * 60 + 120
    assert grace("RemovedSinceLastRun") == 600.0


def test_after_restart_only_alerts_that_stay_away_resolve_their_tickets(store):
    before = [alert("DiskFull", "db-1"), alert("Down", "db-2"), alert("LoadHigh", "app-1"),
              alert("Down", "db-4")]
    first = run(store, before)
    first([], T0)
    # an Alertmanager ticket: Alertmanager sends its own "resolved", never reconciled here
    am = {"alertname": "DBDown", "instance": "db-3"}
    first.book.apply([AlertEvent(identity(am), "DBDown", "P1", "firing", am, {}, T0, T0, "alertmanager")], T0)
    first.book.ack(3, "alice", T0 + 60)  # LoadHigh: acknowledged tickets count too
    first.close()  # the agent stops; while it is down DiskFull, Down db-2 and LoadHigh recover

    now: list[Alert] = []
    second = run(store, now, restart=restart_grace(RULES, 60.0, 600.0))
    second([], T1)
    assert sorted(second.reconciliation.waiting) == [1, 2, 3, 4]
    # DiskFull fires again after its `for`; Down db-4 also fires again; LoadHigh is pending a long time
    now += [alert("DiskFull", "db-1", started=T1 + 300), alert("Down", "db-4", started=T1 + 60),
            alert("LoadHigh", "app-1", "pending", started=T1 + 60)]
    second([], T1 + 540)
    # DiskFull and db-4 fire: forgotten; Down db-2 (grace 10 min) and LoadHigh still wait
    assert sorted(second.reconciliation.waiting) == [2, 3]
    assert status(store, "DBDown") == "open"
    now.remove(next(a for a in now if a.name == "DiskFull"))
    second([], T1 + 600)
    down = {t["instance"]: t for t in second.book.list_tickets() if t["rule"] == "Down"}
    assert down["db-2"]["status"] == "resolved" and down["db-4"]["status"] == "open"
    # firing again took DiskFull out of reconciliation: its own lifecycle resolves it later
    assert status(store, "DiskFull") == "open"
    # LoadHigh is past its grace (32 min) but pending: it waits until the alert goes away
    second([], T1 + 2000)
    assert status(store, "LoadHigh") == "acknowledged"
    now[:] = [a for a in now if a.name != "LoadHigh"]
    second([], T1 + 2015)
    assert status(store, "LoadHigh") == "resolved" and second.reconciliation is None
    assert status(store, "DBDown") == "open"

    t = second.book.get(down["db-2"]["id"])
    assert t["restored_at"] == t["resolved_at"] == T1  # recovery vouched for from the restart on
    [note] = [j["text"] for j in t["journal"] if j["kind"] == "resolved"]
    assert note.startswith("auto-resolved: recovered while the agent was down (not firing after restart;")
    with store.read() as db:
        sent = [(r["event"], r["ticket_id"]) for r in db.execute("SELECT * FROM outbox ORDER BY id")]
    assert ("resolved", down["db-2"]["id"]) in sent and ("resolved", 3) in sent
    second.close()


def test_a_ticket_resolved_by_hand_meanwhile_is_left_alone(store):
    first = run(store, [alert("Down", "db-2")])
    first([], T0)
    first.close()
    second = run(store, [], restart=restart_grace(RULES, 15.0, 600.0))
    second([], T1)
    second.book.resolve(1, "bob", T1 + 60, "rebooted it")
    second([], T1 + 600)
    t = second.book.get(1)
    assert [j["who"] for j in t["journal"] if j["kind"] == "resolved"] == ["bob"]
    second.close()


def test_confirm_recovery_makes_them_recovered_awaiting_confirmation(store):
    first = run(store, [alert("Down", "db-2")])
    first([], T0)
    first.close()
    policy = TicketPolicy(routes=(ROUTE,), confirm_recovery=True)
    second = TicketStage(store, policy, {}, lambda: [], clock=lambda: T1,
                         restart=restart_grace(RULES, 15.0, 600.0))
    second([], T1)
    second([], T1 + 600)
    t = second.book.get(1)
    assert t["status"] == "recovered" and "recovered while the agent was down" in t["journal"][-1]["text"]
    second.close()


def test_only_start_up_reconciles_not_a_reload(tmp_path):
    path = write_config(tmp_path / "c.yaml", example_config(tmp_path))
    config = load_config(path)
    stages = []
    store = Store(config.agent.state_file)
    try:
        for _ in range(2):  # start-up, then a reload of the same configuration
            cycle = SimpleNamespace(config=config, store=store, add_stage=stages.append, rules_stage=None)
            setup(cycle)
        assert stages[0]._restart is not None and stages[1]._restart is None
    finally:
        for s in stages:
            s.close()
        store.close()


def test_real_daemon_resolves_after_restart_what_recovered_while_it_was_down(tmp_path):
    rules = tmp_path / "restart.yml"
    rules.write_text("groups:\n- name: t\n  rules:\n  - alert: RestartProbe\n    expr: vector(1)\n"
                     "    labels: {severity: warning}\n")
    cfg = example_config(tmp_path, schedule={"interval": "1s"}, tickets={"reconcile_after": "2s"},
                         rules={"packs": False, "files": [str(rules)],
                                                 "evaluation_interval": "0s"})
    path = write_config(tmp_path / "c.yaml", cfg)

    def ticket():
        r = cli("tickets", "show", "1", "--json", "-c", str(path))
        return json.loads(r.stdout) if r.returncode == 0 else None

    agent = Agent(path, cfg)
    try:
        agent.wait_ready()
        assert wait_for(lambda: (t := ticket()) and t["status"] == "open", timeout=20), agent.log()
    finally:
        agent.stop()
    rules.write_text(rules.read_text().replace("vector(1)", "vector(1) > 2"))  # recovered while down
    agent = Agent(path, cfg)
    try:
        agent.wait_ready()
        t = wait_for(lambda: (t := ticket()) and t["status"] == "resolved" and t, timeout=20)
    finally:
        agent.stop()
    assert t, agent.log()
    assert "recovered while the agent was down" in t["journal"][-1]["text"]
    assert "Traceback" not in agent.log()
