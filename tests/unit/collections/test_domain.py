"""Collections rules: ladder, catch-up, legal guard, buckets, cure/charge-off, reserve."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.collections.domain import (
    CHARGED_OFF,
    CURED,
    CaseState,
    Escalation,
    assess_delinquency,
    bucket_for,
    case_id_for,
    days_past_due,
    escalations_due,
    is_cured,
    legal_guard_holds,
    level_for,
    reserve_total,
    risk_reserve,
    should_charge_off,
)
from services.collections.policy import DEFAULT_POLICY, load_policy

D = Decimal
DUE = date(2026, 1, 10)  # oldest unpaid due date
BIG = D("60000.00")
SMALL = D("1000.00")
ACTIONS = {1: "sms", 2: "sms_push", 3: "call", 4: "letter", 5: "agency", 6: "legal"}


def day(dpd: int) -> date:
    return DUE + timedelta(days=dpd)


@pytest.mark.parametrize(
    ("dpd", "level"),
    [(0, 0), (1, 1), (7, 1), (8, 2), (14, 2), (15, 3), (30, 3), (31, 4), (60, 4),
     (61, 5), (90, 5), (91, 6), (179, 6), (180, 6), (-3, 0)],
)  # fmt: skip
def test_ladder_table(dpd: int, level: int) -> None:
    assert level_for(dpd, DEFAULT_POLICY) == level


@pytest.mark.parametrize(
    ("dpd", "bucket"),
    [(0, None), (1, "M1"), (30, "M1"), (31, "M2"), (60, "M2"), (61, "M3"), (90, "M3"),
     (91, "M4+"), (179, "M4+"), (400, "M4+")],
)  # fmt: skip
def test_buckets(dpd: int, bucket: str | None) -> None:
    assert bucket_for(dpd) == bucket


def test_days_past_due() -> None:
    assert days_past_due(DUE, day(40)) == 40
    assert days_past_due(DUE, DUE) == 0
    assert days_past_due(DUE, day(-5)) == 0
    assert days_past_due(None, DUE) == 0


def test_charge_off_and_cure_thresholds() -> None:
    assert not should_charge_off(179)
    assert should_charge_off(180)
    assert is_cured(0)
    assert not is_cured(1)


# --------------------------------------------------------------------------- escalation


def test_catch_up_from_0_to_40_emits_1_to_4_in_order() -> None:
    case = CaseState([], opened_on=day(40))
    due = escalations_due(case, 40, SMALL, day(40), DEFAULT_POLICY)
    assert due == [(1, "sms"), (2, "sms_push"), (3, "call"), (4, "letter")]
    assert all(isinstance(e, Escalation) for e in due)
    # raised once: the same report again, or a lower DPD, raises nothing
    case = case.with_raised(due, day(40))
    assert escalations_due(case, 40, SMALL, day(40)) == []
    assert escalations_due(case, 12, SMALL, day(41)) == []
    assert escalations_due(case, 61, SMALL, day(61)) == [(5, "agency")]


def test_daily_reports_raise_each_level_on_its_day_including_legal() -> None:
    case = CaseState([], opened_on=day(1))
    raised_on = {}
    for dpd in range(1, 150):
        due = escalations_due(case, dpd, BIG, day(dpd))
        for level, _ in due:
            raised_on[level] = dpd
        case = case.with_raised(due, day(dpd))
    assert raised_on == {1: 1, 2: 8, 3: 15, 4: 31, 5: 61, 6: 91}


def test_legal_guard_blocks_when_the_amount_is_too_small() -> None:
    case = CaseState([(1, day(1)), (2, day(8)), (3, day(15)), (4, day(31)), (5, day(61))], day(1))
    assert escalations_due(case, 95, D("49999.99"), day(95)) == []
    assert escalations_due(case, 95, D("50000.00"), day(95)) == [(6, "legal")]
    # it is re-checked on each report: the amount grows, legal follows
    assert escalations_due(case, 120, BIG, day(120)) == [(6, "legal")]


def test_legal_guard_blocks_without_two_contacts_30_days_apart() -> None:
    # an outage: every level crossed at once, all contacts today -> stays with the agency
    case = CaseState([], opened_on=day(95))
    due = escalations_due(case, 95, BIG, day(95))
    assert [level for level, _ in due] == [1, 2, 3, 4, 5]
    case = case.with_raised(due, day(95))
    # contacts are raised levels only; a blocked legal level is not a contact, so a case
    # whose every contact happened on one day stays with the agency (until charge-off)
    assert escalations_due(case, 125, BIG, day(125)) == []
    assert escalations_due(case, 179, BIG, day(179)) == []


def test_legal_guard_counts_the_contacts_raised_in_the_same_catch_up() -> None:
    # one earlier contact 40 days ago + the ones raised now (dated today) -> holds
    case = CaseState([(1, day(55))], opened_on=day(55))
    due = escalations_due(case, 95, BIG, day(95))
    assert [level for level, _ in due] == [2, 3, 4, 5, 6]
    # only 29 days apart -> stops at the agency
    case = CaseState([(1, day(66))], opened_on=day(66))
    assert [level for level, _ in escalations_due(case, 95, BIG, day(95))] == [2, 3, 4, 5]


def test_legal_guard_function() -> None:
    assert legal_guard_holds([day(1), day(31)], D("50000.00"))
    assert not legal_guard_holds([day(1), day(30)], D("50000.00"))
    assert not legal_guard_holds([day(1), day(31)], D("49999.99"))
    assert not legal_guard_holds([day(1)], BIG)
    assert not legal_guard_holds([], BIG)
    assert legal_guard_holds([day(40), day(5), day(20), day(1)], BIG)  # order does not matter


@given(
    reports=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10),  # business days since the last report
            st.integers(min_value=0, max_value=200),  # DPD
            st.integers(min_value=0, max_value=10_000_000).map(lambda c: D(c) / 100),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_levels_are_raised_once_in_order_never_skipped(
    reports: list[tuple[int, int, Decimal]],
) -> None:
    case = CaseState([], opened_on=DUE)
    today = DUE
    for gap, dpd, overdue in reports:
        today += timedelta(days=gap)
        due = escalations_due(case, dpd, overdue, today)
        levels = [level for level, _ in due]
        assert all(level <= level_for(dpd) for level in levels)
        assert all(ACTIONS[level] == action for level, action in due)
        if 6 in levels:
            assert overdue >= D("50000.00")
        case = case.with_raised(due, today)
        raised = [level for level, _ in case.levels_raised]
        assert raised == list(range(1, len(raised) + 1))  # in order, once, no gaps
        if level_for(dpd) <= 5:
            assert len(raised) >= level_for(dpd)  # every crossed level is raised


# --------------------------------------------------------------------------- a case's life


def test_open_escalate_cure_and_reopen() -> None:
    first = assess_delinquency("acc-1", None, 3, SMALL, day(3))
    assert first.opened and first.case_id == case_id_for("acc-1", day(3))
    assert first.escalations == ((1, "sms"),) and first.bucket == "M1"
    assert first.resolution is None and first.case is not None

    later = assess_delinquency("acc-1", first.case, 20, SMALL, day(20))
    assert not later.opened and later.case_id == first.case_id
    assert later.escalations == ((2, "sms_push"), (3, "call"))

    cured = assess_delinquency("acc-1", later.case, 0, D("0.00"), day(21))
    assert cured.resolution == CURED and cured.case is None
    assert cured.case_id == first.case_id and cured.escalations == ()

    again = assess_delinquency("acc-1", None, 1, SMALL, day(60))
    assert again.opened and again.case_id == case_id_for("acc-1", day(60))
    assert again.case_id != first.case_id
    assert again.escalations == ((1, "sms"),)


def test_no_case_and_nothing_overdue_does_nothing() -> None:
    decision = assess_delinquency("acc-1", None, 0, D("0.00"), day(0))
    assert decision.case is None and decision.case_id is None
    assert not decision.opened and decision.escalations == () and decision.resolution is None


def test_charge_off_at_180_then_silence() -> None:
    case = CaseState([(1, day(1)), (2, day(8)), (3, day(15)), (4, day(31)), (5, day(61))], day(1))
    before = assess_delinquency("acc-9", case, 179, SMALL, day(179))
    assert before.resolution is None and before.escalations == ()
    off = assess_delinquency("acc-9", before.case, 180, D("1234.56"), day(180))
    assert off.resolution == CHARGED_OFF and off.written_off == D("1234.56")
    assert off.case is not None and off.case.charged_off
    after = assess_delinquency("acc-9", off.case, 181, D("1234.56"), day(181))
    assert after.resolution is None and after.escalations == () and after.case == off.case
    closed = assess_delinquency("acc-9", after.case, 0, D("0.00"), day(200))
    assert closed.resolution is None and closed.case is None


def test_catch_up_straight_to_charge_off() -> None:
    decision = assess_delinquency("acc-2", None, 185, BIG, day(185))
    assert [level for level, _ in decision.escalations] == [1, 2, 3, 4, 5]
    assert decision.resolution == CHARGED_OFF and decision.written_off == BIG


# --------------------------------------------------------------------------- reserve


def test_reserve_math() -> None:
    exposures = [
        (None, D("1000.00")),
        (0, D("500.00")),
        (5, D("200.00")),
        (30, D("0.00")),
        (45, D("100.00")),
        (75, D("10.00")),
        (200, D("3.33")),
    ]
    reserve = risk_reserve(exposures, DEFAULT_POLICY)
    assert reserve == {
        "current": D("15.00"),
        "M1": D("10.00"),
        "M2": D("20.00"),
        "M3": D("5.00"),
        "M4+": D("3.33"),
    }
    assert reserve_total(reserve) == D("53.33")


def test_reserve_rounds_half_up_per_bucket_and_empty_is_zero() -> None:
    assert risk_reserve([(None, D("0.50"))])["current"] == D("0.01")  # 0.005
    assert risk_reserve([(None, D("0.49"))])["current"] == D("0.00")
    assert risk_reserve([(None, D("0.50")), (None, D("0.50"))])["current"] == D("0.01")
    empty = risk_reserve([])
    assert set(empty) == {"current", "M1", "M2", "M3", "M4+"}
    assert reserve_total(empty) == 0


def test_money_must_be_decimal() -> None:
    with pytest.raises(TypeError):
        risk_reserve([(None, 10.0)])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        escalations_due(CaseState([], DUE), 10, 100.0, DUE)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- policy


def test_policy_defaults_and_yaml(tmp_path: Path) -> None:
    assert load_policy(None) == DEFAULT_POLICY
    assert [(r.min_dpd, r.level, r.action) for r in DEFAULT_POLICY.ladder] == [
        (1, 1, "sms"), (8, 2, "sms_push"), (15, 3, "call"),
        (31, 4, "letter"), (61, 5, "agency"), (91, 6, "legal"),
    ]  # fmt: skip
    path = tmp_path / "policy.yaml"
    path.write_text(
        "collections:\n"
        "  ladder: [[1, 1, sms], [10, 2, call], [40, 3, legal]]\n"
        "  legal_level: 3\n"
        "  legal_min_overdue: '100.00'\n"
        "  buckets: [[M1, 1, 30], [M2+, 31, null]]\n"
        "  reserve_rates: {current: 0.02, M1: 0.1, M2+: 1}\n"
        "  charge_off_dpd: 90\n"
    )
    policy = load_policy(path)
    assert level_for(39, policy) == 2
    assert bucket_for(31, policy) == "M2+"
    case = CaseState([(1, day(1))], day(1))
    assert escalations_due(case, 45, D("100.00"), day(45), policy) == [(2, "call"), (3, "legal")]
    assert should_charge_off(90, policy)
    assert risk_reserve([(None, D("100.00")), (50, D("1.00"))], policy) == {
        "current": D("2.00"),
        "M1": D("0.00"),
        "M2+": D("1.00"),
    }


@pytest.mark.parametrize(
    "section",
    [
        "ladder: [[1, 1, sms], [1, 2, call]]",  # thresholds not increasing
        "ladder: [[1, 2, sms]]",  # levels not 1..n
        "legal_level: 9",
        "buckets: [[M1, 1, 30], [M2, 32, null]]",  # a gap
        "buckets: [[M1, 1, 30]]",  # last not open-ended
        "reserve_rates: {current: 0.01}",  # missing buckets
        "reserve_rate: {}",  # unknown key
    ],
)
def test_inconsistent_policies_are_rejected(tmp_path: Path, section: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("collections: {" + section + "}\n")
    with pytest.raises(ValidationError):
        load_policy(path)
