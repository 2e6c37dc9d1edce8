"""HTTP side of ticketing: the Alertmanager webhook receiver and the tickets API.

``POST /api/v1/alertmanager`` accepts Alertmanager's webhook payload
(version 4) and runs its alerts through the same lifecycle as the local
rules, so a fleet whose rules run in Prometheus gets the same tickets, SLA
and escalation. It needs ``Authorization: Bearer <tickets.receiver_token>``
(or an authenticated basic-auth user when ``web.basic_auth_users`` is set).
A malformed payload is answered 400 with the reason and changes nothing.

``GET /api/v1/tickets[?status=&level=]``, ``GET /api/v1/tickets/{id}``,
``POST /api/v1/tickets/{id}/ack|note|resolve|close`` (JSON body
``{"text": "...", "by": "..."}``; ``text`` is required to resolve: the
cause and what was done): 404 for an unknown id, 409 for an illegal
transition, 400 for a missing note. They answer loopback clients, or basic-auth users when
``web.basic_auth_users`` is set (tickets carry log lines as evidence).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent.errors import UserError
from agent.exporter import Request, Response, Route
from agent.tickets import AlertEvent, IllegalTransition, TicketBook, TicketNotFound, identity, level_of

JSON = "application/json; charset=utf-8"
_ZERO_TIME = "0001-01-01T00:00:00Z"


class PayloadError(ValueError):
    """The webhook payload is not what Alertmanager sends; the message says where."""


def _time(text: Any, where: str) -> float:
    if not text or text == _ZERO_TIME:
        return 0.0
    if not isinstance(text, str):
        raise PayloadError(f"{where}: must be an RFC 3339 time string")
    try:
        # Python 3.11 accepts "Z" and fractional seconds up to microseconds
        s = text
        if "." in s:  # Go writes nanoseconds; keep microseconds
            head, _, rest = s.partition(".")
            n = len(rest) - len(rest.lstrip("0123456789"))
            s = f"{head}.{rest[: min(n, 6)]}{rest[n:]}"
        return dt.datetime.fromisoformat(s).timestamp()
    except ValueError:
        raise PayloadError(f"{where}: invalid RFC 3339 time {text!r}") from None


def _strings(v: Any, where: str) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise PayloadError(f"{where}: must be an object of strings")
    return dict(v)


def parse_alertmanager(body: bytes, now: float, ignore: Sequence[str] = ("level",)) -> list[AlertEvent]:
    """Events from an Alertmanager webhook payload (version 4); PayloadError if malformed."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise PayloadError(f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise PayloadError("payload must be a JSON object")
    if str(doc.get("version", "")) != "4":
        raise PayloadError(f'unsupported payload version {doc.get("version")!r} (expected "4")')
    alerts = doc.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("alerts: must be a list")
    out: list[AlertEvent] = []
    for i, a in enumerate(alerts):
        where = f"alerts[{i}]"
        if not isinstance(a, dict):
            raise PayloadError(f"{where}: must be an object")
        status = a.get("status")
        if status not in ("firing", "resolved"):
            raise PayloadError(f"{where}.status: must be firing or resolved; got {status!r}")
        labels = _strings(a.get("labels"), f"{where}.labels")
        if not labels.get("alertname"):
            raise PayloadError(f"{where}.labels: alertname is missing")
        annotations = _strings(a.get("annotations"), f"{where}.annotations")
        starts = _time(a.get("startsAt"), f"{where}.startsAt")
        ends = _time(a.get("endsAt"), f"{where}.endsAt")
        at = ends if status == "resolved" and ends else now
        out.append(
            AlertEvent(
                identity(labels, ignore),
                labels["alertname"],
                level_of(labels),
                status,
                labels,
                annotations,
                starts,
                at,
                "alertmanager",
            )
        )
    return out


def _json(status: int, doc: Any) -> Response:
    return Response(status, (json.dumps(doc, ensure_ascii=False, default=str) + "\n").encode(), JSON)


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message})


