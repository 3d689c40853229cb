from dataclasses import replace
from datetime import date
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.offers.domain import (
    AccountView,
    PurchaseFacts,
    apr,
    build_schedule,
    flat_apr,
    is_expired,
    monthly_rate,
    offer_expires_on,
    offer_options,
    total_fee,
)
from services.offers.policy import OffersPolicy, Promotion
from tests.builders.offers import float_irr_percent, money

POLICY = OffersPolicy()
ACCOUNT = AccountView("acc-1", "active", "standard", "gold", D("10000.00"), 700)
PURCHASE = PurchaseFacts(D("1000.00"), "5732", date(2026, 11, 28), "m-42", "electronics")
DEFAULT_RATES = sorted(
    {
        (t, monthly_rate(t, seg, POLICY))
        for t in POLICY.tenors_for("diamond")
        for seg in ("standard", "high_net_worth")
    }
)


def test_twelve_months_at_0_60_percent_flat_is_13_03():
    assert flat_apr(D("0.006"), 12) == D("13.03")
    schedule = build_schedule(D("1000.00"), D("72.00"), 12, date(2026, 1, 31))
    assert apr(D("1000.00"), [i.amount for i in schedule]) == D("13.03")


def test_no_fee_is_zero_apr():
    assert flat_apr(D("0"), 24) == D("0.00")
    assert str(apr(D("900.00"), [D("300.00")] * 3)) == "0.00"


def test_the_rounded_schedule_has_its_own_irr():
    # 500.00 over 12: 41.74 + 3.00 first, then 41.66 + 3.00; paying the remainder first
    # lifts the IRR of these exact cash flows above the flat-rate figure.
    schedule = build_schedule(D("500.00"), D("36.00"), 12, date(2026, 1, 1))
    assert apr(D("500.00"), [i.amount for i in schedule]) == D("13.04")


@pytest.mark.parametrize("tenor, rate", DEFAULT_RATES)
def test_flat_apr_matches_an_independent_irr(tenor, rate):
    level = float(1 + rate * tenor) / tenor
    expected = float_irr_percent(1.0, [level] * tenor)
    assert abs(float(flat_apr(rate, tenor)) - expected) <= 0.005 + 1e-9
    assert flat_apr(rate, tenor).as_tuple().exponent == -2


@given(principal=money(2, high=10**7), data=st.data())
def test_apr_of_any_schedule_matches_an_independent_irr(principal, data):
    tenor, rate = data.draw(st.sampled_from(DEFAULT_RATES))
    schedule = build_schedule(principal, total_fee(principal, rate, tenor), tenor, date(2026, 1, 1))
    amounts = [i.amount for i in schedule]
    expected = float_irr_percent(float(principal), [float(a) for a in amounts])
    assert abs(float(apr(principal, amounts)) - expected) <= 0.005 + 1e-6


def test_apr_of_an_irregular_schedule():
    # 100 now against 110 in one month: 10 % a month, 120 % a year
    assert apr(D("100"), [D("110")]) == D("120.00")


def test_default_offer():
    options, promotion = offer_options(D("1000.00"), ACCOUNT, PURCHASE, POLICY)
    assert promotion is None
    got = [
        (
            o.tenor_months,
            o.monthly_fee_rate,
            o.total_fee,
            o.first_installment,
            o.regular_installment,
            o.fee_model,
        )
        for o in options
    ]
    assert got == [
        (3, D("0.007500"), D("22.50"), D("340.84"), D("340.83"), "flat_monthly"),
        (6, D("0.007000"), D("42.00"), D("173.70"), D("173.66"), "flat_monthly"),
        (12, D("0.006000"), D("72.00"), D("89.37"), D("89.33"), "flat_monthly"),
        (24, D("0.006000"), D("144.00"), D("47.82"), D("47.66"), "flat_monthly"),
    ]
    assert options[2].apr == D("13.03")
    for o in options:
        assert o.apr == flat_apr(o.monthly_fee_rate, o.tenor_months)


