"""Feishu / Lark custom bot: text messages, optionally signed.

Signing, as Feishu documents it (unlike DingTalk): the HMAC-SHA256 *key* is
``timestamp + "\\n" + secret`` and the message is empty; ``timestamp`` is in
seconds; ``timestamp`` and ``sign`` (base64) go into the JSON body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from agent.notify import Channel
from agent.notify.http import JsonNotifier


def sign(secret: str, timestamp_s: int) -> str:
    """The body's ``sign`` field for ``timestamp_s``."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class FeishuNotifier(JsonNotifier):
    """Posts ``{"msg_type": "text", "content": {"text": ...}}``."""

    error_name = "Feishu code"
    code_fields = ("code", "StatusCode")
    throttled = frozenset({11232})

    def body(self, message: Mapping[str, Any], key: str) -> dict[str, Any]:
        text = f"{message.get('title', '')}\n{message.get('text', '')}"
        body: dict[str, Any] = {"msg_type": "text", "content": {"text": text}}
        if self._secret:
            ts = int(self._clock())
            body = {"timestamp": str(ts), "sign": sign(self._secret, ts), **body}
        return body


def build(channel: Channel, cfg: Any) -> JsonNotifier:
    return FeishuNotifier.from_config(channel, cfg)
