"""WeCom (企业微信) group robot: markdown messages; the key in the URL is the secret."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.notify import Channel, markdown_text
from agent.notify.http import JsonNotifier

_MAX_BYTES = 4096  # markdown content limit


class WeComNotifier(JsonNotifier):
    """Posts ``{"msgtype": "markdown", "markdown": {"content": ...}}``."""

    error_name = "WeCom errcode"
    code_fields = ("errcode",)
    throttled = frozenset({45009})

    def body(self, message: Mapping[str, Any], key: str) -> dict[str, Any]:
        title = markdown_text(str(message.get("title", "")))
        text = markdown_text(str(message.get("text", "")))
        content = f"**{title}**\n{text}"
        mentions = " ".join(f"<@{m}>" for m in message.get("mentions", ()))
        if mentions:
            content += "\n" + mentions
        raw = content.encode("utf-8")
        if len(raw) > _MAX_BYTES:
            content = raw[: _MAX_BYTES - 3].decode("utf-8", "ignore") + "..."
        return {"msgtype": "markdown", "markdown": {"content": content}}


def build(channel: Channel, cfg: Any) -> JsonNotifier:
    return WeComNotifier.from_config(channel, cfg)
