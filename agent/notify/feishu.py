"""Feishu / Lark custom bot: text messages, optionally signed.

Signing, as Feishu documents it (unlike DingTalk): the HMAC-SHA256 *key* is
``timestamp + "\\n" + secret`` and the message is empty; ``timestamp`` is in
seconds; ``timestamp`` and ``sign`` (base64) go into the JSON body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Any

from agent.notify import Channel, DeliveryError
from agent.notify.http import post_json

_THROTTLED = {11232}


def sign(secret: str, timestamp_s: int) -> str:
    """The body's ``sign`` field for ``timestamp_s``."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class FeishuNotifier:
    """Posts ``{"msg_type": "text", "content": {"text": ...}}``."""

    def __init__(self, channel: Channel, url: str, secret: str, clock: Callable[[], float]):
        self.name, self.kind = channel.name, channel.kind
        self.rate_limit, self.rate_window = channel.rate_limit, channel.rate_window
        self.digest_items, self.timeout = channel.digest_items, channel.timeout
        self._url, self._secret, self._clock = url, secret, clock

    def body(self, message: Mapping[str, Any]) -> dict[str, Any]:
        text = f"{message.get('title', '')}\n{message.get('text', '')}"
        body: dict[str, Any] = {"msg_type": "text", "content": {"text": text}}
        if self._secret:
            ts = int(self._clock())
            body = {"timestamp": str(ts), "sign": sign(self._secret, ts), **body}
        return body

    def send(self, message: Mapping[str, Any], key: str) -> None:
        reply = post_json(self._url, self.body(message), key, self.timeout)
        code = reply.get("code", reply.get("StatusCode", 0)) if isinstance(reply, dict) else 0
        if code:
            raise DeliveryError(f"Feishu code {code}", retry=code in _THROTTLED)


def build(channel: Channel, cfg: Any) -> FeishuNotifier:
    import time

    secret = cfg.secret.reveal() if cfg.secret else ""
    return FeishuNotifier(channel, cfg.url.reveal(), secret, time.time)
