"""One source of limits (schemas/limits.py): what the schemas accept, the tables can store.

- every derived id (offer, plan, case, reminder), built from the longest ids the schemas
  accept, fits its schema type and its column;
- every column named like a payload field is at least as wide as that field allows
  (strings: length; integers: 32 or 64 bits); points columns are 64-bit;
- points for the largest amount (and their sums) fit 64 bits (hypothesis);
- ids and text reject control characters (NUL included) with a readable reason, and the
  JSON Schema says so (pattern / maxLength / maximum).
"""

from __future__ import annotations

import re
import typing
from datetime import date
from decimal import Decimal
from typing import Any

import annotated_types
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from sqlalchemy import BigInteger, Integer, MetaData, String

from schemas import decode, limits
from schemas.envelope import Envelope
from schemas.money import MINOR_UNITS, MoneyModel
from schemas.registry import ENVELOPES
from schemas.types import DerivedId, Id, ReminderId, ShortText, Text
from shared.runtime.db import ID_COLUMN
from shared.runtime.store import runtime_metadata
from tests.builders.examples import ACCOUNT, PAYLOADS, envelope, raw

# --- the payload fields, walked ------------------------------------------------------


def _constraints(annotation: Any, metadata: list[Any]) -> list[Any]:
    """Every constraint object of a field, through ``X | None`` and nested Annotated."""
    found: list[Any] = []
    for item in metadata:
        found.extend(item.metadata if isinstance(item, FieldInfo) else [item])
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is typing.Annotated:
            found.extend(_constraints(arg.__origin__, list(arg.__metadata__)))
    return found


def _models() -> list[type[BaseModel]]:
    """Every payload model and every model nested in one, plus the envelope."""
    seen: list[type[BaseModel]] = [Envelope]
    todo = [cls.model_fields["data"].annotation for cls in ENVELOPES.values()]
    while todo:
        model = todo.pop()
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or model in seen:
            continue
        seen.append(model)
        for f in model.model_fields.values():
            for arg in (f.annotation, *typing.get_args(f.annotation)):
                todo.extend([arg, *typing.get_args(arg)])
    return seen


def _field_limits() -> tuple[dict[str, int], dict[str, int]]:
    """Field name -> the longest string / the largest integer any model allows for it."""
    lengths: dict[str, int] = {}
    integers: dict[str, int] = {}
    for model in _models():
        for name, f in model.model_fields.items():
            for arg in (f.annotation, *typing.get_args(f.annotation)):
                if typing.get_origin(arg) is typing.Literal:
                    longest = max(len(str(v)) for v in typing.get_args(arg))
                    lengths[name] = max(lengths.get(name, 0), longest)
            for c in _constraints(f.annotation, f.metadata):
                if isinstance(c, annotated_types.MaxLen) and not _is_list(f.annotation):
                    lengths[name] = max(lengths.get(name, 0), c.max_length)
                if isinstance(c, annotated_types.Le):
                    integers[name] = max(integers.get(name, 0), int(c.le))  # type: ignore[call-overload]
    return lengths, integers


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list


FIELD_LENGTHS, FIELD_INTEGERS = _field_limits()


def _service_metadata() -> dict[str, MetaData]:
    from services.collections import tables as collections
    from services.offers import tables as offers
    from services.points import tables as points
    from services.purchases import tables as purchases
    from services.reminders import tables as reminders

    return {
        "collections": collections.metadata,
        "offers": offers.metadata,
        "points": points.metadata,
        "purchases": purchases.metadata,
        "reminders": reminders.metadata,
        "runtime": runtime_metadata,
    }


def _columns() -> list[tuple[str, Any]]:
    return [
        (f"{service}.{table.name}.{column.name}", column)
        for service, metadata in _service_metadata().items()
        for table in metadata.tables.values()
        for column in table.columns
    ]


#: Columns whose name is not a payload field but which hold one (column -> field).
STORED_AS = {
    "event_id": "id",
    "cause_event_id": "id",
    "cause_id": "id",
    "first_plan_id": "plan_id",
    "auto_convert_tenor": "tenor_months",
    "offset_days": "days_before_due",
    "redeem_requested": "redeem_points",
    "points_earned": "points",
    "points_reversed": "points",
    "points_redeemed": "points",
    "bonus_points": "points",
    "bonus_reversed": "points",
    "monthly_fee_rate": "apr",  # a Rate, stored as its text
    # second release
    "pre_approval_fee_discount": "apr",  # a Share (a Rate below 1), stored as its text
    "points_restored": "points",
    "requested": "points_to_restore",  # points.restorations
    "restored": "points",
    "cause_key": "refund_id",  # "cancelled" or "adjusted:<refund_id>" (+9 characters)
    "resolved_by": "contact_id",  # collections.disputes: the dispute_resolved contact
}

