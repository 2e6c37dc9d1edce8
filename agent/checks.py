"""The morning and evening checks: profiles and the checklist. Pure: no I/O, no clock.

A check turns what the agent knows now -- the latest samples, the firing
alerts, the live tickets, the evidence of the last collection -- into a
:class:`CheckReport`: one :class:`CheckItem` per thing checked, grouped by
area, each with a status:

* ``OK``      checked and fine (one item per filesystem, probe, backup job,
  log file, baseline area, tracked config file...), with the measured fact;
* ``FAIL``    a firing alert at P1 or P2 (SPEC §2: the emergency levels);
* ``WARN``    a firing alert at P3/P4 or without a level, a live ticket, or a
  fact worth a look that no rule has classified (a log pattern matched
  overnight, a probe that fails while its rule is still pending);
* ``UNKNOWN`` could not be checked (collector failed, nothing configured).

Areas: an alert's area is its rule's ``check_area`` label if set, else the
area of the rule file it comes from (:data:`FILE_AREAS` plus the
``checks.areas`` config), else ``other``. An alert lands on the inventory
item whose identifying labels it carries (``mountpoint``, ``probe``,
``job``...), replacing the OK line; otherwise it is an item of its own.

Text that comes from outside (log lines, label values, annotations) is
made inert by :func:`inert` when the report is built, so no output -- the
terminal, JSON, the stored report, HTML later -- can carry an escape
sequence.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from collector.model import Evidence, Sample
from collector.schema import Duration, compile_regex
from rules.model import LEVELS, Alert

if TYPE_CHECKING:
    from agent.config import CheckProfile

AREAS = ("resources", "services", "backups", "logs", "security", "tickets", "other")
STATUSES = ("OK", "WARN", "FAIL", "UNKNOWN")
URGENT_LEVELS = ("P1", "P2")
SCHEMA_VERSION = 1

AREA_TITLES: Mapping[str, tuple[str, str]] = {
    "resources": ("Resources", "资源"),
    "services": ("Services", "服务"),
    "backups": ("Backups", "备份"),
    "logs": ("Logs", "日志"),
    "security": ("Security", "安全"),
    "tickets": ("Open tickets", "未关闭工单"),
    "other": ("Other", "其他"),
}

# Rule file stem -> area: the default packs, and the names of packs other parts may add.
FILE_AREAS: Mapping[str, str] = {
    "filesystem": "resources",
    "memory": "resources",
    "cpu": "resources",
    "hardware": "resources",
    "network": "resources",
    "clock": "resources",
    "snmp": "resources",
    "ssh": "resources",
    "probes": "services",
    "targets": "services",
    "certificates": "services",
    "business": "services",
    "backups": "backups",
    "logs": "logs",
    "baseline": "security",
    "configfiles": "security",
    "security": "security",
}

# Collector -> area, for "collector failed" items.
COLLECTOR_AREAS: Mapping[str, str] = {
    "probes": "services",
    "certificates": "services",
    "business": "services",
    "backups": "backups",
    "logs": "logs",
    "baseline": "security",
    "configfiles": "security",
}

AREA_LABEL = "check_area"

_HOUR = 3600.0


def default_profile(name: str) -> CheckProfile:
    """The built-in profile of a check name (SPEC §1)."""
    from agent.config import CheckProfile

    if name == "morning":
        # since the evening check: services answer, resources sane, last night's backups,
        # errors logged overnight, security drift, open tickets
        return CheckProfile(lookback=Duration(14 * _HOUR))
    if name == "evening":
        # the day's errors and resource peaks, state before the nightly backup
        return CheckProfile(
            areas=("resources", "services", "backups", "logs", "tickets", "other"),
            lookback=Duration(10.5 * _HOUR),
        )
    if name == "weekly":
        return CheckProfile(lookback=Duration(7 * 24 * _HOUR))
    return CheckProfile()


# ---------------------------------------------------------------- inert text

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), other two-byte escapes, and the C1 CSI/OSC forms.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?|\x9b[0-?]*[ -/]*[@-~]?"
    r"|\x9d[^\x07\x1b]*\x07?"
)
# C0 and C1 controls, DEL, and bidi overrides that reorder what the reader sees.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def inert(text: str, limit: int = 300, lines: bool = False) -> str:
    """``text`` safe to print anywhere: escape sequences and control characters shown as ``\\xNN``.

    Newlines and tabs become spaces (a finding is one line); with ``lines``
    line breaks stay (evidence: a traceback, a diff). The result is cut at
    ``limit`` characters.
    """
    if lines:
        return "\n".join(inert(line, limit) for line in text.split("\n"))[:limit]
    text = text.replace("\r\n", " ").replace("\n", " ").replace("\t", " ").replace("\r", " ")

    def show(m: re.Match[str]) -> str:
        return "".join(_visible(c) for c in m.group(0))

    text = _ESCAPES.sub(show, text)
    text = _CONTROLS.sub(lambda m: _visible(m.group(0)), text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _visible(c: str) -> str:
    n = ord(c)
    if n < 0x20 or 0x7F <= n <= 0x9F:
        return f"\\x{n:02x}"
    if n in range(0x202A, 0x202F) or n in range(0x2066, 0x206A):
        return f"\\u{n:04x}"
    return c


# ---------------------------------------------------------------- label matchers


@dataclass(frozen=True)
class LabelMatcher:
    """A Prometheus label matcher: ``name="v"``, ``!=``, ``=~`` (RE2, fully anchored), ``!~``."""

    name: str
    op: str
    value: str
    regex: Any = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.name, "")  # a missing label is the empty string, as in Prometheus
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        hit = self.regex.fullmatch(v) is not None
        return hit if self.op == "=~" else not hit


_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*\Z')


def parse_matcher(text: str) -> LabelMatcher:
    """Parse ``name op "value"``; ValueError with a hint when malformed."""
    m = _MATCHER.match(text)
    if m is None:
        raise ValueError(f'invalid label matcher {text!r} (use e.g. instance=~"db-.*" or tier="production")')
    name, op, value = m.group(1), m.group(2), m.group(3).replace('\\"', '"').replace("\\\\", "\\")
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = compile_regex(f"(?:{value})")
        except Exception as e:  # RE2 raises its own error type
            raise ValueError(f"invalid regular expression in {text!r}: {e}") from None
    return LabelMatcher(name, op, value, regex)


# ---------------------------------------------------------------- the report


@dataclass(frozen=True)
class CheckItem:
    """One line of the checklist."""

    area: str
    item: str
    status: str
    finding: str
    level: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    # where the status comes from: "alert", "ticket", "fact" (inventory), "collector"
    source: str = "fact"

    def to_json(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "item": self.item,
            "status": self.status,
            "level": self.level,
            "finding": self.finding,
            "labels": dict(self.labels),
            "source": self.source,
        }


@dataclass(frozen=True)
class CheckReport:
    """The outcome of one named check run."""

    check: str
    instance: str
    started: float
    finished: float
    items: tuple[CheckItem, ...]
    origin: str = "cli"
    # what the next run needs to compute "since the last check" (log match counters)
    state: Mapping[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for it in self.items:
            counts[it.status] += 1
        counts["urgent"] = len(self.urgent)
        return counts

    @property
    def urgent(self) -> list[CheckItem]:
        """Findings of firing alerts at P1/P2: these make the check fail (exit code 1)."""
        return [it for it in self.items if it.source == "alert" and it.level in URGENT_LEVELS]

    @property
    def status(self) -> str:
        """The worst status: FAIL > WARN > UNKNOWN > OK."""
        seen = {it.status for it in self.items}
        for s in ("FAIL", "WARN", "UNKNOWN"):
            if s in seen:
                return s
        return "OK"

    def to_json(self) -> dict[str, Any]:
        """The stable machine form (``opsagent check --json``, stored per run)."""
        return {
            "schema": SCHEMA_VERSION,
            "check": self.check,
            "instance": self.instance,
            "origin": self.origin,
            "started": self.started,
            "finished": self.finished,
            "status": self.status,
            "items": [it.to_json() for it in self.items],
            "summary": self.summary,
            "state": dict(self.state),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckReport:
        items = tuple(
            CheckItem(
                i["area"],
                i["item"],
                i["status"],
                i["finding"],
                i.get("level"),
                i.get("labels", {}),
                i.get("source", "fact"),
            )
            for i in data.get("items", [])
        )
        return cls(
            data["check"],
            data.get("instance", ""),
            float(data["started"]),
            float(data["finished"]),
            items,
            data.get("origin", "cli"),
            data.get("state", {}),
        )


# ---------------------------------------------------------------- areas of alerts


def rule_areas(ruleset: Any, overrides: Mapping[str, str] = {}) -> dict[str, str]:
    """Alert name -> area, from each rule's ``check_area`` label or its file's stem."""
    table = {**FILE_AREAS, **overrides}
    out: dict[str, str] = {}
    for rule in ruleset.alerting_rules:
        explicit = rule.labels.get(AREA_LABEL)
        if explicit in AREAS:
            area = explicit
        else:
            stem = rule.file.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            area = table.get(stem, "other")
        out.setdefault(rule.name, area)
    return out


def rule_files(ruleset: Any) -> dict[str, str]:
    """Alert name -> the stem of the rule file it comes from."""
    out: dict[str, str] = {}
    for rule in ruleset.alerting_rules:
        out.setdefault(rule.name, rule.file.rsplit("/", 1)[-1].rsplit(".", 1)[0])
    return out


def alert_area(alert: Alert, areas: Mapping[str, str]) -> str:
    explicit = alert.labels.get(AREA_LABEL)
    if explicit in AREAS:
        return str(explicit)
    return areas.get(alert.name, "other")


def select_alerts(
    alerts: Iterable[Alert], profile: CheckProfile, files: Mapping[str, str] = {}
) -> list[Alert]:
    """Firing, not inhibited alerts that the profile's ``rules``/``exclude_rules`` keep."""
    out = []
    for a in alerts:
        if a.state != "firing" or a.inhibited:
            continue
        names = {a.name, files.get(a.name, "")}
        if profile.exclude_rules and names & set(profile.exclude_rules):
            continue
        if profile.rules and not names & set(profile.rules):
            continue
        out.append(a)
    return out


