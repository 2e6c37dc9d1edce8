"""Ticket lifecycle in a real store: one ticket per fault, relevel, recover, reopen, people, SLA."""

import json

import pytest

from agent.errors import UserError
from agent.escalation import Step
from agent.maintenance import make_window
from agent.store import Store
from agent.tickets import (
    AlertEvent,
    IllegalTransition,
    Route,
    TicketBook,
    TicketNotFound,
    TicketPolicy,
    identity,
)
from rules.model import Alert

T0 = 1_726_000_000.0
ROUTE = Route(
    "hook",
    "webhook",
    frozenset({"P1", "P2", "P3", "P4"}),
    frozenset({"opened", "reopened", "relevel", "resolved", "recovered", "breach"}),
    True,
    "en",
)


def ev(level="P3", state="firing", started=T0, instance="db-1", rule="DiskFull", at=0.0):
    labels = {"alertname": rule, "instance": instance, "level": level}
    return AlertEvent(
        identity(labels), rule, level, state, labels, {"summary": f"disk full on {instance}"}, started, at
    )


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "state.db")
    yield s
    s.close()


def book(store, **kw):
    return TicketBook(store, TicketPolicy(routes=(ROUTE,), **kw))


def outbox(store):
    with store.read() as db:
        return [(r["event"], r["ticket_id"]) for r in db.execute("SELECT * FROM outbox ORDER BY id")]


def kinds(b, tid):
    return [j["kind"] for j in b.get(tid)["journal"]]


def test_firing_opens_one_ticket_and_counts_occurrences(store):
    b = book(store)
    b.apply([ev(), ev(), ev(started=T0 + 100)], T0)
    b.apply([ev(started=T0 + 200)], T0 + 300)
    tickets = b.list_tickets()
    assert len(tickets) == 1
    t = b.get(tickets[0]["id"])
    assert t["occurrences"] == 3
    assert t["status"] == "open"
    assert t["respond_due"] == T0 + 6 * 3600  # P3 respond 6 h (24x7)
    assert kinds(b, t["id"]) == ["opened", "fired", "fired"]
    assert outbox(store) == [("opened", t["id"])]


def test_level_change_relevels_same_ticket_and_notifies(store):
    b = book(store)
    b.apply([ev("P3")], T0)
    b.apply([ev("P2")], T0 + 60)
    [t] = b.list_tickets()
    assert t["level"] == "P2"
    assert t["respond_due"] == T0 + 3600  # recomputed from the start of the clock
    assert [e for e, _ in outbox(store)] == ["opened", "relevel"]


def test_rules_alert_fingerprint_agrees_with_ticket_identity():
    a = Alert("DiskFull", {"alertname": "DiskFull", "instance": "x", "level": "P3"}, "P3", 1.0, "firing")
    b = Alert("DiskFull", {"alertname": "DiskFull", "instance": "x", "level": "P2"}, "P2", 1.0, "firing")
    assert a.fingerprint == b.fingerprint == identity(a.labels)


def test_recovery_resolves_then_recurrence_reopens_within_window_else_new(store):
    b = book(store)
    b.apply([ev()], T0)
    b.apply([ev(state="resolved", at=T0 + 50)], T0 + 60)
    [t] = b.list_tickets()
    assert t["status"] == "resolved" and t["resolved_at"] == T0 + 50
    assert "auto-resolved" in b.get(t["id"])["journal"][-1]["text"]
    b.apply([ev(started=T0 + 1000)], T0 + 1000)
    [t] = b.list_tickets()
    assert t["status"] == "open" and t["occurrences"] == 2
    b.apply([ev(state="resolved")], T0 + 2000)
    b.apply([ev(started=T0 + 2000 + 86400 + 1)], T0 + 2000 + 86400 + 1)
    assert [x["status"] for x in b.list_tickets()] == ["open", "resolved"]


def test_confirm_recovery_keeps_ticket_live(store):
    b = book(store, confirm_recovery=True)
    b.apply([ev()], T0)
    b.apply([ev(state="resolved")], T0 + 60)
    [t] = b.list_tickets()
    assert t["status"] == "recovered"
    b.resolve(t["id"], "alice", T0 + 120, "checked the disk")
    assert b.get(t["id"])["status"] == "resolved"


def test_manual_resolve_needs_a_note_recovery_does_not(store):
    b = book(store)
    b.apply([ev("P2")], T0)
    [t] = b.list_tickets()
    for empty in ("", "  \n"):
        with pytest.raises(UserError, match="needs a note: the cause and what was done"):
            b.resolve(t["id"], "alice", T0 + 60, empty)
    assert b.get(t["id"])["status"] == "open" and kinds(b, t["id"]) == ["opened"]  # nothing changed
    b.resolve(t["id"], "alice", T0 + 60, "cause: log partition full; rotated and compressed old logs")
    got = b.get(t["id"])
    assert got["status"] == "resolved"
    assert got["journal"][-1]["text"] == "cause: log partition full; rotated and compressed old logs"
    # the alert recovering resolves with the automatic note
    b.apply([ev("P2", instance="db-2")], T0)
    b.apply([ev("P2", state="resolved", instance="db-2", at=T0 + 30)], T0 + 30)
    auto = next(x for x in b.list_tickets() if x["instance"] == "db-2")
    assert auto["status"] == "resolved"
    assert b.get(auto["id"])["journal"][-1]["text"] == "auto-resolved: the alert recovered"


