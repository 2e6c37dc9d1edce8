"""New evidence of a live ticket's alert reaches the ticket and its journal (agent/tickets.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.store import Store
from agent.tickets import EVIDENCE_LIMIT, TicketPolicy
from agent.tickets_stage import TicketStage
from rules.model import Alert

T0 = 1_726_000_000.0
LABELS = {"alertname": "ConfigFileChanged", "instance": "h1", "path": "/etc/app.conf", "level": "P3"}


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store(tmp_path / "state.db")
    yield s
    s.close()


def firing(evidence: str | None, fired_at: float = T0) -> Alert:
    annotations = {"summary": "app.conf changed"}
    if evidence is not None:
        annotations["evidence"] = evidence
    return Alert("ConfigFileChanged", LABELS, "P3", 1.0, "firing", annotations, fired_at=fired_at)


def evidence_entries(stage: TicketStage, tid: int) -> list[str]:
    return [j["text"] for j in stage.book.get(tid)["journal"] if j["kind"] == "evidence"]


def test_changed_evidence_is_journaled_once_and_becomes_the_tickets(store: Any) -> None:
    alerts = [firing("-port = 80\n+port = 81")]
    stage = TicketStage(store, TicketPolicy(), {}, lambda: alerts, clock=lambda: T0)
    try:
        stage([], T0)
        [t] = stage.book.list_tickets()
        assert t["evidence"] == "-port = 80\n+port = 81"
        assert evidence_entries(stage, t["id"]) == []  # the opening evidence is the ticket's own

        stage([], T0 + 15)  # same evidence every cycle: nothing new to record
        stage([], T0 + 30)
        assert evidence_entries(stage, t["id"]) == []

        alerts[:] = [firing("-port = 81\n+port = 82")]  # the file changed again within the hour
        stage([], T0 + 45)
        stage([], T0 + 60)
        got = stage.book.get(t["id"])
        assert got["evidence"] == "-port = 81\n+port = 82"
        assert evidence_entries(stage, t["id"]) == ["new evidence:\n-port = 81\n+port = 82"]
        assert got["occurrences"] == 1  # still the same occurrence, only better explained

        alerts[:] = [firing(None)]  # the evidence aged out of the board: the ticket keeps the last
        stage([], T0 + 75)
        assert stage.book.get(t["id"])["evidence"] == "-port = 81\n+port = 82"
        assert len(evidence_entries(stage, t["id"])) == 1
    finally:
        stage.close()


def test_refire_after_recovery_records_its_new_evidence(store: Any) -> None:
    alerts = [firing("ERROR disk full")]
    stage = TicketStage(store, TicketPolicy(confirm_recovery=True), {}, lambda: alerts, clock=lambda: T0)
    try:
        stage([], T0)
        [t] = stage.book.list_tickets()
        alerts[:] = [Alert("ConfigFileChanged", LABELS, "P3", 1.0, "resolved", {}, resolved_at=T0 + 60)]
        stage([], T0 + 60)
        assert stage.book.get(t["id"])["status"] == "recovered"
        alerts[:] = [firing("ERROR disk full again", fired_at=T0 + 300)]
        stage([], T0 + 300)
        got = stage.book.get(t["id"])
        assert (got["status"], got["evidence"]) == ("open", "ERROR disk full again")
        assert evidence_entries(stage, t["id"]) == ["new evidence:\nERROR disk full again"]
    finally:
        stage.close()


def test_huge_evidence_is_capped_on_the_ticket_and_in_the_journal(store: Any) -> None:
    alerts = [firing("a" * 10)]
    stage = TicketStage(store, TicketPolicy(), {}, lambda: alerts, clock=lambda: T0)
    try:
        stage([], T0)
        [t] = stage.book.list_tickets()
        alerts[:] = [firing("x" * (EVIDENCE_LIMIT * 4))]  # e.g. from an Alertmanager payload
        stage([], T0 + 15)
        got = stage.book.get(t["id"])
        assert len(got["evidence"]) == EVIDENCE_LIMIT and got["evidence"].endswith("…")
        [entry] = evidence_entries(stage, t["id"])
        assert len(entry) == EVIDENCE_LIMIT
        stage([], T0 + 30)  # the same oversized evidence again is no change
        assert len(evidence_entries(stage, t["id"])) == 1
    finally:
        stage.close()