# ---------------------------------------------------------------- inventory: what was checked


@dataclass
class _Fact:
    area: str
    item: str
    finding: str
    key: dict[str, str]  # labels an alert must carry to land on this item
    source_labels: Mapping[str, str]
    healthy: bool = True
    unknown: bool = False
    # alert names that land on this item whatever their labels (host-wide items)
    alerts: tuple[str, ...] = ()


class _Index:
    """Samples by metric name."""

    def __init__(self, samples: Iterable[Sample]):
        self.by_name: dict[str, list[Sample]] = {}
        for s in samples:
            self.by_name.setdefault(s.name, []).append(s)

    def get(self, name: str) -> list[Sample]:
        return self.by_name.get(name, [])

    def value(self, name: str, **labels: str) -> float | None:
        for s in self.get(name):
            if all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        return None


_MEMORY_ALERTS = ("MemoryExhaustion", "SwapThrashing", "SwapUsageHigh")
_CPU_ALERTS = ("CPUSaturation", "LoadPerCoreHigh")
_PSEUDO_FS = re.compile(r"tmpfs|devtmpfs|ramfs|overlay|squashfs|iso9660|nsfs|autofs|fuse\..*")
_PSEUDO_MP = re.compile(r"/(run|dev|sys|proc)($|/).*")


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _clock(ts: float, tz: dt.tzinfo | None, now: float | None = None) -> str:
    t = dt.datetime.fromtimestamp(ts, tz)
    if now is not None and now - ts > 20 * 3600:  # a bare HH:MM would read as today
        return t.strftime("%Y-%m-%d %H:%M")
    return t.strftime("%H:%M")


