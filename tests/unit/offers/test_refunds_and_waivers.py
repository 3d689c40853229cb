from datetime import date
from decimal import ROUND_FLOOR
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from services.offers.domain import allocate_payment, apply_refund, waive_fees
from tests.builders.offers import money, plan_states

# 300.00 over 3 months at 2 %: 3 × (100.00 + 6.00), due 2026-02-15, 03-15, 04-15.
PLAN = plan_states("A", "300.00", 3, date(2026, 1, 15), rate="0.02")


def shape(installments):
    return [(i.principal, i.fee, i.principal_due, i.fee_due) for i in installments]


def test_a_full_refund_before_anything_is_due_cancels_and_returns_every_fee():
    r = apply_refund(PLAN, D("300.00"), date(2026, 1, 20))
    assert (r.cancelled, r.principal_returned, r.fee_returned, r.excess) == (
        True,
        D("300.00"),
        D("18.00"),
        0,
    )
    assert all(i.is_paid for i in r.installments)


def test_a_full_refund_keeps_fees_already_due():
    r = apply_refund(PLAN, D("300.00"), date(2026, 2, 20))  # seq 1 is overdue
    assert r.cancelled and r.fee_returned == D("12.00")
    assert [i.amount_due for i in r.installments] == [D("6.00"), 0, 0]


def test_a_partial_refund_shrinks_the_remaining_installments():
    r = apply_refund(PLAN, D("150.00"), date(2026, 1, 20))
    assert not r.cancelled and r.principal_returned == D("150.00")
    assert [i.principal for i in r.installments] == [D("50.00")] * 3
    assert [i.fee for i in r.installments] == [D("3.00")] * 3
    assert (r.fee_reduced, r.fee_returned) == (D("9.00"), 0)  # nothing was paid early


def test_a_partial_refund_after_a_payment():
    paid = allocate_payment(PLAN, D("106.00"), D("0"), date(2026, 2, 15)).installments
    r = apply_refund(paid, D("100.00"), date(2026, 2, 20))
    assert shape(r.installments) == [
        (D("100.00"), D("6.00"), 0, 0),  # already paid: untouched
        (D("50.00"), D("3.00"), D("50.00"), D("3.00")),
        (D("50.00"), D("3.00"), D("50.00"), D("3.00")),
    ]
    assert (r.principal_returned, r.fee_reduced, r.fee_returned) == (D("100.00"), D("6.00"), 0)


def test_refunding_more_than_is_owed_leaves_an_excess():
    paid = allocate_payment(PLAN, D("106.00"), D("0"), date(2026, 2, 15)).installments
    r = apply_refund(paid, D("300.00"), date(2026, 2, 20))
    assert r.cancelled and (r.principal_returned, r.excess) == (D("200.00"), D("100.00"))


def test_fee_returns_round_in_the_customers_favour():
    plan = plan_states("A", "100.00", 3, date(2026, 1, 15), rate="0.0075")  # fees 0.75 each
    r = apply_refund(plan, D("33.33"), date(2026, 1, 20))  # keeps 66.67 %: 0.50002 → 0.50
    assert [i.fee for i in r.installments] == [D("0.50")] * 3 and r.fee_reduced == D("0.75")
    assert [i.principal for i in r.installments] == [D("22.23"), D("22.22"), D("22.22")]


def test_a_full_refund_gives_back_the_fees_paid_early_on_installments_not_yet_due():
    # 1000.00 over 3 months, 7.50 a month, posted Jan 31: 333.34 + 7.50 due Feb 28, then
    # 333.33 + 7.50 due Mar 31 and Apr 30
    plan = plan_states("A", "1000.00", 3, date(2026, 1, 31), rate="0.0075")
    # Feb 10: 341.84 pays installment 1 and 1.00 of installment 2's fee, all early
    paid = allocate_payment(plan, D("341.84"), D("0"), date(2026, 2, 10)).installments
    assert [i.fee_paid for i in paid] == [D("7.50"), D("1.00"), 0]
    r = apply_refund(paid, D("1000.00"), date(2026, 2, 15))
    assert r.cancelled and (r.principal_returned, r.excess) == (D("666.66"), D("333.34"))
    assert r.fee_returned == D("22.50")  # every fee not yet due, 8.50 of it already paid
    assert r.fee_paid_back == D("8.50")
    assert [(i.fee, i.fee_paid, i.fee_due) for i in r.installments] == [(0, 0, 0)] * 3
    assert all(i.is_paid for i in r.installments)
    # of the 341.84 paid, 333.34 stays recorded as principal paid (the excess returns it)
    # and the 8.50 of fees is no longer applied: 333.34 + 8.50 = 341.84 of credit
    applied = sum(i.principal_paid + i.fee_paid for i in r.installments)
    assert applied == D("333.34") and applied + r.fee_paid_back == D("341.84")