#: String columns the services fill themselves (states, reasons, bookkeeping): no field.
INTERNAL_STRINGS = {
    "status",
    "outcome",
    "kind",
    "action",
    "bucket",
    "resolution",
    "reason",
    "bonus_basis",
    "fee_model",
    "consumer",
    "topic",
    "batch",
    "digest",
    "component",
    "name",
}
#: Integer columns the services fill themselves.
INTERNAL_INTEGERS = {"plan_order", "partition", "attempts", "version"}

RATE_TEXT_MAX = len("999999.99999999")  # Rate: 6 digits, a point, 8 places


def test_the_longest_field_of_every_string_column_fits_it():
    checked = 0
    for where, column in _columns():
        if not isinstance(column.type, String) or column.type.length is None:
            continue
        field = STORED_AS.get(column.name, column.name)
        if field == "id":
            need = limits.EVENT_ID_LENGTH
        elif field == "apr":
            need = RATE_TEXT_MAX
        elif field == "currency":
            need = max(len(c) for c in MINOR_UNITS)
        elif field in ("mcc", "card_last4"):
            need = 4
        elif field in FIELD_LENGTHS:
            need = FIELD_LENGTHS[field]
        else:
            assert column.name in INTERNAL_STRINGS, f"{where}: which field does it hold?"
            continue
        assert column.type.length >= need, f"{where}: VARCHAR({column.type.length}) < {need}"
        checked += 1
    assert checked > 60


def test_every_integer_column_is_wide_enough_for_its_field():
    checked = 0
    for where, column in _columns():
        if not isinstance(column.type, Integer):
            continue
        field = STORED_AS.get(column.name, column.name)
        if field in ("seq", "entry_id", "offset", "next_offset", "last_offset"):
            continue  # seq: see below; the rest are the database's and Kafka's (BIGINT)
        if field not in FIELD_INTEGERS:
            assert column.name in INTERNAL_INTEGERS, f"{where}: which field does it hold?"
            continue
        bits64 = isinstance(column.type, BigInteger)
        top = limits.COUNT_MAX if bits64 else limits.INT32_MAX
        assert FIELD_INTEGERS[field] <= top, f"{where}: {field} <= {FIELD_INTEGERS[field]}"
        checked += 1
    assert FIELD_INTEGERS["seq"] == limits.SEQ_MAX <= limits.INT32_MAX
    assert checked > 15


def test_points_columns_are_64_bit():
    points = [
        (where, column)
        for where, column in _columns()
        if STORED_AS.get(column.name, column.name) in ("points", "redeem_points", "balance_after")
    ]
    assert len(points) >= 10
    for where, column in points:
        assert isinstance(column.type, BigInteger), where


def test_id_columns_hold_every_kind_of_id():
    assert ID_COLUMN >= max(limits.ID_MAX, limits.DERIVED_ID_MAX, limits.REMINDER_ID_MAX)
    assert FIELD_LENGTHS["account_id"] == FIELD_LENGTHS["purchase_id"] == limits.ID_MAX
    assert FIELD_LENGTHS["plan_id"] == FIELD_LENGTHS["offer_id"] == limits.DERIVED_ID_MAX
    assert FIELD_LENGTHS["case_id"] == limits.DERIVED_ID_MAX
    assert FIELD_LENGTHS["reminder_id"] == limits.REMINDER_ID_MAX


# --- derived ids -------------------------------------------------------------------------


