"""Alert events per second through dedup into the ticket store.

    .venv/bin/python bench/tickets.py [--events 50000] [--fingerprints 500] [--batch 500]

Events over a fixed set of fingerprints, each a new occurrence, applied in
batches (one transaction each, as the cycle and the Alertmanager receiver
do), with a notifier route so that opening tickets also writes the outbox.
Target: >= 5,000 events/s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.store import Store
from agent.tickets import AlertEvent, Route, TicketBook, TicketPolicy, identity


def events(n: int, fps: int, t0: float) -> list[AlertEvent]:
    out = []
    for i in range(n):
        labels = {"alertname": "HostDown", "instance": f"host-{i % fps}", "level": "P2" if i % 7 else "P1"}
        out.append(
            AlertEvent(
                identity(labels),
                "HostDown",
                labels["level"],
                "firing",
                labels,
                {"summary": f"host-{i % fps} down"},
                t0 + i,
                t0 + i,
            )
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--fingerprints", type=int, default=500)
    ap.add_argument("--batch", type=int, default=500)
    a = ap.parse_args()
    route = Route(
        "hook", "webhook", frozenset({"P1", "P2", "P3", "P4"}), frozenset({"opened", "relevel"}), False, "en"
    )
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d) / "bench.db")
        book = TicketBook(store, TicketPolicy(routes=(route,)))
        evs = events(a.events, a.fingerprints, 1_726_000_000.0)
        start = time.perf_counter()
        for i in range(0, len(evs), a.batch):
            book.apply(evs[i : i + a.batch], 1_726_000_000.0 + i)
        took = time.perf_counter() - start
        with store.read() as db:
            tickets = db.execute("SELECT count(*) FROM tickets").fetchone()[0]
            occurrences = db.execute("SELECT sum(occurrences) FROM tickets").fetchone()[0]
        store.close()
    assert tickets == a.fingerprints and occurrences == a.events, (tickets, occurrences)
    rate = a.events / took
    print(
        f"tickets bench: {a.events} events over {a.fingerprints} fingerprints, batch {a.batch}: "
        f"{took:.2f} s, {rate:,.0f} events/s -> {tickets} tickets "
        f"(target >= 5,000/s: {'ok' if rate >= 5000 else 'MISSED'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
