"""The durable outbox: notifications written with the change that caused them, delivered later.

``enqueue`` runs inside the caller's store transaction, so a ticket change
and its notifications commit together or not at all. The :class:`Outbox`
worker delivers due entries outside any transaction (a slow receiver never
holds the writer), then records the outcome:

- success: ``sent``;
- timeout, connection error, 429, 5xx: retried with exponential backoff and
  jitter, up to ``max_attempts``;
- any other refusal (4xx, a bad signature): ``dead``, with a journal entry on
  the ticket; ``opsagent outbox retry ID`` re-queues it.

Every entry has a unique idempotency key sent with each attempt, so a crash
between delivering and recording (the entry is delivered again after the
restart) is deduplicated by the receiver. Per-channel rate limits (DingTalk
and WeCom: 20 a minute) fold a burst into digest messages: the folded
entries point at their digest, nothing is dropped.
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.notify import DeliveryError, Notifier
from agent.notify.templates import digest

log = logging.getLogger("opsagent.outbox")

_BATCH = 500


def enqueue(
    db: sqlite3.Connection,
    channel: str,
    event: str,
    message: Mapping[str, Any],
    key: str,
    ticket_id: int | None,
    now: float,
) -> None:
    """Add one delivery in the caller's transaction; a key already present is left alone."""
    db.execute(
        "INSERT INTO outbox (key, channel, ticket_id, event, payload, status, next_at, created_at)"
        " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT (key) DO NOTHING",
        (key, channel, ticket_id, event, json.dumps(message, ensure_ascii=False), now, now),
    )


def backoff(attempts: int, base: float, cap: float, rnd: Callable[[], float]) -> float:
    """Delay before attempt ``attempts + 1``: doubling from ``base`` up to ``cap``, half of it
    jittered so that many entries failing together do not retry together."""
    d = min(cap, base * (2 ** max(0, attempts - 1)))
    return d / 2 + rnd() * d / 2


@dataclass(frozen=True)
class Entry:
    """One outbox row, as listed by ``opsagent outbox``."""

    id: int
    key: str
    channel: str
    ticket_id: int | None
    event: str
    status: str
    attempts: int
    next_at: float
    created_at: float
    sent_at: float | None
    last_error: str
    title: str

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> Entry:
        try:
            title = str(json.loads(r["payload"]).get("title", ""))
        except ValueError:
            title = ""
        return cls(
            r["id"],
            r["key"],
            r["channel"],
            r["ticket_id"],
            r["event"],
            r["status"],
            r["attempts"],
            r["next_at"],
            r["created_at"],
            r["sent_at"],
            r["last_error"],
            title,
        )


def list_entries(db: sqlite3.Connection, statuses: Sequence[str] = ("pending", "dead")) -> list[Entry]:
    """Entries in the given states, oldest first."""
    marks = ",".join("?" for _ in statuses)
    rows = db.execute(f"SELECT * FROM outbox WHERE status IN ({marks}) ORDER BY id", tuple(statuses))  # noqa: S608
    return [Entry.from_row(r) for r in rows]


def requeue(db: sqlite3.Connection, entry_id: int, now: float) -> Entry:
    """Put a dead (or pending) entry back in line for delivery now; KeyError/ValueError if impossible."""
    r = db.execute("SELECT * FROM outbox WHERE id = ?", (entry_id,)).fetchone()
    if r is None:
        raise KeyError(entry_id)
    if r["status"] not in ("dead", "pending"):
        raise ValueError(
            f"outbox entry {entry_id} is {r['status']}; only dead or pending entries can be retried"
        )
    db.execute(
        "UPDATE outbox SET status = 'pending', attempts = 0, next_at = ?, last_error = '' WHERE id = ?",
        (now, entry_id),
    )
    return Entry.from_row(db.execute("SELECT * FROM outbox WHERE id = ?", (entry_id,)).fetchone())


