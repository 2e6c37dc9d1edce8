"""The ticketing stage of the cycle: alerts -> tickets, SLA, escalation -> outbox -> notifiers.

Each cycle it takes the rules stage's actionable alerts (firing, just
resolved, not inhibited), runs them through :class:`agent.tickets.TicketBook`
in one transaction, records SLA breaches and escalation steps, and wakes the
outbox worker (a thread started here and stopped by ``close()``). It serves
the Alertmanager receiver and the tickets API and exports ticket and outbox
metrics.

At start-up (not at a reload) it also reconciles the tickets the previous
run left open for local rules: an alert that resolved while the agent was
down never sends its "resolved" event, because the new evaluator never saw
it fire. See :class:`RestartReconciliation`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agent.exporter import Route
from agent.notify import Notifier, build_notifiers
from agent.outbox import Outbox, depth, sent_counts
from agent.receiver import TicketApi
from agent.tickets import (
    AlertEvent,
    ApplyResult,
    TicketBook,
    TicketPolicy,
    event_from_alert,
    identity,
    policy_from_config,
)
from collector.model import Sample, counter, gauge

log = logging.getLogger("opsagent.tickets")

OUTBOX_ENTRIES = gauge(
    "opsagent_outbox_entries", "Outbox entries waiting (pending) or given up (dead), by channel."
)
SENT = counter(
    "opsagent_notifications_sent_total", "Notifications delivered, by channel (a digest counts once)."
)


def secrets_of(section: Any) -> list[str]:
    """Every secret value of the tickets section (to scrub from error texts)."""
    out: list[str] = []
    if section.receiver_token:
        out.append(section.receiver_token.reveal())
    for n in section.notifiers.values():
        for s in (n.url, n.secret, n.password):
            if s:
                out.append(s.reveal())
        if n.url:
            out += url_secrets(n.url.reveal())
    return [s for s in out if len(s) >= 4]


def url_secrets(url: str) -> list[str]:
    """The parts of a robot URL that carry its token, as error texts quote them.

    ``http.client`` names only the request target (``/robot/send?access_token=...``)
    in its errors, so scrubbing the whole URL is not enough: the target, the
    query, each query value and the last path segment (Feishu's hook id) go too.
    """
    from urllib.parse import parse_qsl, urlsplit

    try:
        u = urlsplit(url)
    except ValueError:
        return []
    target = u.path + (f"?{u.query}" if u.query else "")
    parts = [target, u.query, u.path.rsplit("/", 1)[-1]]
    parts += [v for _, v in parse_qsl(u.query, keep_blank_values=False)]
    return [p for p in parts if p]


def scrubber(secrets: Iterable[str]) -> Callable[[str], str]:
    """A function that replaces every secret in a text by ``****``."""
    values = sorted(set(secrets), key=len, reverse=True)

    def scrub(text: str) -> str:
        for s in values:
            text = text.replace(s, "****")
        return text

    return scrub


# State files whose ticket stage has started in this process: a reload does not reconcile again.
_started: set[str] = set()


def restart_grace(ruleset: Any, interval: float, floor: float) -> Callable[[str], float]:
    """How long after start-up a rule's alert has to fire again before its ticket counts as recovered.

    The rule's ``for`` plus two evaluation intervals (its group's, if longer),
    and at least ``floor`` (``tickets.reconcile_after``); a rule no longer
    loaded gets ``floor``.
    """
    needed: dict[str, float] = {}
    for group in getattr(ruleset, "groups", ()):
        every = max(interval, group.interval or 0.0)
        for r in group.rules:
            if hasattr(r, "for_"):
                needed[r.name] = max(needed.get(r.name, 0.0), r.for_ + 2 * every)

    def grace(rule: str) -> float:
        return max(floor, needed.get(rule, 0.0))

    return grace


class RestartReconciliation:
    """Tickets of local rules left live by the previous run, each waiting for its alert to show again.

    A ticket whose alert fires again is forgotten (its lifecycle goes on as
    usual); one whose grace (:func:`restart_grace`) passes while its alert is
    neither firing nor pending is due to be resolved as recovered while the
    agent was down. A pending alert keeps its ticket waiting.
    """

    def __init__(self, waiting: Mapping[int, tuple[str, float]], started: float):
        # ticket id -> (alert identity, when the grace ends)
        self.waiting = dict(waiting)
        self.started = started

    @classmethod
    def after_restart(
        cls, book: TicketBook, started: float, grace: Callable[[str], float]
    ) -> RestartReconciliation:
        """Every live ticket of a local rule, as the previous run left them."""
        waiting = {t["id"]: (t["fingerprint"], started + grace(t["rule"])) for t in book.left_live()}
        return cls(waiting, started)

    def due(self, firing: set[str], pending: set[str], now: float) -> list[int]:
        """Tickets to resolve now; forgets them, and those whose alert fires."""
        out = []
        for tid, (ident, deadline) in list(self.waiting.items()):
            if ident in firing:
                del self.waiting[tid]
            elif now >= deadline and ident not in pending:
                del self.waiting[tid]
                out.append(tid)
        return out


class TicketStage:
    """Cycle stage owning the ticket book and the outbox worker."""

    def __init__(
        self,
        store: Any,
        policy: TicketPolicy,
        notifiers: dict[str, Notifier],
        alerts: Callable[[], Iterable[Any]],
        token: str | None = None,
        clock: Callable[[], float] = time.time,
        outbox: Outbox | None = None,
        restart: Callable[[str], float] | None = None,
        active: Callable[[], Iterable[Any]] | None = None,
    ):
        """``restart``: the grace per rule name (:func:`restart_grace`) when this stage starts the
        agent, not a reload; ``active``: every current alert (pending included), default ``alerts``."""
        self.book = TicketBook(store, policy)
        self.policy = policy
        self.alerts = alerts
        self.active = active or alerts
        self._restart = restart
        self.reconciliation: RestartReconciliation | None = None
        self.clock = clock
        self.outbox = outbox or Outbox(store, notifiers)
        self.outbox.start(clock)
        self.api = TicketApi(self.book, token, clock, apply=self.apply, ignore=policy.ignore_labels)

    def apply(self, events: list[AlertEvent], now: float) -> ApplyResult:
        """Run events through the lifecycle and wake the outbox."""
        res = self.book.apply(events, now)
        self.outbox.wake()
        return res

    def __call__(self, samples: list[Sample], now: float) -> None:
        if self._restart is not None:  # the first cycle after start-up
            self.reconciliation = RestartReconciliation.after_restart(self.book, now, self._restart)
            self._restart = None
            if self.reconciliation.waiting:
                log.info("tickets left open by the previous run wait for their alerts",
                         extra={"tickets": len(self.reconciliation.waiting)})
        events = []
        for a in self.alerts():
            e = event_from_alert(a, now, self.policy.ignore_labels, self.policy.language)
            if e is not None:
                events.append(e)
        self.apply(events, now)
        if self.reconciliation is not None:
            self._reconcile(now)
        if self.book.tick(now):
            self.outbox.wake()

    def _reconcile(self, now: float) -> None:
        assert self.reconciliation is not None
        seen: dict[str, set[str]] = {"firing": set(), "pending": set()}
        for a in self.active():
            if a.state in seen:
                seen[a.state].add(identity(a.labels, self.policy.ignore_labels))
        firing, pending = seen["firing"], seen["pending"]
        due = self.reconciliation.due(firing, pending, now)
        if due:
            n = self.book.resolve_after_restart(due, self.reconciliation.started, now)
            log.info("tickets resolved: recovered while the agent was down", extra={"tickets": n})
            self.outbox.wake()
        if not self.reconciliation.waiting:
            self.reconciliation = None

    def routes(self) -> list[Route]:
        return self.api.routes()

    def samples(self) -> list[Sample]:
        now = self.clock()
        out = self.book.samples(now)
        with self.book.store.read() as db:
            waiting = depth(db)
            sent = sent_counts(db)
        channels = sorted(set(self.outbox.notifiers) | {c for c, _ in waiting} | set(sent))
        for ch in channels:
            for st in ("pending", "dead"):
                out.append(
                    Sample(
                        OUTBOX_ENTRIES.name,
                        {"channel": ch, "status": st},
                        float(waiting.get((ch, st), 0)),
                        now,
                    )
                )
            out.append(Sample(SENT.name, {"channel": ch}, float(sent.get(ch, 0)), now))
        return out

    def close(self) -> None:
        self.outbox.stop()


def _rules_active(cycle: Any) -> Callable[[], Iterable[Any]]:
    """Every alert of the rules stage's last evaluation (pending and inhibited included)."""

    def alerts() -> Iterable[Any]:
        stage = getattr(cycle, "rules_stage", None)
        return list(getattr(stage, "alerts", ())) if stage is not None else ()

    return alerts


