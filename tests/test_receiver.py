"""Alertmanager receiver and tickets API, end to end on the real daemon; CLI on the same state file;
secrets never in logs, tickets or messages."""

import json

import pytest

from agent.exporter import Exporter
from agent.receiver import PayloadError, TicketApi, parse_alertmanager
from agent.store import Store
from agent.tickets import TicketBook
from agent.webserver import Headers, RequestHead
from tests.daemon_harness import Agent, cli, example_config, wait_for, write_config
from tests.ticket_peers import Receiver

TOKEN = "am-token-Zq9xVv3"
HOOK_SECRET = "hook-secret-K7pQ2"


def payload(status="firing", severity="critical", instance="db-1", ends="0001-01-01T00:00:00Z"):
    return {
        "version": "4",
        "groupKey": '{}:{alertname="DBDown"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "opsagent",
        "groupLabels": {"alertname": "DBDown"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am:9093",
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": "DBDown", "instance": instance, "severity": severity},
                "annotations": {"summary": f"database down on {instance}", "solution": "restart mysqld"},
                "startsAt": "2024-09-18T10:00:00.123456789+08:00",
                "endsAt": ends,
                "generatorURL": "http://prom/graph",
                "fingerprint": "abc",
            }
        ],
    }


def test_parse_maps_severity_to_level_and_times():
    [e] = parse_alertmanager(json.dumps(payload(severity="warning")).encode(), 100.0)
    assert (e.level, e.state, e.rule, e.source) == ("P3", "firing", "DBDown", "alertmanager")
    assert e.started_at == pytest.approx(1726624800.123456)
    [r] = parse_alertmanager(json.dumps(payload("resolved", ends="2024-09-18T10:05:00Z")).encode(), 1e10)
    assert r.at == 1726653900.0


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (b"{not json", "not JSON"),
        (json.dumps({**payload(), "version": "3"}).encode(), "unsupported payload version"),
        (json.dumps({**payload(), "alerts": {}}).encode(), "alerts: must be a list"),
        (json.dumps({**payload(), "alerts": [{"status": "odd"}]}).encode(), "alerts[0].status"),
        (
            json.dumps({**payload(), "alerts": [{"status": "firing", "labels": {"a": 1}}]}).encode(),
            "alerts[0].labels",
        ),
        (
            json.dumps({**payload(), "alerts": [{"status": "firing", "labels": {"x": "y"}}]}).encode(),
            "alertname",
        ),
    ],
)
def test_malformed_payload_reasons(doc, reason):
    with pytest.raises(PayloadError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        parse_alertmanager(doc, 0.0)


def answer_from(exporter, client, method, path, body=b"", headers=()):
    """The exporter's answer to a request from ``client``.

    Test servers listen on loopback only, so a request from another host is
    put through the exporter's request handling directly."""
    head = RequestHead(method, path, (1, 1), Headers(list(headers)), len(body))
    return exporter._answer(head, client, lambda: body)


def test_alertmanager_on_another_host_needs_only_the_token_tickets_api_stays_local(tmp_path):
    store = Store(tmp_path / "state.db")
    try:
        book = TicketBook(store)
        exporter = Exporter(("127.0.0.1", 0))
        for route in TicketApi(book, TOKEN, lambda: 1e9).routes():
            exporter.add_route(route)
        body = json.dumps(payload()).encode()
        bearer = [("Authorization", f"Bearer {TOKEN}")]
        remote = "192.0.2.9"  # Alertmanager's host, without web.basic_auth_users
        assert answer_from(exporter, remote, "POST", "/api/v1/alertmanager", body).status == 401
        reply = answer_from(exporter, remote, "POST", "/api/v1/alertmanager", body, bearer)
        assert reply.status == 200, reply.body
        [t] = book.list_tickets()
        assert t["rule"] == "DBDown"
        # tickets carry summaries and log evidence: other hosts are refused, the local CLI/API is served
        assert answer_from(exporter, remote, "GET", "/api/v1/tickets").status == 403
        assert answer_from(exporter, remote, "GET", f"/api/v1/tickets/{t['id']}").status == 403
        ack = answer_from(exporter, remote, "POST", f"/api/v1/tickets/{t['id']}/ack", b"{}", bearer)
        assert ack.status == 403
        assert answer_from(exporter, "127.0.0.1", "GET", "/api/v1/tickets").status == 200
    finally:
        store.close()


@pytest.fixture
def agent(tmp_path):
    hook = Receiver(statuses=[400])  # the first delivery is refused: a dead letter, logged
    (tmp_path / "token").write_text(TOKEN + "\n")
    cfg = example_config(
        tmp_path,
        tickets={
            "receiver_token_file": str(tmp_path / "token"),
            "notifiers": {"itsm": {"type": "webhook", "url": f"{hook.url}/hook?secret={HOOK_SECRET}"}},
        },
    )
    path = write_config(tmp_path / "agent.yaml", cfg)
    a = Agent(path, cfg)
    try:
        a.wait_ready()
        yield a, hook, path
    finally:
        a.stop()
        hook.close()


def am_tickets(a, query=""):
    """Tickets from Alertmanager (the example config's own rules may fire on this machine too)."""
    tickets = json.loads(a.get("/api/v1/tickets" + query)[1])["tickets"]
    return [t for t in tickets if t["source"] == "alertmanager"]


def post(a, body, token=TOKEN):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return a.request("POST", "/api/v1/alertmanager", body, headers)


def test_receiver_api_cli_end_to_end(agent, tmp_path):
    a, hook, path = agent
    assert post(a, json.dumps(payload()).encode(), token=None)[0] == 401
    assert post(a, json.dumps(payload()).encode(), token="wrong")[0] == 401
    status, body, _ = post(a, b'{"version": "4", "alerts": 5}')
    assert status == 400 and b"alerts: must be a list" in body
    assert am_tickets(a) == []  # nothing changed

    for _ in range(3):  # Alertmanager re-sends the same alert: still one ticket
        assert post(a, json.dumps(payload()).encode())[0] == 200
    [t] = am_tickets(a)
    assert (t["level"], t["status"], t["source"], t["solution"]) == (
        "P1",
        "open",
        "alertmanager",
        "restart mysqld",
    )
    tid = t["id"]

    code, body, _ = a.request("POST", f"/api/v1/tickets/{tid}/ack", b'{"text": "on it", "by": "alice"}')
    assert code == 200 and json.loads(body)["status"] == "acknowledged"
    assert a.request("POST", f"/api/v1/tickets/{tid}/ack", b"{}")[0] == 409
    assert a.request("POST", "/api/v1/tickets/999/ack", b"{}")[0] == 404
    assert a.get("/api/v1/tickets/999")[0] == 404

    # the CLI works on the same state file while the daemon runs
    out = cli("tickets", "list", "-c", str(path), "--json")
    assert out.returncode == 0, out.stderr
    assert tid in [x["id"] for x in json.loads(out.stdout)]
    out = cli("tickets", "note", str(tid), "replaced the disk", "-c", str(path), "--by", "bob")
    assert out.returncode == 0, out.stderr
    # resolving by hand records why: no note, nothing changes
    out = cli("tickets", "resolve", str(tid), "-c", str(path))
    assert out.returncode == 2 and "the following arguments are required: --note" in out.stderr
    for body in (b"{}", b'{"text": "  "}'):
        code, reply, _ = a.request("POST", f"/api/v1/tickets/{tid}/resolve", body)
        assert code == 400 and b"the cause and what was done" in reply
    assert json.loads(a.get(f"/api/v1/tickets/{tid}")[1])["status"] == "acknowledged"
    out = cli("tickets", "close", str(tid), "-c", str(path))
    assert out.returncode == 0 and "closed" in out.stdout
    out = cli("tickets", "resolve", str(tid), "--note", "x", "-c", str(path))
    assert out.returncode == 1 and "already closed" in out.stderr and "Traceback" not in out.stderr
    out = cli("tickets", "show", "12345", "-c", str(path))
    assert out.returncode == 1 and "no ticket 12345" in out.stderr
    out = cli("tickets", "show", str(tid), "-c", str(path))
    assert "alice" in out.stdout and "replaced the disk" in out.stdout and "closed" in out.stdout

    # the refused delivery is a dead letter, journaled; `opsagent outbox retry` re-queues it
    out = wait_for(lambda: (o := cli("outbox", "-c", str(path))) and "dead" in o.stdout and o)
    assert out and "HTTP 400" in out.stdout
    dead_id = out.stdout.splitlines()[1].split()[0]
    out = cli("outbox", "retry", dead_id, "-c", str(path))
    assert out.returncode == 0, out.stderr
    assert wait_for(lambda: len(hook.accepted) >= 1)
    out = cli("tickets", "show", str(tid), "-c", str(path))
    assert "notify_failed" in out.stdout

    # resolved alerts resolve; metrics exported
    post(a, json.dumps(payload(instance="db-2")).encode())
    post(a, json.dumps(payload("resolved", instance="db-2", ends="2024-09-18T10:05:00Z")).encode())
    t2 = am_tickets(a, "?status=resolved")
    assert len(t2) == 1 and t2[0]["summary"] == "database down on db-2"
    _, metrics, _ = a.get("/metrics")
    text = metrics.decode()
    assert 'opsagent_tickets_open{level="P1",status="open"}' in text
    assert "opsagent_tickets_sla_breaches_total" in text and "opsagent_outbox_entries" in text

    # resolved by hand over the API: the note is the journal's record of cause and fix
    post(a, json.dumps(payload(instance="db-3")).encode())
    [t3] = [x for x in am_tickets(a) if x["instance"] == "db-3"]
    note = b'{"text": "cause: disk failed; replaced it", "by": "alice"}'
    code, reply, _ = a.request("POST", f"/api/v1/tickets/{t3['id']}/resolve", note)
    assert code == 200 and json.loads(reply)["status"] == "resolved"
    last = json.loads(a.get(f"/api/v1/tickets/{t3['id']}")[1])["journal"][-1]
    assert (last["who"], last["kind"]) == ("alice", "resolved")
    assert last["text"] == "cause: disk failed; replaced it"

    # secrets: not in the log, the store, the CLI output or any message sent
    a.stop()
    blobs = [
        a.log(),
        (tmp_path / "state.db").read_bytes().decode("latin-1"),
        out.stdout,
        json.dumps([r["body"] for r in hook.requests]),
    ]
    for wal in tmp_path.glob("state.db-*"):
        blobs.append(wal.read_bytes().decode("latin-1"))
    for blob in blobs:
        assert TOKEN not in blob and HOOK_SECRET not in blob
