from datetime import date
from decimal import Decimal as D

from services.offers.domain import Delinquency, DueSoon, allocate_payment, delinquency, due_soon
from tests.builders.offers import plan_states

# 3 × (100.00 + 6.00), due 2026-02-15, 03-15, 04-15; plan B due 02-10, 03-10, 04-10.
A = plan_states("A", "300.00", 3, date(2026, 1, 15), rate="0.02")
B = plan_states("B", "150.00", 3, date(2026, 1, 10), rate="0.02", plan_order=1)


def test_due_soon_window_is_0_to_7_days_inclusive():
    assert due_soon(A, date(2026, 2, 7)) == []  # 8 days
    assert due_soon(A, date(2026, 2, 8)) == [DueSoon("A", 1, date(2026, 2, 15), D("106.00"), 7)]
    assert due_soon(A, date(2026, 2, 15))[0].days_until_due == 0
    assert due_soon(A, date(2026, 2, 16)) == []  # overdue, not "due soon"
    assert [d.seq for d in due_soon(A, date(2026, 2, 8), window_days=40)] == [1, 2]


def test_due_soon_skips_paid_and_reports_what_is_left():
    part = allocate_payment(A + B, D("60.00"), D("0"), date(2026, 2, 10)).installments
    # B1 (53.00) is paid; A1 got 7.00 (fee 6.00 then 1.00 of principal)
    assert due_soon(part, date(2026, 2, 8)) == [DueSoon("A", 1, date(2026, 2, 15), D("99.00"), 7)]


def test_no_delinquency_when_nothing_is_overdue():
    assert delinquency(A, date(2026, 2, 15)) is None  # due today is not overdue


def test_delinquency_counts_from_the_oldest_unpaid_due_date():
    assert delinquency(A + B, date(2026, 3, 12)) == Delinquency(
        30, D("106.00") + D("53.00") * 2, date(2026, 2, 10)
    )
    paid = allocate_payment(A + B, D("53.00"), D("0"), date(2026, 3, 12)).installments
    assert delinquency(paid, date(2026, 3, 12)) == Delinquency(
        25, D("106.00") + D("53.00"), date(2026, 2, 15)
    )
