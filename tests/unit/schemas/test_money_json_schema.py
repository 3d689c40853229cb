"""The exported JSON Schemas accept exactly the money the services accept (#15).

A producer that validates with ``schemas/json/<type>.json`` (or the AsyncAPI document)
must not be told "valid" for a message the services then dead-letter, nor "invalid" for
one they apply. For sample money strings (and non-strings), in a currency of each
minor-unit class (USD 2, JPY 0, KWD 3), placed in money fields of every kind (``Money``,
``PositiveMoney``, ``Total``, ``PositiveTotal``, ``GrandTotal``; top-level, in a nested
object, in a list of objects), the committed JSON Schema (validated with ``jsonschema``)
and the consumers' decoder (:func:`schemas.codec.decode`, the pydantic models) agree.

What JSON Schema does not express, and these cases therefore avoid: sums across fields
(a plan's schedule adds up to its principal, a kept promise's paid amount covers the
promised one) and the promise fields' all-or-none rule of ``contact.recorded``.
"""

from __future__ import annotations

import copy
import json
import typing
from decimal import Decimal
from typing import Any

import jsonschema
import pytest
import yaml

from schemas import asyncapi, export
from schemas.codec import InvalidEvent, decode
from schemas.limits import (
    AMOUNT_INTEGER_DIGITS,
    GRAND_TOTAL_INTEGER_DIGITS,
    TOTAL_INTEGER_DIGITS,
)
from schemas.money import MINOR_UNITS, MoneyModel
from schemas.registry import EVENT_TYPES, topic_for
from tests.builders import examples

CURRENCIES = ("USD", "JPY", "KWD")

#: Strings no money field accepts, whatever the currency.
ALWAYS_INVALID = [
    "-1",
    "-1.00",
    "+1.00",
    "1e3",
    "1E+3",
    " 1.00",
    "1.00 ",
    "1.00\n",
    "\n1.00",
    "01.00",
    "00",
    ".5",
    "5.",
    "1,000.00",
    "1 000",
    "NaN",
    "Infinity",
    "",
    "0x10",
    "１００",  # full-width digits: Decimal() reads them, the contract does not
    "١٠٠",  # Arabic-Indic digits
    "100.0000",
    "-0",
]

#: Values that are not strings: JSON numbers, booleans, null, containers.
NOT_STRINGS: list[Any] = [100, 12.5, 0, True, ["1.00"], {"amount": "1.00"}]

#: Fields where ``null`` is an answer: ``installment_limit`` is optional. Not tried where
#: null depends on another field (rules JSON Schema here does not express):
#: ``escalation.resolved.amount`` (required for a charge-off) and
#: ``contact.recorded.promised_amount`` (required with ``promise_to_pay``).
NULL_ACCEPTED: dict[tuple[str, tuple[str | int, ...]], bool] = {
    ("account.upserted", ("installment_limit",)): True
}
NULL_NOT_TRIED = {("escalation.resolved", ("amount",)), ("contact.recorded", ("promised_amount",))}

#: (event type, path to a money field, integer digits, may be zero). Paths are keys and
#: list indexes into ``data``.
FIELDS: list[tuple[str, tuple[str | int, ...], int, bool]] = [
    ("purchase.posted", ("amount",), AMOUNT_INTEGER_DIGITS, False),
    ("payment.received", ("amount",), AMOUNT_INTEGER_DIGITS, False),
    ("account.upserted", ("credit_limit",), AMOUNT_INTEGER_DIGITS, True),
    ("account.upserted", ("installment_limit",), AMOUNT_INTEGER_DIGITS, True),
    ("account.upserted", ("auto_convert", "threshold"), AMOUNT_INTEGER_DIGITS, True),
    ("account.upserted", ("pre_approval", "limit"), AMOUNT_INTEGER_DIGITS, True),
    ("offer.made", ("principal",), AMOUNT_INTEGER_DIGITS, False),
    ("offer.made", ("options", 0, "total_fee"), AMOUNT_INTEGER_DIGITS, True),
    ("offer.made", ("options", 0, "first_installment"), AMOUNT_INTEGER_DIGITS, False),
    ("contact.recorded", ("promised_amount",), AMOUNT_INTEGER_DIGITS, False),
    ("account.delinquency", ("overdue_amount",), TOTAL_INTEGER_DIGITS, True),
    ("escalation.raised", ("overdue_amount",), TOTAL_INTEGER_DIGITS, False),
    ("escalation.resolved", ("amount",), GRAND_TOTAL_INTEGER_DIGITS, True),
]


def _samples(integer_digits: int, scale: int, zero_ok: bool) -> dict[str, bool]:
    """Sample string -> whether a field of this kind accepts it in a ``scale`` currency."""
    largest = "9" * integer_digits
    expected: dict[str, bool] = dict.fromkeys(ALWAYS_INVALID, False)
    expected |= {
        "0": zero_ok,
        "0.0": zero_ok and scale >= 1,
        "0.00": zero_ok and scale >= 2,
        "0.000": zero_ok and scale >= 3,
        "0.5": scale >= 1,
        "0.01": scale >= 2,
        "0.001": scale >= 3,
        "0.0001": False,
        "1": True,
        "100": True,
        "100.0": scale >= 1,
        "100.00": scale >= 2,
        "100.5": scale >= 1,
        "100.000": scale >= 3,
        "1234.567": scale >= 3,
        largest: True,  # the largest allowed in a currency without decimals
        f"{largest}.99": scale >= 2,  # ... with two
        f"{largest}.999": scale >= 3,  # ... with three
        "1" + "0" * integer_digits: False,  # one digit too many
        "1" + "0" * integer_digits + ".00": False,
    }
    return expected


