"""The agent's configuration: one YAML file validated into frozen typed models.

Sections owned by other parts of the agent (rules, tickets, notifiers,
checks) are declared here as fields so that unknown keys anywhere are errors.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from collector.registry import discover
from collector.schema import Builder, ConfigError, Duration, Problem, Secret, read_document

DEFAULT_PORT = 9934
MIN_INTERVAL = 1.0  # seconds: the shortest collection interval
LogLevel = Literal["debug", "info", "warning", "error"]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class AgentSection:
    """Identity, state file, logging and language of this agent."""

    instance: str = ""
    timezone: str = ""
    state_file: Path = Path("/var/lib/opsagent/state.db")
    log_level: LogLevel = "info"
    log_format: Literal["logfmt", "json"] = "logfmt"
    language: Literal["zh-CN", "en"] = "zh-CN"

    def check(self) -> list[tuple[str, str]]:
        if self.timezone:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                return [("timezone", f"unknown time zone {self.timezone!r} (use e.g. Asia/Shanghai)")]
        return []

    @property
    def instance_name(self) -> str:
        return self.instance or socket.gethostname()


@dataclass(frozen=True)
class WebSection:
    """The HTTP listener: /metrics, /healthz, /-/reload and the API."""

    listen_address: str = f":{DEFAULT_PORT}"
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # user name -> bcrypt hash, as in Prometheus' exporter web config
    basic_auth_users: dict[str, str] = field(default_factory=dict)

    def check(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        try:
            split_address(self.listen_address)
        except ValueError as e:
            out.append(("listen_address", str(e)))
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            absent = "tls_key_file" if self.tls_key_file is None else "tls_cert_file"
            out.append((absent, "tls_cert_file and tls_key_file must be given together"))
        # checked here so `config check` catches them, not only the restart that needs them
        for key in ("tls_cert_file", "tls_key_file"):
            path = getattr(self, key)
            if path is not None and not os.access(path, os.R_OK):
                why = "not found" if not path.exists() else "not readable"
                out.append((key, f"{path}: {why}"))
        for user, h in self.basic_auth_users.items():
            if not h.startswith(("$2a$", "$2b$", "$2y$")):
                hint = "must be a bcrypt hash (htpasswd -nBC 10 '' | tr -d ':')"
                out.append((f"basic_auth_users.{user}", hint))
        return out


def split_address(addr: str) -> tuple[str, int]:
    """``host:port`` (host may be empty or ``[v6]``) -> (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid listen address {addr!r} (use host:port, e.g. 127.0.0.1:{DEFAULT_PORT})")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an empty host means all interfaces


@dataclass(frozen=True)
class CheckTime:
    """A named check at a fixed local time, on some weekdays (empty: every day)."""

    at: str
    days: tuple[str, ...] = ()
    enabled: bool = True

    def check(self) -> list[tuple[str, str]]:
        out = []
        try:
            self.hour_minute()
        except ValueError:
            out.append(("at", f"must be HH:MM; got {self.at!r}"))
        bad = [d for d in self.days if d not in WEEKDAYS]
        if bad:
            out.append(("days", f"unknown weekday {bad[0]!r} (use {', '.join(WEEKDAYS)})"))
        return out

    def hour_minute(self) -> tuple[int, int]:
        h, _, m = self.at.partition(":")
        if not (h.isdigit() and m.isdigit() and int(h) < 24 and int(m) < 60 and len(m) == 2):
            raise ValueError(self.at)
        return int(h), int(m)


def _default_checks() -> dict[str, CheckTime]:
    return {
        "morning": CheckTime("08:00"),
        "evening": CheckTime("18:30"),
        "weekly": CheckTime("09:00", ("mon",)),
    }


@dataclass(frozen=True)
class ScheduleSection:
    """Interval collection and the named checks of the contract's calendar (SPEC §1)."""

    # Duration is an immutable float, so a shared default instance is safe
    interval: Duration = Duration(15)
    timeout: Duration = Duration(10)
    misfire_grace: Duration = Duration(7200)
    checks: dict[str, CheckTime] = field(default_factory=_default_checks)

    def check(self) -> list[tuple[str, str]]:
        out = []
        # a zero interval would make the main loop collect without pause (a CPU at 100 %)
        if self.interval < MIN_INTERVAL:
            out.append(("interval", f"must be at least {MIN_INTERVAL:g}s"))
        if self.timeout <= 0:
            out.append(("timeout", "must be greater than 0"))
        return out


# ---------------------------------------------------------------- tickets (agent/tickets.py, docs/tickets.md)

_EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
NOTIFIER_EVENTS = ("opened", "reopened", "relevel", "resolved", "recovered", "breach")
# groups the default escalation ladder names; they may be left unconfigured
DEFAULT_GROUPS = ("manager1", "manager2", "manager3", "senior_engineers", "vendor")


def _bad_email(address: str) -> str | None:
    name, _, addr = address.rpartition("<")
    addr = addr.rstrip(">").strip() if name or addr.endswith(">") else address.strip()
    return None if _EMAIL_RE.match(addr) else f"invalid e-mail address {address!r}"


def _bad_url(url: str) -> str | None:
    """Why a notifier URL cannot be posted to; the URL (it carries a token) is never quoted."""
    from urllib.parse import urlsplit

    if not url.startswith(("http://", "https://")):
        return "must be an http:// or https:// URL"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "must not contain spaces or control characters (percent-encode them: %20)"
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    return None if host else "has no valid host name"


@dataclass(frozen=True)
class CalendarConfig:
    """A business calendar: working hours on working days, holidays, make-up workdays."""

    timezone: str = ""
    hours: tuple[str, ...] = ("09:00-12:00", "13:00-18:00")
    weekdays: tuple[str, ...] = WEEKDAYS[:5]
    # China's statutory holidays and make-up working days (chinese-calendar package)
    china_holidays: bool = False
    holidays: tuple[str, ...] = ()
    workdays: tuple[str, ...] = ()

    def check(self) -> list[tuple[str, str]]:
        from agent.calendar import make_calendar

        try:
            make_calendar("check", self.timezone or "UTC", self.hours, self.weekdays,
                          self.holidays, self.workdays, False)
        except (ValueError, KeyError) as e:
            return [("", str(e))]
        return []


@dataclass(frozen=True)
class SlaLevelConfig:
    """Targets of one level: a duration (``6h``), working days (``2wd``) or ``-`` for none;
    empty keeps the default of SPEC §3."""

    respond: str = ""
    restore: str = ""
    resolve: str = ""
    calendar: str = "24x7"

    def check(self) -> list[tuple[str, str]]:
        from agent.sla import parse_target

        out = []
        for key in ("respond", "restore", "resolve"):
            try:
                parse_target(getattr(self, key))
            except ValueError as e:
                out.append((key, f"{e} (or use working days, e.g. 2wd)"))
        return out


@dataclass(frozen=True)
class EscalationStepConfig:
    """One rung of the ladder: after this long, tell these contacts or groups."""

    after: Duration
    notify: tuple[str, ...]
    unless: tuple[Literal["acknowledged", "resolved"], ...] = ("acknowledged", "resolved")
    vendor_case: bool = False


@dataclass(frozen=True)
class ContactConfig:
    """A person or mailbox the escalation ladder can reach."""

    name: str = ""
    email: str = ""
    phone: str = ""

    def check(self) -> list[tuple[str, str]]:
        if self.email:
            bad = _bad_email(self.email)
            if bad:
                return [("email", bad)]
        return []


@dataclass(frozen=True)
class NotifierConfig:
    """One notification channel: email, webhook, dingtalk, wecom or feishu."""

    type: Literal["email", "webhook", "dingtalk", "wecom", "feishu"]
    enabled: bool = True
    # robots and webhooks: the URL carries the token, so it is a secret (url or url_file)
    url: Secret | None = None
    # DingTalk / Feishu signing secret
    secret: Secret | None = None
    # email
    host: str = ""
    port: int = 0
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password: Secret | None = None
    sender: str = ""
    to: tuple[str, ...] = ()
    ca_file: Path | None = None
    # what this channel is told
    levels: tuple[str, ...] = ("P1", "P2", "P3", "P4")
    events: tuple[str, ...] = NOTIFIER_EVENTS
    escalation: bool = True
    language: str = ""
    # messages per rate_window; -1: the channel's documented limit (20/min for DingTalk, WeCom)
    rate_limit: int = -1
    rate_window: Duration = Duration(60)
    digest_items: int = 20
    timeout: Duration = Duration(10)

    def check(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.type == "email":
            if not self.host:
                out.append(("host", "an email notifier needs the SMTP host"))
            bad = _bad_email(self.sender) if self.sender else "an email notifier needs a sender address"
            if bad:
                out.append(("sender", bad))
            out += [(f"to[{i}]", b) for i, a in enumerate(self.to) if (b := _bad_email(a))]
        elif self.url is None:
            out.append(("url", f"a {self.type} notifier needs url (or url_file)"))
        elif bad := _bad_url(self.url.reveal()):
            out.append(("url", bad))
        from rules.model import LEVELS

        bad_levels = [lv for lv in self.levels if lv not in LEVELS]
        if bad_levels:  # a typo (p1) would silently keep the channel quiet
            out.append(("levels", f"unknown level {bad_levels[0]!r} (use {', '.join(LEVELS)})"))
        bad_events = [e for e in self.events if e not in NOTIFIER_EVENTS]
        if bad_events:
            out.append(("events", f"unknown event {bad_events[0]!r} (use {', '.join(NOTIFIER_EVENTS)})"))
        if self.language and self.language not in ("zh-CN", "en"):
            out.append(("language", "must be zh-CN or en"))
        return out


@dataclass(frozen=True)
class MaintenanceConfig:
    """A maintenance window: one-off (start, end) or recurring (hours on weekdays)."""

    name: str
    matchers: tuple[str, ...] = ()
    start: str = ""
    end: str = ""
    weekdays: tuple[str, ...] = ()
    hours: str = ""
    timezone: str = ""

    def check(self) -> list[tuple[str, str]]:
        from agent.maintenance import make_window

        try:
            make_window(self.name, self.matchers, self.start, self.end, self.weekdays, self.hours,
                        self.timezone or "UTC")
        except (ValueError, KeyError) as e:
            return [("", str(e))]
        return []


@dataclass(frozen=True)
class OutboxConfig:
    """Delivery retries: exponential backoff with jitter, then dead letter."""

    backoff: Duration = Duration(2)
    max_backoff: Duration = Duration(600)
    max_attempts: int = 50


def _default_calendars() -> dict[str, CalendarConfig]:
    return {"workdays": CalendarConfig(china_holidays=True)}


@dataclass(frozen=True)
class TicketsSection:
    """Auto-ticketing: lifecycle, SLA, escalation, notifiers, maintenance (SPEC §3-§5)."""

    enabled: bool = True
    reopen_window: Duration = Duration(86400)
    # after a restart, a local rule's ticket whose alert has not fired again within this time (and at
    # least the rule's `for` plus two evaluation intervals) is resolved: it recovered while the agent was down
    reconcile_after: Duration = Duration(600)
    # recovery sets "recovered, awaiting confirmation" instead of resolving
    confirm_recovery: bool = False
    # labels left out of a ticket's identity, so a level change keeps the same ticket
    identity_ignore_labels: tuple[str, ...] = ("level",)
    # bearer token of POST /api/v1/alertmanager (receiver_token or receiver_token_file)
    receiver_token: Secret | None = None
    working_calendar: str = "workdays"
    calendars: dict[str, CalendarConfig] = field(default_factory=_default_calendars)
    sla: dict[str, SlaLevelConfig] = field(default_factory=dict)
    escalation: dict[str, tuple[EscalationStepConfig, ...]] = field(default_factory=dict)
    contacts: dict[str, ContactConfig] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    notifiers: dict[str, NotifierConfig] = field(default_factory=dict)
    maintenance: tuple[MaintenanceConfig, ...] = ()
    outbox: OutboxConfig = field(default_factory=OutboxConfig)

    def check(self) -> list[tuple[str, str]]:
        from rules.model import LEVELS

        out: list[tuple[str, str]] = []
        # a level the rules never produce would make its SLA or ladder silently unused
        for key, table in (("sla", self.sla), ("escalation", self.escalation)):
            out += [(f"{key}.{lv}", f"unknown level {lv!r} (use {', '.join(LEVELS)})")
                    for lv in table if lv not in LEVELS]
        names = set(self.contacts) | set(self.groups) | set(DEFAULT_GROUPS)
        for g, members in self.groups.items():
            out += [(f"groups.{g}", f"unknown contact {m!r}") for m in members if m not in self.contacts]
        for level, steps in self.escalation.items():
            for i, step in enumerate(steps):
                out += [(f"escalation.{level}[{i}].notify", f"unknown contact or group {n!r}")
                        for n in step.notify if n not in names]
        cals = {*self.calendars, "24x7", "workdays"}
        for level, s in self.sla.items():
            if s.calendar not in cals:
                out.append((f"sla.{level}.calendar", f"unknown calendar {s.calendar!r}"))
        if self.working_calendar not in cals:
            out.append(("working_calendar", f"unknown calendar {self.working_calendar!r}"))
        return out


def _default_severity_levels() -> dict[str, str]:
    from rules.levels import DEFAULT_SEVERITY_LEVELS

    return dict(DEFAULT_SEVERITY_LEVELS)


def _default_impact_matrix() -> dict[str, dict[str, str]]:
    from rules.levels import DEFAULT_IMPACT_MATRIX

    return {k: dict(v) for k, v in DEFAULT_IMPACT_MATRIX.items()}


@dataclass(frozen=True)
class FlappingConfig:
    """Nagios-style flap detection: weighted percent state change over the last ``window`` results."""

    enabled: bool = True
    window: int = 21
    high: float = 20.0
    low: float = 5.0

    def check(self) -> list[tuple[str, str]]:
        out = []
        if not 3 <= self.window <= 1000:
            out.append(("window", "must be between 3 and 1000 evaluations"))
        if not 0 <= self.low < self.high <= 100:
            out.append(("low", "must satisfy 0 <= low < high <= 100 (percent)"))
        return out


@dataclass(frozen=True)
class RulesSection:
    """Alerting rules: default packs, extra rule files, and how alerts get their level (SPEC §2)."""

    packs: bool = True
    # pack names (file stem: filesystem, memory, ...), group names or alert names to leave out
    disabled: tuple[str, ...] = ()
    # extra rule files; globs, relative to the configuration file
    files: tuple[str, ...] = ()
    severity_levels: dict[str, str] = field(default_factory=_default_severity_levels)
    impact_matrix: dict[str, dict[str, str]] = field(default_factory=_default_impact_matrix)
    default_tier: str = "production"
    # language of alert texts; empty = agent.language
    language: Literal["", "zh-CN", "en"] = ""
    flapping: FlappingConfig = field(default_factory=FlappingConfig)
    # 0 = at every collection cycle; 30s: half of Prometheus' 1m default, rules' `for` are minutes
    evaluation_interval: Duration = Duration(30)
    # how much history rules can look back over (predict_linear uses 6h)
    history: Duration = Duration(6 * 3600)
    # after a restart, pending/firing alerts resume their `for` timers (Prometheus'
    # --rules.alert.for-outage-tolerance / --rules.alert.for-grace-period): not after
    # an outage longer than this
    for_outage_tolerance: Duration = Duration(3600)
    # nor fire sooner than this after the restart unless they were firing before it
    for_grace_period: Duration = Duration(600)

    def check(self) -> list[tuple[str, str]]:
        from rules.levels import check_matrix
        from rules.model import LEVELS

        out = [(f"severity_levels.{k}", f"unknown level {v!r} (use one of {', '.join(LEVELS)})")
               for k, v in self.severity_levels.items() if v not in LEVELS]
        out += [(f"impact_matrix.{k}", m) for k, m in check_matrix(self.impact_matrix)]
        if self.default_tier not in self.impact_matrix:
            out.append(("default_tier", f"must be a row of impact_matrix ({', '.join(self.impact_matrix)})"))
        return out


# -------------------------------------------------------- checks (agent/checks.py, docs/checks-runs.md)


@dataclass(frozen=True)
class CheckProfile:
    """What one named check covers: collectors, areas, rules, targets, and how far back it looks."""

    # collectors the one-shot run (opsagent check) runs; empty: every enabled collector
    collectors: tuple[str, ...] = ()
    # checklist areas shown (resources, services, backups, logs, security, tickets); empty: all
    areas: tuple[str, ...] = ()
    # alert names or rule-file stems whose alerts count; empty: all; exclude_rules wins
    rules: tuple[str, ...] = ()
    exclude_rules: tuple[str, ...] = ()
    # label matchers, e.g. 'instance=~"db-.*"'; items and alerts must match all of them
    targets: tuple[str, ...] = ()
    # log matches and config changes newer than this are findings ("errors logged overnight")
    lookback: Duration = Duration(24 * 3600)

    def check(self) -> list[tuple[str, str]]:
        from agent.checks import AREAS, parse_matcher

        out: list[tuple[str, str]] = []
        known = discover()
        out += [(f"collectors[{i}]", f"unknown collector {c!r} (known: {', '.join(known)})")
                for i, c in enumerate(self.collectors) if c not in known]
        out += [(f"areas[{i}]", f"unknown area {a!r} (use {', '.join(AREAS)})")
                for i, a in enumerate(self.areas) if a not in AREAS]
        for i, m in enumerate(self.targets):
            try:
                parse_matcher(m)
            except ValueError as e:
                out.append((f"targets[{i}]", str(e)))
        if self.lookback <= 0:
            out.append(("lookback", "must be greater than 0"))
        return out


@dataclass(frozen=True)
class ChecksSection:
    """The named checks' contents (when they run is ``schedule.checks``); see docs/checks-runs.md."""

    # a one-shot check collects twice, this far apart, so rate() rules have two points
    sample_gap: Duration = Duration(5)
    # rule-file stem -> area, added to the built-in table (a rule label check_area wins)
    areas: dict[str, str] = field(default_factory=dict)
    # per check name; morning, evening and weekly have built-in defaults, other names check everything
    profiles: dict[str, CheckProfile] = field(default_factory=dict)

    def check(self) -> list[tuple[str, str]]:
        from agent.checks import AREAS

        out = [(f"areas.{k}", f"unknown area {v!r} (use {', '.join(AREAS)})")
               for k, v in self.areas.items() if v not in AREAS]
        if not 0 <= self.sample_gap <= 300:
            out.append(("sample_gap", "must be between 0s and 5m"))
        return out

    def profile(self, name: str) -> CheckProfile:
        """The profile of a check: configured, else the built-in default for its name."""
        from agent.checks import default_profile

        return self.profiles.get(name) or default_profile(name)


def _collector_section_type(name: str) -> type | None:
    reg = discover().get(name)
    return reg.config if reg else None


@dataclass(frozen=True)
class Config:
    """The whole configuration file."""

    agent: AgentSection = field(default_factory=AgentSection)
    web: WebSection = field(default_factory=WebSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    tickets: TicketsSection = field(default_factory=TicketsSection)
    rules: RulesSection = field(default_factory=RulesSection)
    checks: ChecksSection = field(default_factory=ChecksSection)
    collectors: dict[str, Any] = field(
        default_factory=dict, metadata={"value_type": _collector_section_type}
    )
    source: str = field(default="", metadata={"internal": True})

    def check(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for name, section in self.collectors.items():
            interval = getattr(section, "interval", None)
            if interval and interval < MIN_INTERVAL:  # 0s means schedule.interval
                out.append((f"collectors.{name}.interval", f"must be at least {MIN_INTERVAL:g}s"))
            timeout = getattr(section, "timeout", None) or self.schedule.timeout
            stat_timeout = getattr(section, "stat_timeout", None)
            if stat_timeout is not None and stat_timeout >= timeout:
                out.append((f"collectors.{name}.stat_timeout",
                            f"must be shorter than the collector's timeout ({timeout:g}s),"
                            " or one hung mount fails the whole collector"))
        return out

    def collector_section(self, name: str) -> Any:
        """The validated section of a collector (its defaults when absent)."""
        if name in self.collectors and self.collectors[name] is not None:
            return self.collectors[name]
        return discover()[name].config()


def load_config(path: str | Path) -> Config:
    """Load and validate the configuration file; ConfigError lists every problem."""
    node, file = read_document(path)
    b = Builder(file)
    cfg = b.build(Config, node)
    if b.problems:
        # in file order: a section's own checks run after its fields
        raise ConfigError(sorted(b.problems, key=lambda p: p.line))
    if cfg is None:
        raise ConfigError([Problem(file, 0, "", "empty configuration")])
    return dataclasses.replace(cfg, source=str(Path(file).resolve()))
