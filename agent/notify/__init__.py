"""Notifiers: e-mail, generic JSON webhook, DingTalk, WeCom and Feishu robots.

A notifier delivers one rendered message (a ``dict`` made by
:mod:`agent.notify.templates`, stored in the outbox) with its idempotency
key, and raises :class:`DeliveryError` saying whether to retry. Network
clients are imported inside the modules that use them. Error texts never
contain a URL or a credential: robot URLs carry their tokens.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# Robots of DingTalk and WeCom accept 20 messages a minute (DingTalk then
# throttles for 10 minutes); the others are not limited unless configured.
DEFAULT_RATE_LIMITS: Mapping[str, int] = {
    "dingtalk": 20,
    "wecom": 20,
    "feishu": 100,
    "email": 0,
    "webhook": 0,
}
KINDS = ("email", "webhook", "dingtalk", "wecom", "feishu")


class DeliveryError(Exception):
    """A delivery failed; ``retry`` says whether trying again later can help."""

    def __init__(self, reason: str, retry: bool):
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


class Notifier(Protocol):
    """One configured channel."""

    name: str
    kind: str
    rate_limit: int
    rate_window: float
    digest_items: int

    def send(self, message: Mapping[str, Any], key: str) -> None: ...


@dataclass(frozen=True)
class Channel:
    """What every notifier shares: name, rate limit and digest size."""

    name: str
    kind: str
    rate_limit: int
    rate_window: float
    digest_items: int
    timeout: float


def channel_of(name: str, cfg: Any) -> Channel:
    """The common settings of a notifier config (a ``NotifierConfig``)."""
    limit = cfg.rate_limit if cfg.rate_limit >= 0 else DEFAULT_RATE_LIMITS.get(cfg.type, 0)
    return Channel(
        name, cfg.type, limit, float(cfg.rate_window), max(1, cfg.digest_items), float(cfg.timeout)
    )


def build_notifier(name: str, cfg: Any) -> Notifier:
    """Instantiate the notifier of ``cfg.type`` (its module is imported only now)."""
    mod = importlib.import_module(f"agent.notify.{cfg.type}")
    notifier: Notifier = mod.build(channel_of(name, cfg), cfg)
    return notifier


def build_notifiers(configs: Mapping[str, Any]) -> dict[str, Notifier]:
    """All enabled notifiers by name."""
    return {name: build_notifier(name, c) for name, c in configs.items() if c.enabled}


def classify_http(status: int, reply: bytes = b"") -> DeliveryError:
    """Retry on 429 and 5xx (the receiver may recover), not on other 4xx (it never will).

    The start of the receiver's reply is kept in the reason (one line, at most
    ``REPLY_EXCERPT`` characters): a dead letter should say *why* it was
    refused ("invalid field ticket"), not only the status.
    """
    retry = status == 429 or status >= 500
    text = " ".join(reply.decode("utf-8", "replace").split())
    if len(text) > REPLY_EXCERPT:
        text = text[: REPLY_EXCERPT - 3] + "..."
    return DeliveryError(f"HTTP {status}: {text}" if text else f"HTTP {status}", retry=retry)


REPLY_EXCERPT = 200


# what can turn plain text into a link, image, emphasis, heading, table or code
_MD_SPECIAL = frozenset("\\`*_[]#!|")
_MD_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}


def markdown_text(text: str) -> str:
    """Plain text made inert for a markdown robot: markup characters escaped, tags as entities.

    Summaries and evidence carry label values and log lines from the watched
    system; in DingTalk or WeCom markdown they must show as written, never
    become a link, an image, a mention or a heading.
    """
    out: list[str] = []
    for ch in text:
        if ch in _MD_ENTITIES:
            out.append(_MD_ENTITIES[ch])
        elif ch in _MD_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)