def test_diamond_sees_36_months_and_high_net_worth_pays_80_percent():
    account = replace(ACCOUNT, tier="diamond", segment="high_net_worth")
    options, _ = offer_options(D("1000.00"), account, PURCHASE, POLICY)
    assert [o.tenor_months for o in options] == [3, 6, 12, 24, 36]
    assert [o.monthly_fee_rate for o in options] == [
        D("0.006000"),
        D("0.005600"),
        D("0.004800"),
        D("0.004800"),
        D("0.004800"),
    ]
    assert options[-1].total_fee == D("172.80")


def test_remainder_last_makes_the_first_installment_regular():
    policy = POLICY.model_copy(update={"remainder_placement": "last"})
    options, _ = offer_options(D("1000.00"), ACCOUNT, PURCHASE, policy)
    assert (options[0].first_installment, options[0].regular_installment) == (
        D("340.83"),
        D("340.83"),
    )


def promo(**fields):
    base = dict(
        id="promo-1", tenors=[3, 6], valid_from=date(2026, 11, 1), valid_to=date(2026, 11, 30)
    )
    return Promotion(**{**base, **fields})


@pytest.mark.parametrize(
    "promotion, applies",
    [
        (promo(merchant_id="m-42"), True),
        (promo(category="electronics"), True),
        (promo(merchant_id="m-other"), False),
        (promo(category="travel"), False),
        (promo(category="electronics", valid_from=date(2026, 11, 28)), True),  # inclusive
        (promo(category="electronics", valid_to=date(2026, 11, 28)), True),
        (promo(category="electronics", valid_to=date(2026, 11, 27)), False),
        (
            promo(
                category="electronics", valid_from=date(2026, 11, 29), valid_to=date(2026, 12, 31)
            ),
            False,
        ),
        (promo(category="electronics", tenors=[48]), False),  # no offered tenor
    ],
)
def test_merchant_promotions(promotion, applies):
    policy = POLICY.model_copy(update={"promotions": [promotion]})
    options, promotion_id = offer_options(D("1000.00"), ACCOUNT, PURCHASE, policy)
    assert promotion_id == ("promo-1" if applies else None)
    by_tenor = {o.tenor_months: o for o in options}
    if applies:
        for tenor in (3, 6):
            assert by_tenor[tenor].monthly_fee_rate == 0 and by_tenor[tenor].total_fee == 0
            assert by_tenor[tenor].apr == D("0.00")
        assert by_tenor[12].monthly_fee_rate == D("0.006000")  # not promoted
    else:
        assert all(o.total_fee > 0 for o in options)


def test_the_first_matching_promotion_wins():
    policy = POLICY.model_copy(
        update={
            "promotions": [
                promo(id="a", category="travel"),
                promo(id="b", merchant_id="m-42", tenors=[12]),
                promo(id="c", category="electronics"),
            ]
        }
    )
    options, promotion_id = offer_options(D("1000.00"), ACCOUNT, PURCHASE, policy)
    assert promotion_id == "b"
    assert [o.total_fee == 0 for o in options] == [False, False, True, False]


def test_a_zero_digit_currency_offer():
    options, _ = offer_options(D("100000"), ACCOUNT, PURCHASE, POLICY, minor_digits=0)
    assert options[0].total_fee == D("2250") and options[0].first_installment == D("34084")


@pytest.mark.parametrize(
    "business_date, expired",
    [(date(2026, 12, 27), False), (date(2026, 12, 28), True), (date(2026, 12, 29), True)],
)
def test_offer_expiry(business_date, expired):
    """30 days after the posting date: the end of day of expires_on expires the offer."""
    expires_on = offer_expires_on(date(2026, 11, 28), POLICY)
    assert expires_on == date(2026, 12, 28)
    assert is_expired(expires_on, business_date) is expired


def test_an_offer_is_never_acceptable_31_days_after_posting():
    expires_on = offer_expires_on(date(2026, 1, 1), POLICY)
    assert expires_on == date(2026, 1, 31)
    assert not is_expired(expires_on, date(2026, 1, 30))
    assert is_expired(expires_on, date(2026, 1, 31))  # closed before Feb 1 (day 31)