def _resources(ix: _Index) -> list[_Fact]:
    out = []
    for s in ix.get("node_filesystem_device_error"):
        lab = s.labels
        if _PSEUDO_FS.fullmatch(lab.get("fstype", "")) or _PSEUDO_MP.fullmatch(lab.get("mountpoint", "")):
            continue
        mp = lab.get("mountpoint", "")
        key = {"mountpoint": mp}
        if s.value:
            out.append(
                _Fact(
                    "resources",
                    f"filesystem {mp}",
                    "statistics unavailable (stat failed or timed out)",
                    key,
                    lab,
                    unknown=True,
                )
            )
            continue
        size = ix.value("node_filesystem_size_bytes", **lab)
        avail = ix.value("node_filesystem_avail_bytes", **lab)
        if not size or avail is None:
            continue
        used = 1 - avail / size
        out.append(_Fact("resources", f"filesystem {mp}", f"{used:.0%} used, {_bytes(avail)} free", key, lab))
    total = ix.value("node_memory_MemTotal_bytes")
    avail = ix.value("node_memory_MemAvailable_bytes")
    if total and avail is not None:
        finding = f"{avail / total:.0%} available of {_bytes(total)}"
        out.append(_Fact("resources", "memory", finding, {}, {}, alerts=_MEMORY_ALERTS))
    load = ix.get("node_load1")
    if load:
        cpus = len(
            {s.labels.get("cpu") for s in ix.get("node_cpu_seconds_total") if s.labels.get("mode") == "idle"}
        )
        per = f" on {cpus} CPUs" if cpus else ""
        finding = f"load1 {load[0].value:.2f}{per}"
        out.append(_Fact("resources", "cpu and load", finding, {}, load[0].labels, alerts=_CPU_ALERTS))
    return out


