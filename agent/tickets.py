"""Tickets: one per fault, from the first firing alert to closing, with a journal of every change.

The lifecycle (SPEC §5, docs/tickets.md):

- a firing alert opens exactly one ticket per fingerprint (the store's unique
  index enforces it too); firing again while the ticket is live counts an
  occurrence; a level change re-levels the ticket, recomputes its due times
  and notifies;
- the alert resolving auto-resolves the ticket with a recovery note, or sets
  it to ``recovered`` (awaiting confirmation) when configured;
- a recurrence within the reopen window reopens the resolved ticket, later
  it opens a new one; a closed ticket is never reopened;
- people acknowledge (stops the response clock), add notes, resolve and
  close, from the CLI and the HTTP API;
- :meth:`TicketBook.tick` records SLA breaches and climbs the escalation
  ladder; maintenance windows silence notifications and escalation only.

Every notification goes to the outbox in the transaction of the change that
caused it. Alert events are processed in batches, one transaction each, so
an alert storm costs one commit per batch.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from agent.calendar import ALWAYS, AlwaysCalendar, Calendar, local_zone, make_calendar
from agent.errors import UserError
from agent.escalation import DEFAULT_LADDER, Step, due_steps, stage_after_relevel
from agent.maintenance import Window, make_window, silencing
from agent.notify.templates import render
from agent.outbox import enqueue
from agent.sla import CLOCKS, DEFAULT_LEVELS, LevelSla, SlaPolicy, breaches, clock_stop, parse_target
from collector.model import Sample, counter, gauge
from rules.levels import DEFAULT_SEVERITY_LEVELS, level_for_severity
from rules.model import LEVELS, fingerprint

STATUSES = ("open", "acknowledged", "recovered", "resolved", "closed")
LIVE = ("open", "acknowledged", "recovered")
SYSTEM = "opsagent"

OPEN_TICKETS = gauge("opsagent_tickets_open", "Tickets not yet resolved, by level and status.")
BREACHES = counter("opsagent_tickets_sla_breaches_total", "SLA deadlines missed, by level and clock.")
TICKETS_OPENED = counter("opsagent_tickets_opened_total", "Tickets opened, by level.")

_MUTABLE = (
    "level",
    "labels",
    "summary",
    "description",
    "solution",
    "evidence",
    "status",
    "clock_start",
    "acknowledged_at",
    "restored_at",
    "resolved_at",
    "closed_at",
    "respond_due",
    "restore_due",
    "resolve_due",
    "breached",
    "escalation_stage",
    "occurrences",
    "last_started",
    "last_seen",
    "updated_at",
)
# Evidence kept on a ticket, and in each journal entry recording it (agent.evidence caps its
# annotation alike; an Alertmanager payload may carry anything).
EVIDENCE_LIMIT = 16384


def capped(text: str, limit: int = EVIDENCE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


_UPDATE_SQL = f"UPDATE tickets SET {', '.join(f'{c} = ?' for c in _MUTABLE)} WHERE id = ?"  # noqa: S608


class TicketNotFound(UserError):
    """No ticket with that id (HTTP 404)."""


class IllegalTransition(UserError):
    """The ticket's state does not allow that action (HTTP 409)."""


@dataclass(frozen=True)
class AlertEvent:
    """One alert observation, from the rules engine or an Alertmanager webhook."""

    fingerprint: str
    rule: str
    level: str
    state: Literal["firing", "resolved"]
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    started_at: float = 0.0
    at: float = 0.0
    source: str = "rules"


def identity(labels: Mapping[str, str], ignore: Sequence[str] = ("level",)) -> str:
    """The ticket identity of an alert: its fingerprint without the labels that may change
    while the fault stays the same (its ``level``), so P3 -> P2 keeps one ticket."""
    return fingerprint({k: v for k, v in labels.items() if k not in ignore})


