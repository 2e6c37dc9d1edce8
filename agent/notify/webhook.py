"""Generic JSON webhook: the rendered message as JSON, with an ``Idempotency-Key`` header."""

from __future__ import annotations

from typing import Any

from agent.notify import Channel
from agent.notify.http import JsonNotifier


class WebhookNotifier(JsonNotifier):
    """POSTs ``{"key", "event", "ticket", "level", "title", "text", ...}`` to a URL."""


def build(channel: Channel, cfg: Any) -> JsonNotifier:
    return WebhookNotifier.from_config(channel, cfg)
