"""The durable outbox against real HTTP receivers: retries, dead letters, digests, SIGKILL and restart."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.notify import build_notifier
from agent.outbox import Outbox, list_entries, requeue
from agent.store import Store
from agent.tickets import Route, TicketBook, TicketPolicy
from collector.schema import Duration, Secret
from tests.test_tickets import ev

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_726_000_000.0


def hook(name, url, kind="webhook", rate_limit=-1, digest_items=20):
    return build_notifier(
        name,
        SimpleNamespace(
            type=kind,
            url=Secret(url),
            secret=None,
            rate_limit=rate_limit,
            rate_window=Duration(60),
            digest_items=digest_items,
            timeout=Duration(5),
        ),
    )


def route(name, kind="webhook"):
    return Route(
        name, kind, frozenset({"P1", "P2", "P3", "P4"}), frozenset({"opened", "resolved"}), False, "en"
    )


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "state.db")
    yield s
    s.close()


def test_503_three_times_then_200_arrives_exactly_once(store, receiver_factory):
    r = receiver_factory(statuses=[503, 503, 503])
    TicketBook(store, TicketPolicy(routes=(route("hook"),))).apply([ev()], T0)
    box = Outbox(store, {"hook": hook("hook", f"{r.url}/hook")}, backoff_base=2, rnd=lambda: 1.0)
    now = T0
    for _ in range(20):
        box.run_once(now)
        now += 60
    assert len(r.requests) == 4
    assert len(r.accepted) == 1 and r.duplicates == 0
    keys = {req["headers"]["Idempotency-Key"] for req in r.requests}
    assert len(keys) == 1  # every attempt carried the same key
    with store.read() as db:
        row = db.execute("SELECT status, attempts FROM outbox").fetchone()
    assert tuple(row) == ("sent", 4)


def test_backoff_waits_between_attempts(store, receiver_factory):
    r = receiver_factory(statuses=[500, 500])
    TicketBook(store, TicketPolicy(routes=(route("hook"),))).apply([ev()], T0)
    box = Outbox(store, {"hook": hook("hook", f"{r.url}/hook")}, backoff_base=10, rnd=lambda: 0.0)
    box.run_once(T0)  # fails; next try after 5..10 s
    box.run_once(T0 + 1)
    assert len(r.requests) == 1
    box.run_once(T0 + 11)  # fails again; doubled
    box.run_once(T0 + 12)
    assert len(r.requests) == 2
    box.run_once(T0 + 40)
    assert len(r.accepted) == 1


def test_4xx_is_dead_lettered_with_journal_entry_and_can_be_retried(store, receiver_factory):
    r = receiver_factory(statuses=[404], error_body=b'{"error": "no such hook",\n "id": 7}')
    b = TicketBook(store, TicketPolicy(routes=(route("hook"),)))
    b.apply([ev()], T0)
    box = Outbox(store, {"hook": hook("hook", f"{r.url}/hook")})
    box.run_once(T0)
    box.run_once(T0 + 3600)
    assert len(r.requests) == 1
    with store.read() as db:
        [dead] = list_entries(db)
    # the receiver's own explanation is kept, on one line: the operator sees why it was refused
    assert dead.status == "dead" and dead.last_error == 'HTTP 404: {"error": "no such hook", "id": 7}'
    [t] = b.list_tickets()
    failed = [j for j in b.get(t["id"])["journal"] if j["kind"] == "notify_failed"]
    assert 'hook: HTTP 404: {"error": "no such hook"' in failed[0]["text"]
    with store.tx() as db:
        requeue(db, dead.id, T0 + 3600)
    box.run_once(T0 + 3600)
    assert len(r.accepted) == 1


def test_rate_limit_folds_a_burst_into_digests_nothing_dropped(store, receiver_factory):
    r = receiver_factory()
    b = TicketBook(store, TicketPolicy(routes=(route("ding", "dingtalk"),)))
    b.apply([ev(instance=f"h{i}") for i in range(45)], T0)
    box = Outbox(
        store, {"ding": hook("ding", f"{r.url}/robot/send?access_token=t", "dingtalk", digest_items=20)}
    )
    box.run_once(T0)
    assert len(r.requests) == 3  # 45 notifications -> 3 digests (20 + 20 + 5), within 20/min
    text = "\n".join(req["body"]["markdown"]["text"] for req in r.requests)
    for i in range(45):
        assert f"disk full on h{i}\n" in text + "\n"
    with store.read() as db:
        states = dict(db.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())
    assert states == {"folded": 45, "sent": 3}


def test_rate_limit_holds_messages_until_the_window_frees(store, receiver_factory):
    r = receiver_factory()
    b = TicketBook(store, TicketPolicy(routes=(route("ding", "dingtalk"),)))
    box = Outbox(store, {"ding": hook("ding", f"{r.url}/robot/send?access_token=t", "dingtalk")})
    for i in range(25):  # one at a time, as they come
        b.apply([ev(instance=f"h{i}")], T0 + i)
        box.run_once(T0 + i)
    assert len(r.requests) == 20
    box.run_once(T0 + 61)
    assert len(r.requests) == 21  # the 5 late ones, as one digest
    assert "5" in r.requests[-1]["body"]["markdown"]["title"]


DRIVER = textwrap.dedent("""
    import sys, time
    from types import SimpleNamespace
    from agent.notify import build_notifier
    from agent.outbox import Outbox
    from agent.store import Store
    from agent.tickets import AlertEvent, Route, TicketBook, TicketPolicy, identity
    from collector.schema import Duration, Secret

    path, url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = Store(path)
    route = Route("hook", "webhook", frozenset({"P3"}), frozenset({"opened"}), False, "en")
    book = TicketBook(store, TicketPolicy(routes=(route,)))
    events = []
    for i in range(n):
        labels = {"alertname": "Down", "instance": f"h{i}", "level": "P3"}
        events.append(AlertEvent(identity(labels), "Down", "P3", "firing", labels, {}, 1.0, 1.0))
    book.apply(events, time.time())   # idempotent: a restart re-applies the same events
    notifier = build_notifier("hook", SimpleNamespace(type="webhook", url=Secret(url), secret=None,
        rate_limit=0, rate_window=Duration(60), digest_items=20, timeout=Duration(5)))
    box = Outbox(store, {"hook": notifier})
    print("ready", flush=True)
    while box.run_once(time.time()):
        pass
    print("done", flush=True)