class TicketApi:
    """The routes; ``apply`` runs events through the lifecycle (and wakes the outbox)."""

    def __init__(
        self,
        book: TicketBook,
        token: str | None,
        clock: Callable[[], float],
        apply: Callable[[list[AlertEvent], float], Any] | None = None,
        ignore: Sequence[str] = ("level",),
    ):
        self.book, self._token, self.clock = book, token, clock
        self.apply = apply or book.apply
        self.ignore = tuple(ignore)

    def routes(self) -> list[Route]:
        """The receiver and the tickets API.

        The receiver checks its own bearer token, so it is not a ``write``
        route: Alertmanager usually runs on another host, which the exporter
        refuses on write routes when no basic-auth users are set. The tickets
        API, reads included (summaries, labels and evidence from logs), is
        protected like write routes: loopback clients, or basic-auth users.
        """
        return [
            Route("POST", "/api/v1/alertmanager", self.alertmanager),
            Route("GET", "/api/v1/tickets", self.list_tickets, write=True),
            Route("GET", "/api/v1/tickets/*", self.show, write=True),
            Route("POST", "/api/v1/tickets/*", self.act, write=True),
        ]

    def _authorized(self, req: Request) -> bool:
        if req.user is not None:
            return True
        if not self._token:
            return False
        import hmac  # here, not at import: hmac loads libcrypto (3.5 MB) into every daemon

        header = req.headers.get("Authorization") or ""
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self._token.encode()
        )

    def alertmanager(self, req: Request) -> Response:
        if not self._authorized(req):
            why = (
                "bearer token required"
                if self._token
                else "set tickets.receiver_token to enable the receiver"
            )
            return Response(401, f"unauthorized: {why}\n".encode(), headers={"WWW-Authenticate": "Bearer"})
        now = self.clock()
        try:
            events = parse_alertmanager(req.body, now, self.ignore)
        except PayloadError as e:
            return _error(400, str(e))
        res = self.apply(events, now)
        return _json(200, {"status": "ok", "alerts": len(events), **getattr(res, "__dict__", {})})

    def list_tickets(self, req: Request) -> Response:
        q: Mapping[str, str] = req.query
        status = [s for s in q.get("status", "").split(",") if s]
        level = [s for s in q.get("level", "").split(",") if s]
        return _json(200, {"tickets": self.book.list_tickets(status, level)})

    def _id(self, part: str) -> int | None:
        return int(part) if part.isdigit() else None

    def show(self, req: Request) -> Response:
        rest = req.path.removeprefix("/api/v1/tickets/").strip("/")
        tid = self._id(rest)
        if tid is None:
            return _error(404, f"no ticket {rest!r}")
        try:
            return _json(200, self.book.get(tid))
        except TicketNotFound as e:
            return _error(404, str(e))

    def act(self, req: Request) -> Response:
        rest = req.path.removeprefix("/api/v1/tickets/").strip("/")
        ident, _, action = rest.partition("/")
        tid = self._id(ident)
        if tid is None or action not in ("ack", "note", "resolve", "close"):
            return _error(404, "use POST /api/v1/tickets/{id}/ack|note|resolve|close")
        try:
            body = json.loads(req.body) if req.body.strip() else {}
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return _error(400, 'body must be a JSON object like {"text": "..."}')
        text = str(body.get("text", ""))
        if action == "resolve" and not text.strip():
            # the problem report needs the cause and the fix; recovery resolves with its own note
            return _error(400, 'resolving needs {"text": "<the cause and what was done>"}; nothing changed')
        who = req.user or str(body.get("by") or "api")
        now = self.clock()
        try:
            if action == "ack":
                t = self.book.ack(tid, who, now, text)
            elif action == "note":
                t = self.book.note(tid, who, text, now)
            elif action == "resolve":
                t = self.book.resolve(tid, who, now, text)
            else:
                t = self.book.close(tid, who, now, text)
        except TicketNotFound as e:
            return _error(404, str(e))
        except IllegalTransition as e:
            return _error(409, str(e))
        except UserError as e:
            return _error(400, str(e))
        return _json(200, {"id": tid, "status": t["status"]})
