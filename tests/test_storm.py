"""Alert storm: 10,000 firing events over 500 fingerprints within a minute -> exactly 500 tickets and
a bounded number of notifications (digests), also when the process is SIGKILLed and restarted."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agent.store import Store
from tests.ticket_peers import Receiver

ROOT = Path(__file__).resolve().parent.parent

# Alertmanager-style: each alert is re-sent with its own startsAt, in posts of 200 alerts,
# 50 posts spread over one (simulated) minute; DingTalk's 20 messages a minute apply.
DRIVER = textwrap.dedent("""
    import sys
    from types import SimpleNamespace
    from agent.notify import build_notifier
    from agent.outbox import Outbox
    from agent.store import Store
    from agent.tickets import AlertEvent, Route, TicketBook, TicketPolicy, identity
    from collector.schema import Duration, Secret

    path, url = sys.argv[1], sys.argv[2]
    T0 = 1_726_000_000.0
    store = Store(path)
    route = Route("ding", "dingtalk", frozenset({"P1"}), frozenset({"opened"}), False, "zh-CN")
    book = TicketBook(store, TicketPolicy(routes=(route,)))
    ding = build_notifier("ding", SimpleNamespace(type="dingtalk", url=Secret(url), secret=None,
        rate_limit=-1, rate_window=Duration(60), digest_items=20, timeout=Duration(5)))
    box = Outbox(store, {"ding": ding})
    for post in range(50):
        now = T0 + post * 1.2
        events = []
        for j in range(200):
            i = post * 200 + j
            fp = (i * 7919) % 500
            labels = {"alertname": "NodeDown", "instance": f"node-{fp}", "severity": "critical"}
            events.append(AlertEvent(identity(labels), "NodeDown", "P1", "firing", labels,
                                     {"summary": f"node-{fp} down"}, T0 + fp * 0.1, now))
        book.apply(events, now)
        box.run_once(now)
        print("post", post, flush=True)
    now = T0 + 60
    while now < T0 + 600 and box.run_once(now) is not None:
        with store.read() as db:
            if not db.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()[0]:
                break
        now += 10
    print("done", flush=True)
""")


def _run(script, db, url, env, kill_after=None):
    p = subprocess.Popen(
        [sys.executable, str(script), str(db), url], env=env, stdout=subprocess.PIPE, text=True
    )
    lines = []
    for line in p.stdout:
        lines.append(line.strip())
        if kill_after is not None and line.strip() == f"post {kill_after}":
            os.kill(p.pid, signal.SIGKILL)
            break
    p.wait(60)
    return lines


@pytest.mark.parametrize("kill", [False, True], ids=["clean", "sigkill-restart"])
def test_storm_makes_500_tickets_and_few_notifications(tmp_path, kill):
    r = Receiver()
    try:
        script = tmp_path / "storm.py"
        script.write_text(DRIVER)
        db = tmp_path / "state.db"
        url = f"{r.url}/robot/send?access_token=t"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        start = time.monotonic()
        if kill:
            lines = _run(script, db, url, env, kill_after=20)
            assert "done" not in lines
        lines = _run(script, db, url, env)
        assert lines[-1] == "done"
        took = time.monotonic() - start
        s = Store(db)
        with s.read() as conn:
            tickets = conn.execute("SELECT count(*) FROM tickets").fetchone()[0]
            live = conn.execute(
                "SELECT count(DISTINCT fingerprint) FROM tickets WHERE status = 'open'"
            ).fetchone()[0]
            opened = conn.execute("SELECT count(*) FROM ticket_journal WHERE kind = 'opened'").fetchone()[0]
            states = dict(conn.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())
            folded_keys = {row[0] for row in conn.execute("SELECT key FROM outbox WHERE event = 'opened'")}
        s.close()
    finally:
        r.close()
    assert tickets == 500 and live == 500 and opened == 500
    assert states.get("pending", 0) == 0 and states.get("dead", 0) == 0
    # every ticket's notification went out, most of them inside digests (DingTalk: <= 20 a minute)
    items = set()
    for req in r.requests:
        assert req["body"]["msgtype"] == "markdown"
    for body in r.accepted.values():
        items.update(line for line in body["markdown"]["text"].splitlines() if "node-" in line)
    assert len(items) == 500
    assert len(folded_keys) == 500
    assert len(r.accepted) <= 500 // 20 + 20  # bounded: digests, not one message per alert
    assert took < 60
    print(f"storm ({'sigkill' if kill else 'clean'}): {len(r.accepted)} messages for 500 tickets")
