"""Collections follow plan.adjusted (issue #13): the tracked principal, the risk reserve
and the charge-off amount (= outstanding principal + overdue fees) read the adjusted
schedule; escalations raised in a catch-up carry the bucket of the current DPD."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.collections.domain import (
    assess_delinquency,
    bucket_for,
    follow_adjusted_schedule,
)
from services.collections.queries import outstanding_principal, risk_reserve
from tests.builders.collections import paid, plan_adjusted, plan_created
from tests.builders.services import COLLECTIONS as SERVICE
from tests.harness import Harness
from tests.support import envelope

D = Decimal
PLANS = "installments.plans.v1"
FIRST_DUE = date(2026, 2, 15)  # the builder's plan: seq n due FIRST_DUE + 30 (n - 1) days


def due(seq: int) -> date:
    return FIRST_DUE + timedelta(days=30 * (seq - 1))


# --------------------------------------------------------------------------- domain


def test_adjusted_schedule_replaces_the_unpaid_installments():
    adjusted = follow_adjusted_schedule([2, 3, 4], [(2, D("50.00")), (3, D("49.99"))])
    assert adjusted.principal == {2: D("50.00"), 3: D("49.99")}
    assert adjusted.removed == frozenset({4})
    assert adjusted.outstanding() == D("99.99")
    with pytest.raises(ValueError):
        follow_adjusted_schedule([1], [(1, D("-1"))])


money = st.integers(0, 10**10).map(lambda c: D(c) / 100)


@given(
    st.sets(st.integers(1, 36)),
    st.dictionaries(st.integers(1, 36), money, max_size=36),
)
def test_property_outstanding_is_the_schedules_unpaid_principal(unpaid, schedule):
    adjusted = follow_adjusted_schedule(sorted(unpaid), sorted(schedule.items()))
    assert adjusted.outstanding() == sum(schedule.values(), D(0))
    assert adjusted.removed == frozenset(unpaid - set(schedule))
    assert not adjusted.removed & set(adjusted.principal)


@given(st.integers(1, 400))
def test_property_catch_up_levels_all_carry_the_current_bucket(dpd):
    """However far a report jumps, every level it raises is in its DPD's bucket."""
    decision = assess_delinquency("acc-1", None, dpd, D("100000.00"), date(2027, 1, 1))
    assert decision.bucket == bucket_for(dpd)
    assert len(decision.escalations) >= 1


# --------------------------------------------------------------------------- handlers


@pytest.fixture
def h(tmp_path):
    harness = Harness(SERVICE, tmp_path)
    yield harness
    harness.close()


def delinquency(account_id: str, dpd: int, overdue: str, oldest: date) -> dict[str, Any]:
    on = oldest + timedelta(days=dpd)
    data = {"account_id": account_id, "business_date": on.isoformat(), "days_past_due": dpd,
            "overdue_amount": overdue, "currency": "USD",
            "oldest_unpaid_due_date": oldest.isoformat()}  # fmt: skip
    return envelope("account.delinquency", account_id, data, source="offers")


def test_tracked_principal_and_reserve_follow_the_adjusted_schedule(h):
    h.events(PLANS, plan_created("acc-1", "plan-1", "1200.00", 12))
    h.events(PLANS, paid("acc-1", "plan-1", 1, "100.00"))
    assert outstanding_principal(h.runner.engine) == {("acc-1", "USD"): D("1100.00")}
    # a refund of 550.00: the 11 unpaid installments re-split to 50.00 each
    lines = {seq: (due(seq), "50.00", "0.00") for seq in range(2, 13)}
    assert h.events(PLANS, plan_adjusted("acc-1", "plan-1", lines, "550.00")) == []
    assert outstanding_principal(h.runner.engine) == {("acc-1", "USD"): D("550.00")}
    [current] = [line for line in risk_reserve(h.runner.engine) if line.bucket == "current"]
    assert (current.principal, current.reserve) == (D("550.00"), D("5.50"))
    # a second refund drops the last installments from the schedule
    lines = {seq: (due(seq), "40.00", "0.00") for seq in range(2, 10)}
    h.events(PLANS, plan_adjusted("acc-1", "plan-1", lines, "230.00", refund_id="ref-2"))
    assert outstanding_principal(h.runner.engine) == {("acc-1", "USD"): D("320.00")}
    # paying a kept installment takes it out; a removed one was out already
    h.events(PLANS, paid("acc-1", "plan-1", 2, "40.00"))
    assert outstanding_principal(h.runner.engine) == {("acc-1", "USD"): D("280.00")}


def test_adjustment_in_the_same_batch_as_the_plan(h):
    lines = {seq: (due(seq), "150.00", "0.00") for seq in range(1, 4)}
    h.process(*(h.publish(PLANS, m) for m in (
        plan_created("acc-1", "plan-1", "600.00", 3),
        plan_adjusted("acc-1", "plan-1", lines, "150.00"),
    )))  # fmt: skip
    assert outstanding_principal(h.runner.engine) == {("acc-1", "USD"): D("450.00")}


def test_adjustment_of_an_unknown_plan_is_ignored(h):
    lines = {1: (due(1), "1.00", "0.00")}
    assert h.events(PLANS, plan_adjusted("acc-1", "plan-never", lines, "1.00")) == []
    assert outstanding_principal(h.runner.engine) == {}


def test_charge_off_writes_off_the_adjusted_outstanding_principal_plus_overdue_fees(h):
    """12 x 100.00 principal + 5.00 fee; seq 1 paid; a refund of 330.00 re-splits the
    11 unpaid to 70.00 each (fees kept: 5.00 each on installments already due, fewer
    after, but the report carries what is overdue). At DPD 180 from seq 2's due date,
    seqs 2..7 are overdue (reported: 6 x (70.00 + 5.00) = 450.00) and seqs 8..12 not
    yet due: 5 x 70.00 = 350.00 of principal."""
    h.events(PLANS, plan_created("acc-1", "plan-1", "1200.00", 12))
    h.events(PLANS, paid("acc-1", "plan-1", 1, "105.00"))
    lines = {seq: (due(seq), "70.00", "5.00") for seq in range(2, 13)}
    h.events(PLANS, plan_adjusted("acc-1", "plan-1", lines, "330.00"))
    out = h.events(PLANS, delinquency("acc-1", 180, "450.00", due(2)))
    [resolved] = [e for e in out if e.type == "escalation.resolved"]
    assert resolved.data.resolution == "charged_off"
    outstanding = 11 * D("70.00")
    overdue_fees = 6 * D("5.00")
    assert resolved.data.amount == outstanding + overdue_fees == D("800.00")
    assert outstanding_principal(h.runner.engine) == {}  # written off


def test_catch_up_escalations_carry_the_bucket_of_the_current_dpd(h):
    out = h.events(PLANS, delinquency("acc-1", 95, "60000.00", date(2026, 1, 10)))
    raised = [(e.data.level, e.data.bucket, e.data.days_past_due)
              for e in out if e.type == "escalation.raised"]  # fmt: skip
    # levels 1-5 in one catch-up (legal waits for two contacts 30 days apart)
    assert raised == [(lv, "M4+", 95) for lv in range(1, 6)]