def _services(ix: _Index, now: float) -> list[_Fact]:
    out = []
    for s in ix.get("probe_success"):
        lab = s.labels
        name = lab.get("probe") or lab.get("instance") or "probe"
        kind = lab.get("kind", "probe")
        dur = ix.value("probe_duration_seconds", **lab)
        if s.value:
            finding = "answers" + (f" in {dur:.3f}s" if dur is not None else "")
        else:
            reason = next(
                (
                    f.labels.get("reason", "")
                    for f in ix.get("probe_failure_info")
                    if f.labels.get("probe") == lab.get("probe")
                ),
                "",
            )
            finding = "does not answer" + (f": {reason}" if reason else "")
        out.append(
            _Fact(
                "services",
                f"{kind} {name}",
                finding,
                {"probe": name} if "probe" in lab else {},
                lab,
                healthy=bool(s.value),
            )
        )
    for s in ix.get("opsagent_target_up"):
        inst = s.labels.get("instance", "")
        out.append(
            _Fact(
                "services",
                f"target {inst}",
                "reachable" if s.value else "unreachable",
                {"instance": inst},
                s.labels,
                healthy=bool(s.value),
            )
        )
    for s in ix.get("opsagent_certificate_expiry_timestamp_seconds"):
        path = s.labels.get("path", "")
        left = s.value - now
        finding = f"expires in {_ago(left)}" if left > 0 else f"expired {_ago(-left)} ago"
        out.append(
            _Fact("services", f"certificate {path}", finding, {"path": path}, s.labels, healthy=left > 0)
        )
    return out


def _backups(ix: _Index, now: float) -> list[_Fact]:
    out = []
    for s in ix.get("opsagent_backup_max_age_seconds"):
        lab = s.labels
        job, kind = lab.get("job", ""), lab.get("kind", "")
        key = {"job": job, "kind": kind}
        readable = ix.value("opsagent_backup_path_readable", **lab)
        if readable == 0:
            out.append(
                _Fact(
                    "backups", f"backup {job} ({kind})", "backup location unreadable", key, lab, healthy=False
                )
            )
            continue
        last = ix.value("opsagent_backup_last_success_timestamp_seconds", **lab)
        size = ix.value("opsagent_backup_size_bytes", **lab)
        verify = ix.value("opsagent_backup_verify_success", **lab)
        age = ix.value("opsagent_backup_age_seconds", **lab)
        if last:
            finding = f"last good backup {_ago(now - last)} ago"
        else:
            finding = "no good backup found yet"
        if size is not None:
            finding += f", {_bytes(size)}"
        if verify is not None:
            finding += ", verified" if verify else ", verification failed"
        healthy = bool(last) and (age is None or age <= s.value) and verify != 0
        out.append(_Fact("backups", f"backup {job} ({kind})", finding, key, lab, healthy=healthy))
    return out


