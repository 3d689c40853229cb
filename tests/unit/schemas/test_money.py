"""Money rules in Python construction and on the wire (Hypothesis for exactness)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import PurchasePosted, decode, encode, new_event
from schemas.money import MINOR_UNITS
from schemas.payloads import OfferMade
from tests.builders.examples import ACCOUNT, PAYLOADS, envelope, raw

REQUIRED_CURRENCIES = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "JPY": 0,
    "KRW": 0,
    "CHF": 2,
    "CAD": 2,
    "AUD": 2,
    "SGD": 2,
    "HKD": 2,
    "CNY": 2,
    "INR": 2,
    "BRL": 2,
    "MXN": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "PLN": 2,
    "CZK": 2,
    "HUF": 2,
    "TRY": 2,
    "ZAR": 2,
    "THB": 2,
    "IDR": 2,
    "MYR": 2,
    "PHP": 2,
    "VND": 0,
    "KWD": 3,
    "BHD": 3,
    "JOD": 3,
    "OMR": 3,
    "TND": 3,
    "CLP": 0,
    "ISK": 0,
}


def test_minor_units_table() -> None:
    for code, digits in REQUIRED_CURRENCIES.items():
        assert MINOR_UNITS[code] == digits, code


def posted(**changes: object) -> PurchasePosted:
    return PurchasePosted.model_validate({**PAYLOADS["purchase.posted"], **changes})


def test_python_construction_applies_the_same_rules() -> None:
    assert posted(amount=Decimal("12.5")).amount == Decimal("12.50")
    assert str(posted(amount=Decimal("1E+3")).amount) == "1000.00"
    assert str(posted(amount="12", currency="JPY").amount) == "12"
    for bad in (
        12.5,
        12,
        Decimal("12.345"),
        Decimal("NaN"),
        Decimal("-1.00"),
        Decimal("0"),
        Decimal("1E+30"),
        "1e3",
        True,
    ):
        with pytest.raises(ValidationError):
            posted(amount=bad)


def test_nested_money_uses_the_payload_currency() -> None:
    data = {**PAYLOADS["offer.made"], "currency": "JPY", "principal": "100000"}
    with pytest.raises(ValidationError, match="options\\[0\\].total_fee: JPY amounts"):
        OfferMade.model_validate(data)
    data["options"] = [
        {**o, "total_fee": "750", "first_installment": "33334", "regular_installment": "33333"}
        for o in data["options"]
    ]
    offer = OfferMade.model_validate(data)
    assert json.loads(offer.model_dump_json())["options"][0]["total_fee"] == "750"


def test_rates_are_decimal_strings_kept_as_written() -> None:
    offer = OfferMade.model_validate(PAYLOADS["offer.made"])
    assert offer.options[1].monthly_fee_rate == Decimal("0.0060")
    dumped = json.loads(offer.model_dump_json())["options"][1]
    assert dumped["monthly_fee_rate"] == "0.0060" and dumped["apr"] == "13.03"
    for bad in (13.03, 13, "-1.0", "1e2", "13.123456789"):
        option = {**PAYLOADS["offer.made"]["options"][0], "apr": bad}
        with pytest.raises(ValidationError, match="apr"):
            OfferMade.model_validate({**PAYLOADS["offer.made"], "options": [option]})


def test_zero_allowed_where_it_makes_sense() -> None:
    data = {
        **PAYLOADS["account.delinquency"],
        "days_past_due": 0,
        "overdue_amount": "0.00",
        "oldest_unpaid_due_date": None,
    }
    env = decode(
        "installments.plans.v1", ACCOUNT.encode(), raw(envelope("account.delinquency", data=data))
    )
    assert env.data.overdue_amount == 0


@given(
    st.decimals(
        min_value=Decimal("0.01"),
        max_value=Decimal("999999999999.99"),
        places=2,
        allow_nan=False,
        allow_infinity=False,
    )
    | st.integers(min_value=1, max_value=10**12 - 1).map(Decimal)
    | st.decimals(
        min_value=Decimal("0.1"),
        max_value=Decimal("99999999999.9"),
        places=1,
        allow_nan=False,
        allow_infinity=False,
    )
)
def test_any_usd_amount_round_trips_exactly(amount: Decimal) -> None:
    data = PurchasePosted.model_validate({**PAYLOADS["purchase.posted"], "amount": amount})
    env = new_event(
        "purchase.posted",
        data=data,
        source="card-system",
        cause=None,
        rule="hypothesis",
        time=data.posted_at,
    )
    wire = encode(env)
    text = json.loads(wire)["data"]["amount"]
    assert text == f"{amount:.2f}"
    back = decode("card.purchases.v1", ACCOUNT.encode(), wire)
    assert back.data.amount == amount
    assert encode(back) == wire
    # and straight from the wire text
    assert (
        decode(
            "card.purchases.v1",
            ACCOUNT.encode(),
            raw(
                envelope(
                    "purchase.posted",
                    data={**PAYLOADS["purchase.posted"], "amount": format(amount, "f")},
                )
            ),
        ).data.amount
        == amount
    )


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_exponent_fast_path_agrees_with_the_digits(value):
    from schemas.money import _exponent

    assert _exponent(value) == value.as_tuple().exponent
