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


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert instance of one rule at one evaluation.

    ``labels`` include ``alertname`` and, for levelled rules, ``level``;
    ``annotations`` are rendered in the default language, ``annotations_i18n``
    maps a language tag (``zh-CN``, ``en``) to that language's annotations.
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
        return fingerprint(self.labels)
