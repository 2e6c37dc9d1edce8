"""The escalation ladder (SPEC §4)."""

from agent.escalation import DEFAULT_LADDER, due_steps, stage_after_relevel

H = 3600.0


def test_p1_ladder_fires_in_order():
    steps = DEFAULT_LADDER["P1"]
    assert due_steps(steps, 0, 0.0, 599.0, False, False) == []
    due = due_steps(steps, 0, 0.0, 601.0, False, False)
    assert [(d.index, d.fire, d.step.notify) for d in due] == [(0, True, ("manager1", "senior_engineers"))]
    assert [d.index for d in due_steps(steps, 1, 0.0, 4 * H + 1, False, False)] == [1, 2]


def test_ack_cancels_people_but_not_the_vendor_case():
    due = due_steps(DEFAULT_LADDER["P1"], 1, 0.0, 4 * H + 1, True, False)
    assert [(d.index, d.fire, d.reason) for d in due] == [(1, False, "acknowledged"), (2, True, "")]


def test_resolved_cancels_everything():
    assert all(not d.fire for d in due_steps(DEFAULT_LADDER["P2"], 0, 0.0, 100 * H, False, True))


def test_relevel_upgrade_catches_up_downgrade_skips():
    steps = DEFAULT_LADDER["P2"]
    assert stage_after_relevel(steps, 0.0, 5 * H, upgraded=True) == 0
    assert stage_after_relevel(steps, 0.0, 5 * H, upgraded=False) == 2
