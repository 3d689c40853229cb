"""Reminder rules: offsets, the most urgent one after an outage, at most once, paid -> none."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.reminders.domain import (
    ReminderDecision,
    decide_reminder,
    reminder_id,
    reminder_to_send,
    superseded_offsets,
    template_for,
)
from services.reminders.policy import DEFAULT_POLICY, load_policy

DUE = date(2026, 12, 15)


def on(days_before: int) -> date:
    """The business date ``days_before`` days before DUE."""
    return DUE - timedelta(days=days_before)


@pytest.mark.parametrize(
    ("days_before", "handled", "expected"),
    [
        (30, set(), None),  # too early
        (8, set(), None),
        (7, set(), 7),
        (7, {7}, None),  # same day again: at most once
        (6, {7}, None),
        (4, {7}, None),
        (3, {7}, 3),
        (2, {7, 3}, None),
        (1, {7, 3}, 1),
        (0, {7, 3, 1}, 0),
        (0, {7, 3, 1, 0}, None),
        (-1, set(), None),  # past due: collections' job
        (-10, {7, 3, 1, 0}, None),
        # outage: from 8 days before straight to 2 days before: only the 3-day one
        (2, set(), 3),
        # outage: straight to the due date: only the due-today one
        (0, set(), 0),
        (0, {7}, 0),
        # never a stale one, even if dates come back out of order
        (3, {1}, None),
        (7, {3, 7}, None),
    ],
)
def test_offsets_table(days_before: int, handled: set[int], expected: int | None) -> None:
    assert reminder_to_send(DUE, on(days_before), handled, False, DEFAULT_POLICY) == expected


@pytest.mark.parametrize("days_before", [7, 3, 2, 1, 0])
def test_paid_installments_get_none(days_before: int) -> None:
    assert reminder_to_send(DUE, on(days_before), set(), paid=True) is None


def test_superseded_offsets_are_the_larger_unhandled_ones() -> None:
    assert superseded_offsets(3, set()) == {7}
    assert superseded_offsets(0, set()) == {7, 3, 1}
    assert superseded_offsets(0, {7, 3}) == {1}
    assert superseded_offsets(7, set()) == frozenset()


def test_decision_after_outage() -> None:
    decision = decide_reminder(DUE, on(2), set(), False)
    assert decision == ReminderDecision(3, "due_in_3_days", 2, frozenset({7}))
    assert decide_reminder(DUE, on(2), {3, 7}, False) == ReminderDecision(
        None, None, 2, frozenset()
    )


def test_templates_and_ids() -> None:
    assert [template_for(o) for o in (7, 3, 1, 0)] == [
        "due_in_7_days",
        "due_in_3_days",
        "due_in_1_day",
        "due_today",
    ]
    assert template_for(14) == "due_in_14_days"
    assert reminder_id("plan-1", 2, 3) == reminder_id("plan-1", 2, 3)
    ids = {reminder_id(p, s, o) for p in ("plan-1", "plan-2") for s in (1, 2) for o in (7, 3, 1, 0)}
    assert len(ids) == 16


def test_every_day_sends_each_reminder_on_its_day() -> None:
    handled: set[int] = set()
    sent = []
    for days_before in range(10, -3, -1):
        decision = decide_reminder(DUE, on(days_before), handled, False)
        if decision.offset is not None:
            sent.append((days_before, decision.offset))
            handled |= {decision.offset} | decision.skipped
    assert sent == [(7, 7), (3, 3), (1, 1), (0, 0)]


@given(
    start=st.integers(min_value=-2, max_value=12),
    steps=st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=20),
    paid_after=st.one_of(st.none(), st.integers(min_value=0, max_value=20)),
)
def test_any_sequence_of_business_days(
    start: int, steps: list[int], paid_after: int | None
) -> None:
    """Business days move forward with any gaps (0 = the same day replayed)."""
    handled: set[int] = set()
    sent: list[tuple[int, int]] = []
    days_before = start
    reached_due_date_unpaid = False
    for index, step in enumerate(steps):
        days_before -= step
        paid = paid_after is not None and index >= paid_after
        reached_due_date_unpaid |= days_before == 0 and not paid
        decision = decide_reminder(DUE, on(days_before), handled, paid)
        if decision.offset is None:
            continue
        assert not paid and days_before >= 0
        # the most urgent one whose moment has come
        assert decision.offset == min(o for o in DEFAULT_POLICY.offsets if o >= days_before)
        assert decision.offset not in handled
        assert decision.skipped.isdisjoint(handled)
        sent.append((days_before, decision.offset))
        handled |= {decision.offset} | decision.skipped
    offsets = [offset for _, offset in sent]
    assert len(offsets) == len(set(offsets))  # each at most once
    assert offsets == sorted(offsets, reverse=True)  # never a stale one after an urgent one
    if reached_due_date_unpaid:
        assert offsets[-1] == 0  # reaching the due date unpaid always sends the due-today one


def test_policy_defaults_and_yaml(tmp_path: Path) -> None:
    assert load_policy(None) == DEFAULT_POLICY
    assert DEFAULT_POLICY.offsets == (7, 3, 1, 0)
    path = tmp_path / "policy.yaml"
    path.write_text("reminders:\n  offsets: [0, 5]\n  templates: {5: soon}\n")
    policy = load_policy(path)
    assert policy.offsets == (5, 0)
    assert policy.template_for(5) == "soon"
    assert policy.template_for(0) == "due_today"
    assert reminder_to_send(DUE, on(4), set(), False, policy) == 5
    path.write_text("reminders: {offsets: [3, 3]}\n")
    with pytest.raises(ValidationError):
        load_policy(path)
    path.write_text("reminders: {offset: [3]}\n")
    with pytest.raises(ValidationError):
        load_policy(path)
