"""POST JSON with an idempotency key; failures classified for the outbox.

Also the base of the notifiers that deliver that way (webhook, DingTalk,
WeCom, Feishu): they differ only in the body, the signing and where the
reply carries its error code.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from agent.notify import Channel, DeliveryError, classify_http

USER_AGENT = "opsagent"


def post_json(
    url: str, body: Mapping[str, Any], key: str, timeout: float, headers: Mapping[str, str] | None = None
) -> Any:
    """POST ``body``; return the decoded JSON reply (None if not JSON).

    Timeouts and connection errors are retried, as are 429 and 5xx; the URL
    never appears in an error (robot URLs carry tokens).
    """
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    req = urllib.request.Request(url, data=data, method="POST")
    req.add_header("Content-Type", "application/json; charset=utf-8")
    req.add_header("User-Agent", USER_AGENT)
    req.add_header("Idempotency-Key", key)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read(1 << 20)
    except urllib.error.HTTPError as e:
        try:
            reply = e.read(1024)
        except (OSError, http.client.HTTPException):
            reply = b""
        raise classify_http(e.code, reply) from None
    except TimeoutError:
        raise DeliveryError("timed out", retry=True) from None
    except urllib.error.URLError as e:
        r = e.reason
        reason = r.strerror if isinstance(r, OSError) and r.strerror else type(r).__name__
        if isinstance(r, TimeoutError):
            reason = "timed out"
        raise DeliveryError(f"connection failed: {reason}", retry=True) from None
    except (ConnectionError, OSError) as e:
        raise DeliveryError(f"connection failed: {e.strerror or type(e).__name__}", retry=True) from None
    except (ValueError, http.client.InvalidURL):  # their texts quote the URL: never repeat it
        raise DeliveryError("invalid URL (check the notifier's url)", retry=False) from None
    except http.client.HTTPException as e:  # a garbled or cut reply: the receiver may recover
        raise DeliveryError(f"bad HTTP reply: {type(e).__name__}", retry=True) from None
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def reply_code(reply: Any, fields: tuple[str, ...]) -> Any:
    """The first of ``fields`` present in a JSON object reply (0 when none is, or not an object)."""
    if isinstance(reply, dict):
        for f in fields:
            if f in reply:
                return reply[f]
    return 0


class JsonNotifier:
    """A channel that POSTs one JSON document per message to a URL.

    The plain form is the generic webhook: the message as JSON plus its key.
    Robots override :meth:`body` (and :meth:`target_url` to sign in the URL);
    a reply with a non-zero code in one of ``code_fields`` is a failure named
    ``error_name``, worth retrying when the code is in ``throttled``.
    """

    error_name = "webhook code"
    code_fields: tuple[str, ...] = ()
    throttled: frozenset[int] = frozenset()

    def __init__(self, channel: Channel, url: str, secret: str = "", clock: Callable[[], float] = time.time):
        self.name, self.kind = channel.name, channel.kind
        self.rate_limit, self.rate_window = channel.rate_limit, channel.rate_window
        self.digest_items, self.timeout = channel.digest_items, channel.timeout
        self._url, self._secret, self._clock = url, secret, clock

    @classmethod
    def from_config(cls, channel: Channel, cfg: Any) -> JsonNotifier:
        """Built from a ``NotifierConfig``: its URL and (where the kind signs) its secret."""
        secret = cfg.secret.reveal() if getattr(cfg, "secret", None) else ""
        return cls(channel, cfg.url.reveal(), secret)

    def body(self, message: Mapping[str, Any], key: str) -> dict[str, Any]:
        """The JSON document posted for ``message``."""
        return {"key": key, **message}

    def target_url(self) -> str:
        """Where to post (robots that sign in the query string add the signature here)."""
        return self._url

    def send(self, message: Mapping[str, Any], key: str) -> None:
        """Post ``message``; raise :class:`DeliveryError` on failure or an error code in the reply."""
        reply = post_json(self.target_url(), self.body(message, key), key, self.timeout)
        code = reply_code(reply, self.code_fields)
        if code:
            raise DeliveryError(f"{self.error_name} {code}", retry=code in self.throttled)