def test_the_longest_derived_ids_fit_their_types_and_columns():
    from services.collections.domain import case_id_for
    from services.collections.tables import case_events, cases
    from services.offers.repository import offer_id_for, plan_id_for
    from services.offers.tables import offers, plans
    from services.reminders.domain import reminder_id
    from services.reminders.policy import DEFAULT_POLICY
    from services.reminders.tables import reminders

    longest = "x" * limits.ID_MAX
    derived = {
        "offer_id": (offer_id_for(longest), [offers.c.offer_id]),
        "plan_id": (plan_id_for(longest), [plans.c.plan_id]),
        "case_id": (
            case_id_for(longest, date.max),
            [cases.c.case_id, case_events.c.case_id],
        ),
    }
    for name, (value, columns) in derived.items():
        assert len(value) <= limits.DERIVED_ID_MAX, name
        TypeAdapter(DerivedId).validate_python(value)
        assert all(len(value) <= c.type.length for c in columns), name
    # a reminder id is derived from a plan id: the longest the schemas accept, not only ours
    offset = max(max(DEFAULT_POLICY.offsets), limits.DAYS_MAX)
    rem = reminder_id("p" * limits.DERIVED_ID_MAX, limits.SEQ_MAX, offset)
    assert len(rem) <= limits.REMINDER_ID_MAX <= reminders.c.reminder_id.type.length
    TypeAdapter(ReminderId).validate_python(rem)


# --- integers and money ------------------------------------------------------------------


def test_the_limits_fit_the_storage():
    assert limits.COUNT_MAX == 2**63 - 1
    assert limits.DAYS_MAX == (date(9999, 12, 31) - date(1, 1, 1)).days <= limits.INT32_MAX
    assert max(MINOR_UNITS.values()) == limits.MONEY_SCALE_MAX
    assert limits.AMOUNT_MAX == Decimal("999999999999.999")
    # a sum of a million largest amounts is still a Total
    assert limits.AMOUNT_MAX * limits.HEADROOM_EVENTS_PER_ACCOUNT <= limits.TOTAL_MAX
    # and stays exact in Python's default decimal context (28 digits)
    assert limits.TOTAL_INTEGER_DIGITS + limits.MONEY_SCALE_MAX < 28


def test_the_default_points_policy_is_what_the_limits_are_sized_for():
    from services.points.policy import DEFAULT_POLICY

    top = max(DEFAULT_POLICY.tier_multipliers.values()) * DEFAULT_POLICY.points_per_unit
    assert top <= limits.POINTS_MULTIPLIER_MAX
    assert DEFAULT_POLICY.first_plan_bonus_factor <= 1
    assert DEFAULT_POLICY.points_per_currency_unit <= limits.POINTS_PER_CURRENCY_UNIT


_USD_MAX = limits.money_max(limits.AMOUNT_INTEGER_DIGITS, 2)


@given(
    amount=st.decimals(min_value=Decimal("0.01"), max_value=_USD_MAX, places=2) | st.just(_USD_MAX)
)
def test_points_of_any_amount_fit_64_bits_a_million_times(amount: Decimal):
    from services.points import domain

    earned = domain.points_for_purchase(amount, "diamond")
    bonus = domain.first_plan_bonus(earned, account_had_plan=False)
    # credits build the balance: a million of the largest still fit
    assert (earned + bonus) * limits.HEADROOM_EVENTS_PER_ACCOUNT <= limits.COUNT_MAX
    # redeeming a fee as large as the amount itself (a debit: at most the balance)
    redemption = domain.redeem(limits.COUNT_MAX, limits.COUNT_MAX, amount)
    assert redemption.points <= amount * limits.POINTS_PER_CURRENCY_UNIT <= limits.COUNT_MAX
    # the reversal arithmetic stays exact at the extremes
    assert domain.points_to_reverse(earned, 0, amount, amount, Decimal(0)) == earned


def test_the_largest_amount_and_total_are_accepted_and_one_more_digit_is_not():
    from schemas.payloads import AccountDelinquency, PurchasePosted

    PurchasePosted.model_validate({**PAYLOADS["purchase.posted"], "amount": str(_USD_MAX)})
    with pytest.raises(ValidationError, match="at most 12 digits before the decimal point"):
        PurchasePosted.model_validate({**PAYLOADS["purchase.posted"], "amount": "1000000000000"})
    with pytest.raises(ValidationError, match="at most 12 digits"):
        PurchasePosted.model_validate(
            {**PAYLOADS["purchase.posted"], "amount": Decimal("1000000000000")}
        )
    total = str(limits.money_max(limits.TOTAL_INTEGER_DIGITS, 2))
    AccountDelinquency.model_validate({**PAYLOADS["account.delinquency"], "overdue_amount": total})


# --- characters --------------------------------------------------------------------------