def level_of(labels: Mapping[str, str], default: str = "P3") -> str:
    """The level of an alert: its ``level`` label, else its ``severity`` mapped as the rules do."""
    lv = labels.get("level", "")
    if lv in LEVELS:
        return lv
    return level_for_severity(labels.get("severity"), DEFAULT_SEVERITY_LEVELS) or default


def event_from_alert(
    alert: Any, now: float, ignore: Sequence[str] = ("level",), language: str = "en"
) -> AlertEvent | None:
    """An event from a ``rules.model.Alert``; pending, inactive and inhibited alerts open nothing."""
    if alert.state not in ("firing", "resolved") or getattr(alert, "inhibited", False):
        return None
    labels = dict(alert.labels)
    level = alert.level or level_of(labels)
    started = alert.fired_at or alert.active_at or 0.0
    at = alert.resolved_at if alert.state == "resolved" and alert.resolved_at else now
    annotations = dict(alert.annotations)
    pick = getattr(alert, "annotation", None)
    if callable(pick):  # the annotations in the agent's language
        for key in ("summary", "description", "solution"):
            annotations[key] = pick(key, language) or annotations.get(key, "")
    return AlertEvent(
        identity(labels, ignore), alert.name, level, alert.state, labels, annotations,
        float(started), float(at), "rules",
    )


# ---------------------------------------------------------------- policy


@dataclass(frozen=True)
class Route:
    """Which events and levels a notifier receives, and in which language."""

    name: str
    kind: str
    levels: frozenset[str]
    events: frozenset[str]
    escalation: bool
    language: str


@dataclass(frozen=True)
class Contact:
    """Someone the ladder can reach."""

    name: str
    email: str = ""
    phone: str = ""


@dataclass(frozen=True)
class TicketPolicy:
    """Everything the lifecycle needs from the configuration, resolved once."""

    sla: SlaPolicy = field(default_factory=SlaPolicy)
    ladder: Mapping[str, tuple[Step, ...]] = field(default_factory=lambda: dict(DEFAULT_LADDER))
    reopen_window: float = 86400.0
    reconcile_after: float = 600.0
    confirm_recovery: bool = False
    ignore_labels: tuple[str, ...] = ("level",)
    routes: tuple[Route, ...] = ()
    contacts: Mapping[str, Contact] = field(default_factory=dict)
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    windows: tuple[Window, ...] = ()
    language: str = "zh-CN"
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))

    def recipients(self, names: Iterable[str]) -> list[Contact]:
        """Contacts named directly or through groups, each once, in order."""
        out: dict[str, Contact] = {}
        for n in names:
            for member in self.groups.get(n, (n,)):
                c = self.contacts.get(member)
                if c is not None:
                    out.setdefault(member, c)
        return list(out.values())


def policy_from_config(config: Any) -> TicketPolicy:
    """Build the policy from a validated ``Config`` (defaults of SPEC §3/§4 filled in)."""
    t = config.tickets
    tzname = config.agent.timezone
    tz = ZoneInfo(tzname) if tzname else local_zone()
    from agent.config import CalendarConfig

    calendars: dict[str, Calendar] = {ALWAYS: AlwaysCalendar()}
    cal_cfgs = {"workdays": CalendarConfig(china_holidays=True), **t.calendars}
    for name, c in cal_cfgs.items():
        calendars[name] = make_calendar(
            name, c.timezone or tzname, c.hours, c.weekdays, c.holidays, c.workdays, c.china_holidays
        )
    levels = dict(DEFAULT_LEVELS)
    for lv, s in t.sla.items():
        base = levels.get(lv, LevelSla(None, None, None))
        levels[lv] = LevelSla(
            parse_target(s.respond) if s.respond else base.respond,
            parse_target(s.restore) if s.restore else base.restore,
            parse_target(s.resolve) if s.resolve else base.resolve,
            s.calendar,
        )
    ladder = dict(DEFAULT_LADDER)
    for lv, steps in t.escalation.items():
        ladder[lv] = tuple(
            sorted(
                (Step(float(s.after), tuple(s.notify), frozenset(s.unless), s.vendor_case) for s in steps),
                key=lambda s: s.after,
            )
        )
    routes = tuple(
        Route(
            name,
            n.type,
            frozenset(n.levels),
            frozenset(n.events),
            n.escalation,
            n.language or config.agent.language,
        )
        for name, n in t.notifiers.items()
        if n.enabled
    )
    contacts = {k: Contact(c.name or k, c.email, c.phone) for k, c in t.contacts.items()}
    windows = tuple(
        make_window(m.name, m.matchers, m.start, m.end, m.weekdays, m.hours, m.timezone or tzname)
        for m in t.maintenance
    )
    return TicketPolicy(
        sla=SlaPolicy(levels, calendars, t.working_calendar),
        ladder=ladder,
        reopen_window=float(t.reopen_window),
        reconcile_after=float(t.reconcile_after),
        confirm_recovery=t.confirm_recovery,
        ignore_labels=tuple(t.identity_ignore_labels),
        routes=routes,
        contacts=contacts,
        groups={k: tuple(v) for k, v in t.groups.items()},
        windows=windows,
        language=config.agent.language,
        tz=tz,
    )


