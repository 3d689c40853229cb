from datetime import date, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.offers.domain import PlanPayoff, allocate_payment
from tests.builders.offers import money, plan_states

# Plan A: 300.00 over 3 months at 2 % a month: 3 × (100.00 + 6.00), due Feb/Mar/Apr 15th.
A = plan_states("A", "300.00", 3, date(2026, 1, 15), rate="0.02", plan_order=0)
# Plan B, created after A but posted earlier: 3 × (50.00 + 3.00), due Feb/Mar/Apr 10th.
B = plan_states("B", "150.00", 3, date(2026, 1, 10), rate="0.02", plan_order=1)


def pay(installments, amount, on, credit="0", waive=True):
    return allocate_payment(installments, D(amount), D(credit), on, waive_fees_on_payoff=waive)


def summary(result):
    return [
        (a.plan_id, a.seq, a.fee_paid, a.principal_paid, a.fee_waived) for a in result.allocations
    ]


def test_fee_before_principal():
    r = pay(A, "50.00", date(2026, 2, 20))
    assert summary(r) == [("A", 1, D("6.00"), D("44.00"), 0)]
    assert r.paid == [] and r.credit == 0
    assert r.installments[0].amount_due == D("56.00")


def test_oldest_due_first_across_plans():
    r = pay(A + B, "110.00", date(2026, 2, 20))
    assert summary(r) == [("B", 1, D("3.00"), D("50.00"), 0), ("A", 1, D("6.00"), D("51.00"), 0)]
    assert r.paid == [("B", 1)]


def test_same_due_date_goes_by_plan_creation_order():
    c = plan_states("C", "300.00", 3, date(2026, 1, 15), rate="0.02", plan_order=1)
    r = pay(c + A, "106.00", date(2026, 2, 15))
    assert summary(r) == [("A", 1, D("6.00"), D("100.00"), 0)]


def test_overpayment_becomes_credit_and_credit_pays():
    r = pay(A, "330.00", date(2026, 4, 15), credit="0")  # everything is due: 318.00
    assert r.credit == D("12.00") and r.completed_plans == ["A"] and r.paid_off_plans == []
    assert all(i.is_paid for i in r.installments)
    r = pay(A, "0", date(2026, 2, 15), credit="106.00")
    assert r.paid == [("A", 1)] and r.credit == 0


def test_early_payoff_waives_the_remaining_fees():
    r = pay(A, "300.00", date(2026, 2, 1))
    assert r.paid_off_plans == [PlanPayoff("A", D("300.00"), D("18.00"))]
    assert r.completed_plans == [] and r.credit == 0
    assert r.paid == [("A", 1), ("A", 2), ("A", 3)]
    assert all(i.is_paid and i.fee_waived == D("6.00") for i in r.installments)


def test_early_payoff_after_the_due_installment():
    r = pay(A, "310.00", date(2026, 2, 20))  # 106.00 due, then 200.00 of principal
    assert r.paid_off_plans == [PlanPayoff("A", D("200.00"), D("12.00"))]
    assert r.credit == D("4.00")
    assert summary(r)[0] == ("A", 1, D("6.00"), D("100.00"), 0)


def test_no_payoff_when_the_principal_is_not_covered():
    r = pay(A, "250.00", date(2026, 2, 1))
    assert r.paid_off_plans == []
    assert summary(r) == [
        ("A", 1, D("6.00"), D("100.00"), 0),
        ("A", 2, D("6.00"), D("100.00"), 0),
        ("A", 3, D("6.00"), D("32.00"), 0),
    ]


def test_payoff_can_be_switched_off():
    r = pay(A, "300.00", date(2026, 2, 1), waive=False)
    assert r.paid_off_plans == [] and r.installments[2].amount_due == D("18.00")


def test_payoff_goes_plan_by_plan_in_the_order_of_their_oldest_unpaid_installment():
    # B's first installment (Feb 10) is the account's oldest: B (150.00) is paid off
    # first, although A was created first; A (300.00) is not covered: 5.00 on its fee
    r = pay(A + B, "155.00", date(2026, 2, 1))
    assert r.paid_off_plans == [PlanPayoff("B", D("150.00"), D("9.00"))]
    assert summary(r) == [
        ("B", 1, 0, D("50.00"), D("3.00")),
        ("B", 2, 0, D("50.00"), D("3.00")),
        ("B", 3, 0, D("50.00"), D("3.00")),
        ("A", 1, D("5.00"), 0, 0),
    ]
    r = pay(A + B, "460.00", date(2026, 2, 1))  # both covered
    assert [p.plan_id for p in r.paid_off_plans] == ["B", "A"] and r.credit == D("10.00")


def test_early_payoff_never_skips_an_older_installment_of_another_plan():
    # A (created first): 100.00 + 2.00 due Mar 20 and Apr 20; B: 100.00 + 2.00 due Mar 5
    a = plan_states("A", "200.00", 2, date(2026, 2, 20), rate="0.01", plan_order=0)
    b = plan_states("B", "100.00", 1, date(2026, 2, 5), rate="0.02", plan_order=1)
    r = pay(a + b, "200.00", date(2026, 3, 1))
    # B's Mar 5 installment comes first: B is paid off (its 2.00 fee waived); the other
    # 100.00 goes to A's Mar 20 installment, fee first; A is not paid off
    assert r.paid_off_plans == [PlanPayoff("B", D("100.00"), D("2.00"))]
    assert summary(r) == [("B", 1, 0, D("100.00"), D("2.00")), ("A", 1, D("2.00"), D("98.00"), 0)]
    assert r.credit == 0 and r.paid == [("B", 1)]


