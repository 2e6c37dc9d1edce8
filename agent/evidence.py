"""Collector evidence attached to the alerts it explains, so that a ticket carries it.

Collectors leave evidence beside the series it explains -- the log lines
that matched, a config file's masked diff, why a backup location cannot be
read, what drifted from the security baseline -- labelled with the series'
identifying labels (``file``/``pattern``, ``path``, ``job``/``kind``,
``area``, ``probe``...). The :class:`EvidenceStage` runs right after the
rules stage: it keeps the latest evidence per kind and label set for a
while (a rule with ``for: 10m`` fires after the evidence was collected)
and gives every firing alert an ``evidence`` annotation, which the ticket
book stores when it opens the ticket.

An evidence item explains an alert when the labels they share -- leaving
out the labels the alert's rule sets itself, such as ``severity`` -- are
equal, and they share at least one; the items sharing the most labels win,
then those with the fewest labels the alert lacks (so a log pattern's lines
go to that pattern's alert, and the file's unreadable-file alert gets the
reason it cannot be read, not the lines). The text is made inert here, before any ticket,
e-mail or terminal sees it: escape sequences and control characters are
shown as ``\\x1b``..., line breaks kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from agent.checks import inert
from collector.model import Evidence, Sample

# Labels of an alert that never identify the thing the evidence is about.
ALERT_ONLY = frozenset({"alertname", "level", "instance"})

MAX_ITEMS = 3  # evidence items per alert, newest first
MAX_CHARS = 16384  # of the whole annotation
MAX_KEPT = 4096  # (kind, labels) entries remembered; the oldest go first


class EvidenceBoard:
    """The latest evidence per (kind, label set), kept ``keep`` seconds."""

    def __init__(self, keep: float):
        self.keep = keep
        self.latest: dict[tuple[str, tuple[tuple[str, str], ...]], Evidence] = {}

    def add(self, evidence: Iterable[Evidence], now: float) -> None:
        """Remember ``evidence`` (newer replaces older of the same kind and labels); forget stale items."""
        for ev in evidence:
            key = (ev.kind, tuple(sorted(ev.labels.items())))
            old = self.latest.get(key)
            if old is None or ev.ts >= old.ts:
                self.latest[key] = ev
        cutoff = now - self.keep
        stale = [k for k, ev in self.latest.items() if ev.ts < cutoff]
        for k in stale:
            del self.latest[k]
        if len(self.latest) > MAX_KEPT:
            for k, _ in sorted(self.latest.items(), key=lambda kv: kv[1].ts)[: len(self.latest) - MAX_KEPT]:
                del self.latest[k]

    def explaining(self, labels: Mapping[str, str], ignore: Iterable[str] = ()) -> list[Evidence]:
        """The evidence that best explains an alert with ``labels``, newest first (see the module doc)."""
        skip = ALERT_ONLY | set(ignore)
        best: list[Evidence] = []
        score = (0, 0)
        for ev in self.latest.values():
            shared = [k for k in ev.labels if k in labels and k not in skip]
            if not shared or any(ev.labels[k] != labels[k] for k in shared):
                continue
            # most shared labels first, then fewest labels the alert does not have
            mine = (len(shared), len(shared) - len(ev.labels))
            if mine > score:
                best, score = [ev], mine
            elif mine == score:
                best.append(ev)
        return sorted(best, key=lambda ev: ev.ts, reverse=True)[:MAX_ITEMS]


def evidence_text(items: Iterable[Evidence], limit: int = MAX_CHARS) -> str:
    """The annotation: each item made inert (line breaks kept), a blank line between, cut at ``limit``."""
    text = "\n\n".join(inert(ev.text, limit, lines=True) for ev in items)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def rule_labels(ruleset: Any) -> dict[str, frozenset[str]]:
    """Alert name -> the label names its rule sets (these say nothing about the series)."""
    out: dict[str, set[str]] = {}
    for rule in getattr(ruleset, "alerting_rules", ()):
        names = set(rule.labels) | set(getattr(rule, "label_templates", {}) or {})
        out.setdefault(rule.name, set()).update(names)
    return {k: frozenset(v) for k, v in out.items()}


class EvidenceStage:
    """Cycle stage after the rules stage: firing alerts get the evidence that explains them."""

    def __init__(self, cycle: Any, rules_stage: Any, keep: float):
        self.cycle = cycle
        self.rules_stage = rules_stage
        self.board = EvidenceBoard(keep)

    def __call__(self, samples: list[Sample], now: float) -> None:
        self.board.add((ev for r in self.cycle.latest.values() for ev in r.evidence), now)
        own = rule_labels(getattr(self.rules_stage, "ruleset", None))
        alerts = []
        for a in self.rules_stage.alerts:
            if a.state == "firing" and not a.inhibited and "evidence" not in a.annotations:
                found = self.board.explaining(a.labels, own.get(a.name, ()))
                if found:
                    annotations = {**a.annotations, "evidence": evidence_text(found)}
                    a = dataclasses.replace(a, annotations=annotations)
            alerts.append(a)
        self.rules_stage.alerts = alerts


def setup(cycle: Any) -> None:
    """Add the evidence stage after the rules stage (component entry point, see agent.cycle), if rules run."""
    rules_stage = getattr(cycle, "rules_stage", None)
    if rules_stage is None or rules_stage not in cycle.stages:
        return
    keep = max(float(cycle.config.rules.history), 3600.0)
    cycle.add_stage(EvidenceStage(cycle, rules_stage, keep))
