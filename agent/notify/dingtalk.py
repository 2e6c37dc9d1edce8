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
from collections.abc import Mapping
from typing import Any

from agent.notify import Channel, markdown_text
from agent.notify.http import JsonNotifier


def sign(secret: str, timestamp_ms: int) -> str:
    """The URL-encoded ``sign`` parameter for ``timestamp_ms``."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest))


class DingTalkNotifier(JsonNotifier):
    """Posts ``{"msgtype": "markdown", ...}`` to one robot."""

    error_name = "DingTalk errcode"
    code_fields = ("errcode",)
    # errcode of a robot over its rate limit: worth retrying later
    throttled = frozenset({130101, 410100})

    def body(self, message: Mapping[str, Any], key: str) -> dict[str, Any]:
        title = markdown_text(str(message.get("title", "")))
        body = markdown_text(str(message.get("text", "")))
        text = f"### {title}\n\n{body}"
        mobiles = list(message.get("mentions", ()))
        if mobiles:
            text += "\n\n" + " ".join(f"@{m}" for m in mobiles)
        return {
            "msgtype": "markdown",
            "markdown": {"title": str(message.get("title", ""))[:64], "text": text},
            "at": {"atMobiles": mobiles, "isAtAll": False},
        }

    def target_url(self) -> str:
        if not self._secret:
            return self._url
        ts = int(self._clock() * 1000)
        sep = "&" if "?" in self._url else "?"
        return f"{self._url}{sep}timestamp={ts}&sign={sign(self._secret, ts)}"


def build(channel: Channel, cfg: Any) -> JsonNotifier:
    return DingTalkNotifier.from_config(channel, cfg)