def test_a_plan_not_covered_is_paid_in_order_and_a_later_plan_can_still_be_paid_off():
    # P: 12 × (100.00 + 24.00) from Mar 5; Q: 100.00 + 2.00 due Mar 20
    p = plan_states("P", "1200.00", 12, date(2026, 2, 5), rate="0.02", plan_order=0)
    q = plan_states("Q", "100.00", 1, date(2026, 2, 20), rate="0.02", plan_order=1)
    r = pay(p + q, "300.00", date(2026, 3, 1))
    # P (1,200.00) is not covered: its Mar 5 installment is paid; then the 176.00 left
    # covers Q's 100.00: paid off; the last 76.00 goes to P's Apr 5 installment
    assert r.paid_off_plans == [PlanPayoff("Q", D("100.00"), D("2.00"))]
    assert summary(r) == [
        ("P", 1, D("24.00"), D("100.00"), 0),
        ("Q", 1, 0, D("100.00"), D("2.00")),
        ("P", 2, D("24.00"), D("52.00"), 0),
    ]


def test_negative_amounts_are_refused():
    with pytest.raises(ValueError):
        pay(A, "-1.00", date(2026, 2, 1))


def order(i):
    return (i.due_date, i.plan_order, i.plan_id, i.seq)


def assert_oldest_first(before, after, r):
    """No money went past an installment left unpaid: an installment of a plan not paid
    off gets money only when every older one (any plan) is paid after the payment; a plan
    is paid off only when every installment older than its oldest unpaid one is paid."""
    paid_off = {p.plan_id for p in r.paid_off_plans}
    for p in paid_off:
        oldest = min(order(i) for i in before.values() if i.plan_id == p and not i.is_paid)
        assert all(i.is_paid for i in after.values() if order(i) < oldest), p
    for a in r.allocations:
        if a.plan_id in paid_off:
            continue
        assert a.fee_waived == 0
        mine = order(before[(a.plan_id, a.seq)])
        assert all(i.is_paid for i in after.values() if order(i) < mine), (a.plan_id, a.seq)


@st.composite
def accounts(draw):
    installments = []
    for n in range(draw(st.integers(1, 3))):
        installments += plan_states(
            f"P{n}",
            draw(money(2, high=10**5)),
            draw(st.sampled_from([3, 6, 12])),
            draw(st.dates(date(2026, 1, 1), date(2026, 6, 30))),
            rate=draw(st.sampled_from(["0", "0.0075", "0.006"])),
            plan_order=n,
        )
    payments = draw(
        st.lists(
            st.tuples(
                st.one_of(st.just(D("0")), money(2, high=2 * 10**4)),
                st.integers(0, 500).map(lambda d: date(2026, 1, 1) + timedelta(days=d)),
            ),
            min_size=1,
            max_size=6,
        )
    )
    return installments, sorted(payments, key=lambda p: p[1])


@settings(max_examples=300)
@given(account=accounts(), waive=st.booleans(), credit=money(2, high=100))
def test_payments_never_overpay_and_never_lose_a_cent(account, waive, credit):
    state, payments = account
    received = credit  # Σ money in so far (the starting credit, then every payment)
    for amount, paid_on in payments:
        received += amount
        before = {(i.plan_id, i.seq): i for i in state}
        r = allocate_payment(state, amount, credit, paid_on, waive_fees_on_payoff=waive)
        after = {(i.plan_id, i.seq): i for i in r.installments}
        assert sum(a.amount for a in r.allocations) + r.credit == amount + credit
        assert r.credit >= 0
        if r.credit > 0:
            assert all(i.is_paid for i in r.installments)
        for a in r.allocations:
            old, new = before[(a.plan_id, a.seq)], after[(a.plan_id, a.seq)]
            assert 0 <= a.fee_paid + a.fee_waived <= old.fee_due
            assert 0 <= a.principal_paid <= old.principal_due
            assert new.fee_paid - old.fee_paid == a.fee_paid
            assert new.principal_paid - old.principal_paid == a.principal_paid
            if a.principal_paid > 0:
                assert new.fee_due == 0  # fee before principal
        for key, new in after.items():
            assert new.fee_due >= 0 and new.principal_due >= 0
            assert (new.principal, new.fee) == (before[key].principal, before[key].fee)
        waived = sum(a.fee_waived for a in r.allocations)
        assert waived == sum(p.fee_waived for p in r.paid_off_plans)
        if not waive:
            assert waived == 0 and r.paid_off_plans == []
        assert_oldest_first(before, after, r)
        applied = sum(i.principal_paid + i.fee_paid for i in r.installments)
        assert applied + r.credit == received  # Σ applied + credit = Σ received
        assert set(r.paid) == {k for k in after if after[k].is_paid and not before[k].is_paid}
        state, credit = r.installments, r.credit