# ---------------------------------------------------------------- the book


@dataclass
class ApplyResult:
    """What one batch of alert events did."""

    opened: int = 0
    reopened: int = 0
    occurrences: int = 0
    relevelled: int = 0
    resolved: int = 0


class TicketBook:
    """Tickets and their journal in the store, under one policy."""

    def __init__(self, store: Any, policy: TicketPolicy | None = None):
        self.store = store
        self.policy = policy or TicketPolicy()

    # -- alert events

    def apply(self, events: Sequence[AlertEvent], now: float) -> ApplyResult:
        """Run a batch of alert events through the lifecycle, in one transaction."""
        res = ApplyResult()
        if not events:
            return res
        with self.store.tx() as db:
            latest = self._latest(db, {e.fingerprint for e in events})
            dirty: dict[int, dict[str, Any]] = {}
            refires: dict[int, int] = {}
            for e in events:
                t = latest.get(e.fingerprint)
                if e.state == "firing":
                    t = self._fire(db, t, e, now, res, refires)
                    latest[e.fingerprint] = t
                elif t is not None and t["status"] in ("open", "acknowledged"):
                    self._recover(db, t, e.at or now, now)
                    res.resolved += 1
                else:
                    continue
                dirty[t["id"]] = t
            for tid, n in refires.items():
                self._journal(
                    db,
                    tid,
                    now,
                    SYSTEM,
                    "fired",
                    "fired again" if n == 1 else f"fired again ({n} occurrences)",
                    {"count": n},
                )
            db.executemany(_UPDATE_SQL, [[t[c] for c in _MUTABLE] + [tid] for tid, t in dirty.items()])
        return res

    def _latest(self, db: sqlite3.Connection, fps: set[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        items = sorted(fps)
        for i in range(0, len(items), 500):
            chunk = items[i : i + 500]
            marks = ",".join("?" for _ in chunk)
            for r in db.execute(f"SELECT * FROM tickets WHERE fingerprint IN ({marks}) ORDER BY id", chunk):  # noqa: S608
                out[r["fingerprint"]] = dict(r)
        return out

    def _fire(
        self,
        db: sqlite3.Connection,
        t: dict[str, Any] | None,
        e: AlertEvent,
        now: float,
        res: ApplyResult,
        refires: dict[int, int],
    ) -> dict[str, Any]:
        if (
            t is None
            or t["status"] == "closed"
            or (t["status"] == "resolved" and now - (t["resolved_at"] or 0) > self.policy.reopen_window)
        ):
            res.opened += 1
            return self._open(db, e, now)
        if t["status"] == "resolved":
            res.reopened += 1
            self._reopen(db, t, e, now)
            return t
        if e.level != t["level"]:
            res.relevelled += 1
            self._relevel(db, t, e.level, now)
        new_occurrence = e.started_at != t["last_started"] or not e.started_at
        if t["status"] == "recovered":
            t["status"] = "acknowledged" if t["acknowledged_at"] else "open"
            t["restored_at"] = None
            self._journal(
                db, t["id"], now, SYSTEM, "fired", "fired again after recovery; back to " + t["status"]
            )
            new_occurrence = False
            t["occurrences"] += 1
        elif new_occurrence:
            t["occurrences"] += 1
            refires[t["id"]] = refires.get(t["id"], 0) + 1
            res.occurrences += 1
        t["last_started"] = e.started_at
        self._refresh(t, e, now)
        self._new_evidence(db, t, e, now)
        return t

    def _new_evidence(self, db: sqlite3.Connection, t: dict[str, Any], e: AlertEvent, now: float) -> None:
        """Journal the alert's evidence when it differs from what the ticket last recorded.

        A firing alert is seen every cycle; only a change (a config file changed
        again, new log lines matched) is worth an entry. An alert without
        evidence keeps the ticket's: evidence is forgotten after a while, the
        fault it explained is not.
        """
        text = capped(e.annotations.get("evidence", ""))
        if not text or text == t["evidence"]:
            return
        t["evidence"] = text
        t["updated_at"] = now
        self._journal(db, t["id"], now, SYSTEM, "evidence", capped("new evidence:\n" + text))

    def _refresh(self, t: dict[str, Any], e: AlertEvent, now: float) -> None:
        a = e.annotations
        for col in ("summary", "description", "solution"):
            if a.get(col):
                t[col] = a[col]
        t["labels"] = json.dumps(dict(e.labels), sort_keys=True, ensure_ascii=False)
        t["last_seen"] = now
        t["updated_at"] = now

    def _open(self, db: sqlite3.Connection, e: AlertEvent, now: float) -> dict[str, Any]:
        dues = self.policy.sla.dues(e.level, now)
        a = e.annotations
        labels = json.dumps(dict(e.labels), sort_keys=True, ensure_ascii=False)
        cur = db.execute(
            "INSERT INTO tickets (fingerprint, rule, level, instance, labels, summary, description, solution,"
            " evidence, source, status, opened_at, clock_start, respond_due, restore_due, resolve_due,"
            " occurrences, last_started, last_seen, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, 1, ?, ?, ?)",
            (
                e.fingerprint,
                e.rule,
                e.level,
                e.labels.get("instance", ""),
                labels,
                a.get("summary", "") or e.rule,
                a.get("description", ""),
                a.get("solution", ""),
                capped(a.get("evidence", "")),
                e.source,
                now,
                now,
                dues["respond"],
                dues["restore"],
                dues["resolve"],
                e.started_at,
                now,
                now,
            ),
        )
        tid = int(cur.lastrowid or 0)
        t = dict(db.execute("SELECT * FROM tickets WHERE id = ?", (tid,)).fetchone())
        jid = self._journal(
            db, tid, now, SYSTEM, "opened", f"opened by alert {e.rule} ({e.level}) from {e.source}"
        )
        self._notify(db, t, "opened", jid, now)
        return t

    def _reopen(self, db: sqlite3.Connection, t: dict[str, Any], e: AlertEvent, now: float) -> None:
        t.update(
            status="open",
            acknowledged_at=None,
            restored_at=None,
            resolved_at=None,
            clock_start=now,
            breached="",
            escalation_stage=0,
            level=e.level,
            occurrences=t["occurrences"] + 1,
            last_started=e.started_at,
        )
        self._set_dues(t)
        self._refresh(t, e, now)
        jid = self._journal(
            db, t["id"], now, SYSTEM, "reopened", "the fault recurred within the reopen window"
        )
        self._notify(db, t, "reopened", jid, now)
        self._new_evidence(db, t, e, now)

    def _relevel(self, db: sqlite3.Connection, t: dict[str, Any], level: str, now: float) -> None:
        old = t["level"]
        upgraded = _rank(level) < _rank(old)
        t["level"] = level
        self._set_dues(t)
        # breaches are judged again against the new deadlines
        t["breached"] = ""
        steps = self.policy.ladder.get(level, ())
        t["escalation_stage"] = stage_after_relevel(steps, t["clock_start"], now, upgraded)
        jid = self._journal(
            db,
            t["id"],
            now,
            SYSTEM,
            "relevel",
            f"level {old} -> {level}; due times recomputed",
            {"from": old, "to": level},
        )
        self._notify(db, t, "relevel", jid, now, {"old_level": old})

    def _set_dues(self, t: dict[str, Any]) -> None:
        dues = self.policy.sla.dues(t["level"], t["clock_start"])
        t["respond_due"], t["restore_due"], t["resolve_due"] = (
            dues["respond"],
            dues["restore"],
            dues["resolve"],
        )

    def _recover(
        self,
        db: sqlite3.Connection,
        t: dict[str, Any],
        at: float,
        now: float,
        why: str = "the alert recovered",
    ) -> None:
        at = min(at, now)
        t["restored_at"] = at
        t["updated_at"] = now
        if self.policy.confirm_recovery:
            t["status"] = "recovered"
            jid = self._journal(db, t["id"], now, SYSTEM, "recovered", f"{why}; awaiting confirmation")
            self._notify(db, t, "recovered", jid, now, {"at": self._fmt(at)})
        else:
            t["status"] = "resolved"
            t["resolved_at"] = at
            note = f"auto-resolved: {why}"
            jid = self._journal(db, t["id"], now, SYSTEM, "resolved", note)
            self._notify(db, t, "resolved", jid, now, {"at": self._fmt(at), "note": note})
        self._check_breaches(db, t, now)

    # -- after a restart

    def left_live(self) -> list[dict[str, Any]]:
        """Open and acknowledged tickets of local rules (not Alertmanager's): after a restart, the
        ones whose alert may have resolved while the agent was down (``id``, ``fingerprint``,
        ``rule``, ``last_seen``)."""
        with self.store.read() as db:
            rows = db.execute(
                "SELECT id, fingerprint, rule, last_seen FROM tickets"
                " WHERE status IN ('open', 'acknowledged') AND source = 'rules' ORDER BY id"
            ).fetchall()
        return [dict(r) for r in rows]

    def resolve_after_restart(self, tids: Iterable[int], started: float, now: float) -> int:
        """Resolve tickets whose alert did not fire again after the restart at ``started``.

        The recovery happened while the agent was down, at an unknown time; the
        agent can only vouch for it from ``started``, which becomes the restore
        time (SLA clocks are judged against it). A ticket resolved or closed by
        hand meanwhile is left alone. Returns how many were resolved.
        """
        n = 0
        with self.store.tx() as db:
            for tid in tids:
                r = db.execute("SELECT * FROM tickets WHERE id = ?", (tid,)).fetchone()
                if r is None or r["status"] not in ("open", "acknowledged"):
                    continue
                t = dict(r)
                why = (
                    "recovered while the agent was down (not firing after restart;"
                    f" last seen firing {self._fmt(t['last_seen'])})"
                )
                self._recover(db, t, started, now, why)
                self._save(db, t)
                n += 1
        return n

    # -- people

    def ack(self, tid: int, who: str, now: float, text: str = "") -> dict[str, Any]:
        """Acknowledge: stops the response clock and the escalation steps that wait for it."""
        with self.store.tx() as db:
            t = self._get(db, tid)
            if t["status"] in ("resolved", "closed"):
                raise IllegalTransition(f"ticket {tid} is {t['status']}; it cannot be acknowledged")
            if t["acknowledged_at"] is not None:
                raise IllegalTransition(f"ticket {tid} was already acknowledged")
            t["acknowledged_at"] = now
            if t["status"] == "open":
                t["status"] = "acknowledged"
            t["updated_at"] = now
            self._journal(db, tid, now, who, "acknowledged", text or "acknowledged")
            self._check_breaches(db, t, now)
            self._save(db, t)
        return t

    def note(self, tid: int, who: str, text: str, now: float) -> dict[str, Any]:
        """Add a note to the journal (allowed in every state)."""
        if not text.strip():
            raise UserError("a note needs some text")
        with self.store.tx() as db:
            t = self._get(db, tid)
            self._journal(db, tid, now, who, "note", text)
            db.execute("UPDATE tickets SET updated_at = ? WHERE id = ?", (now, tid))
        return t

    def resolve(self, tid: int, who: str, now: float, note: str) -> dict[str, Any]:
        """Resolve by hand (also confirms a recovered ticket); ``note`` says the cause and what was done.

        The note is required: the problem report (SPEC §3/§5) needs both, and
        only the person resolving knows them. Recovery resolves through
        :meth:`_recover` with its own automatic note.
        """
        with self.store.tx() as db:
            t = self._get(db, tid)
            if t["status"] in ("resolved", "closed"):
                raise IllegalTransition(f"ticket {tid} is already {t['status']}")
            if not note.strip():
                raise UserError(
                    f"resolving ticket {tid} needs a note: the cause and what was done"
                    " (for the problem report)"
                )
            t.update(status="resolved", resolved_at=now, restored_at=t["restored_at"] or now, updated_at=now)
            jid = self._journal(db, tid, now, who, "resolved", note)
            self._notify(db, t, "resolved", jid, now, {"at": self._fmt(now), "note": note})
            self._check_breaches(db, t, now)
            self._save(db, t)
        return t

    def close(self, tid: int, who: str, now: float, note: str = "") -> dict[str, Any]:
        """Close: final; a recurrence opens a new ticket."""
        with self.store.tx() as db:
            t = self._get(db, tid)
            if t["status"] == "closed":
                raise IllegalTransition(f"ticket {tid} is already closed")
            t.update(
                status="closed",
                closed_at=now,
                resolved_at=t["resolved_at"] or now,
                restored_at=t["restored_at"] or now,
                updated_at=now,
            )
            self._journal(db, tid, now, who, "closed", note or "closed")
            self._check_breaches(db, t, now)
            self._save(db, t)
        return t

    # -- time

    def tick(self, now: float) -> int:
        """Record SLA breaches and run due escalation steps; return the journal entries written."""
        written = 0
        with self.store.tx() as db:
            rows = [
                dict(r)
                for r in db.execute(
                    "SELECT * FROM tickets WHERE status IN ('open', 'acknowledged', 'recovered')"
                )
            ]
            for t in rows:
                before = (t["breached"], t["escalation_stage"])
                written += self._check_breaches(db, t, now)
                written += self._escalate(db, t, now)
                if (t["breached"], t["escalation_stage"]) != before:
                    self._save(db, t)
        return written

    def _check_breaches(self, db: sqlite3.Connection, t: dict[str, Any], now: float) -> int:
        dues = {"respond": t["respond_due"], "restore": t["restore_due"], "resolve": t["resolve_due"]}
        stops = {
            c: clock_stop(c, t["acknowledged_at"], t["restored_at"], t["resolved_at"], t["closed_at"])
            for c in CLOCKS
        }
        already = set(filter(None, t["breached"].split(",")))
        new = breaches(dues, stops, already, now)
        for clock in new:
            due = dues[clock]
            jid = self._journal(
                db,
                t["id"],
                now,
                SYSTEM,
                "breach",
                f"{clock} deadline {self._fmt(due)} missed",
                {"clock": clock, "level": t["level"], "due": due},
            )
            self._notify(db, t, "breach", jid, now, {"clock": clock, "due": self._fmt(due)})
        if new:
            t["breached"] = ",".join(c for c in CLOCKS if c in already or c in new)
        return len(new)

    def _escalate(self, db: sqlite3.Connection, t: dict[str, Any], now: float) -> int:
        steps = self.policy.ladder.get(t["level"], ())
        if t["escalation_stage"] >= len(steps):
            return 0
        labels = json.loads(t["labels"])
        window = silencing(self.policy.windows, labels, now)
        if window is not None:
            return 0  # postponed, not skipped: the step runs when the window ends
        due = due_steps(
            steps,
            t["escalation_stage"],
            t["clock_start"],
            now,
            t["acknowledged_at"] is not None,
            t["status"] == "recovered",
        )
        for d in due:
            who = self.policy.recipients(d.step.notify)
            names = ", ".join(d.step.notify)
            if not d.fire:
                self._journal(
                    db,
                    t["id"],
                    now,
                    SYSTEM,
                    "escalation",
                    f"step {d.index + 1} ({names}) not needed: {d.reason}",
                    {"step": d.index + 1, "fired": False},
                )
                continue
            kind = "vendor_case" if d.step.vendor_case else "escalation"
            text = f"step {d.index + 1}: escalated to {names}"
            if not who:
                text += " (no contacts configured for them)"
            jid = self._journal(
                db,
                t["id"],
                now,
                SYSTEM,
                "escalation",
                text,
                {"step": d.index + 1, "fired": True, "to": list(d.step.notify)},
            )
            self._notify_contacts(db, t, kind, jid, now, who, d.index + 1, names)
        if due:
            t["escalation_stage"] = due[-1].index + 1
        return len(due)

    # -- notifications

    def _fields(self, t: Mapping[str, Any]) -> dict[str, Any]:
        f = {
            k: t[k]
            for k in (
                "id",
                "level",
                "rule",
                "instance",
                "summary",
                "description",
                "solution",
                "status",
                "occurrences",
            )
        }
        for k in ("opened_at", "respond_due", "restore_due", "resolve_due"):
            f[k] = self._fmt(t[k])
        return f

    def _message(
        self, route: Route, t: Mapping[str, Any], event: str, extra: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        fields = {**self._fields(t), **(extra or {})}
        title, text = render(event, route.language, fields)
        return {
            "event": event,
            "lang": route.language,
            "ticket": t["id"],
            "level": t["level"],
            "title": title,
            "text": text,
        }

    def _notify(
        self,
        db: sqlite3.Connection,
        t: Mapping[str, Any],
        event: str,
        jid: int,
        now: float,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        routes = [r for r in self.policy.routes if event in r.events and t["level"] in r.levels]
        if not routes:
            return
        window = silencing(self.policy.windows, json.loads(t["labels"]), now)
        if window is not None:
            self._journal(
                db,
                t["id"],
                now,
                SYSTEM,
                "silenced",
                f"{event} notification silenced by maintenance window {window.name}",
            )
            return
        for r in routes:
            self._enqueue(db, r, t, event, jid, self._message(r, t, event, extra), now)

    def _notify_contacts(
        self,
        db: sqlite3.Connection,
        t: Mapping[str, Any],
        event: str,
        jid: int,
        now: float,
        who: list[Contact],
        step: int,
        names: str,
    ) -> None:
        for r in self.policy.routes:
            if not r.escalation:
                continue
            msg = self._message(r, t, event, {"step": step, "who": names})
            if r.kind == "email":
                msg["to"] = [c.email for c in who if c.email]
                if not msg["to"]:
                    continue
            else:
                msg["mentions"] = [c.phone for c in who if c.phone]
            self._enqueue(db, r, t, event, jid, msg, now)

    def _enqueue(
        self,
        db: sqlite3.Connection,
        route: Route,
        t: Mapping[str, Any],
        event: str,
        jid: int,
        message: Mapping[str, Any],
        now: float,
    ) -> None:
        # one idempotency key per route and journal entry: a replayed state change sends nothing twice
        enqueue(db, route.name, event, message, f"{route.name}:t{t['id']}:j{jid}", t["id"], now)

    def _fmt(self, ts: float | None) -> str:
        if ts is None:
            return "-"
        return dt.datetime.fromtimestamp(ts, self.policy.tz).strftime("%Y-%m-%d %H:%M")

    # -- store access

    def _journal(
        self,
        db: sqlite3.Connection,
        tid: int,
        now: float,
        who: str,
        kind: str,
        text: str,
        data: Mapping[str, Any] | None = None,
    ) -> int:
        cur = db.execute(
            "INSERT INTO ticket_journal (ticket_id, at, who, kind, text, data) VALUES (?, ?, ?, ?, ?, ?)",
            (tid, now, who, kind, text, json.dumps(dict(data or {}), ensure_ascii=False)),
        )
        return int(cur.lastrowid or 0)

    def _get(self, db: sqlite3.Connection, tid: int) -> dict[str, Any]:
        r = db.execute("SELECT * FROM tickets WHERE id = ?", (tid,)).fetchone()
        if r is None:
            raise TicketNotFound(f"no ticket {tid} (see `opsagent tickets list`)")
        return dict(r)

    def _save(self, db: sqlite3.Connection, t: Mapping[str, Any]) -> None:
        db.execute(_UPDATE_SQL, [t[c] for c in _MUTABLE] + [t["id"]])

    def get(self, tid: int) -> dict[str, Any]:
        """One ticket with its labels decoded and its journal."""
        with self.store.read() as db:
            t = self._get(db, tid)
            t["journal"] = [
                dict(r)
                for r in db.execute(
                    "SELECT at, who, kind, text FROM ticket_journal WHERE ticket_id = ? ORDER BY id", (tid,)
                )
            ]
        t["labels"] = json.loads(t["labels"])
        t["external_refs"] = json.loads(t["external_refs"])
        return t

    def list_tickets(
        self, status: Sequence[str] = (), level: Sequence[str] = (), limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Tickets, newest first, filtered by status and level."""
        sql, args = "SELECT * FROM tickets", []
        where = []
        if status:
            where.append(f"status IN ({','.join('?' for _ in status)})")
            args += list(status)
        if level:
            where.append(f"level IN ({','.join('?' for _ in level)})")
            args += list(level)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        with self.store.read() as db:
            rows = [dict(r) for r in db.execute(sql, [*args, limit])]
        for r in rows:
            r["labels"] = json.loads(r["labels"])
            r["external_refs"] = json.loads(r["external_refs"])
        return rows

    def samples(self, now: float) -> list[Sample]:
        """Open tickets by level and status; SLA breaches by level and clock."""
        out = []
        with self.store.read() as db:
            counts = {
                (r[0], r[1]): r[2]
                for r in db.execute(
                    "SELECT level, status, count(*) FROM tickets"
                    " WHERE status IN ('open', 'acknowledged', 'recovered') GROUP BY level, status"
                )
            }
            rows = db.execute(
                "SELECT json_extract(data, '$.level'), json_extract(data, '$.clock'), count(*)"
                " FROM ticket_journal WHERE kind = 'breach' GROUP BY 1, 2"
            ).fetchall()
            opened = dict(db.execute("SELECT level, count(*) FROM tickets GROUP BY level").fetchall())
        levels = sorted({*self.policy.sla.levels, *LEVELS})
        for lv in levels:
            for st in LIVE:
                out.append(
                    Sample(
                        OPEN_TICKETS.name, {"level": lv, "status": st}, float(counts.get((lv, st), 0)), now
                    )
                )
            for clock in CLOCKS:
                n = next((r[2] for r in rows if r[0] == lv and r[1] == clock), 0)
                out.append(Sample(BREACHES.name, {"level": lv, "clock": clock}, float(n), now))
            out.append(Sample(TICKETS_OPENED.name, {"level": lv}, float(opened.get(lv, 0)), now))
        return out


def _rank(level: str) -> int:
    return LEVELS.index(level) if level in LEVELS else len(LEVELS)
