"""Collector evidence reaches the tickets its alerts open (agent/evidence.py), in the real cycle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from agent.config import load_config
from agent.cycle import Cycle
from agent.evidence import EvidenceBoard
from agent.store import Store
from agent.tickets import TicketBook
from collector.model import Evidence
from collector.registry import discover

T0 = 1_700_000_000.0


def only(*names: str) -> dict[str, Any]:
    out: dict[str, Any] = {n: {"enabled": False} for n in discover()}
    out.update({n: {"enabled": True} for n in names})
    return out


def test_config_diff_and_log_lines_are_the_evidence_of_their_tickets(tmp_path: Path) -> None:
    conf = tmp_path / "app.conf"
    conf.write_text("password = hunter2\nport = 80\n")
    log = tmp_path / "app.log"
    log.write_text("")
    cfg = {
        "agent": {"instance": "h1", "timezone": "UTC", "state_file": str(tmp_path / "s.db")},
        "rules": {"disabled": ["baseline", "probes", "backups", "business"]},
        "collectors": {
            **only("configfiles", "logs"),
            "configfiles": {"paths": [str(conf)]},
            "logs": {"files": [{"paths": [str(tmp_path / "*.log")]}]},
        },
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    config = load_config(tmp_path / "c.yaml")
    store = Store(config.agent.state_file)
    cycle = Cycle(config, store, publish=lambda body: None)
    now = [T0]
    context = cycle.runner.make_context

    def fake_clock_context(job: Any) -> Any:
        ctx = context(job)
        ctx.clock = lambda: now[0]
        return ctx

    cycle.runner.make_context = fake_clock_context
    try:
        cycle.load_components()
        cycle.collect(None, now[0])  # version 1 of the file; the log is seen (empty)
        conf.write_text("password = hunter3\nport = 81\n")
        with log.open("a") as f:
            f.write("ok\nERROR disk <b>boom</b> \x1b]0;pwned\x07\x1b[2J\n")
        now[0] += 15
        cycle.collect(None, now[0])
        now[0] += 15
        cycle.collect(None, now[0])  # a cycle without new evidence keeps the ticket's
    finally:
        cycle.close()
    try:
        book = TicketBook(store)
        tickets = {t["rule"]: book.get(t["id"]) for t in book.list_tickets()}
    finally:
        store.close()
    changed = tickets["ConfigFileChanged"]["evidence"]
    assert "-port = 80" in changed and "+port = 81" in changed
    assert "hunter" not in changed  # secrets masked in the diff the ticket keeps
    logged = tickets["LogErrorMessage"]["evidence"]
    assert "ERROR disk <b>boom</b>" in logged  # markup kept as text: renderers escape it for their medium
    assert "\x1b" not in logged and "\x07" not in logged and "\\x1b]0;pwned\\x07" in logged


def test_evidence_goes_to_the_alert_it_explains_best() -> None:
    board = EvidenceBoard(keep=3600)
    board.add(
        [
            Evidence("log", "ERROR a", {"file": "/l", "pattern": "error", "pattern_severity": "error"}, T0),
            Evidence("log", "cannot read /l", {"file": "/l"}, T0),
            Evidence("log", "ERROR other", {"file": "/m", "pattern": "error", "pattern_severity": "error"},
                     T0),
            Evidence("business", "PAY FAIL 1", {"flow": "pay", "file": "/a"}, T0),
            Evidence("business", "PAY FAIL 2", {"flow": "pay", "file": "/b"}, T0 + 1),
        ],
        T0 + 1,
    )
    # the rule sets severity itself (warning); the series' own is pattern_severity, kept on the alert
    alert = {
        "alertname": "LogErrorMessage", "file": "/l", "pattern": "error",
        "pattern_severity": "error", "severity": "warning",
    }
    assert [e.text for e in board.explaining(alert, {"severity"})] == ["ERROR a"]
    assert [e.text for e in board.explaining({"file": "/l"})] == ["cannot read /l"]
    assert [e.text for e in board.explaining({"flow": "pay"})] == ["PAY FAIL 2", "PAY FAIL 1"]
    assert board.explaining({"flow": "refund"}) == []
    board.add([], T0 + 3600.5)  # kept for an hour, then forgotten
    assert [e.text for e in board.explaining({"flow": "pay"})] == ["PAY FAIL 2"]
