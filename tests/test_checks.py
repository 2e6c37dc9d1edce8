"""The checklist, built from samples, alerts and tickets (pure), and its terminal and JSON forms."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from agent.checks import CheckReport, build_report, inert, parse_matcher, render_text
from agent.config import CheckProfile, Config
from collector.model import Evidence, Sample
from collector.schema import ConfigError, Duration, compose
from rules.model import Alert

NOW = 1_700_000_000.0
ESC_LINE = "ERROR login \x1b[2J\x1b]0;owned\x07 done \x9b31m red \u202e"


def fs(mp: str, used: float, fstype: str = "ext4") -> list[Sample]:
    lab = {"device": f"/dev/{mp.strip('/') or 'root'}", "fstype": fstype, "mountpoint": mp}
    size = 100 * 2**30
    return [
        Sample("node_filesystem_device_error", lab, 0),
        Sample("node_filesystem_size_bytes", lab, size),
        Sample("node_filesystem_avail_bytes", lab, size * (1 - used)),
        Sample("node_filesystem_readonly", lab, 0),
    ]


def healthy_samples() -> list[Sample]:
    return [
        *fs("/", 0.40),
        *fs("/data", 0.50),
        *fs("/run", 0.01, "tmpfs"),
        Sample("node_memory_MemTotal_bytes", {}, 8 * 2**30),
        Sample("node_memory_MemAvailable_bytes", {}, 6 * 2**30),
        Sample("node_load1", {}, 0.3),
        Sample("probe_success", {"probe": "web", "kind": "http"}, 1),
        Sample("probe_duration_seconds", {"probe": "web", "kind": "http"}, 0.012),
        Sample("opsagent_backup_max_age_seconds", {"job": "db", "kind": "full"}, 8 * 86400),
        Sample("opsagent_backup_age_seconds", {"job": "db", "kind": "full"}, 3600),
        Sample("opsagent_backup_last_success_timestamp_seconds", {"job": "db", "kind": "full"}, NOW - 3600),
        Sample("opsagent_backup_path_readable", {"job": "db", "kind": "full"}, 1),
        Sample("opsagent_log_file_readable", {"file": "/var/log/app.log"}, 1),
        Sample("opsagent_log_matches_total", {"file": "/var/log/app.log", "pattern": "error"}, 4),
        Sample("opsagent_baseline_drift", {"area": "accounts"}, 0),
        Sample("opsagent_config_file_present", {"path": "/etc/hosts"}, 1),
        Sample("opsagent_config_file_version", {"path": "/etc/hosts"}, 1),
    ]


def alert(name: str, level: str | None, summary: str, **labels: str) -> Alert:
    lab = {"alertname": name, **labels}
    if level:
        lab["level"] = level
    return Alert(name, lab, level, 1.0, "firing", {"summary": summary})


AREAS = {"FilesystemSpaceUsage": "resources", "ServiceDown": "services", "BaselineDrift": "security"}


def report(samples=None, alerts=(), tickets=(), profile=None, **kw) -> CheckReport:
    return build_report(
        "morning", profile or CheckProfile(lookback=Duration(14 * 3600)),
        healthy_samples() if samples is None else samples, alerts, tickets,
        started=NOW - 6, finished=NOW, instance="host1", areas=AREAS, tz=dt.UTC, **kw,
    )


def by_item(r: CheckReport) -> dict[str, list]:
    out: dict[str, list] = {}
    for it in r.items:
        out.setdefault(it.item, []).append(it)
    return out


def test_healthy_host_lists_every_checked_thing_as_ok() -> None:
    r = report()
    items = by_item(r)
    assert r.status == "OK" and not r.urgent
    for name in ("filesystem /", "filesystem /data", "memory", "cpu and load", "http web", "backup db (full)",
                 "log /var/log/app.log", "baseline accounts", "config /etc/hosts", "open tickets"):
        assert items[name][0].status == "OK", name
    assert "filesystem /run" not in items  # pseudo filesystems are not checked by the rules either
    assert items["filesystem /data"][0].finding.startswith("50% used")
    assert [it.area for it in r.items] == sorted((it.area for it in r.items), key=lambda a: [
        "resources", "services", "backups", "logs", "security", "tickets", "other"].index(a))


def test_full_filesystem_alert_replaces_its_ok_line_with_a_p2_fail() -> None:
    a = alert("FilesystemSpaceUsage", "P2", "Filesystem /data on host1 is 97% full",
              mountpoint="/data", device="/dev/data", fstype="ext4")
    r = report(alerts=[a])
    items = by_item(r)
    [data] = items["filesystem /data"]
    assert (data.status, data.level, data.area) == ("FAIL", "P2", "resources")
    assert data.finding == "P2 Filesystem /data on host1 is 97% full"
    assert items["filesystem /"][0].status == "OK"
    assert r.status == "FAIL" and r.urgent == [data]
    assert r.summary["FAIL"] == 1 and r.summary["urgent"] == 1


def test_p3_alert_is_a_warning_and_does_not_fail_the_check() -> None:
    r = report(alerts=[alert("BaselineDrift", "P3", "Security baseline drift in accounts", area="accounts")])
    [acc] = by_item(r)["baseline accounts"]
    assert (acc.status, acc.level) == ("WARN", "P3")
    assert r.status == "WARN" and not r.urgent


def test_pending_resolved_and_inhibited_alerts_are_not_findings() -> None:
    pending = Alert("ServiceDown", {"alertname": "ServiceDown", "probe": "web"}, "P1", 0, "pending")
    inhibited = Alert("ServiceDown", {"alertname": "ServiceDown", "probe": "web"}, "P1", 0, "firing",
                      inhibited=True)
    r = report(alerts=[pending, inhibited])
    assert by_item(r)["http web"][0].status == "OK" and not r.urgent


def test_alert_without_an_inventory_item_gets_its_own_line_in_its_area() -> None:
    r = report(alerts=[alert("ServiceDown", "P1", "Service pay is down", probe="pay")])
    [it] = [i for i in r.items if i.source == "alert"]
    assert (it.area, it.status, it.item) == ("services", "FAIL", "ServiceDown probe=pay")


def test_failing_probe_without_firing_alert_is_a_warning_with_the_fact() -> None:
    samples = [s for s in healthy_samples() if s.name != "probe_success"]
    samples.append(Sample("probe_success", {"probe": "web", "kind": "http"}, 0))
    [web] = by_item(report(samples))["http web"]
    assert web.status == "WARN" and web.level is None and "does not answer" in web.finding


def test_log_matches_since_lookback_are_shown_with_the_last_line_made_inert() -> None:
    samples = [*healthy_samples(),
               Sample("opsagent_log_last_match_timestamp_seconds",
                      {"file": "/var/log/app.log", "pattern": "error"}, NOW - 600)]
    labels = {"file": "/var/log/app.log", "pattern": "error", "pattern_severity": "error"}
    ev = [Evidence("log", ESC_LINE, labels)]
    r = report(samples, evidence=ev, previous_state={"log_matches": {"/var/log/app.log|error": 1}})
    [log] = by_item(r)["log /var/log/app.log"]
    assert log.status == "WARN"
    assert "error ×3 (last 22:03)" in log.finding
    assert "\x1b" not in log.finding and "\x9b" not in log.finding and "\u202e" not in log.finding
    assert "\\x1b[2J" in log.finding  # shown, not interpreted
    text = render_text(r, color=False)
    assert "\x1b" not in text and "\x07" not in text


def test_old_log_match_outside_lookback_is_ok() -> None:
    samples = [*healthy_samples(),
               Sample("opsagent_log_last_match_timestamp_seconds",
                      {"file": "/var/log/app.log", "pattern": "error"}, NOW - 20 * 3600)]
    assert by_item(report(samples))["log /var/log/app.log"][0].status == "OK"


def test_collector_failure_and_empty_area_are_unknown() -> None:
    samples = [s for s in healthy_samples() if not s.name.startswith("opsagent_backup")]
    r = report(samples, collector_errors={"backups": "timed out after 10s"})
    backups = [i for i in r.items if i.area == "backups"]
    assert [(i.item, i.status) for i in backups] == [("collector backups", "UNKNOWN")]
    assert "timed out" in backups[0].finding
    r = report([])
    assert {i.area for i in r.items if i.status == "UNKNOWN"} == {
        "resources", "services", "backups", "logs", "security"}


def test_open_tickets_are_listed_worst_first_and_breaches_fail() -> None:
    tickets = [
        {"id": 3, "rule": "BaselineDrift", "level": "P3", "status": "open", "summary": "drift",
         "opened_at": NOW - 7200, "breached": "", "labels": {"area": "sudoers"}},
        {"id": 7, "rule": "ServiceDown", "level": "P1", "status": "acknowledged", "summary": "pay down",
         "opened_at": NOW - 3 * 3600, "breached": "respond", "labels": {}},
    ]
    r = report(tickets=tickets)
    rows = [i for i in r.items if i.area == "tickets"]
    assert [(i.item, i.status, i.level) for i in rows] == [
        ("#7 ServiceDown", "FAIL", "P1"), ("#3 BaselineDrift", "WARN", "P3")]
    assert "SLA breached: respond" in rows[0].finding
    assert not r.urgent  # tickets are known work; only firing alerts fail a check


def test_profile_areas_and_targets_narrow_the_checklist() -> None:
    a = alert("FilesystemSpaceUsage", "P2", "full", mountpoint="/data", instance="db-1")
    r = report(alerts=[a], profile=CheckProfile(areas=("resources",), targets=('mountpoint="/data"',)))
    assert {i.area for i in r.items} == {"resources"}
    assert [i.item for i in r.items] == ["filesystem /data"]
    r = report(alerts=[a], profile=CheckProfile(exclude_rules=("FilesystemSpaceUsage",)))
    assert not r.urgent


def test_json_form_round_trips_with_a_stable_schema() -> None:
    r = report(alerts=[alert("FilesystemSpaceUsage", "P2", "full", mountpoint="/")])
    data = json.loads(json.dumps(r.to_json()))
    assert set(data) >= {"check", "started", "finished", "items", "summary", "status"}
    assert set(data["items"][0]) >= {"area", "item", "status", "level", "finding", "labels"}
    assert data["summary"] == {"OK": r.summary["OK"], "WARN": 0, "FAIL": 1, "UNKNOWN": 0, "urgent": 1}
    assert CheckReport.from_json(data).items == r.items


def test_colour_only_when_asked() -> None:
    r = report(alerts=[alert("FilesystemSpaceUsage", "P2", "full", mountpoint="/")])
    assert "\x1b[" not in render_text(r, color=False)
    coloured = render_text(r, color=True)
    assert "\x1b[1;31mFAIL" in coloured and "\x1b[32mOK" in coloured


@pytest.mark.parametrize("text", ["\x1b[31mred\x1b[0m", "a\x1b]8;;http://x\x07link", "x\ry\x00z\x7f"])
def test_inert_leaves_no_control_character(text: str) -> None:
    out = inert(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in out)


def test_label_matchers() -> None:
    assert parse_matcher('instance=~"db-.*"').matches({"instance": "db-1"})
    assert not parse_matcher('instance=~"db-.*"').matches({"instance": "xdb-1"})  # anchored
    assert parse_matcher('tier!="test"').matches({})
    with pytest.raises(ValueError, match="invalid label matcher"):
        parse_matcher("instance=db")
    with pytest.raises(ValueError, match="invalid regular expression"):
        parse_matcher('instance=~"(("')


def test_bad_profile_is_a_located_config_error() -> None:
    from collector.schema import Builder

    text = (
        "checks:\n"
        "  profiles:\n"
        "    morning:\n"
        "      areas: [resources, disks]\n"
        "      collectors: [filesystem, nosuch]\n"
        "      targets: ['instance=db']\n"
    )
    b = Builder("cfg.yaml")
    b.build(Config, compose(text, "cfg.yaml"))
    msgs = [str(p) for p in b.problems]
    assert any("line 4" in m or "cfg.yaml:4" in m for m in msgs), msgs
    joined = "\n".join(msgs)
    assert "unknown area 'disks'" in joined and "unknown collector 'nosuch'" in joined
    assert "invalid label matcher" in joined
    with pytest.raises(ConfigError):
        raise ConfigError(b.problems)
