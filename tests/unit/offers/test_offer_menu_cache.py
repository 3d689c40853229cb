"""Offer menus are computed once per shape (#16): (amount, policy, segment, tier, promotion,
currency digits, pre-approval discount). The cached menu is the menu computed afresh."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from services.offers import domain
from services.offers.domain import AccountView, PurchaseFacts, offer_menu, offer_options
from services.offers.policy import OffersPolicy, Promotion

POLICY = OffersPolicy()
ACCOUNT = AccountView("acc-1", "active", "standard", "gold", D("10000.00"), 700)
PURCHASE = PurchaseFacts(D("1000.00"), "5732", date(2026, 11, 28), "m-42", "electronics")


def fresh(*args: object, **kwargs: object) -> object:
    """The menu computed without the cache."""
    return domain._menu.__wrapped__(*args, **kwargs)  # type: ignore[attr-defined]


def test_the_same_shape_returns_the_same_menu_object() -> None:
    first = offer_menu(D("1234.50"), ACCOUNT, PURCHASE, POLICY)
    again = offer_menu(D("1234.50"), replace(ACCOUNT, account_id="acc-2"), PURCHASE, POLICY)
    assert first[0] is again[0]
    # the amount written with another exponent is the same amount: the same menu values
    other_exponent = offer_menu(D("1234.5"), ACCOUNT, PURCHASE, POLICY)
    assert other_exponent == first
    assert [str(o.total_fee) for o in other_exponent[0]] == [str(o.total_fee) for o in first[0]]


def test_every_part_of_the_shape_is_in_the_key() -> None:
    base = offer_menu(D("1000.00"), ACCOUNT, PURCHASE, POLICY)
    assert offer_menu(D("1000.01"), ACCOUNT, PURCHASE, POLICY) != base
    assert offer_menu(D("1000.00"), replace(ACCOUNT, tier="diamond"), PURCHASE, POLICY) != base
    hnw = replace(ACCOUNT, segment="high_net_worth")
    assert offer_menu(D("1000.00"), hnw, PURCHASE, POLICY) != base
    assert offer_menu(D("1000.00"), ACCOUNT, PURCHASE, POLICY, 0) != base
    assert offer_menu(D("1000.00"), ACCOUNT, PURCHASE, POLICY, 2, D("0.20")) != base
    cheaper = POLICY.model_copy(
        update={
            "monthly_fee_rates": {
                3: D("0.001"),
                6: D("0.001"),
                12: D("0.001"),
                24: D("0.001"),
                36: D("0.001"),
            }
        }
    )
    assert offer_menu(D("1000.00"), ACCOUNT, PURCHASE, cheaper) != base
    promoted = POLICY.model_copy(
        update={
            "promotions": [
                Promotion(
                    id="promo-1",
                    merchant_id="m-42",
                    tenors=[3, 6],
                    valid_from=date(2026, 11, 1),
                    valid_to=date(2026, 11, 30),
                )
            ]
        }
    )
    during = offer_menu(D("1000.00"), ACCOUNT, PURCHASE, promoted)
    after = offer_menu(
        D("1000.00"), ACCOUNT, replace(PURCHASE, posted_on=date(2026, 12, 1)), promoted
    )
    assert during[1] == "promo-1" and during[0][0].total_fee == 0
    assert after == base


@settings(max_examples=200, deadline=None)
@given(
    cents=st.integers(min_value=1, max_value=10**14),
    tier=st.sampled_from(["silver", "gold", "platinum", "diamond"]),
    segment=st.sampled_from(
        ["young", "middle_class", "white_collar", "high_net_worth", "standard"]
    ),
    discount=st.none() | st.sampled_from([D("0"), D("0.2"), D("0.35")]),
    digits=st.sampled_from([0, 2, 3]),
)
def test_a_cached_menu_is_the_menu_computed_afresh(
    cents: int, tier: str, segment: str, discount: D | None, digits: int
) -> None:
    amount = D(cents).scaleb(-digits)
    account = replace(ACCOUNT, tier=tier, segment=segment)
    options, promotion = offer_options(amount, account, PURCHASE, POLICY, digits, discount)
    twice = offer_options(amount, account, PURCHASE, POLICY, digits, discount)
    expected = fresh(
        amount,
        segment,
        tier,
        domain._Same(POLICY),
        domain._Same(None),
        digits,
        discount,
    )
    assert (tuple(options), promotion) == expected == (tuple(twice[0]), twice[1])
    assert [str(o.first_installment) for o in options] == [
        str(o.first_installment) for o in expected[0]
    ]


def test_the_cache_is_bounded() -> None:
    assert domain._menu.cache_info().maxsize == domain.MENU_CACHE_SIZE


@settings(max_examples=300, deadline=None)
@given(
    units=st.integers(min_value=1, max_value=10**15),
    fee_units=st.integers(min_value=0, max_value=10**13),
    tenor=st.integers(min_value=1, max_value=120),
    remainder=st.sampled_from(["first", "last"]),
    digits=st.sampled_from([0, 2, 3]),
)
def test_the_menu_shows_the_schedules_first_and_last_installment(
    units: int, fee_units: int, tenor: int, remainder: str, digits: int
) -> None:
    principal, fee = D(units).scaleb(-digits), D(fee_units).scaleb(-digits)
    schedule = domain.build_schedule(
        principal,
        fee,
        tenor,
        date(2026, 1, 31),
        remainder,
        digits,  # type: ignore[arg-type]
    )
    first, last = domain._end_installments(principal, fee, tenor, remainder, digits)  # type: ignore[arg-type]
    assert (str(first), str(last)) == (str(schedule[0].amount), str(schedule[-1].amount))
