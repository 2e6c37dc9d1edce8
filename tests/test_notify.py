"""Notifiers against real receivers on loopback: SMTP (STARTTLS + AUTH, implicit TLS), DingTalk and
Feishu signature checks, WeCom and webhook payloads, zh-CN/en templates."""

import base64
import hashlib
import hmac
import socket
import ssl
import time
from types import SimpleNamespace

import pytest

from agent.notify import DeliveryError, build_notifier
from agent.notify.templates import render
from collector.schema import Duration, Secret
from tests.loopback import free_port, loopback_cert

MSG = {
    "event": "opened",
    "lang": "zh-CN",
    "ticket": 7,
    "level": "P1",
    "title": "【P1】工单 #7 已创建：数据库宕机",
    "text": "级别：P1（紧急）\n实例：db-1",
}


def cfg(type, **kw):
    base = dict(
        type=type,
        enabled=True,
        url=None,
        secret=None,
        host="",
        port=0,
        security="starttls",
        username="",
        password=None,
        sender="",
        to=(),
        ca_file=None,
        rate_limit=-1,
        rate_window=Duration(60),
        digest_items=20,
        timeout=Duration(5),
    )
    base.update(kw)
    return SimpleNamespace(**base)


def test_dingtalk_signature_verified_by_receiver(receiver_factory):
    secret = "SEC0123456789abcdef"

    def verify(req):
        ts = req["query"].get("timestamp", "")
        expect = base64.b64encode(
            hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
        )
        if req["query"].get("sign") != expect.decode():  # parse_qsl already url-decoded it
            return "sign not match"
        if abs(int(ts) / 1000 - time.time()) > 3600:
            return "timestamp expired"
        return None

    r = receiver_factory(check=verify)
    n = build_notifier(
        "ding", cfg("dingtalk", url=Secret(f"{r.url}/robot/send?access_token=tok"), secret=Secret(secret))
    )
    n.send(MSG, "k1")
    body = r.accepted["k1"]
    assert body["msgtype"] == "markdown" and "数据库宕机" in body["markdown"]["text"]
    assert r.requests[0]["query"]["access_token"] == "tok"
    assert n.rate_limit == 20

    bad = build_notifier(
        "ding", cfg("dingtalk", url=Secret(f"{r.url}/robot/send?access_token=tok"), secret=Secret("SECwrong"))
    )
    with pytest.raises(DeliveryError) as e:
        bad.send(MSG, "k2")
    assert not e.value.retry and "310000" in e.value.reason
    assert "tok" not in e.value.reason and "SEC" not in e.value.reason


def test_feishu_signature_verified_by_receiver(receiver_factory):
    secret = "feishu-secret"

    def verify(req):
        b = req["body"]
        key = f"{b.get('timestamp')}\n{secret}".encode()
        expect = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        return None if b.get("sign") == expect else "sign match fail"

    r = receiver_factory(check=verify)
    n = build_notifier(
        "fs", cfg("feishu", url=Secret(f"{r.url}/open-apis/bot/v2/hook/abc"), secret=Secret(secret))
    )
    n.send(MSG, "k1")
    assert r.accepted["k1"]["msg_type"] == "text"
    assert "数据库宕机" in r.accepted["k1"]["content"]["text"]
    bad = build_notifier(
        "fs", cfg("feishu", url=Secret(f"{r.url}/open-apis/bot/v2/hook/abc"), secret=Secret("x"))
    )
    with pytest.raises(DeliveryError) as e:
        bad.send(MSG, "k2")
    assert not e.value.retry


def test_wecom_and_webhook_payloads_carry_idempotency_key(receiver_factory):
    r = receiver_factory()
    build_notifier("wc", cfg("wecom", url=Secret(f"{r.url}/cgi-bin/webhook/send?key=K"))).send(
        {**MSG, "mentions": ["13800000000"]}, "w1"
    )
    build_notifier("wh", cfg("webhook", url=Secret(f"{r.url}/hook"))).send(MSG, "h1")
    assert r.accepted["w1"]["msgtype"] == "markdown"
    assert "<@13800000000>" in r.accepted["w1"]["markdown"]["content"]
    assert r.accepted["h1"]["key"] == "h1" and r.accepted["h1"]["ticket"] == 7


@pytest.mark.parametrize(
    ("status", "retry"), [(503, True), (429, True), (500, True), (404, False), (400, False)]
)
def test_http_failures_are_classified(receiver_factory, status, retry):
    r = receiver_factory(statuses=[status])
    with pytest.raises(DeliveryError) as e:
        build_notifier("wh", cfg("webhook", url=Secret(f"{r.url}/hook"))).send(MSG, "x")
    assert e.value.retry is retry


def test_a_url_python_refuses_is_a_dead_letter_that_does_not_quote_it():
    notifier = build_notifier("wh", cfg("webhook", url=Secret("http://127.0.0.1:9/hook?token=S3CRET x")))
    with pytest.raises(DeliveryError) as e:
        notifier.send(MSG, "x")
    assert not e.value.retry and "invalid URL" in e.value.reason and "S3CRET" not in e.value.reason


def test_connection_refused_and_timeout_are_retried(receiver_factory):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(DeliveryError) as e:
        build_notifier("wh", cfg("webhook", url=Secret(f"http://127.0.0.1:{port}/x"))).send(MSG, "x")
    assert e.value.retry
    slow = receiver_factory(delay=1.0)
    with pytest.raises(DeliveryError) as e:
        build_notifier("wh", cfg("webhook", url=Secret(f"{slow.url}/x"), timeout=Duration(0.3))).send(
            MSG, "x"
        )
    assert e.value.retry and "timed out" in e.value.reason


# ---------------------------------------------------------------- SMTP


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return loopback_cert(tmp_path_factory.mktemp("tls"))


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
        return "250 OK"


