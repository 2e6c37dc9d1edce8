"""The agent's configuration: one YAML file validated into frozen typed models.

Sections owned by other parts of the agent (rules, tickets, notifiers,
checks) are declared here as fields so that unknown keys anywhere are errors.
"""

from __future__ import annotations

import dataclasses
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from collector.registry import discover
from collector.schema import Builder, ConfigError, Duration, Problem, read_document

DEFAULT_PORT = 9934
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
            out.append(("tls_cert_file", "tls_cert_file and tls_key_file must be given together"))
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
    interval: Duration = Duration(15)  # noqa: RUF009
    timeout: Duration = Duration(10)  # noqa: RUF009
    misfire_grace: Duration = Duration(7200)  # noqa: RUF009
    checks: dict[str, CheckTime] = field(default_factory=_default_checks)


def _collector_section_type(name: str) -> type | None:
    reg = discover().get(name)
    return reg.config if reg else None


@dataclass(frozen=True)
class Config:
    """The whole configuration file."""

    agent: AgentSection = field(default_factory=AgentSection)
    web: WebSection = field(default_factory=WebSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    collectors: dict[str, Any] = field(
        default_factory=dict, metadata={"value_type": _collector_section_type}
    )
    source: str = field(default="", metadata={"internal": True})

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
        raise ConfigError(b.problems)
    if cfg is None:
        raise ConfigError([Problem(file, 0, "", "empty configuration")])
    return dataclasses.replace(cfg, source=str(Path(file).resolve()))
