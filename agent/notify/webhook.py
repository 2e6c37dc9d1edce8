"""Generic JSON webhook: the rendered message as JSON, with an ``Idempotency-Key`` header."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.notify import Channel
from agent.notify.http import post_json


class WebhookNotifier:
    """POSTs ``{"key", "event", "ticket", "level", "title", "text", ...}`` to a URL."""

    def __init__(self, channel: Channel, url: str):
        self.name, self.kind = channel.name, channel.kind
        self.rate_limit, self.rate_window = channel.rate_limit, channel.rate_window
        self.digest_items, self.timeout = channel.digest_items, channel.timeout
        self._url = url

    def send(self, message: Mapping[str, Any], key: str) -> None:
        post_json(self._url, {"key": key, **message}, key, self.timeout)


def build(channel: Channel, cfg: Any) -> WebhookNotifier:
    return WebhookNotifier(channel, cfg.url.reveal())