def depth(db: sqlite3.Connection) -> dict[tuple[str, str], int]:
    """Number of pending and dead entries by (channel, status)."""
    rows = db.execute(
        "SELECT channel, status, count(*) AS n FROM outbox WHERE status IN ('pending', 'dead')"
        " GROUP BY channel, status"
    )
    return {(r["channel"], r["status"]): int(r["n"]) for r in rows}


def sent_counts(db: sqlite3.Connection) -> dict[str, int]:
    """Messages delivered so far by channel (a digest counts once)."""
    rows = db.execute("SELECT channel, count(*) AS n FROM outbox WHERE status = 'sent' GROUP BY channel")
    return {r["channel"]: int(r["n"]) for r in rows}


class Outbox:
    """The delivery worker over one store (``run_once`` for tests, ``start`` for the daemon)."""

    def __init__(
        self,
        store: Any,
        notifiers: Mapping[str, Notifier],
        backoff_base: float = 2.0,
        backoff_max: float = 600.0,
        max_attempts: int = 50,
        scrub: Callable[[str], str] = lambda s: s,
        rnd: Callable[[], float] = random.random,
    ):
        self.store = store
        self.notifiers = dict(notifiers)
        self.backoff_base, self.backoff_max, self.max_attempts = backoff_base, backoff_max, max_attempts
        self.scrub, self.rnd = scrub, rnd
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one pass

    def run_once(self, now: float) -> int:
        """Deliver what is due at ``now``; return the number of delivery attempts made."""
        with self.store.read() as db:
            rows = db.execute(
                "SELECT * FROM outbox WHERE status = 'pending' AND next_at <= ? ORDER BY id LIMIT ?",
                (now, _BATCH),
            ).fetchall()
        by_channel: dict[str, list[sqlite3.Row]] = {}
        for r in rows:
            by_channel.setdefault(r["channel"], []).append(r)
        attempts = 0
        for channel, entries in by_channel.items():
            notifier = self.notifiers.get(channel)
            if notifier is None:
                continue  # its notifier was removed from the config: kept until it returns
            attempts += self._deliver_channel(notifier, entries, now)
        return attempts

    def _budget(self, notifier: Notifier, now: float) -> int | None:
        if notifier.rate_limit <= 0:
            return None
        with self.store.read() as db:
            n = db.execute(
                "SELECT count(*) FROM outbox WHERE channel = ? AND sent_at > ?",
                (notifier.name, now - notifier.rate_window),
            ).fetchone()[0]
        return max(0, notifier.rate_limit - int(n))

    def _deliver_channel(self, notifier: Notifier, entries: list[sqlite3.Row], now: float) -> int:
        budget = self._budget(notifier, now)
        if budget is not None:
            if budget == 0:
                return 0
            if len(entries) > budget:
                entries = self._fold(notifier, entries, now)
            entries = entries[:budget]
        for r in entries:
            self._attempt(notifier, r, now)
        return len(entries)

    def _fold(self, notifier: Notifier, entries: list[sqlite3.Row], now: float) -> list[sqlite3.Row]:
        """Replace the plain entries of a burst by digests of at most ``digest_items`` each."""
        digests = [r for r in entries if r["event"] == "digest"]
        plain = [r for r in entries if r["event"] != "digest"]
        size = notifier.digest_items
        with self.store.tx() as db:
            for i in range(0, len(plain), size):
                chunk = plain[i : i + size]
                msgs = [json.loads(r["payload"]) for r in chunk]
                lang = str(msgs[0].get("lang", "en"))
                title, text = digest(lang, [str(m.get("title", "")) for m in msgs])
                mentions = sorted({m for msg in msgs for m in msg.get("mentions", ())})
                to = sorted({a for msg in msgs for a in msg.get("to", ())})
                message = {
                    "event": "digest",
                    "lang": lang,
                    "title": title,
                    "text": text,
                    "mentions": mentions,
                    "to": to,
                    "items": [r["key"] for r in chunk],
                }
                key = f"digest:{notifier.name}:{chunk[0]['id']}-{chunk[-1]['id']}"
                enqueue(db, notifier.name, "digest", message, key, None, now)
                did = db.execute("SELECT id FROM outbox WHERE key = ?", (key,)).fetchone()[0]
                db.executemany(
                    "UPDATE outbox SET status = 'folded', digest_id = ? WHERE id = ? AND status = 'pending'",
                    [(did, r["id"]) for r in chunk],
                )
            rows = db.execute(
                "SELECT * FROM outbox WHERE channel = ? AND status = 'pending' AND event = 'digest'"
                " AND next_at <= ? ORDER BY id",
                (notifier.name, now),
            ).fetchall()
        known = {r["id"] for r in digests}
        return digests + [r for r in rows if r["id"] not in known]

    def _attempt(self, notifier: Notifier, r: sqlite3.Row, now: float) -> None:
        try:
            notifier.send(json.loads(r["payload"]), r["key"])
        except DeliveryError as e:
            self._failed(r, self.scrub(e.reason), e.retry, now)
        except Exception as e:  # a notifier bug must not stop the worker; the entry is kept
            # the traceback is scrubbed: exception texts may quote a robot URL and its token
            log.error("notifier %s failed: %s", notifier.name, self.scrub(traceback.format_exc()))
            self._failed(r, self.scrub(f"internal error: {type(e).__name__}"), True, now)
        else:
            with self.store.tx() as db:
                db.execute(
                    "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1, last_error = ''"
                    " WHERE id = ?",
                    (now, r["id"]),
                )

    def _failed(self, r: sqlite3.Row, reason: str, retry: bool, now: float) -> None:
        attempts = int(r["attempts"]) + 1
        dead = not retry or attempts >= self.max_attempts
        with self.store.tx() as db:
            if dead:
                db.execute(
                    "UPDATE outbox SET status = 'dead', attempts = ?, last_error = ? WHERE id = ?",
                    (attempts, reason, r["id"]),
                )
                why = reason if not retry else f"{reason} (gave up after {attempts} attempts)"
                for tid in self._tickets_of(db, r):
                    db.execute(
                        "INSERT INTO ticket_journal (ticket_id, at, who, kind, text, data)"
                        " VALUES (?, ?, 'opsagent', 'notify_failed', ?, ?)",
                        (
                            tid,
                            now,
                            f"{r['channel']}: {why}; see `opsagent outbox`",
                            json.dumps({"outbox_id": r["id"], "channel": r["channel"]}),
                        ),
                    )
            else:
                delay = backoff(attempts, self.backoff_base, self.backoff_max, self.rnd)
                db.execute(
                    "UPDATE outbox SET attempts = ?, last_error = ?, next_at = ? WHERE id = ?",
                    (attempts, reason, now + delay, r["id"]),
                )
        log.warning(
            "delivery %s via %s failed: %s%s",
            r["id"],
            r["channel"],
            reason,
            "" if not dead else " (dead letter)",
        )

    @staticmethod
    def _tickets_of(db: sqlite3.Connection, r: sqlite3.Row) -> list[int]:
        if r["ticket_id"] is not None:
            return [int(r["ticket_id"])]
        rows = db.execute(
            "SELECT DISTINCT ticket_id FROM outbox WHERE digest_id = ? AND ticket_id IS NOT NULL", (r["id"],)
        )
        return [int(x[0]) for x in rows]

    # -- the thread

    def start(self, clock: Callable[[], float] = time.time, idle: float = 1.0) -> None:
        """Deliver in a background thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    busy = self.run_once(clock())
                except Exception:  # the store may be briefly unavailable; try again next round
                    log.exception("outbox pass failed")
                    busy = 0
                self._wake.wait(0.05 if busy else idle)
                self._wake.clear()

        self._thread = threading.Thread(target=loop, name="outbox", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look for new entries now (called after a transaction that enqueued some)."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread after the delivery in progress."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
