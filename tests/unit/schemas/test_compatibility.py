"""Compatibility between the releases (contract sections 2 and 4.1).

- A first-release producer's message (every example of tests/builders/examples.py as the
  first release wrote it) still validates, and the second release's fields take their
  defaults.
- A later producer's message with fields this build does not know, in the envelope and
  in ``data`` at any depth, is accepted and the fields ignored (tolerant reader).
- Unknown fields are still scanned for card numbers and still count toward the size
  limit; a ``schema_version`` higher than this build reads is refused
  (``unsupported_schema_version``).
- What the project emits stays strict: a model built in Python, ``new_event`` and
  ``decode(strict=True)`` reject unknown fields.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from pydantic import ValidationError

from schemas import EVENT_TYPES, InvalidEvent, decode, encode, new_event, topic_for
from schemas.codec import MAX_BYTES
from schemas.payloads import Merchant, PlanCancelled, PurchasePosted
from schemas.types import SCHEMA_VERSION
from tests.builders.examples import (
    PAYLOADS,
    SECOND_RELEASE_FIELDS,
    SECOND_RELEASE_TYPES,
    envelope,
    key_for,
    raw,
    second_release_payload,
)

PAN = "4111111111111111"  # Luhn-valid test card number
PAN_REASON = "looks like a card number"

FIRST_RELEASE_TYPES = [t for t in EVENT_TYPES if t not in SECOND_RELEASE_TYPES]

#: What a first-release consumer reads when a second-release field is absent.
DEFAULTS = {
    "account.upserted": {"pre_approval": None},
    "purchase.recorded": {"risk_flags": []},
    "offer.made": {"pre_approved": False},
    "plan.cancelled": {"points_to_restore": 0},
}


def _decode(message: dict[str, Any], **kwargs: Any) -> Any:
    event_type = message["type"]
    return decode(topic_for(event_type), key_for(event_type), raw(message), **kwargs)


def _with_unknown_fields(node: Any, depth: int = 0) -> Any:
    """``node`` with an unknown field added to every object in it, at every depth."""
    if isinstance(node, dict):
        out = {key: _with_unknown_fields(value, depth + 1) for key, value in node.items()}
        out[f"added_in_v9_{depth}"] = {"nested": [1, "two", {"three": None}], "flag": True}
        return out
    if isinstance(node, list):
        return [_with_unknown_fields(item, depth + 1) for item in node]
    return node


# ------------------------------------------------------------------ first release


def test_first_release_examples_have_no_second_release_field() -> None:
    # The examples stand for a first-release producer: keep them that way.
    for event_type, added in SECOND_RELEASE_FIELDS.items():
        assert not set(added) & set(PAYLOADS[event_type]), event_type


@pytest.mark.parametrize("event_type", FIRST_RELEASE_TYPES)
def test_a_first_release_message_still_validates(event_type: str) -> None:
    env = _decode(envelope(event_type))
    assert env.type == event_type
    assert env.schema_version == 1
    for field, default in DEFAULTS.get(event_type, {}).items():
        assert getattr(env.data, field) == default


@pytest.mark.parametrize("event_type", sorted(SECOND_RELEASE_FIELDS))
def test_the_second_release_fields_validate_and_round_trip(event_type: str) -> None:
    data = second_release_payload(event_type)
    env = _decode(envelope(event_type, data=data))
    once = encode(env)
    written = json.loads(once)["data"]
    for field in SECOND_RELEASE_FIELDS[event_type]:
        assert written[field] == data[field], field
    assert encode(_decode(json.loads(once), strict=True)) == once


# ------------------------------------------------------------------ tolerant reader


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_unknown_fields_everywhere_are_ignored(event_type: str) -> None:
    data = second_release_payload(event_type)
    plain = _decode(envelope(event_type, data=copy.deepcopy(data)))
    message = _with_unknown_fields(envelope(event_type, data=data))
    assert "added_in_v9_1" in message["data"]

    env = _decode(message)

    assert env == plain  # same fields, same values: the unknown ones are gone
    assert encode(env) == encode(plain)
    assert "added_in_v9" not in encode(env).decode()


def test_unknown_fields_in_nested_objects_and_list_items_are_ignored() -> None:
    account = envelope("account.upserted", data=second_release_payload("account.upserted"))
    account["data"]["contact"]["preferred_hours"] = "9-17"
    account["data"]["pre_approval"]["campaign"] = "spring"
    account["data"]["auto_convert"]["since"] = "2026-01-01"
    env = _decode(account)
    assert env.data.pre_approval is not None and env.data.pre_approval.limit == 5000
    assert env.data.contact.contact_ref == "ctc-77812"

    plan = envelope("plan.adjusted")
    plan["data"]["schedule"][0]["interest"] = "0.00"
    assert _decode(plan).data.schedule[0].seq == 2

    offer = envelope("offer.made")
    offer["data"]["options"][1]["label"] = "12 months"
    assert [o.tenor_months for o in _decode(offer).data.options] == [3, 12]


def test_unknown_fields_are_ignored_on_every_topic_kind() -> None:
    # the business-day key rule and an event of a new external producer too
    closed = envelope("business-day.closed", region="EU")
    closed["data"]["timezone"] = "UTC"
    assert str(_decode(closed).data.business_date) == "2026-11-28"
    contact = envelope("contact.recorded", trace_id="t-1")
    contact["data"]["channel"] = "phone"
    assert _decode(contact).data.outcome == "promise_to_pay"


def test_an_unknown_field_does_not_hide_a_known_fields_error() -> None:
    message = envelope("purchase.posted", extra_header="x")
    message["data"]["amount"] = 12.5  # money as a JSON number
    message["data"]["extra"] = "y"
    with pytest.raises(InvalidEvent, match="^data.amount: money must be a JSON string"):
        _decode(message)


# ------------------------------------------------------------------ still checked


@pytest.mark.parametrize(
    "place",
    ["envelope", "data", "nested", "list-item", "deep", "key", "number"],
)
def test_a_card_number_in_an_unknown_field_is_rejected(place: str) -> None:
    message = envelope("offer.made")
    data = message["data"]
    if place == "envelope":
        message["card"] = PAN
    elif place == "data":
        data["note"] = f"card {PAN} used"
    elif place == "nested":
        data["extra"] = {"card": {"number": PAN}}
    elif place == "list-item":
        data["options"][0]["memo"] = PAN
    elif place == "deep":
        data["x"] = [[{"y": [PAN]}]]
    elif place == "key":
        data[PAN] = "value"
    else:
        data["card_number"] = int(PAN)
    with pytest.raises(InvalidEvent, match=PAN_REASON) as caught:
        _decode(message)
    assert PAN not in caught.value.reason


def test_unknown_fields_count_toward_the_size_limit() -> None:
    message = envelope("purchase.posted")
    base = len(raw(message))
    message["data"]["padding"] = "x" * (MAX_BYTES - base)  # just over: the key and quotes
    value = raw(message)
    assert len(value) > MAX_BYTES
    with pytest.raises(InvalidEvent, match="^too_large: "):
        decode("card.purchases.v1", key_for("purchase.posted"), value)
    # the same message with the padding in the envelope, and a configured limit
    message = envelope("purchase.posted", padding="y" * 200)
    value = raw(message)
    with pytest.raises(InvalidEvent, match="^too_large: "):
        decode("card.purchases.v1", key_for("purchase.posted"), value, max_bytes=len(value) - 1)
    decode("card.purchases.v1", key_for("purchase.posted"), value, max_bytes=len(value))


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_a_higher_schema_version_is_unsupported(event_type: str) -> None:
    message = envelope(event_type, schema_version=SCHEMA_VERSION + 1)
    with pytest.raises(InvalidEvent) as caught:
        _decode(message)
    assert caught.value.reason.startswith("unsupported_schema_version")


def test_a_higher_schema_version_wins_over_any_other_error() -> None:
    message = _with_unknown_fields(envelope("purchase.posted", schema_version=7))
    message["data"]["amount"] = 5  # invalid in version 1
    message["type"] = "purchase.renamed"  # unknown in version 1
    with pytest.raises(InvalidEvent, match="^unsupported_schema_version: 7 "):
        decode("card.purchases.v1", b"some-other-key", raw(message))


@pytest.mark.parametrize("version", [0, -1, True, "1", "2", 1.0])
def test_a_schema_version_that_is_not_a_positive_integer_is_invalid(version: Any) -> None:
    with pytest.raises(InvalidEvent) as caught:
        _decode(envelope("purchase.posted", schema_version=version))
    assert caught.value.reason.startswith("schema_version: ")


def test_the_supported_schema_version_and_the_default_are_accepted() -> None:
    assert _decode(envelope("purchase.posted", schema_version=SCHEMA_VERSION)).schema_version == 1
    message = envelope("purchase.posted")
    del message["schema_version"]
    assert _decode(message).schema_version == 1


# ------------------------------------------------------------------ emitted: strict


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_strict_decode_rejects_unknown_fields_of_any_event(event_type: str) -> None:
    message = envelope(event_type)
    message["data"]["added_later"] = 1
    with pytest.raises(InvalidEvent, match="data.added_later: unknown field"):
        _decode(message, strict=True)
    _decode(envelope(event_type), strict=True)


def test_models_built_in_python_reject_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        PlanCancelled(
            plan_id="plan-1",
            reason="refund",
            principal_returned="1.00",  # type: ignore[arg-type]
            fee_returned="0.00",  # type: ignore[arg-type]
            currency="USD",
            points_to_restor=5,  # type: ignore[call-arg]  # misspelt: never silently 0
        )
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Merchant.model_validate({"merchant_id": "m", "name": "n", "mcc": "1234", "x": 1})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        PurchasePosted.model_validate({**PAYLOADS["purchase.posted"], "x": 1})


def test_new_event_rejects_unknown_fields() -> None:
    data = {**PAYLOADS["plan.completed"], "note": "x"}
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        new_event(
            "plan.completed",
            subject="acc-000123",
            data=data,
            source="offers",
            cause=None,
            rule="r",
            time=_decode(envelope("purchase.posted")).time,
        )
