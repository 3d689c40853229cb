"""The offers decisions, pure: decide_offer, decide_acceptance, decide_decline."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.offers.domain import (
    AccountView,
    AutoConvertSettings,
    ConvertNow,
    CreatePlan,
    InstallmentState,
    MakeOffer,
    NotEligible,
    OfferView,
    PlanTerms,
    PurchaseFacts,
    Rejected,
    decide_acceptance,
    decide_decline,
    decide_offer,
    eligibility_reasons,
    offer_options,
)
from services.offers.policy import OffersPolicy
from tests.builders.offers import dates, money

POLICY = OffersPolicy()
POSTED = date(2026, 1, 31)
ACCOUNT = AccountView("acc-1", "active", "standard", "gold", D("100000.00"), 700)
PURCHASE = PurchaseFacts(D("1000.00"), "5411", POSTED, "m-1", "electronics")
NO_AUTO = AutoConvertSettings()


def offer(purchase=PURCHASE, account=ACCOUNT, auto=NO_AUTO, owed=(), flagged=False, cur="EUR"):
    return decide_offer(account, "EUR", auto, purchase, cur, list(owed), flagged, POLICY)


# ------------------------------------------------------------------ decide_offer


def test_an_eligible_purchase_gets_an_offer_expiring_30_days_after_posting():
    decision = offer()
    assert isinstance(decision, MakeOffer)
    assert [o.tenor_months for o in decision.options] == [3, 6, 12, 24]
    assert decision.expires_on == date(2026, 3, 2)
    assert decision.promotion is None
    assert not decision.auto_convert_tenor_not_offered


def test_not_eligible_lists_every_reason_then_currency_mismatch():
    bad = AccountView("acc-1", "blocked", "standard", "gold", D("1000.00"), 100)
    decision = offer(
        purchase=PurchaseFacts(D("10.00"), "6011", POSTED), account=bad, flagged=True, cur="USD"
    )
    assert decision == NotEligible(
        (
            "account_not_active",
            "amount_below_minimum",
            "mcc_excluded",
            "overdue_installment",
            "risk_score_too_low",
            "currency_mismatch",
        )
    )


def test_an_unknown_account_is_not_eligible_without_currency_check():
    decision = decide_offer(None, None, NO_AUTO, PURCHASE, "EUR", [], False, POLICY)
    assert decision == NotEligible(("account_unknown",))


def test_an_unpaid_installment_due_before_the_posting_date_is_overdue():
    late = InstallmentState("plan-x", 1, date(2026, 1, 15), D("100.00"), D("1.00"))
    assert offer(owed=[late]) == NotEligible(("overdue_installment",))
    on_time = InstallmentState("plan-x", 1, POSTED, D("100.00"), D("1.00"))
    assert isinstance(offer(owed=[on_time]), MakeOffer)


def test_outstanding_principal_counts_against_the_installment_limit():
    small = AccountView("acc-1", "active", "standard", "gold", D("2000.00"), 700)  # limit 1600
    owed = [InstallmentState("plan-x", 1, date(2026, 3, 1), D("600.00"), D("0"))]
    assert isinstance(offer(account=small, owed=owed), MakeOffer)  # 600 + 1000 <= 1600
    owed = [InstallmentState("plan-x", 1, date(2026, 3, 1), D("600.01"), D("0"))]
    assert offer(account=small, owed=owed) == NotEligible(("installment_limit_exceeded",))


def test_auto_convert_at_the_accounts_tenor_from_the_threshold_on():
    auto = AutoConvertSettings(True, D("1000.00"), 6)
    decision = offer(auto=auto)
    assert isinstance(decision, ConvertNow)
    assert decision.terms.tenor_months == 6
    assert decision.terms.principal == D("1000.00")
    assert decision.terms.posted_on == POSTED
    schedule = decision.terms.schedule()
    assert [i.due_date for i in schedule][:2] == [date(2026, 2, 28), date(2026, 3, 31)]
    below = offer(purchase=PurchaseFacts(D("999.99"), "5411", POSTED), auto=auto)
    assert isinstance(below, MakeOffer) and not below.auto_convert_tenor_not_offered
    off = offer(auto=AutoConvertSettings(False, D("1.00"), 6))
    assert isinstance(off, MakeOffer)


def test_auto_convert_to_a_tenor_not_offered_makes_an_offer_and_says_so():
    decision = offer(auto=AutoConvertSettings(True, D("1.00"), 36))  # gold: no 36 months
    assert isinstance(decision, MakeOffer)
    assert decision.auto_convert_tenor_not_offered


def test_a_not_eligible_purchase_is_never_auto_converted():
    decision = offer(auto=AutoConvertSettings(True, D("1.00"), 6), flagged=True)
    assert decision == NotEligible(("overdue_installment",))


accounts = st.builds(
    AccountView,
    account_id=st.just("acc-1"),
    status=st.sampled_from(["active", "blocked", "closed"]),
    segment=st.sampled_from(["young", "middle_class", "high_net_worth", "standard"]),
    tier=st.sampled_from(["silver", "gold", "platinum", "diamond"]),
    credit_limit=money(high=10**6),
    risk_score=st.integers(0, 1000),
    installment_limit=st.none() | money(high=10**6),
)
purchases = st.builds(
    PurchaseFacts,
    amount=money(high=10**6),
    mcc=st.sampled_from(["5411", "6011", "7995", "4829", "0742"]),
    posted_on=dates,
    merchant_id=st.sampled_from(["m-1", "m-2", None]),
    category=st.sampled_from(["electronics", "travel", None]),
)


@settings(max_examples=200, deadline=None)
@given(
    account=st.none() | accounts,
    purchase=purchases,
    outstanding=st.integers(0, 10**8).map(lambda c: D(c).scaleb(-2)),
    flagged=st.booleans(),
    currency=st.sampled_from(["EUR", "USD"]),
)
def test_not_eligible_lists_exactly_every_failing_reason(
    account, purchase, outstanding, flagged, currency
):
    owed = (
        [InstallmentState("plan-x", 1, date(2099, 1, 1), outstanding, D("0"))]
        if outstanding
        else []
    )
    known_in = "EUR" if account is not None else None  # an unknown account has no currency
    decision = decide_offer(account, known_in, NO_AUTO, purchase, currency, owed, flagged, POLICY)
    expected = eligibility_reasons(account, purchase, outstanding, flagged, POLICY)
    if account is not None and currency != "EUR":
        expected.append("currency_mismatch")
    if expected:
        assert decision == NotEligible(tuple(expected))
    else:
        assert isinstance(decision, MakeOffer)


@settings(max_examples=200, deadline=None)
@given(
    amount=money(high=10**7),
    posted_on=dates,
    tier=st.sampled_from(["silver", "gold", "platinum", "diamond"]),
    segment=st.sampled_from(["standard", "high_net_worth", "young"]),
    category=st.sampled_from(["electronics", "travel", None]),
)
def test_every_offer_option_schedules_the_principal_and_its_fee_exactly(
    amount, posted_on, tier, segment, category
):
    account = AccountView("acc-1", "active", segment, tier, D("10") ** 9, 900)
    purchase = PurchaseFacts(amount, "5411", posted_on, "m-1", category)
    options, _promotion = offer_options(amount, account, purchase, POLICY)
    for option in options:
        schedule = PlanTerms(amount, option, posted_on).schedule()
        assert len(schedule) == option.tenor_months
        assert sum(i.principal for i in schedule) == amount
        assert sum(i.fee for i in schedule) == option.total_fee
        assert schedule[0].amount == option.first_installment
        assert schedule[-1].amount == option.regular_installment


@settings(max_examples=200, deadline=None)
@given(
    amount=st.integers(500_00, 10**8).map(lambda c: D(c).scaleb(-2)),
    posted_on=dates,
    tenor=st.sampled_from([3, 6, 12, 24]),
)
def test_an_auto_converted_plan_schedules_the_purchase_and_the_fee_exactly(
    amount, posted_on, tenor
):
    account = AccountView("acc-1", "active", "standard", "gold", D("10") ** 9, 900)
    purchase = PurchaseFacts(amount, "5411", posted_on)
    decision = decide_offer(
        account, "EUR", AutoConvertSettings(True, D("1.00"), tenor), purchase, "EUR", [],
        False, POLICY,
    )  # fmt: skip
    assert isinstance(decision, ConvertNow)
    schedule = decision.terms.schedule()
    assert sum(i.principal for i in schedule) == amount
    assert sum(i.fee for i in schedule) == decision.terms.option.total_fee
    assert all(i.principal >= 0 and i.fee >= 0 for i in schedule)


# ------------------------------------------------------------------ decide_acceptance

OPEN = OfferView("off-p1", "p1", "acc-1", D("1000.00"), "open")
OPTIONS = {o.tenor_months: o for o in offer_options(D("1000.00"), ACCOUNT, PURCHASE, POLICY)[0]}


def accept(offer=OPEN, tenor=3, planned=False, account=ACCOUNT, owed=(), flagged=False, by="acc-1"):
    return decide_acceptance(
        by, tenor, None, offer, planned, OPTIONS.get(tenor), account, PURCHASE, list(owed),
        flagged, POLICY,
    )  # fmt: skip


def test_an_open_offer_accepted_at_one_of_its_tenors_becomes_a_plan():
    decision = accept()
    assert isinstance(decision, CreatePlan)
    assert decision.redeem_points == 0
    assert decision.terms.option == OPTIONS[3]
    assert decision.terms.principal == D("1000.00")
    assert decision.terms.posted_on == POSTED


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"offer": None}, Rejected("unknown_offer")),
        ({"by": "acc-2"}, Rejected("unknown_offer")),
        ({"offer": OfferView("off-p1", "p1", "acc-1", D("1"), "accepted")},
         Rejected("already_converted", "p1")),
        ({"offer": OfferView("off-p1", "p1", "acc-1", D("1"), "declined")},
         Rejected("declined", "p1")),
        ({"offer": OfferView("off-p1", "p1", "acc-1", D("1"), "expired")},
         Rejected("expired", "p1")),
        ({"offer": OfferView("off-p1", "p1", "acc-1", D("1"), "refunded")},
         Rejected("refunded", "p1")),
        ({"planned": True}, Rejected("already_converted", "p1")),
        ({"tenor": 5}, Rejected("invalid_tenor", "p1")),
        ({"flagged": True}, Rejected("not_eligible", "p1", ("overdue_installment",))),
        ({"account": None}, Rejected("not_eligible", "p1", ("account_unknown",))),
    ],
)  # fmt: skip
def test_an_acceptance_that_cannot_apply_is_rejected_with_its_reason(kwargs, expected):
    assert accept(**kwargs) == expected


def test_acceptance_counts_the_principal_still_owed_and_copies_redeem_points():
    small = AccountView("acc-1", "active", "standard", "gold", D("2000.00"), 700)  # limit 1600
    owed = [InstallmentState("plan-x", 1, date(2026, 3, 1), D("600.01"), D("0"))]
    assert accept(account=small, owed=owed) == Rejected(
        "not_eligible", "p1", ("installment_limit_exceeded",)
    )
    decision = decide_acceptance(
        "acc-1", 6, 250, OPEN, False, OPTIONS[6], ACCOUNT, PURCHASE, [], False, POLICY
    )
    assert isinstance(decision, CreatePlan) and decision.redeem_points == 250


@settings(max_examples=200, deadline=None)
@given(
    units=st.integers(500, 10**7),
    cents=st.integers(0, 999),
    posted_on=dates,
    tenor=st.sampled_from([3, 6, 12, 24]),
    digits=st.sampled_from([0, 2, 3]),
)
def test_an_accepted_plan_schedules_the_principal_and_the_fee_exactly(
    units, cents, posted_on, tenor, digits
):
    principal = (D(units) + D(cents) / 1000).quantize(D(1).scaleb(-digits), rounding="ROUND_DOWN")
    purchase = PurchaseFacts(principal, "5411", posted_on)
    rich = AccountView("acc-1", "active", "standard", "gold", D("10") ** 9, 900)
    options = {
        o.tenor_months: o for o in offer_options(principal, rich, purchase, POLICY, digits)[0]
    }
    view = OfferView("off-p", "p", "acc-1", principal, "open")
    decision = decide_acceptance(
        "acc-1", tenor, None, view, False, options[tenor], rich, purchase, [], False, POLICY,
        digits,
    )  # fmt: skip
    assert isinstance(decision, CreatePlan)
    schedule = decision.terms.schedule()
    unit = D(1).scaleb(-digits)
    assert sum(i.principal for i in schedule) == principal
    assert sum(i.fee for i in schedule) == options[tenor].total_fee
    assert all(i.principal == i.principal.quantize(unit) >= 0 for i in schedule)
    assert all(i.fee == i.fee.quantize(unit) >= 0 for i in schedule)


# ------------------------------------------------------------------ decide_decline


@pytest.mark.parametrize(
    "status, expected",
    [
        ("open", "decline"),
        ("declined", "already_declined"),
        ("accepted", Rejected("already_converted", "p1")),
        ("expired", Rejected("expired", "p1")),
        ("refunded", Rejected("refunded", "p1")),
    ],
)
def test_a_decline(status, expected):
    view = OfferView("off-p1", "p1", "acc-1", D("1000.00"), status)
    assert decide_decline("acc-1", view) == expected


def test_a_decline_of_an_unknown_or_foreign_offer():
    assert decide_decline("acc-1", None) == Rejected("unknown_offer")
    assert decide_decline("acc-2", OPEN) == Rejected("unknown_offer")
