from datetime import date, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.offers.domain import PlanPayoff, allocate_payment
from tests.unit.offers.helpers import money, plan_states

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


def test_payoff_goes_plan_by_plan_and_stops_at_the_first_not_covered():
    r = pay(A + B, "155.00", date(2026, 2, 1))  # A (older) needs 300.00: no payoff at all
    assert r.paid_off_plans == []
    assert [(a.plan_id, a.seq) for a in r.allocations] == [("B", 1), ("A", 1)]
    r = pay(A + B, "460.00", date(2026, 2, 1))  # both covered
    assert [p.plan_id for p in r.paid_off_plans] == ["A", "B"] and r.credit == D("10.00")


def test_negative_amounts_are_refused():
    with pytest.raises(ValueError):
        pay(A, "-1.00", date(2026, 2, 1))


def order(i):
    return (i.due_date, i.plan_order, i.plan_id, i.seq)


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
    for amount, paid_on in payments:
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
            touched = [k for k in before if k in {(a.plan_id, a.seq) for a in r.allocations}]
            if touched:  # oldest first: everything before the last touched one is paid
                last = max(order(before[k]) for k in touched)
                assert all(i.is_paid for i in after.values() if order(i) < last)
        assert set(r.paid) == {k for k in after if after[k].is_paid and not before[k].is_paid}
        state, credit = r.installments, r.credit
