"""What rules say: alerts with a level, and their fingerprints."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

AlertState = Literal["inactive", "pending", "firing", "resolved"]

# Order of fault levels, worst first (SPEC §2); configurable names map onto these.
LEVELS = ("P1", "P2", "P3", "P4")

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_SEP = 0xFF


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's label-set fingerprint: FNV-1a 64 over sorted names and values, as 16 hex digits.

    Matches prometheus/common model.LabelSet.Fingerprint(), so tickets opened
    from local rules and from Alertmanager webhooks agree on identity.
    """
    if not labels:
        return f"{_FNV_OFFSET:016x}"
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name.encode(), bytes([_SEP]), labels[name].encode(), bytes([_SEP])):
            for b in part:
                h ^= b
                h = (h * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


# Labels that classify an alert but do not name it: a disk going from 90 % to
# 96 % full is the same problem at a worse level, so the same ticket.
NON_IDENTIFYING = frozenset({"level"})


def identity(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels that identify an alert: all but ``level``."""
    return {k: v for k, v in labels.items() if k not in NON_IDENTIFYING}


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert instance of one rule at one evaluation.

    ``labels`` include ``alertname`` and, when the rule classifies, ``level``
    (also in ``level``). ``annotations`` are exactly what Prometheus would
    render for the rule (every key, ``summary_zh`` included), so promtool
    tests compare them unchanged; ``annotations_i18n`` maps a language tag
    (``en``, ``zh-CN``) to ``summary``/``description``/``solution``... in that
    language, falling back to English. ``flapping`` marks an alert that
    changes state too often (kept firing instead of re-fired); ``inhibited``
    marks a child whose parent alert fires (not to be ticketed).
    """

    name: str
    labels: Mapping[str, str]
    level: str | None
    value: float
    state: AlertState
    annotations: Mapping[str, str] = field(default_factory=dict)
    annotations_i18n: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    active_at: float = 0.0
    fired_at: float | None = None
    resolved_at: float | None = None
    flapping: bool = False
    inhibited: bool = False

    @property
    def fingerprint(self) -> str:
        """Identity for ticketing: Alertmanager's fingerprint of the labels without ``level``."""
        return fingerprint(identity(self.labels))

    def annotation(self, key: str, language: str = "en") -> str:
        """One annotation in ``language``, falling back to English, then to the raw key."""
        for lang in (language, "en"):
            text = self.annotations_i18n.get(lang, {}).get(key)
            if text:
                return text
        return self.annotations.get(key, "")