def _set(data: dict[str, Any], path: tuple[str | int, ...], value: Any) -> None:
    target: Any = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


def _money_in(model: type[MoneyModel], data: dict[str, Any], currency: str) -> None:
    """Rewrite every money amount of ``data`` (a valid USD example) as ``currency`` would
    write it, so only the field under test can make the message invalid."""
    quantum = Decimal(1).scaleb(-MINOR_UNITS[currency])
    for name in model.__money_fields__:
        if data.get(name) is not None:
            data[name] = str(Decimal(data[name]).quantize(quantum))
    for name in model.__money_children__:
        child = data.get(name)
        child_model = model.model_fields[name].annotation
        items = child if isinstance(child, list) else [child] if child is not None else []
        for item in items:
            part = _part_model(child_model)
            _money_in(part, item, currency)


def _part_model(annotation: Any) -> type[MoneyModel]:
    for candidate in [annotation, *typing.get_args(annotation)]:
        if isinstance(candidate, type) and issubclass(candidate, MoneyModel):
            return candidate
        for inner in typing.get_args(candidate):
            if isinstance(inner, type) and issubclass(inner, MoneyModel):
                return inner
    raise AssertionError(f"no MoneyModel in {annotation!r}")


def _message(event_type: str, currency: str) -> dict[str, Any]:
    data = examples.second_release_payload(event_type)  # a deep copy
    data["currency"] = currency
    _money_in(EVENT_TYPES[event_type], data, currency)
    return examples.envelope(event_type, data=data)


def _services_accept(event_type: str, message: dict[str, Any]) -> bool:
    try:
        decode(topic_for(event_type), examples.key_for(event_type), examples.raw(message))
    except InvalidEvent:
        return False
    return True


@pytest.fixture(scope="module")
def exported() -> dict[str, jsonschema.protocols.Validator]:
    """event type -> a validator of its committed ``schemas/json`` file (its own dialect)."""
    validators: dict[str, jsonschema.protocols.Validator] = {}
    for event_type in {field[0] for field in FIELDS}:
        schema = json.loads((export.JSON_DIR / f"{event_type}.json").read_text())
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        validators[event_type] = cls(schema)
    return validators


@pytest.fixture(scope="module")
def from_asyncapi() -> dict[str, jsonschema.protocols.Validator]:
    """event type -> a validator of its message payload in the committed AsyncAPI file."""
    doc = yaml.safe_load(asyncapi.ASYNCAPI_PATH.read_text(encoding="utf-8"))
    return {
        event_type: jsonschema.Draft7Validator(
            {
                "$ref": f"#/components/messages/{event_type}/payload",
                "components": doc["components"],
            }
        )
        for event_type in {field[0] for field in FIELDS}
    }


def test_the_examples_are_valid_in_every_currency(
    exported: dict[str, Any], from_asyncapi: dict[str, Any]
) -> None:
    for event_type in exported:
        for currency in CURRENCIES:
            message = _message(event_type, currency)
            assert _services_accept(event_type, message), (event_type, currency)
            assert exported[event_type].is_valid(message), (event_type, currency)
            assert from_asyncapi[event_type].is_valid(message), (event_type, currency)


@pytest.mark.parametrize("currency", CURRENCIES)
@pytest.mark.parametrize(
    ("event_type", "path", "integer_digits", "zero_ok"),
    FIELDS,
    ids=[f"{field[0]}:{'.'.join(map(str, field[1]))}" for field in FIELDS],
)
def test_json_schema_and_services_agree_on_money(
    exported: dict[str, Any],
    from_asyncapi: dict[str, Any],
    event_type: str,
    path: tuple[str | int, ...],
    integer_digits: int,
    zero_ok: bool,
    currency: str,
) -> None:
    scale = MINOR_UNITS[currency]
    cases: list[tuple[Any, bool]] = list(_samples(integer_digits, scale, zero_ok).items())
    cases += [(value, False) for value in NOT_STRINGS]
    if (event_type, path) not in NULL_NOT_TRIED:
        cases.append((None, NULL_ACCEPTED.get((event_type, path), False)))
    disagreements = []
    for value, expected in cases:
        message = _message(event_type, currency)
        _set(message["data"], path, copy.deepcopy(value))
        got = {
            "services": _services_accept(event_type, message),
            "schemas/json": exported[event_type].is_valid(message),
            "asyncapi": from_asyncapi[event_type].is_valid(message),
        }
        if set(got.values()) != {expected}:
            disagreements.append(f"{value!r}: expected {expected}, got {got}")
    assert not disagreements, "\n".join(disagreements)


def test_an_unknown_currency_is_refused_by_both(exported: dict[str, Any]) -> None:
    message = _message("purchase.posted", "USD")
    message["data"]["currency"] = "XYZ"
    assert not _services_accept("purchase.posted", message)
    assert not exported["purchase.posted"].is_valid(message)