def test_manual_transitions_and_clear_errors(store):
    b = book(store)
    b.apply([ev("P1")], T0)
    [t] = b.list_tickets()
    tid = t["id"]
    b.ack(tid, "alice", T0 + 60)
    with pytest.raises(IllegalTransition, match="already acknowledged"):
        b.ack(tid, "alice", T0 + 61)
    b.note(tid, "alice", "replaced the disk", T0 + 70)
    b.close(tid, "bob", T0 + 80)
    with pytest.raises(IllegalTransition, match="already closed"):
        b.resolve(tid, "bob", T0 + 90, "too late")
    with pytest.raises(TicketNotFound, match="no ticket 999"):
        b.ack(999, "x", T0)
    with pytest.raises(UserError):
        b.note(tid, "x", "  ", T0)
    j = b.get(tid)["journal"]
    assert [(x["who"], x["kind"]) for x in j] == [
        ("opsagent", "opened"),
        ("alice", "acknowledged"),
        ("alice", "note"),
        ("bob", "closed"),
    ]
    # a closed ticket is final: the fault coming back opens a new one
    b.apply([ev("P1", started=T0 + 100)], T0 + 100)
    assert len(b.list_tickets()) == 2


def test_ack_stops_response_clock_breach_of_others_recorded_once(store):
    b = book(store)
    b.apply([ev("P1")], T0)
    [t] = b.list_tickets()
    b.ack(t["id"], "alice", T0 + 600)  # within 30 min
    b.tick(T0 + 2 * 3600 + 1)  # restore (2 h) missed
    b.tick(T0 + 2 * 3600 + 100)
    breaches = [x for x in b.get(t["id"])["journal"] if x["kind"] == "breach"]
    assert [x["text"].split()[0] for x in breaches] == ["restore"]
    s = {(x.name, tuple(sorted(x.labels.items()))): x.value for x in b.samples(T0)}
    assert s[("opsagent_tickets_sla_breaches_total", (("clock", "restore"), ("level", "P1")))] == 1
    assert s[("opsagent_tickets_sla_breaches_total", (("clock", "respond"), ("level", "P1")))] == 0
    assert s[("opsagent_tickets_open", (("level", "P1"), ("status", "acknowledged")))] == 1
    assert ("breach", t["id"]) in outbox(store)


def test_escalation_steps_journaled_ack_cancels_people_not_vendor(store):
    from agent.tickets import Contact

    b = book(
        store, contacts={"m1": Contact("M1", "m1@example.com", "13800000000")}, groups={"manager1": ("m1",)}
    )
    b.apply([ev("P1")], T0)
    [t] = b.list_tickets()
    b.tick(T0 + 601)
    b.ack(t["id"], "alice", T0 + 700)
    b.tick(T0 + 4 * 3600 + 1)
    esc = [x["text"] for x in b.get(t["id"])["journal"] if x["kind"] == "escalation"]
    assert esc[0].startswith("step 1: escalated to manager1")
    assert "step 2 (manager2) not needed: acknowledged" in esc[1]
    assert esc[2].startswith("step 3: escalated to vendor")
    with store.read() as db:
        msg = json.loads(db.execute("SELECT payload FROM outbox WHERE event = 'escalation'").fetchone()[0])
    assert msg["mentions"] == ["13800000000"]


def test_maintenance_silences_notifications_and_escalation_not_recording(store):
    w = make_window(
        "upgrade", ['instance=~"db-.*"'], start="2024-09-10T00:00:00+00:00", end="2024-09-12T00:00:00+00:00"
    )
    assert w.in_force(T0)
    b = book(store, windows=(w,), ladder={"P1": (Step(60.0, ("manager1",)),)})
    b.apply([ev("P1")], T0)
    b.tick(T0 + 120)
    [t] = b.list_tickets()
    assert t["escalation_stage"] == 0
    assert outbox(store) == []
    assert "silenced" in kinds(b, t["id"])
    b.apply([ev("P1", instance="web-1")], T0)
    assert outbox(store) != []


def test_stage_tickets_rules_alerts_skips_pending_and_inhibited(store):
    from agent.tickets_stage import TicketStage

    labels = {"alertname": "DiskFull", "instance": "db-1", "level": "P2"}
    alerts = [
        Alert("DiskFull", labels, "P2", 0.97, "firing", {"summary": "disk 97% full"}, fired_at=T0),
        Alert("Pending", {"alertname": "Pending"}, "P3", 1.0, "pending"),
        Alert("Child", {"alertname": "Child"}, "P3", 1.0, "firing", inhibited=True),
    ]
    stage = TicketStage(store, TicketPolicy(), {}, lambda: alerts, clock=lambda: T0)
    try:
        stage([], T0)
        stage([], T0 + 15)  # still firing: same occurrence, nothing new
        [t] = stage.book.list_tickets()
        assert (t["rule"], t["level"], t["occurrences"], t["summary"]) == (
            "DiskFull",
            "P2",
            1,
            "disk 97% full",
        )
        names = {s.name for s in stage.samples()}
        assert {"opsagent_tickets_open", "opsagent_tickets_sla_breaches_total"} <= names
        assert {r.path for r in stage.routes()} >= {"/api/v1/alertmanager", "/api/v1/tickets"}
    finally:
        stage.close()
