"""Reminders follow plan.adjusted (issue #13), and a late reminder carries the real
days before due (contract 5.1, "Clarified")."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from services.reminders.domain import amount_due, decide_reminder
from services.reminders.tables import reminders
from tests.builders import messages as f
from tests.builders.reminders import (
    ACCOUNTS,
    DUE,
    PLANS,
    before,
    due_soon,
    paid,
    plan_adjusted,
)
from tests.builders.services import REMINDERS as SERVICE
from tests.harness import Harness

D = Decimal
TEMPLATES = {7: "due_in_7_days", 3: "due_in_3_days", 1: "due_in_1_day", 0: "due_today"}


@pytest.fixture
def h(tmp_path):
    harness = Harness(SERVICE, tmp_path)
    harness.events(ACCOUNTS, f.account("acc-1"))
    yield harness
    harness.close()


# --------------------------------------------------------------------------- domain

cents = st.integers(0, 10**9).map(lambda c: D(c) / 100)


def test_amount_due_of_a_plan_never_adjusted_is_the_reported_one():
    assert amount_due(1, D("105.00"), None) == D("105.00")
    assert amount_due(1, D("0"), None) is None


def test_amount_due_follows_the_adjusted_schedule():
    schedule = {2: D("80.00"), 3: D("80.00")}
    assert amount_due(2, D("105.00"), schedule) == D("80.00")  # computed before: capped
    assert amount_due(2, D("30.00"), schedule) == D("30.00")  # partly paid after it
    assert amount_due(1, D("105.00"), schedule) is None  # left out of the schedule
    assert amount_due(3, D("105.00"), {3: D("0.00")}) is None  # nothing left due


@given(st.integers(1, 36), cents, st.dictionaries(st.integers(1, 36), cents, max_size=36))
def test_property_amount_due_is_never_more_than_reported_or_scheduled(seq, reported, schedule):
    due = amount_due(seq, reported, schedule)
    if seq not in schedule:
        assert due is None
    else:
        assert due is None or (0 < due <= reported and due <= schedule[seq])
        assert due == (min(reported, schedule[seq]) or None)


@given(st.integers(0, 10), st.sets(st.sampled_from([7, 3, 1, 0])))
def test_property_the_decision_carries_the_real_days_and_the_slot_reached(days, handled):
    decision = decide_reminder(DUE, before(days), handled, False)
    assert decision.days_before_due == days
    if decision.offset is not None:
        assert decision.offset == min(o for o in (7, 3, 1, 0) if o >= days)
        assert decision.template == TEMPLATES[decision.offset]


# --------------------------------------------------------------------------- handlers


def test_late_reminder_carries_the_real_days_and_the_most_urgent_slot_template(h):
    """The README's former known limitation: resuming 5 days before the due date, the
    7-day slot's reminder goes out with days_before_due 5 (was 7), template due_in_7_days."""
    [r] = h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(5)))
    assert (r.data.days_before_due, r.data.template, r.data.due_date) == (5, "due_in_7_days", DUE)
    assert r.data.reminder_id == "rem:plan-1:1:7"
    assert h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(4))) == []  # slot 7 done
    [r] = h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(3)))
    assert (r.data.days_before_due, r.data.template) == (3, "due_in_3_days")


def test_reminders_after_an_adjustment_ask_the_new_amount(h):
    [r] = h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(7), amount="105.00"))
    assert r.data.amount_due == D("105.00")
    assert h.events(PLANS, plan_adjusted("acc-1", "plan-1", {1: "70.00", 2: "70.00"})) == []
    # a due-soon computed after the adjustment (offers' figure) ...
    [r] = h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(3), amount="70.00"))
    assert r.data.amount_due == D("70.00")
    # ... or still the old figure: never more than the adjusted schedule's amount
    [r] = h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(1), amount="105.00"))
    assert r.data.amount_due == D("70.00")
    with h.runner.engine.connect() as conn:
        rows = conn.execute(select(reminders.c.offset_days, reminders.c.amount_due)).all()
    assert sorted(rows) == [(1, D("70.00")), (3, D("70.00")), (7, D("105.00"))]


def test_installments_left_out_of_the_adjusted_schedule_get_no_reminder(h):
    h.events(PLANS, paid("acc-1", "plan-1", 1, before(40)))
    h.events(PLANS, plan_adjusted("acc-1", "plan-1", {2: "40.00"}))  # 3 dropped
    due3 = DUE.replace(month=5)
    assert h.events(PLANS, due_soon("acc-1", "plan-1", 3, before(7, due3), due=due3)) == []
    assert h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(7))) == []  # paid
    [r] = h.events(PLANS, due_soon("acc-1", "plan-1", 2, before(7)))
    assert (r.data.seq, r.data.amount_due) == (2, D("40.00"))


def test_a_later_adjustment_replaces_the_schedule(h):
    h.events(PLANS, plan_adjusted("acc-1", "plan-1", {1: "90.00", 2: "90.00"}))
    h.events(PLANS, plan_adjusted("acc-1", "plan-1", {2: "60.00"}, refund_id="ref-2"))
    assert h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(7))) == []
    [r] = h.events(PLANS, due_soon("acc-1", "plan-1", 2, before(7)))
    assert r.data.amount_due == D("60.00")
    # a third one listing seq 1 again brings it back
    h.events(PLANS, plan_adjusted("acc-1", "plan-1", {1: "10.00", 2: "50.00"}, refund_id="r3"))
    [r] = h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(3)))
    assert (r.data.seq, r.data.amount_due) == (1, D("10.00"))


def test_adjustment_and_due_soons_in_one_batch_behave_as_one_by_one(h, tmp_path):
    messages = [
        due_soon("acc-1", "plan-1", 1, before(7)),
        plan_adjusted("acc-1", "plan-1", {1: "20.00", 3: "20.00"}),
        due_soon("acc-1", "plan-1", 1, before(3)),
        due_soon("acc-1", "plan-1", 2, before(3)),  # dropped
        plan_adjusted("acc-1", "plan-1", {1: "15.00"}, refund_id="ref-2"),
        due_soon("acc-1", "plan-1", 1, before(1)),
    ]
    (tmp_path / "one").mkdir()
    one = Harness(SERVICE, tmp_path / "one")
    try:
        one.events(ACCOUNTS, f.account("acc-1"))
        singly = [e for m in messages for e in one.feed(PLANS, m)]
        batch = h.process(*(h.publish(PLANS, m) for m in messages))
        assert [e.value for e in batch] == [e.value for e in singly]
        assert [(e.event.data.seq, e.event.data.amount_due) for e in batch] == [
            (1, D("105.00")), (1, D("20.00")), (1, D("15.00"))
        ]  # fmt: skip
    finally:
        one.close()