def _rules_alerts(cycle: Any) -> Callable[[], Iterable[Any]]:
    def alerts() -> Iterable[Any]:
        stage = getattr(cycle, "rules_stage", None)
        if stage is None:
            return ()
        got = getattr(stage, "actionable", None)
        if got is None:
            return list(getattr(stage, "alerts", ()))
        return list(got() if callable(got) else got)

    return alerts


def setup(cycle: Any) -> None:
    """Add the ticketing stage (component entry point, see agent.cycle)."""
    cfg = cycle.config
    t = cfg.tickets
    if not t.enabled:
        return
    policy = policy_from_config(cfg)
    notifiers = build_notifiers(t.notifiers)
    outbox = Outbox(
        cycle.store,
        notifiers,
        float(t.outbox.backoff),
        float(t.outbox.max_backoff),
        t.outbox.max_attempts,
        scrub=scrubber(secrets_of(t)),
    )
    token = t.receiver_token.reveal() if t.receiver_token else None
    restart = None
    key = str(cfg.agent.state_file)
    if key not in _started:  # start-up, not a reload: reconcile what the previous run left open
        _started.add(key)
        rules_stage = getattr(cycle, "rules_stage", None)
        interval = max(float(cfg.schedule.interval), float(cfg.rules.evaluation_interval))
        restart = restart_grace(getattr(rules_stage, "ruleset", None), interval, float(t.reconcile_after))
    cycle.add_stage(TicketStage(cycle.store, policy, notifiers, _rules_alerts(cycle), token, outbox=outbox,
                                restart=restart, active=_rules_active(cycle)))
    log.info("ticketing ready", extra={"notifiers": len(notifiers), "receiver": bool(token)})