def test_a_full_refund_keeps_paid_fees_already_due_and_a_partial_one_returns_a_share():
    plan = plan_states("A", "1000.00", 3, date(2026, 1, 31), rate="0.0075")
    paid = allocate_payment(plan, D("341.84"), D("0"), date(2026, 2, 10)).installments
    r = apply_refund(paid, D("1000.00"), date(2026, 3, 1))  # installment 1 (Feb 28) is due
    assert (r.fee_returned, r.fee_paid_back) == (D("15.00"), D("1.00"))
    assert r.installments[0].fee_paid == D("7.50")
    # partial (CONTRACT 5.1): unpaid principal 666.66 -> 366.66; the three fees not yet due
    # (22.50) -> floor(22.50 x 366.66 / 666.66) = 12.37 (4.13 + 4.12 + 4.12); of the 8.50
    # paid early floor(8.50 x 300 / 666.66) = 3.82 is returned, 4.68 stays paid, oldest first
    r = apply_refund(paid, D("300.00"), date(2026, 2, 15))
    assert not r.cancelled
    assert (r.fee_reduced, r.fee_returned, r.fee_paid_back) == (D("10.13"), D("3.82"), D("3.82"))
    assert [i.fee for i in r.installments] == [D("4.13"), D("4.12"), D("4.12")]
    assert [i.fee_paid for i in r.installments] == [D("4.13"), D("0.55"), 0]
    assert [i.principal for i in r.installments] == [D("333.34"), D("183.33"), D("183.33")]