""")


def test_sigkill_while_delivering_then_restart_loses_nothing_doubles_nothing(tmp_path, receiver_factory):
    r = receiver_factory(delay=0.02)  # slow enough to be killed in the middle
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    db = tmp_path / "state.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    n = 60
    p = subprocess.Popen(
        [sys.executable, str(script), str(db), f"{r.url}/hook", str(n)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 30
    while len(r.requests) < 15 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(10)
    delivered_before = len(r.accepted)
    assert 0 < delivered_before < n  # really killed in the middle
    out = subprocess.run(
        [sys.executable, str(script), str(db), f"{r.url}/hook", str(n)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.split() == ["ready", "done"], out.stderr
    s = Store(db)
    try:
        with s.read() as conn:
            keys = [row[0] for row in conn.execute("SELECT key FROM outbox")]
            statuses = {row[0] for row in conn.execute("SELECT status FROM outbox")}
            tickets = conn.execute("SELECT count(*) FROM tickets").fetchone()[0]
    finally:
        s.close()
    assert tickets == n and len(keys) == n and statuses == {"sent"}
    assert sorted(r.accepted) == sorted(keys)  # every notification arrived, each key once
    assert r.duplicates <= 1  # at most the one in flight at the kill was re-sent, and deduplicated
    assert len(r.requests) == n + r.duplicates
    assert all(json.dumps(b) for b in r.accepted.values())


class QuotingNotifier:
    """A notifier whose failure quotes its request target, as http.client's errors do."""

    name, kind, rate_limit, rate_window, digest_items = "ding", "dingtalk", 0, 60.0, 20

    def send(self, message, key):
        import http.client

        target = "/robot/send?access_token=TOK3N-x y"
        raise http.client.InvalidURL(f"URL can't contain control characters. {target!r}")


def test_an_unexpected_notifier_error_is_logged_without_the_robot_token(store, caplog):
    from agent.tickets_stage import scrubber, url_secrets

    url = "https://oapi.dingtalk.com/robot/send?access_token=TOK3N-x y"
    TicketBook(store, TicketPolicy(routes=(route("ding"),))).apply([ev()], T0)
    box = Outbox(store, {"ding": QuotingNotifier()}, scrub=scrubber(url_secrets(url)))
    with caplog.at_level("ERROR", logger="opsagent.outbox"):
        box.run_once(T0)
    assert "notifier ding failed" in caplog.text and "InvalidURL" in caplog.text
    assert "TOK3N" not in caplog.text
    with store.read() as db:
        [e] = list_entries(db)
    assert e.status == "pending" and e.attempts == 1  # kept for the next attempt
