"""The ticketing stage of the cycle: alerts -> tickets, SLA, escalation -> outbox -> notifiers.

Each cycle it takes the rules stage's actionable alerts (firing, just
resolved, not inhibited), runs them through :class:`agent.tickets.TicketBook`
in one transaction, records SLA breaches and escalation steps, and wakes the
outbox worker (a thread started here and stopped by ``close()``). It serves
the Alertmanager receiver and the tickets API and exports ticket and outbox
metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
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
    return [s for s in out if len(s) >= 4]


def scrubber(secrets: Iterable[str]) -> Callable[[str], str]:
    """A function that replaces every secret in a text by ``****``."""
    values = sorted(set(secrets), key=len, reverse=True)

    def scrub(text: str) -> str:
        for s in values:
            text = text.replace(s, "****")
        return text

    return scrub


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
    ):
        self.book = TicketBook(store, policy)
        self.policy = policy
        self.alerts = alerts
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
        events = []
        for a in self.alerts():
            e = event_from_alert(a, now, self.policy.ignore_labels, self.policy.language)
            if e is not None:
                events.append(e)
        self.apply(events, now)
        if self.book.tick(now):
            self.outbox.wake()

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
    cycle.add_stage(TicketStage(cycle.store, policy, notifiers, _rules_alerts(cycle), token, outbox=outbox))
    log.info("ticketing ready", extra={"notifiers": len(notifiers), "receiver": bool(token)})