def _logs(
    ix: _Index,
    evidence: Sequence[Evidence],
    since: float,
    now: float,
    previous: Mapping[str, float],
    tz: dt.tzinfo | None,
) -> tuple[list[_Fact], dict[str, float]]:
    out = []
    counters: dict[str, float] = {}
    last_line: dict[str, str] = {}
    problems: dict[str, str] = {}
    for ev in evidence:
        if ev.kind != "log":
            continue
        f = ev.labels.get("file", "")
        if "pattern" in ev.labels:
            last_line[f] = ev.text
        else:
            problems[f] = ev.text
    for s in ix.get("opsagent_log_matches_total"):
        counters[inert(f"{s.labels.get('file', '')}|{s.labels.get('pattern', '')}")] = s.value
    for s in ix.get("opsagent_log_file_readable"):
        f = s.labels.get("file", "")
        key = {"file": f}
        if not s.value:
            out.append(
                _Fact(
                    "logs",
                    f"log {f}",
                    "cannot read" + (f": {problems[f]}" if f in problems else ""),
                    key,
                    s.labels,
                    healthy=False,
                )
            )
            continue
        found = []
        for m in ix.get("opsagent_log_last_match_timestamp_seconds"):
            if m.labels.get("file") != f or m.value < since:
                continue
            pattern = m.labels.get("pattern", "")
            total = counters.get(inert(f"{f}|{pattern}"))
            before = previous.get(inert(f"{f}|{pattern}"))
            n = ""
            if total is not None and before is not None:
                n = f" ×{total - before:.0f}" if total >= before else f" ×{total:.0f}"
            found.append((m.value, f"{pattern}{n} (last {_clock(m.value, tz, now)})"))
        if found:
            finding = ", ".join(t for _, t in sorted(found, reverse=True))
            finding = f"matched since {_clock(since, tz, now)}: {finding}"
            if f in last_line:
                finding += f"; last: {last_line[f]}"
            out.append(_Fact("logs", f"log {f}", finding, key, s.labels, healthy=False))
        else:
            out.append(
                _Fact("logs", f"log {f}", f"no pattern matched since {_clock(since, tz, now)}", key, s.labels)
            )
    return out, counters


def _security(ix: _Index, since: float, started: float, now: float, tz: dt.tzinfo | None) -> list[_Fact]:
    out = []
    for s in ix.get("opsagent_baseline_drift"):
        area = s.labels.get("area", "")
        recorded = ix.value("opsagent_baseline_recorded_timestamp_seconds", area=area)
        if recorded is not None and recorded >= started:
            # nothing was recorded before this run: comparing the run with itself proves nothing
            finding = "no baseline recorded before this run (opsagent baseline accept records one)"
            out.append(
                _Fact("security", f"baseline {area}", finding, {"area": area}, s.labels, healthy=False)
            )
            continue
        finding = "matches the baseline" if not s.value else f"{s.value:.0f} item(s) differ from the baseline"
        out.append(
            _Fact("security", f"baseline {area}", finding, {"area": area}, s.labels, healthy=not s.value)
        )
    for s in ix.get("opsagent_config_file_present"):
        path = s.labels.get("path", "")
        key = {"path": path}
        if not s.value:
            out.append(
                _Fact("security", f"config {path}", "missing or unreadable", key, s.labels, healthy=False)
            )
            continue
        version = ix.value("opsagent_config_file_version", path=path)
        changed = ix.value("opsagent_config_file_last_change_timestamp_seconds", path=path)
        finding = f"version {version:.0f}" if version is not None else "tracked"
        if version == 1 and changed is not None and changed >= started:
            finding = "first seen by this run: no earlier version to compare"
        healthy = True
        if changed is not None and version and version > 1 and changed >= since:
            finding += f", changed at {_clock(changed, tz, now)}"
            healthy = False
        out.append(_Fact("security", f"config {path}", finding, key, s.labels, healthy=healthy))
    return out


# ---------------------------------------------------------------- building the report


def _alert_item(a: Alert, area: str, item: str, language: str, fact: str = "") -> CheckItem:
    level = a.level or a.labels.get("level") or None
    status = "FAIL" if level in URGENT_LEVELS else "WARN"
    summary = a.annotation("summary", language).strip() or a.name
    finding = f"{level} {summary}" if level else summary
    if fact:
        finding += f" — {fact}"
    labels = {k: inert(v, 200) for k, v in a.labels.items()}
    return CheckItem(area, inert(item, 200), status, inert(finding), level, labels, "alert")