_CONTROLS = [chr(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0))]


@pytest.mark.parametrize("kind", [Id, DerivedId, ReminderId])
def test_ids_reject_every_control_character(kind: Any):
    adapter = TypeAdapter(kind)
    for char in _CONTROLS:
        with pytest.raises(ValidationError, match="must not contain control characters"):
            adapter.validate_python(f"acc{char}1")
    assert adapter.validate_python("acc-Zürich-東京 1") == "acc-Zürich-東京 1"


@pytest.mark.parametrize("kind", [Text, ShortText])
def test_text_rejects_control_characters_but_the_tab(kind: Any):
    adapter = TypeAdapter(kind)
    for char in _CONTROLS:
        if char == "\t":
            assert adapter.validate_python("a\tb") == "a\tb"
            continue
        with pytest.raises(ValidationError, match="must not contain control characters"):
            adapter.validate_python(f"Electro{char}World")
    assert adapter.validate_python("Café Ünïcødé 東京 \u00a0🙂") == "Café Ünïcødé 東京 \u00a0🙂"


def test_the_json_schema_patterns_say_what_the_validators_do():
    for kind, pattern in ((Id, limits.ID_PATTERN), (Text, limits.TEXT_PATTERN)):
        schema = TypeAdapter(kind).json_schema()
        assert schema["pattern"] == pattern
        compiled = re.compile(pattern)
        adapter = TypeAdapter(kind)
        for code in range(0x0, 0x3000):
            value = f"a{chr(code)}"
            try:
                adapter.validate_python(value)
                accepted = True
            except ValidationError:
                accepted = False
            assert accepted == bool(compiled.fullmatch(value)), hex(code)


def test_the_exported_json_schemas_carry_the_limits():
    schema = ENVELOPES["purchase.posted"].model_json_schema()
    data = schema["$defs"]["PurchasePosted"]["properties"]
    assert data["purchase_id"]["maxLength"] == limits.ID_MAX
    assert data["purchase_id"]["pattern"] == limits.ID_PATTERN
    # > 0, at most 12 digits before the point and 3 after (the payload narrows it by
    # currency: tests/unit/schemas/test_money_json_schema.py)
    assert data["amount"]["pattern"] == (
        r"^([1-9][0-9]{0,11}(\.[0-9]{1,3})?|0\.([1-9][0-9]{0,2}|0[1-9][0-9]{0,1}|00[1-9]))"
        r"(?![\s\S])"
    )
    accepted = ENVELOPES["offer.accepted"].model_json_schema()["$defs"]["OfferAccepted"]
    assert accepted["properties"]["redeem_points"]["anyOf"][0]["maximum"] == limits.COUNT_MAX
    assert accepted["properties"]["offer_id"]["maxLength"] == limits.DERIVED_ID_MAX


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        (
            "purchase_id",
            "p" * (limits.ID_MAX + 1),
            "data.purchase_id: must have at most 64 characters",
        ),
        (
            "card_token",
            "tok\u0000",
            "data.card_token: must not contain control characters (found U+0000",
        ),
    ],
)
def test_a_rejected_id_has_a_readable_reason(field: str, value: str, reason: str):
    from schemas import InvalidEvent

    message = envelope("purchase.posted")
    message["data"][field] = value
    with pytest.raises(InvalidEvent) as caught:
        decode("card.purchases.v1", ACCOUNT.encode(), raw(message))
    assert reason in str(caught.value)


def test_money_models_know_the_digits_of_each_money_field():
    from schemas.money import _MoneyMarker
    from schemas.payloads import AccountDelinquency, EscalationResolved, PurchasePosted

    def digits(model: type[MoneyModel], name: str) -> int:
        f = model.model_fields[name]
        (marker,) = [
            c for c in _constraints(f.annotation, f.metadata) if isinstance(c, _MoneyMarker)
        ]
        return marker.integer_digits

    assert digits(PurchasePosted, "amount") == limits.AMOUNT_INTEGER_DIGITS
    assert digits(AccountDelinquency, "overdue_amount") == limits.TOTAL_INTEGER_DIGITS
    assert digits(EscalationResolved, "amount") == limits.GRAND_TOTAL_INTEGER_DIGITS
    # a charge-off adds two sums
    assert 2 * limits.TOTAL_MAX <= limits.money_max(limits.GRAND_TOTAL_INTEGER_DIGITS)
