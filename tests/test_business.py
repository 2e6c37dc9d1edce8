"""Business success rate: transactions counted from a real application log, through rotation and restart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_logs_helpers import Harness, build

from collector.business import BusinessCollector, BusinessConfig
from collector.registry import MemoryKeyValue
from collector.schema import ConfigError

TX = "opsagent_business_transactions_total"


def flows(tmp: Path, extra: str = "") -> str:
    return (
        "flows:\n"
        "  payment:\n"
        f"    paths: ['{tmp}/pay*.log']\n"
        "    success: 'PAY (OK|DONE)'\n"
        "    failure: 'PAY (FAIL|TIMEOUT)'\n"
        "    reason: 'reason=(\\w+)'\n" + extra
    )


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(text)


def test_success_and_failure_counted_with_reasons_and_evidence(tmp_path: Path) -> None:
    log = tmp_path / "pay.log"
    log.write_text("")
    h = Harness(BusinessCollector(build(BusinessConfig, flows(tmp_path))))
    r = h.run()
    assert r.value(TX, flow="payment", outcome="success") == 0
    assert r.value(TX, flow="payment", outcome="failure") == 0
    append(
        log,
        "t1 PAY OK id=1\nt2 PAY FAIL id=2 reason=insufficient_funds\nt3 heartbeat\n"
        "t4 PAY DONE id=3\nt5 PAY TIMEOUT id=4 reason=bank_timeout\nt6 PAY FAIL id=5 reason=bank_timeout\n",
    )
    r = h.run()
    assert r.value(TX, flow="payment", outcome="success") == 2
    assert r.value(TX, flow="payment", outcome="failure") == 3
    assert r.value("opsagent_business_failures_total", flow="payment", reason="bank_timeout") == 2
    assert r.value("opsagent_business_failures_total", flow="payment", reason="insufficient_funds") == 1
    assert [e.text for e in r.evidence] == [
        "t2 PAY FAIL id=2 reason=insufficient_funds",
        "t5 PAY TIMEOUT id=4 reason=bank_timeout",
        "t6 PAY FAIL id=5 reason=bank_timeout",
    ]
    assert all(e.kind == "business" and e.labels["flow"] == "payment" for e in r.evidence)
    assert r.value("opsagent_business_last_transaction_timestamp_seconds", outcome="failure") == h.clock.t


def test_totals_survive_restart_and_rotation(tmp_path: Path) -> None:
    log = tmp_path / "pay.log"
    log.write_text("")
    state = MemoryKeyValue()
    h = Harness(BusinessCollector(build(BusinessConfig, flows(tmp_path))), state=state)
    h.run()
    append(log, "PAY OK\nPAY FAIL\n")
    h.run()
    append(log, "PAY OK\n")  # unread when the agent stops
    os.rename(log, tmp_path / "pay.log.1")
    append(log, "PAY OK\nPAY FAIL\n")
    h2 = Harness(BusinessCollector(build(BusinessConfig, flows(tmp_path))), state=state, clock=h.clock)
    r = h2.run()
    assert r.value(TX, flow="payment", outcome="success") == 3
    assert r.value(TX, flow="payment", outcome="failure") == 2


def test_totals_are_summed_over_files_and_never_go_down(tmp_path: Path) -> None:
    a, b = tmp_path / "pay-a.log", tmp_path / "pay-b.log"
    a.write_text("")
    b.write_text("")
    h = Harness(BusinessCollector(build(BusinessConfig, flows(tmp_path))))
    h.run()
    append(a, "PAY OK\n")
    append(b, "PAY OK\nPAY FAIL\n")
    assert h.run().value(TX, flow="payment", outcome="success") == 2
    b.unlink()
    r = h.run()
    assert r.value(TX, flow="payment", outcome="success") == 2
    assert r.value(TX, flow="payment", outcome="failure") == 1


def test_reasons_are_capped(tmp_path: Path) -> None:
    log = tmp_path / "pay.log"
    log.write_text("")
    h = Harness(BusinessCollector(build(BusinessConfig, flows(tmp_path, "max_reasons: 3\n"))))
    h.run()
    append(log, "".join(f"PAY FAIL reason=r{i}\n" for i in range(10)))
    r = h.run()
    reasons = {s.labels["reason"] for s in r.samples if s.name == "opsagent_business_failures_total"}
    assert reasons == {"r0", "r1", "r2", "other"}
    assert r.total("opsagent_business_failures_total", flow="payment") == 10


def test_gbk_flow(tmp_path: Path) -> None:
    log = tmp_path / "pay.log"
    log.write_bytes(b"")
    text = (
        "flows:\n  transfer:\n"
        f"    paths: ['{log}']\n    encoding: gbk\n"
        "    success: '转账成功'\n    failure: '转账失败'\n    reason: '原因[:：](\\S+)'\n"
    )
    h = Harness(BusinessCollector(build(BusinessConfig, text)))
    h.run()
    with log.open("ab") as f:
        f.write("转账成功 1\n转账失败 2 原因：余额不足\n".encode("gbk"))
    r = h.run()
    assert r.value(TX, flow="transfer", outcome="success") == 1
    assert r.value(TX, flow="transfer", outcome="failure") == 1
    assert r.value("opsagent_business_failures_total", reason="余额不足") == 1


def test_unreadable_log_is_a_finding(tmp_path: Path) -> None:
    (tmp_path / "pay.log").mkdir()
    r = Harness(BusinessCollector(build(BusinessConfig, flows(tmp_path)))).run()
    assert r.value("opsagent_business_log_readable", flow="payment", file=str(tmp_path / "pay.log")) == 0
    assert r.value(TX, flow="payment", outcome="failure") == 0


def test_bad_patterns_are_config_errors_with_line() -> None:
    head = "flows:\n  p:\n    paths: [/x.log]\n"
    text = head + "    success: 'ok('\n    failure: 'fail'\n    reason: 'no group'\n"
    with pytest.raises(ConfigError) as ei:
        build(BusinessConfig, text, file="c.yaml")
    assert "c.yaml:4: flows.p.success: invalid regular expression" in str(ei.value)
    text = head + "    success: 'ok'\n    failure: 'fail'\n    reason: 'no group'\n"
    with pytest.raises(ConfigError) as ei:
        build(BusinessConfig, text, file="c.yaml")
    assert "c.yaml:6: flows.p.reason: needs exactly one capture group" in str(ei.value)


def test_example_config_section_is_valid() -> None:
    from agent.config import load_config

    cfg = load_config(Path(__file__).resolve().parent.parent / "config.example.yaml")
    section = cfg.collector_section("business")
    assert isinstance(section, BusinessConfig)
    BusinessCollector(section)