@settings(max_examples=300)
@given(
    principal=money(2, high=10**5),
    tenor=st.sampled_from([3, 6, 12, 24]),
    paid=st.one_of(st.just(D("0")), money(2, high=10**5)),
    waived=st.one_of(st.just(D("0")), money(2, high=10**3)),
    refund=money(2, high=2 * 10**5),
    days=st.integers(0, 800),
    paid_days=st.integers(0, 800),
    remainder=st.sampled_from(["first", "last"]),
)
def test_refunds_conserve_money(principal, tenor, paid, waived, refund, days, paid_days, remainder):
    posted = date(2026, 1, 31)
    plan = plan_states("A", principal, tenor, posted, rate="0.0075")
    on = date.fromordinal(posted.toordinal() + days)
    paid_on = min(on, date.fromordinal(posted.toordinal() + paid_days))  # maybe early
    plan = waive_fees(plan, waived, posted).installments  # points bought some fee waivers
    payment = allocate_payment(plan, paid, D("0"), paid_on, waive_fees_on_payoff=False)
    before = payment.installments
    r = apply_refund(before, refund, on, remainder)
    owed = sum(i.principal_due for i in before)
    later = [i for i in before if i.due_date > on]
    paid_early = sum(i.fee_paid for i in later)
    waived_later = sum(i.fee_waived for i in later)
    assert r.principal_returned == min(refund, owed) and r.principal_returned + r.excess == refund
    assert sum(i.principal for i in r.installments) == sum(i.principal for i in before) - (
        r.principal_returned
    )
    assert sum(i.fee for i in r.installments) == sum(i.fee for i in before) - r.fee_reduced
    assert sum(i.fee_paid for i in before) - sum(i.fee_paid for i in r.installments) == (
        r.fee_paid_back
    )
    assert sum(i.fee_waived for i in before) - sum(i.fee_waived for i in r.installments) == (
        r.fee_waived_removed
    )
    assert 0 <= r.fee_paid_back <= paid_early  # never more than was paid early
    assert 0 <= r.fee_waived_removed <= waived_later  # restored <= redeemed
    assert r.cancelled == (refund >= owed)
    assert r.cancelled == (sum(i.principal_due for i in r.installments) == 0)
    # money conserved: Σ applied + credit + fees returned = Σ received + excess
    applied = sum(i.principal_paid + i.fee_paid for i in r.installments)
    assert applied + payment.credit + r.fee_paid_back == paid
    for old, new in zip(before, r.installments, strict=True):
        assert new.principal_paid == old.principal_paid
        assert new.principal_due >= 0 and new.fee_due >= 0
        assert new.fee_paid <= new.fee and new.fee_paid + new.fee_waived <= new.fee
        if new.due_date <= on:
            assert (new.fee, new.fee_paid, new.fee_waived) == (
                old.fee,
                old.fee_paid,
                old.fee_waived,
            )
    if r.cancelled:  # every fee not yet due comes off, paid, waived or owed
        assert r.fee_returned == sum(i.fee - i.fee_waived for i in later)
        assert r.fee_paid_back == paid_early and r.fee_waived_removed == waived_later
        assert all(i.fee == 0 for i in r.installments if i.due_date > on)
    else:  # CONTRACT 5.1: the proportional rules, exactly
        resplit = {i.seq for i in before if i.principal_due > 0}  # the same installments
        dues = [i.principal_due for i in r.installments if i.seq in resplit]
        assert all(i.principal_due == 0 for i in r.installments if i.seq not in resplit)
        assert sum(dues) == owed - refund and max(dues) - min(dues) < D("0.01") * len(dues)
        old_fee = sum(i.fee for i in later)
        new_fee = sum(i.fee for i in r.installments if i.due_date > on)
        assert new_fee == (old_fee * (owed - refund) / owed).quantize(D("0.01"), ROUND_FLOOR)
        assert r.fee_reduced == old_fee - new_fee and r.fee_returned == r.fee_paid_back
        floor_share = (paid_early * refund / owed).quantize(D("0.01"), ROUND_FLOOR)
        assert floor_share <= r.fee_paid_back  # more only when the rounding left too much paid
        if r.fee_paid_back > floor_share:
            assert paid_early - r.fee_paid_back == new_fee
        fees = [i.fee for i in r.installments if i.due_date > on]
        if fees:
            assert max(fees) - min(fees) < D("0.01") * len(fees)


def test_a_waiver_lowers_the_oldest_unpaid_fees_first():
    r = waive_fees(PLAN, D("10.00"))
    assert r.waived == D("10.00") and r.per_installment == [(1, D("6.00")), (2, D("4.00"))]
    assert [i.fee_due for i in r.installments] == [0, D("2.00"), D("6.00")]
    assert [i.principal_due for i in r.installments] == [D("100.00")] * 3


def test_a_waiver_is_capped_at_the_unpaid_fees():
    paid = allocate_payment(PLAN, D("106.00"), D("0"), date(2026, 2, 15)).installments
    r = waive_fees(paid, D("100.00"))
    assert r.waived == D("12.00") and r.per_installment == [(2, D("6.00")), (3, D("6.00"))]


def test_a_waiver_never_touches_an_overdue_installment_when_given_the_date():
    r = waive_fees(PLAN, D("100.00"), business_date=date(2026, 2, 20))
    assert r.waived == D("12.00") and r.installments[0].fee_due == D("6.00")


@given(
    principal=money(2, high=10**5),
    paid=st.one_of(st.just(D("0")), money(2, high=10**5)),
    amount=st.one_of(st.just(D("0")), money(2, high=10**4)),
)
def test_a_waiver_is_never_negative_nor_more_than_the_unpaid_fees(principal, paid, amount):
    plan = plan_states("A", principal, 12, date(2026, 1, 15), rate="0.0075")
    before = allocate_payment(plan, paid, D("0"), date(2027, 6, 1), False).installments
    r = waive_fees(before, amount)
    assert r.waived == min(amount, sum(i.fee_due for i in before))
    assert r.waived == sum(w for _, w in r.per_installment)
    assert all(w > 0 for _, w in r.per_installment)
    assert all(i.fee_due >= 0 for i in r.installments)
    assert sum(i.fee_due for i in r.installments) == sum(i.fee_due for i in before) - r.waived