def _alert_name(a: Alert) -> str:
    shown = [
        f"{k}={v}"
        for k, v in sorted(a.labels.items())
        if k not in ("alertname", "level", "severity", AREA_LABEL, "instance") and v
    ]
    return a.name + (f" {' '.join(shown[:2])}" if shown else "")


def _ticket_items(tickets: Iterable[Mapping[str, Any]], now: float, tz: dt.tzinfo | None) -> list[CheckItem]:
    out = []
    for t in sorted(tickets, key=lambda t: (_rank(str(t.get("level", ""))), -float(t.get("opened_at", 0)))):
        level = str(t.get("level", "")) or None
        breached = str(t.get("breached", "") or "")
        status = str(t.get("status", "open"))
        finding = f"{level} {t.get('summary') or t.get('rule', '')}" if level else str(t.get("summary", ""))
        finding += f" — {status} for {_ago(now - float(t.get('opened_at', now)))}"
        if breached:
            finding += f"; SLA breached: {breached}"
        labels = t.get("labels") or {}
        out.append(
            CheckItem(
                "tickets",
                inert(f"#{t.get('id')} {t.get('rule', '')}", 200),
                "FAIL" if breached else "WARN",
                inert(finding),
                level,
                {k: inert(str(v), 200) for k, v in dict(labels).items()},
                "ticket",
            )
        )
    if not out:
        out.append(CheckItem("tickets", "open tickets", "OK", "none", source="ticket"))
    return out


def _rank(level: str) -> int:
    return LEVELS.index(level) if level in LEVELS else len(LEVELS)


def build_report(
    check: str,
    profile: CheckProfile,
    samples: Iterable[Sample],
    alerts: Iterable[Alert],
    tickets: Iterable[Mapping[str, Any]],
    *,
    started: float,
    finished: float,
    instance: str = "",
    areas: Mapping[str, str] = {},
    files: Mapping[str, str] = {},
    evidence: Sequence[Evidence] = (),
    collector_errors: Mapping[str, str] = {},
    previous_state: Mapping[str, Any] = {},
    language: str = "en",
    tz: dt.tzinfo | None = None,
    origin: str = "cli",
) -> CheckReport:
    """The checklist of one check run.

    ``alerts`` are the rules' current alerts (only firing, not inhibited
    ones count); ``areas``/``files`` map alert names to areas and rule
    files (:func:`rule_areas`, :func:`rule_files`); ``tickets`` are live
    tickets as ``TicketBook.list_tickets`` returns them; ``previous_state``
    is the ``state`` of the previous report (log counters, for "×N since").
    """
    now = finished
    since = finished - float(profile.lookback)
    wanted = set(profile.areas) or set(AREAS)
    matchers = [parse_matcher(m) for m in profile.targets]

    def in_scope(labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in matchers)

    ix = _Index(samples)
    log_facts, counters = _logs(ix, evidence, since, now, previous_state.get("log_matches", {}), tz)
    facts = [
        *_resources(ix),
        *_services(ix, now),
        *_backups(ix, now),
        *log_facts,
        *_security(ix, since, started, now, tz),
    ]
    facts = [f for f in facts if f.area in wanted and in_scope(f.source_labels)]

    chosen = [a for a in select_alerts(alerts, profile, files) if in_scope(a.labels)]
    by_fact: dict[int, list[Alert]] = {}
    loose: list[tuple[str, Alert]] = []
    for a in sorted(chosen, key=lambda a: (_rank(a.level or ""), a.name)):
        area = alert_area(a, areas)
        if area not in wanted:
            continue
        for i, f in enumerate(facts):
            if f.area == area and (
                a.name in f.alerts or (f.key and all(a.labels.get(k) == v for k, v in f.key.items()))
            ):
                by_fact.setdefault(i, []).append(a)
                break
        else:
            loose.append((area, a))

    items: list[CheckItem] = []
    for i, f in enumerate(facts):
        hits = by_fact.get(i)
        if hits:
            # an unhealthy fact says what was measured (the errno, the probe's reason): keep it
            fact = f.finding if not f.healthy or f.unknown else ""
            items.extend(_alert_item(a, f.area, f.item, language, fact) for a in hits)
        elif f.unknown:
            items.append(
                CheckItem(
                    f.area,
                    inert(f.item, 200),
                    "UNKNOWN",
                    inert(f.finding),
                    None,
                    {k: inert(v, 200) for k, v in f.key.items()},
                )
            )
        else:
            items.append(
                CheckItem(
                    f.area,
                    inert(f.item, 200),
                    "OK" if f.healthy else "WARN",
                    inert(f.finding),
                    None,
                    {k: inert(v, 200) for k, v in f.key.items()},
                )
            )
    items.extend(_alert_item(a, area, _alert_name(a), language) for area, a in loose)
    for name, error in sorted(collector_errors.items()):
        area = COLLECTOR_AREAS.get(name, "resources")
        if area in wanted:
            items.append(
                CheckItem(
                    area,
                    f"collector {name}",
                    "UNKNOWN",
                    inert(f"collector failed: {error}"),
                    None,
                    {"collector": name},
                    "collector",
                )
            )
    if "tickets" in wanted:
        items.extend(_ticket_items(tickets, now, tz))
    present = {it.area for it in items}
    for area in ("resources", "services", "backups", "logs", "security"):
        if area in wanted and area not in present:
            items.append(
                CheckItem(area, area, "UNKNOWN", "nothing checked (no collector data for this area)")
            )
    order = {a: i for i, a in enumerate(AREAS)}
    items.sort(key=lambda it: order.get(it.area, len(AREAS)))  # stable: keeps the order within an area
    return CheckReport(
        check,
        inert(instance, 200),
        started,
        finished,
        tuple(items),
        origin,
        {"log_matches": counters} if counters else {},
    )


