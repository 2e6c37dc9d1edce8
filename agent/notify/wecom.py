"""WeCom (企业微信) group robot: markdown messages; the key in the URL is the secret."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.notify import Channel, DeliveryError
from agent.notify.http import post_json

_MAX_BYTES = 4096  # markdown content limit
_THROTTLED = {45009}


class WeComNotifier:
    """Posts ``{"msgtype": "markdown", "markdown": {"content": ...}}``."""

    def __init__(self, channel: Channel, url: str):
        self.name, self.kind = channel.name, channel.kind
        self.rate_limit, self.rate_window = channel.rate_limit, channel.rate_window
        self.digest_items, self.timeout = channel.digest_items, channel.timeout
        self._url = url

    def body(self, message: Mapping[str, Any]) -> dict[str, Any]:
        content = f"**{message.get('title', '')}**\n{message.get('text', '')}"
        mentions = " ".join(f"<@{m}>" for m in message.get("mentions", ()))
        if mentions:
            content += "\n" + mentions
        raw = content.encode("utf-8")
        if len(raw) > _MAX_BYTES:
            content = raw[: _MAX_BYTES - 3].decode("utf-8", "ignore") + "..."
        return {"msgtype": "markdown", "markdown": {"content": content}}

    def send(self, message: Mapping[str, Any], key: str) -> None:
        reply = post_json(self._url, self.body(message), key, self.timeout)
        code = reply.get("errcode", 0) if isinstance(reply, dict) else 0
        if code:
            raise DeliveryError(f"WeCom errcode {code}", retry=code in _THROTTLED)


def build(channel: Channel, cfg: Any) -> WeComNotifier:
    return WeComNotifier(channel, cfg.url.reveal())
