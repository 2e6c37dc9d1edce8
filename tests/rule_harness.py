"""Run collector samples through a default rule pack, as the agent would (for collector tests)."""

from __future__ import annotations

from collections.abc import Sequence

from collector.model import Sample
from rules.model import Alert


def firing(pack: str, rounds: Sequence[Sequence[Sample]], start: float, step: float = 60.0,
           instance: str = "host1") -> dict[str, list[Alert]]:
    """Feed one collection per round (the last repeated until 3 rounds) into ``rules/packs/<pack>``.

    Returns the firing, not inhibited alerts of the last evaluation, by alert name.
    """
    from rules.evaluator import RuleEvaluator
    from rules.history import History
    from rules.loader import PACKS_DIR, load_files

    ev = RuleEvaluator(load_files([PACKS_DIR / pack]))
    history = History()
    alerts: list[Alert] = []
    rounds = list(rounds) + [rounds[-1]] * max(0, 3 - len(rounds))
    for i, samples in enumerate(rounds):
        now = start + i * step
        labelled = [Sample(s.name, {**s.labels, "instance": instance}, s.value) for s in samples]
        history.append(labelled, now, pack)
        alerts = ev.evaluate(history, now)
    out: dict[str, list[Alert]] = {}
    for a in alerts:
        if a.state == "firing" and not a.inhibited:
            out.setdefault(a.name, []).append(a)
    return out