# ---------------------------------------------------------------- the terminal form

_COLORS = {"OK": "\x1b[32m", "WARN": "\x1b[33m", "FAIL": "\x1b[1;31m", "UNKNOWN": "\x1b[35m"}
_BOLD, _RESET = "\x1b[1m", "\x1b[0m"


def render_text(
    report: CheckReport, color: bool = False, language: str = "en", tz: dt.tzinfo | None = None
) -> str:
    """The checklist for people: grouped by area, a status per item; ANSI colours only if ``color``."""

    def paint(code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if color else text

    zh = language == "zh-CN"
    when = dt.datetime.fromtimestamp(report.started, tz).strftime("%Y-%m-%d %H:%M:%S")
    took = report.finished - report.started
    lines = [
        paint(
            _BOLD, f"opsagent {inert(report.check)} check — {inert(report.instance)} — {when} ({took:.0f}s)"
        )
    ]
    width = max((len(it.item) for it in report.items), default=10)
    width = min(width, 40)
    area = None
    for it in report.items:
        if it.area != area:
            area = it.area
            en, cn = AREA_TITLES.get(area, (area.title(), area))
            lines.append("")
            lines.append(paint(_BOLD, f"{cn} {en}" if zh else en))
        status = paint(_COLORS.get(it.status, ""), f"{it.status:<7}")
        lines.append(f"  {status} {inert(it.item):<{width}}  {inert(it.finding)}")
    s = report.summary
    verdict = f"{s['urgent']} P1/P2 finding(s)" if s["urgent"] else "no P1/P2 finding"
    lines.append("")
    lines.append(
        f"{s['OK']} OK, {s['WARN']} WARN, {s['FAIL']} FAIL, {s['UNKNOWN']} UNKNOWN — "
        + paint(_COLORS["FAIL"] if s["urgent"] else _COLORS["OK"], verdict)
    )
    return "\n".join(lines) + "\n"


def render_history(rows: Sequence[Mapping[str, Any]], tz: dt.tzinfo | None = None) -> str:
    """Past runs, newest first: time, name, origin, run status, checklist status, counts."""
    head = ("STARTED", "CHECK", "ORIGIN", "RUN", "RESULT", "OK", "WARN", "FAIL", "UNKNOWN", "P1/P2")
    table: list[tuple[str, ...]] = [head]
    for r in rows:
        when = dt.datetime.fromtimestamp(float(r["started"]), tz).strftime("%Y-%m-%d %H:%M")
        table.append(
            (
                when,
                inert(str(r["name"]), 40),
                str(r.get("origin") or "-"),
                str(r["run_status"]),
                str(r.get("status") or "-"),
                *(
                    str(r[k]) if r.get(k) is not None else "-"
                    for k in ("ok", "warn", "fail", "unknown", "urgent")
                ),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n" for row in table)
