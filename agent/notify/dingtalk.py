"""DingTalk custom robot: markdown messages, optionally signed (HMAC-SHA256).

Signing, as DingTalk documents it: ``timestamp`` in milliseconds,
``sign = urlencode(base64(hmac_sha256(key=secret, msg=timestamp + "\\n" + secret)))``,
both appended to the webhook URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from agent.notify import Channel, DeliveryError
from agent.notify.http import post_json

# errcode of a robot over its rate limit: worth retrying later
_THROTTLED = {130101, 410100}


def sign(secret: str, timestamp_ms: int) -> str:
    """The URL-encoded ``sign`` parameter for ``timestamp_ms``."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest))


class DingTalkNotifier:
    """Posts ``{"msgtype": "markdown", ...}`` to one robot."""

    def __init__(self, channel: Channel, url: str, secret: str, clock: Callable[[], float]):
        self.name, self.kind = channel.name, channel.kind
        self.rate_limit, self.rate_window = channel.rate_limit, channel.rate_window
        self.digest_items, self.timeout = channel.digest_items, channel.timeout
        self._url, self._secret, self._clock = url, secret, clock

    def body(self, message: Mapping[str, Any]) -> dict[str, Any]:
        text = f"### {message.get('title', '')}\n\n{message.get('text', '')}"
        mobiles = list(message.get("mentions", ()))
        if mobiles:
            text += "\n\n" + " ".join(f"@{m}" for m in mobiles)
        return {
            "msgtype": "markdown",
            "markdown": {"title": str(message.get("title", ""))[:64], "text": text},
            "at": {"atMobiles": mobiles, "isAtAll": False},
        }

    def send(self, message: Mapping[str, Any], key: str) -> None:
        url = self._url
        if self._secret:
            ts = int(self._clock() * 1000)
            url += ("&" if "?" in url else "?") + f"timestamp={ts}&sign={sign(self._secret, ts)}"
        reply = post_json(url, self.body(message), key, self.timeout)
        code = reply.get("errcode", 0) if isinstance(reply, dict) else 0
        if code:
            raise DeliveryError(f"DingTalk errcode {code}", retry=code in _THROTTLED)


def build(channel: Channel, cfg: Any) -> DingTalkNotifier:
    import time

    secret = cfg.secret.reveal() if cfg.secret else ""
    return DingTalkNotifier(channel, cfg.url.reveal(), secret, time.time)