def smtp_server(tls_files, implicit=False, password="s3cret-pw"):
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    cert, key = tls_files
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    def auth(server, session, envelope, mechanism, data):
        ok = data.login == b"opsagent" and data.password == password.encode()
        return AuthResult(success=ok)

    inbox = Inbox()
    # with implicit TLS aiosmtpd does not count the session as TLS for AUTH; it is TLS anyway
    kw = dict(hostname="127.0.0.1", port=free_port(), authenticator=auth, auth_require_tls=not implicit)
    if implicit:
        c = Controller(inbox, ssl_context=ctx, **kw)
    else:
        c = Controller(inbox, tls_context=ctx, require_starttls=True, **kw)
    c.start()
    return c, inbox


def mail_cfg(port, tls_files, security="starttls", password="s3cret-pw"):
    return cfg(
        "email",
        host="127.0.0.1",
        port=port,
        security=security,
        username="opsagent",
        password=Secret(password),
        sender="opsagent@example.com",
        to=("ops@example.com",),
        ca_file=tls_files[0],
    )


def test_email_starttls_auth_delivers_utf8_mail(tls_files):
    c, inbox = smtp_server(tls_files)
    try:
        n = build_notifier("mail", mail_cfg(c.port, tls_files))
        n.send(MSG, "t7-j1")
        n.send({**MSG, "to": ["m1@example.com"]}, "t7-j2")
    finally:
        c.stop()
    (frm, rcpt, content), (_, rcpt2, _) = inbox.messages
    assert frm == "opsagent@example.com" and rcpt == ["ops@example.com"] and rcpt2 == ["m1@example.com"]
    import email
    import email.policy

    m = email.message_from_bytes(content, policy=email.policy.default)
    assert m["Message-ID"] == "<t7-j1@opsagent>"
    assert "数据库宕机" in m["Subject"]
    assert "实例：db-1" in m.get_content()


def test_email_implicit_tls(tls_files):
    c, inbox = smtp_server(tls_files, implicit=True)
    try:
        build_notifier("mail", mail_cfg(c.port, tls_files, security="tls")).send(MSG, "k")
    finally:
        c.stop()
    assert len(inbox.messages) == 1


def test_email_wrong_password_fails_and_never_shows_the_password(tls_files):
    c, inbox = smtp_server(tls_files)
    try:
        with pytest.raises(DeliveryError) as e:
            build_notifier("mail", mail_cfg(c.port, tls_files, password="wrong-pw-123")).send(MSG, "k")
    finally:
        c.stop()
    # aiosmtpd answers 535 then drops the connection when smtplib tries the next mechanism,
    # so the failure may read as a disconnect; either way the password never shows
    assert "authentication" in e.value.reason or "Disconnected" in e.value.reason
    assert "wrong-pw-123" not in e.value.reason
    assert inbox.messages == []


def test_messages_leave_out_lines_of_empty_fields():
    fields = {"id": 3, "level": "P3", "summary": "disk full", "instance": "h", "rule": "DiskFull",
              "description": "", "solution": "", "respond_due": "09:00", "restore_due": "-",
              "resolve_due": "10:00"}
    _, en = render("opened", "en", fields)
    assert "Solution" not in en and "\n\n" not in en and "Respond by: 09:00" in en
    _, zh = render("opened", "zh-CN", {**fields, "solution": "清理 /var/log"})
    assert "处理建议：清理 /var/log" in zh and "\n\n" not in zh
    _, resolved = render("resolved", "en", {**fields, "at": "10:05", "note": ""})
    assert resolved == "Recovered at 10:05."


def test_templates_in_both_languages_evaluate_nothing():
    fields = {"id": 3, "level": "P2", "summary": "${__import__('os')} {0.__class__}", "instance": "h"}
    t_en, _ = render("opened", "en", fields)
    t_zh, body_zh = render("opened", "zh-CN", fields)
    assert t_en == "[P2] Ticket #3 opened: ${__import__('os')} {0.__class__}"
    assert t_zh.startswith("【P2】工单 #3 已创建") and "严重" in body_zh


def test_markdown_robots_show_hostile_text_as_written_not_as_markup(receiver_factory):
    # a label value or log line from the watched system must not become a link, image or heading
    r = receiver_factory()
    hostile = {**MSG, "title": "disk [click](http://evil.example) <b>x</b>",
               "text": "![img](http://evil.example/i.png)\n# fake heading | a | b |"}
    ding = cfg("dingtalk", url=Secret(f"{r.url}/robot/send?access_token=t"))
    build_notifier("ding", ding).send(hostile, "d1")
    build_notifier("wc", cfg("wecom", url=Secret(f"{r.url}/cgi-bin/webhook/send?key=K"))).send(hostile, "w1")
    for text in (r.accepted["d1"]["markdown"]["text"], r.accepted["w1"]["markdown"]["content"]):
        assert "[click](" not in text and "![img](" not in text and "<b>" not in text
        assert "\\[click\\](http://evil.example)" in text and "&lt;b&gt;" in text
        assert "\n\\# fake heading \\| a" in text


def test_a_refusal_keeps_the_start_of_the_reply_on_one_line(receiver_factory):
    html = b"<html>\n<head><title>413 Too Large</title></head>\n" + b"x" * 500 + b"</html>"
    r = receiver_factory(statuses=[413], error_body=html)
    with pytest.raises(DeliveryError) as e:
        build_notifier("wh", cfg("webhook", url=Secret(f"{r.url}/hook"))).send(MSG, "x")
    assert e.value.reason.startswith("HTTP 413: <html> <head><title>413 Too Large</title>")
    assert "\n" not in e.value.reason and len(e.value.reason) <= len("HTTP 413: ") + 200
    assert not e.value.retry
