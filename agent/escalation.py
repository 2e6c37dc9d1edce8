"""The escalation ladder (SPEC §4): who is told, how long after a ticket opened.

Pure: given a ticket's level, when its clocks started, how far up the ladder
it already is and whether it was acknowledged or resolved, say which steps
are due now. The ticket lifecycle records each step in the journal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

HOUR = 3600.0


@dataclass(frozen=True)
class Step:
    """One rung: at ``after`` seconds, tell ``notify`` (contact or group names).

    ``unless`` names the ticket states that cancel the step (``acknowledged``,
    ``resolved``); a vendor case usually still goes out after an ack.
    """

    after: float
    notify: tuple[str, ...]
    unless: frozenset[str] = field(default_factory=lambda: frozenset({"acknowledged", "resolved"}))
    vendor_case: bool = False


def _step(hours: float, *who: str, vendor: bool = False) -> Step:
    unless = frozenset({"resolved"}) if vendor else frozenset({"acknowledged", "resolved"})
    return Step(hours * HOUR, tuple(who), unless, vendor)


DEFAULT_LADDER: Mapping[str, tuple[Step, ...]] = {
    "P1": (
        Step(600.0, ("manager1", "senior_engineers")),
        _step(1, "manager2"),
        _step(4, "vendor", vendor=True),
        _step(24, "manager3"),
    ),
    "P2": (
        _step(1, "manager1", "senior_engineers"),
        _step(4, "manager2"),
        _step(24, "vendor", vendor=True),
        _step(48, "manager3"),
    ),
    "P3": (
        _step(4, "manager1", "senior_engineers"),
        _step(24, "vendor", vendor=True),
        _step(48, "manager2"),
    ),
    "P4": (
        _step(24, "manager1", "senior_engineers"),
        _step(48, "vendor", vendor=True),
        _step(72, "manager2"),
    ),
}


@dataclass(frozen=True)
class Due:
    """A step whose time has come: ``fire`` False means it is cancelled by the ticket's state."""

    index: int
    step: Step
    fire: bool
    reason: str = ""


def due_steps(
    steps: Sequence[Step],
    stage: int,
    started_at: float,
    now: float,
    acknowledged: bool,
    resolved: bool,
) -> list[Due]:
    """Steps from ``stage`` on (``stage`` = steps already handled) whose offset has passed."""
    out = []
    for i in range(stage, len(steps)):
        step = steps[i]
        if now < started_at + step.after:
            break
        if resolved and "resolved" in step.unless:
            out.append(Due(i, step, False, "resolved"))
        elif acknowledged and "acknowledged" in step.unless:
            out.append(Due(i, step, False, "acknowledged"))
        else:
            out.append(Due(i, step, True))
    return out


def stage_after_relevel(steps: Sequence[Step], started_at: float, now: float, upgraded: bool) -> int:
    """Where a re-levelled ticket stands on its new ladder.

    An upgrade starts from the bottom so the steps the worse level would
    already have taken are caught up now; a downgrade skips the steps already
    past, so nobody is told twice about a ticket that got better.
    """
    if upgraded:
        return 0
    return sum(1 for s in steps if started_at + s.after <= now)
