"""The second release's offer rules, pure (CONTRACT 5.1): fraud review, pre-approval,
partial refunds of a converted purchase, points restored; plus the "Clarified" rules."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from services.offers.domain import (
    AccountView,
    AutoConvertSettings,
    MakeOffer,
    NotEligible,
    OfferView,
    PreApproval,
    PurchaseFacts,
    Rejected,
    apply_refund,
    decide_acceptance,
    decide_offer,
    due_soon,
    monthly_rate,
    points_to_restore,
    waive_fees,
)
from services.offers.policy import OffersPolicy
from tests.builders.offers import money, plan_states

POLICY = OffersPolicy()
POSTED = date(2026, 1, 31)
ACCOUNT = AccountView("acc-1", "active", "standard", "gold", D("100000.00"), 700)
PURCHASE = PurchaseFacts(D("1000.00"), "5411", POSTED, "m-1", "electronics")
LINE = PreApproval(limit=D("5000.00"), valid_to=date(2026, 2, 28), fee_discount=D("0.20"))
RISKY = AccountView("acc-1", "active", "standard", "gold", D("1000.00"), 100, pre_approval=LINE)


def offer(purchase=PURCHASE, account=ACCOUNT, auto=AutoConvertSettings(), owed=(), **kw):
    return decide_offer(account, "EUR", auto, purchase, "EUR", list(owed), False, POLICY, **kw)


# ------------------------------------------------------------------ fraud review


def test_a_purchase_under_fraud_review_is_not_eligible_with_fraud_review():
    assert offer(under_review=True) == NotEligible(("fraud_review",))


def test_fraud_review_comes_after_every_other_failing_reason():
    small = PurchaseFacts(D("10.00"), "5411", POSTED)
    assert offer(small, under_review=True) == NotEligible(("amount_below_minimum", "fraud_review"))


def test_a_purchase_under_review_is_never_auto_converted():
    auto = AutoConvertSettings(True, D("100.00"), 6)
    assert offer(auto=auto, under_review=True) == NotEligible(("fraud_review",))


def test_a_cleared_purchase_counts_from_the_closing_date():
    cleared = PurchaseFacts(D("1000.00"), "5411", date(2026, 3, 10), "m-1", "electronics")
    decision = offer(cleared)
    assert isinstance(decision, MakeOffer) and decision.expires_on == date(2026, 4, 9)


# ------------------------------------------------------------------ pre-approval


def test_pre_approval_overrides_risk_score_and_installment_limit_and_discounts_the_rates():
    decision = offer(account=RISKY)
    assert isinstance(decision, MakeOffer) and decision.pre_approved
    # 0.0075 x 0.80 = 0.0060; 0.0070 x 0.80 = 0.0056; 0.0060 x 0.80 = 0.0048
    rates = [o.monthly_fee_rate for o in decision.options]
    assert rates == [D("0.0060"), D("0.0056"), D("0.0048"), D("0.0048")]
    assert decision.options[0].total_fee == D("18.00")  # 1000 x 0.0060 x 3


def test_pre_approval_then_the_segment_factor_each_rounded_to_4_places():
    # 0.0075 x (1 - 0.15) = 0.006375 -> 0.0064; x 0.80 = 0.00512 -> 0.0051
    # (unrounded it would be 0.0051 too, but 0.0070: 0.00595 -> 0.0060 (half up), x 0.8 = 0.0048)
    assert monthly_rate(3, "high_net_worth", POLICY, D("0.15")) == D("0.0051")
    assert monthly_rate(6, "high_net_worth", POLICY, D("0.15")) == D("0.0048")
    assert monthly_rate(6, "standard", POLICY, D("0.15")) == D("0.0060")


def test_pre_approval_is_valid_up_to_and_including_valid_to():
    on_the_day = PurchaseFacts(D("1000.00"), "5411", date(2026, 2, 28))
    assert isinstance(offer(on_the_day, account=RISKY), MakeOffer)
    after = PurchaseFacts(D("1000.00"), "5411", date(2026, 3, 1))
    assert offer(after, account=RISKY) == NotEligible(
        ("risk_score_too_low", "installment_limit_exceeded")
    )


def test_beyond_the_pre_approved_limit_the_ordinary_rules_apply():
    owed = plan_states("P", "4500.00", 12, date(2026, 1, 2))
    assert offer(account=RISKY, owed=owed) == NotEligible(
        ("risk_score_too_low", "installment_limit_exceeded")
    )
    good = AccountView("acc-1", "active", "standard", "gold", D("100000.00"), 700, None, LINE)
    decision = offer(account=good, owed=owed)  # ordinary rules pass: ordinary rates
    assert isinstance(decision, MakeOffer) and not decision.pre_approved
    assert decision.options[0].monthly_fee_rate == D("0.007500")


def test_pre_approval_keeps_status_minimum_mcc_and_overdue_rules():
    blocked = AccountView("acc-1", "blocked", "standard", "gold", D("1.00"), 1, pre_approval=LINE)
    cash = PurchaseFacts(D("100.00"), "6011", POSTED)
    assert offer(cash, account=blocked) == NotEligible(
        ("account_not_active", "amount_below_minimum", "mcc_excluded")
    )
    overdue = plan_states("P", "300.00", 3, date(2025, 11, 1))  # due Dec 1: unpaid
    assert offer(account=RISKY, owed=overdue) == NotEligible(("overdue_installment",))


def test_a_pre_approved_offer_is_accepted_whatever_the_risk_score():
    decision = offer(account=RISKY)
    assert isinstance(decision, MakeOffer)
    view = OfferView("off-1", "pur-1", "acc-1", D("1000.00"), "open")
    accepted = decide_acceptance(
        "acc-1", 3, None, view, False, decision.options[0], RISKY, PURCHASE, [], False, POLICY
    )
    assert not isinstance(accepted, Rejected)


@settings(max_examples=200)
@given(
    tenor=st.sampled_from([3, 6, 12, 24, 36]),
    segment=st.sampled_from(["standard", "high_net_worth", "young"]),
    discount=st.integers(0, 99_999_999).map(lambda n: D(n).scaleb(-8)),
)
def test_pre_approved_rates_round_each_step_half_up_to_4_places(tenor, segment, discount):
    rate = monthly_rate(tenor, segment, POLICY, discount)
    four = D("0.0001")
    step = (POLICY.monthly_fee_rates[tenor] * (1 - discount)).quantize(four, ROUND_HALF_UP)
    factor = POLICY.segment_rate_multipliers.get(segment, D(1))
    assert rate == (step * factor).quantize(four, ROUND_HALF_UP)
    assert rate.as_tuple().exponent == -4
    assert 0 <= rate <= monthly_rate(tenor, segment, POLICY).quantize(four, ROUND_HALF_UP)


# ------------------------------------------------------------------ partial refund, points


def test_a_partial_refund_re_splits_what_is_left_over_the_same_unpaid_installments():
    # 1000.00 x 3 at 0.75 %: 333.34 + 7.50, 333.33 + 7.50, 333.33 + 7.50 (Feb 28, Mar 31, Apr 30)
    plan = plan_states("A", "1000.00", 3, POSTED, rate="0.0075")
    r = apply_refund(plan, D("400.00"), date(2026, 3, 5))  # installment 1 is due: keeps its fee
    assert [i.principal for i in r.installments] == [D("200.00")] * 3
    # not yet due: 15.00 x 600 / 1000 = 9.00 -> 4.50 each; fee_reduced 6.00, none paid
    assert [i.fee for i in r.installments] == [D("7.50"), D("4.50"), D("4.50")]
    assert (r.fee_reduced, r.fee_returned, r.fee_waived_removed) == (D("6.00"), 0, 0)


def test_waived_fees_removed_by_a_partial_refund_restore_their_points():
    plan = plan_states("A", "1000.00", 3, POSTED, rate="0.0075")
    waived = waive_fees(plan, D("10.00"), POSTED).installments  # 7.50 on #1, 2.50 on #2
    r = apply_refund(waived, D("500.00"), date(2026, 2, 1))  # half the principal
    assert r.fee_reduced == D("11.25") and r.fee_waived_removed == D("5.00")
    assert [(i.fee, i.fee_waived) for i in r.installments] == [
        (D("3.75"), D("3.75")),
        (D("3.75"), D("1.25")),
        (D("3.75"), 0),
    ]
    assert points_to_restore(r.fee_waived_removed, 100, redeemed=1000, restored=0) == 500


def test_a_cancelling_refund_restores_the_points_of_every_removed_waived_fee():
    plan = plan_states("A", "1000.00", 3, POSTED, rate="0.0075")
    waived = waive_fees(plan, D("10.00"), POSTED).installments
    r = apply_refund(waived, D("1000.00"), date(2026, 3, 1))  # #1 (Feb 28) is due: stays
    assert r.cancelled and r.fee_waived_removed == D("2.50")
    assert r.installments[0].fee_waived == D("7.50")


def test_points_to_restore_never_exceeds_what_was_redeemed():
    assert points_to_restore(D("5.00"), 100, redeemed=300, restored=0) == 300
    assert points_to_restore(D("5.00"), 100, redeemed=1000, restored=800) == 200
    assert points_to_restore(D("0.00"), 100, redeemed=1000, restored=0) == 0
    assert points_to_restore(D("5"), 100, redeemed=10_000, restored=0) == 500  # JPY


@settings(max_examples=200)
@given(
    principal=money(2, high=10**5),
    tenor=st.sampled_from([3, 6, 12, 24]),
    redeemed=st.integers(0, 10**6),
    refunds=st.lists(money(2, high=10**5), min_size=1, max_size=4),
    days=st.integers(0, 400),
)
def test_points_restored_over_refunds_never_exceed_those_redeemed(
    principal, tenor, redeemed, refunds, days
):
    plan = plan_states("A", principal, tenor, POSTED, rate="0.0075")
    waived_amount = (D(redeemed) / 100).quantize(D("0.01"))
    state = waive_fees(plan, waived_amount, POSTED).installments
    restored = 0
    on = date.fromordinal(POSTED.toordinal() + days)
    for refund in refunds:
        if sum(i.principal_due for i in state) == 0:
            break
        r = apply_refund(state, refund, on)
        restored += points_to_restore(r.fee_waived_removed, 100, redeemed, restored)
        state = r.installments
        # the adjusted schedule adds up exactly
        assert all(i.fee_paid + i.fee_waived <= i.fee for i in state)
    assert 0 <= restored <= redeemed


# ------------------------------------------------------------------ Clarified (5.1)


def test_clarified_diamond_sees_36_months_at_0_60_percent():
    diamond = AccountView("acc-1", "active", "standard", "diamond", D("100000.00"), 700)
    decision = offer(account=diamond)
    assert isinstance(decision, MakeOffer)
    assert [(o.tenor_months, o.monthly_fee_rate) for o in decision.options][-1] == (
        36,
        D("0.006000"),
    )


def test_clarified_declined_expired_refunded_and_unknown_offers_are_rejected_with_the_reason():
    for status, reason in [
        ("declined", "declined"),
        ("expired", "expired"),
        ("refunded", "refunded"),
        ("accepted", "already_converted"),
    ]:
        view = OfferView("off-1", "pur-1", "acc-1", D("1000.00"), status)
        got = decide_acceptance(
            "acc-1", 3, None, view, False, None, ACCOUNT, PURCHASE, [], False, POLICY
        )
        assert got == Rejected(reason, "pur-1")
    got = decide_acceptance("acc-1", 3, None, None, False, None, ACCOUNT, None, [], False, POLICY)
    assert got == Rejected("unknown_offer")


def test_clarified_due_within_7_days_is_0_to_7_days_inclusive():
    plan = plan_states("A", "300.00", 3, POSTED)  # due Feb 28, Mar 31, Apr 30
    assert [s.days_until_due for s in due_soon(plan, date(2026, 2, 21))] == [7]
    assert [s.days_until_due for s in due_soon(plan, date(2026, 2, 28))] == [0]
    assert due_soon(plan, date(2026, 2, 20)) == []  # 8 days
    assert [s.seq for s in due_soon(plan, date(2026, 3, 1))] == []  # overdue: -1
