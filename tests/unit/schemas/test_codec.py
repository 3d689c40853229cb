"""decode / encode: the acceptance and rejection table of the contract."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from schemas import EVENT_TYPES, Envelope, InvalidEvent, decode, encode, topic_for
from schemas.payloads import PurchasePosted
from tests.builders.examples import (
    ACCOUNT,
    PAYLOADS,
    WRITTEN_DEFAULTS,
    envelope,
    key_for,
    raw,
)

PAN = "4111111111111111"  # Luhn-valid test card number
PAN_SPACED = "4111 1111 1111 1111"
PAN_DASHED = "4111-1111-1111-1111"
NOT_A_PAN = "4111111111111112"  # 16 digits, fails Luhn


# --- acceptance ---------------------------------------------------------------------


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_every_event_type_round_trips(event_type: str) -> None:
    topic = topic_for(event_type)
    env = decode(topic, key_for(event_type), raw(envelope(event_type)))

    assert isinstance(env, Envelope)
    assert isinstance(env.data, EVENT_TYPES[event_type])
    assert env.type == event_type
    once = encode(env)
    assert encode(decode(topic, key_for(event_type), once)) == once
    expected = envelope(event_type)
    expected["data"].update(WRITTEN_DEFAULTS.get(event_type, {}))
    assert json.loads(once) == json.loads(raw(expected))  # same content, defaults written


def purchase(**data: Any) -> dict[str, Any]:
    message = envelope("purchase.posted")
    message["data"].update(data)
    return message


def merchant(**fields: Any) -> dict[str, Any]:
    message = envelope("purchase.posted")
    message["data"]["merchant"].update(fields)
    return message


def decode_purchase(message: Any) -> Envelope[PurchasePosted]:
    return decode("card.purchases.v1", ACCOUNT.encode(), raw(message))


@pytest.mark.parametrize(
    ("message", "check"),
    [
        pytest.param(
            purchase(amount="1234.5"),
            lambda e: e.data.amount == Decimal("1234.50"),
            id="usd-one-decimal",
        ),
        pytest.param(purchase(amount="7"), lambda e: e.data.amount == 7, id="usd-integer-string"),
        pytest.param(
            purchase(amount="1200", currency="JPY"),
            lambda e: e.data.amount == 1200,
            id="jpy-no-decimals",
        ),
        pytest.param(
            purchase(amount="1.250", currency="KWD"),
            lambda e: e.data.amount == Decimal("1.25"),
            id="kwd-three-decimals",
        ),
        pytest.param(
            merchant(name=f"Shop {NOT_A_PAN}"),
            lambda e: NOT_A_PAN in e.data.merchant.name,
            id="non-luhn-16-digits-accepted",
        ),
        pytest.param(
            merchant(name="Café Zürich 2026-11-28 12:00"), lambda e: True, id="non-ascii-name"
        ),
        pytest.param(
            purchase(posted_at="2026-11-28T10:30:00.5+01:00"),
            lambda e: e.data.posted_at == datetime(2026, 11, 28, 9, 30, 0, 500000, tzinfo=UTC),
            id="offset-time-normalized-to-utc",
        ),
        pytest.param(
            envelope("purchase.posted", id="3F0C2B1E-8A5D-4C3B-9E21-6F7A8B9C0D1E"),
            lambda e: e.id == "3f0c2b1e-8a5d-4c3b-9e21-6f7a8b9c0d1e",
            id="uuid-upper",
        ),
        pytest.param(
            envelope("purchase.posted", correlation_id=None),
            lambda e: e.correlation_id is None,
            id="optional-null",
        ),
        pytest.param(
            {
                k: v
                for k, v in envelope("purchase.posted").items()
                if k not in ("correlation_id", "causation_id", "schema_version")
            },
            lambda e: e.schema_version == 1,
            id="optional-envelope-fields-absent",
        ),
        pytest.param(
            merchant(category=None), lambda e: e.data.merchant.category is None, id="category-null"
        ),
    ],
)
def test_accepted(message: dict[str, Any], check: Callable[[Any], bool]) -> None:
    assert check(decode_purchase(message))


def test_money_is_written_with_the_currency_minor_digits() -> None:
    out = json.loads(encode(decode_purchase(purchase(amount="1234.5"))))
    assert out["data"]["amount"] == "1234.50"
    out = json.loads(encode(decode_purchase(purchase(amount="1200", currency="JPY"))))
    assert out["data"]["amount"] == "1200"
    out = json.loads(encode(decode_purchase(purchase(amount="3", currency="BHD"))))
    assert out["data"]["amount"] == "3.000"


def test_encode_is_compact_utf8_with_z_times_and_no_nulls() -> None:
    message = envelope("purchase.posted", correlation_id=None)
    message["data"]["merchant"]["name"] = "Café"
    out = encode(decode_purchase(message))
    text = out.decode("utf-8")
    assert "Café" in text and ": " not in text and ", " not in text
    assert '"time":"2026-11-28T09:30:00Z"' in text
    assert "correlation_id" not in text and "null" not in text
    assert list(json.loads(out)) == [
        "id",
        "type",
        "source",
        "time",
        "subject",
        "schema_version",
        "causation_id",
        "data",
    ]


# --- rejection ----------------------------------------------------------------------


def text_message(replace: str, by: str) -> bytes:
    """The purchase example with raw JSON text replaced (for non-JSON-able inputs)."""
    text = raw(envelope("purchase.posted")).decode()
    assert replace in text
    return text.replace(replace, by, 1).encode()


def without(field: str) -> dict[str, Any]:
    message = envelope("purchase.posted")
    del message[field]
    return message


def nested(depth: int) -> Any:
    node: Any = "x"
    for _ in range(depth):
        node = [node]
    return node


AMOUNT = '"amount": "1234.50"'
MONEY_NUMBER = 'data.amount: money must be a JSON string like "12.34", got a number'
PLAIN = "data.amount: money must be a plain decimal string"
PAN_REASON = "looks like a card number"
TOPIC = "card.purchases.v1"
KEY = ACCOUNT.encode()

# (id, topic, key, value, expected substring of the reason)
REJECTED: list[tuple[str, str, bytes | None, bytes, str]] = [
    # money
    ("float-money", TOPIC, KEY, text_message(AMOUNT, '"amount": 1234.5'), MONEY_NUMBER),
    ("int-money", TOPIC, KEY, text_message(AMOUNT, '"amount": 1234'), MONEY_NUMBER),
    ("huge-float-money", TOPIC, KEY, text_message(AMOUNT, '"amount": 1e309'), MONEY_NUMBER),
    (
        "nan-money",
        TOPIC,
        KEY,
        text_message(AMOUNT, '"amount": NaN'),
        "not valid JSON: NaN is not a valid JSON number",
    ),
    (
        "infinity-money",
        TOPIC,
        KEY,
        text_message(AMOUNT, '"amount": -Infinity'),
        "not valid JSON: -Infinity is not a valid JSON number",
    ),
    (
        "usd-3-decimals",
        TOPIC,
        KEY,
        raw(purchase(amount="12.345")),
        "data.amount: USD amounts have at most 2 decimal places, got 3",
    ),
    (
        "usd-trailing-zero-counts",
        TOPIC,
        KEY,
        raw(purchase(amount="12.340")),
        "USD amounts have at most 2 decimal places, got 3",
    ),
    (
        "jpy-decimals",
        TOPIC,
        KEY,
        raw(purchase(amount="1000.5", currency="JPY")),
        "data.amount: JPY amounts have at most 0 decimal places, got 1",
    ),
    (
        "jpy-point-zero",
        TOPIC,
        KEY,
        raw(purchase(amount="1000.0", currency="JPY")),
        "JPY amounts have at most 0 decimal places",
    ),
    (
        "kwd-4-decimals",
        TOPIC,
        KEY,
        raw(purchase(amount="1.2345", currency="KWD")),
        "KWD amounts have at most 3 decimal places, got 4",
    ),
    (
        "negative",
        TOPIC,
        KEY,
        raw(purchase(amount="-5.00")),
        "data.amount: money must not be negative",
    ),
    (
        "zero-amount",
        TOPIC,
        KEY,
        raw(purchase(amount="0.00")),
        "data.amount: money must be greater than zero",
    ),
    ("exponent-1e3", TOPIC, KEY, raw(purchase(amount="1e3")), PLAIN),
    ("exponent-1E+3", TOPIC, KEY, raw(purchase(amount="1E+3")), PLAIN),
    ("nan-string", TOPIC, KEY, raw(purchase(amount="NaN")), PLAIN),
    ("plus-sign", TOPIC, KEY, raw(purchase(amount="+5.00")), PLAIN),
    ("leading-space", TOPIC, KEY, raw(purchase(amount=" 5.00")), PLAIN),
    ("trailing-newline", TOPIC, KEY, raw(purchase(amount="5.00\n")), PLAIN),
    ("leading-zero", TOPIC, KEY, raw(purchase(amount="05.00")), PLAIN),
    ("bare-fraction", TOPIC, KEY, raw(purchase(amount=".50")), PLAIN),
    ("thousands-separator", TOPIC, KEY, raw(purchase(amount="1,234.50")), PLAIN),
    ("money-bool", TOPIC, KEY, raw(purchase(amount=True)), "got a boolean"),
    (
        "unknown-currency",
        TOPIC,
        KEY,
        raw(purchase(currency="XYZ")),
        "data.currency: unknown currency XYZ",
    ),
    (
        "lowercase-currency",
        TOPIC,
        KEY,
        raw(purchase(currency="usd")),
        "data.currency: currency must be a three-letter ISO 4217 code",
    ),
    # PAN guard
    (
        "pan-in-merchant-name",
        TOPIC,
        KEY,
        raw(merchant(name=f"Shop {PAN}")),
        f"data.merchant.name: the value contains what {PAN_REASON}",
    ),
    ("pan-with-spaces", TOPIC, KEY, raw(merchant(name=f"card {PAN_SPACED} ok")), PAN_REASON),
    ("pan-with-dashes", TOPIC, KEY, raw(merchant(name=PAN_DASHED)), PAN_REASON),
    ("pan-glued-to-groups", TOPIC, KEY, raw(merchant(name=f"{PAN_SPACED} 2026")), PAN_REASON),
    ("pan-amex-15", TOPIC, KEY, raw(purchase(card_token="378282246310005")), PAN_REASON),
    ("pan-in-unknown-field", TOPIC, KEY, raw(purchase(note=PAN)), "data.note: the value contains"),
    ("pan-as-key", TOPIC, KEY, raw(purchase(**{PAN: "x"})), "data: a field name contains"),
    ("pan-in-envelope", TOPIC, KEY, raw(envelope("purchase.posted", source=PAN)), PAN_REASON),
    ("pan-as-number", TOPIC, KEY, raw(purchase(extra=int(PAN))), PAN_REASON),
    (
        "pan-escaped",
        TOPIC,
        KEY,
        text_message('"name": "Electro World"', '"name": "\\u0034111111111111111"'),
        PAN_REASON,
    ),
    ("pan-deep-in-list", TOPIC, KEY, raw(purchase(x=[{"y": [PAN]}])), "data.x[0].y[0]: the value"),
    # shape and types (unknown fields are ignored: see STRICT_REJECTED and
    # test_compatibility.py)
    (
        "int-as-string",
        "card.accounts.v1",
        KEY,
        raw(
            envelope("account.upserted", data={**PAYLOADS["account.upserted"], "risk_score": "720"})
        ),
        "data.risk_score: must be a JSON integer, got a string",
    ),
    (
        "int-as-float",
        "installments.decisions.v1",
        KEY,
        raw(envelope("offer.accepted", data={**PAYLOADS["offer.accepted"], "tenor_months": 12.0})),
        "data.tenor_months: must be a JSON integer, got a number",
    ),
    (
        "int-as-bool",
        "installments.decisions.v1",
        KEY,
        raw(envelope("offer.accepted", data={**PAYLOADS["offer.accepted"], "tenor_months": True})),
        "data.tenor_months: must be a JSON integer, got a boolean",
    ),
    (
        "bool-as-string",
        "purchases.recorded.v1",
        KEY,
        raw(
            envelope(
                "refund.recorded", data={**PAYLOADS["refund.recorded"], "fully_refunded": "false"}
            )
        ),
        "data.fully_refunded: must be true or false, got a string",
    ),
    (
        "risk-score-out-of-range",
        "card.accounts.v1",
        KEY,
        raw(
            envelope("account.upserted", data={**PAYLOADS["account.upserted"], "risk_score": 1001})
        ),
        "data.risk_score: ",
    ),
    (
        "bad-enum",
        TOPIC,
        KEY,
        raw(purchase(channel="atm")),
        "data.channel: must be 'pos', 'ecommerce' or 'moto'",
    ),
    (
        "mcc-3-digits",
        TOPIC,
        KEY,
        raw(merchant(mcc="573")),
        "data.merchant.mcc: must match pattern '^[0-9]{4}$'",
    ),
    ("mcc-number", TOPIC, KEY, raw(merchant(mcc=5732)), "data.merchant.mcc: must be a JSON string"),
    ("last4-5-digits", TOPIC, KEY, raw(purchase(card_last4="11111")), "data.card_last4: "),
    (
        "data-not-object",
        TOPIC,
        KEY,
        raw({**envelope("purchase.posted"), "data": []}),
        "data: must be a JSON object, got an array",
    ),
    (
        "email-contact-ref",
        "card.accounts.v1",
        KEY,
        raw(
            envelope(
                "account.upserted",
                data={
                    **PAYLOADS["account.upserted"],
                    "contact": {"channel": "email", "locale": "en", "contact_ref": "a@b.example"},
                },
            )
        ),
        "data.contact.contact_ref: must be an opaque reference",
    ),
    (
        "naive-time",
        TOPIC,
        KEY,
        raw(purchase(posted_at="2026-11-28T09:30:00")),
        "data.posted_at: must be an RFC 3339 time",
    ),
    (
        "timestamp-number",
        TOPIC,
        KEY,
        raw(envelope("purchase.posted", time=1764322200)),
        "time: must be an RFC 3339 time string",
    ),
    (
        "bad-date",
        "card.business-days.v1",
        b"business-day",
        raw(envelope("business-day.closed", data={"business_date": "2026-02-30"})),
        "data.business_date: must be a calendar date",
    ),
    (
        "bad-uuid",
        TOPIC,
        KEY,
        raw(envelope("purchase.posted", id="not-a-uuid")),
        "id: must be a UUID",
    ),
    *[
        (f"missing-{field}", TOPIC, KEY, raw(without(field)), f"{field}: required field is missing")
        for field in ("id", "type", "source", "time", "subject", "data")
    ],
    (
        "missing-payload-field",
        TOPIC,
        KEY,
        raw(
            envelope(
                "purchase.posted",
                data={k: v for k, v in PAYLOADS["purchase.posted"].items() if k != "card_token"},
            )
        ),
        "data.card_token: required field is missing",
    ),
    (
        "schedule-not-adding-up",
        "installments.plans.v1",
        KEY,
        raw(envelope("plan.created", data={**PAYLOADS["plan.created"], "principal": "1000.01"})),
        "data: schedule principals must add up to principal",
    ),
    (
        "schedule-line-digits",
        "installments.plans.v1",
        KEY,
        raw(
            envelope(
                "plan.created",
                data={
                    **PAYLOADS["plan.created"],
                    "schedule": [
                        {**PAYLOADS["plan.created"]["schedule"][0], "fee": "7.501"},
                        *PAYLOADS["plan.created"]["schedule"][1:],
                    ],
                },
            )
        ),
        "data.schedule[0].fee: USD amounts have at most 2 decimal places",
    ),
    (
        "offer-option-float-apr",
        "installments.offers.v1",
        KEY,
        raw(
            envelope(
                "offer.made",
                data={
                    **PAYLOADS["offer.made"],
                    "options": [{**PAYLOADS["offer.made"]["options"][0], "apr": 13.45}],
                },
            )
        ),
        'data.options[0].apr: must be a decimal JSON string like "13.03", got a number',
    ),
    # bytes, JSON
    ("oversize", TOPIC, KEY, raw(merchant(name="x" * 70000)), "over the 65536-byte limit"),
    ("bad-utf8", TOPIC, KEY, b'{"id": "\xff\xfe"}', "not valid UTF-8"),
    ("tombstone-like-empty", TOPIC, KEY, b"", "not valid JSON"),
    ("not-json", TOPIC, KEY, b"{'id': 1}", "not valid JSON"),
    ("trailing-garbage", TOPIC, KEY, raw(envelope("purchase.posted")) + b" x", "not valid JSON"),
    (
        "duplicate-key",
        TOPIC,
        KEY,
        text_message(AMOUNT, '"amount": "1.00", "amount": "2.00"'),
        "duplicate key 'amount'",
    ),
    (
        "huge-integer",
        TOPIC,
        KEY,
        text_message(AMOUNT, '"amount": ' + "9" * 5000),
        "not valid JSON: a number is too long",
    ),
    ("json-array", TOPIC, KEY, b"[1, 2]", "message must be a JSON object, got an array"),
    ("json-string", TOPIC, KEY, b'"hello"', "message must be a JSON object, got a string"),
    ("json-null", TOPIC, KEY, b"null", "message must be a JSON object, got null"),
    ("too-deep", TOPIC, KEY, raw(purchase(x=nested(40))), "JSON nesting is deeper than 32 levels"),
    (
        "far-too-deep",
        TOPIC,
        KEY,
        text_message(
            '"channel": "pos"', '"x": ' + "[" * 20000 + "]" * 20000 + ', "channel": "pos"'
        ),
        "JSON nesting is deeper than 32 levels",
    ),
    (
        "lone-surrogate",
        TOPIC,
        KEY,
        text_message('"name": "Electro World"', '"name": "Electro \\ud800 World"'),
        "data.merchant.name: the value holds an unpaired UTF-16 surrogate",
    ),
    # routing
    (
        "unknown-event-type",
        TOPIC,
        KEY,
        raw(envelope("purchase.posted", type="purchase.postd")),
        "unknown event type 'purchase.postd'",
    ),
    (
        "type-not-on-topic",
        TOPIC,
        KEY,
        raw(envelope("payment.received")),
        "event type 'payment.received' is not allowed on topic card.purchases.v1",
    ),
    (
        "key-not-subject",
        TOPIC,
        b"acc-999",
        raw(envelope("purchase.posted")),
        "the Kafka key does not equal the envelope subject",
    ),
    ("key-missing", TOPIC, None, raw(envelope("purchase.posted")), "the Kafka key is missing"),
    ("key-bad-utf8", TOPIC, b"\xff", raw(envelope("purchase.posted")), "not valid UTF-8"),
    (
        "business-day-account-key",
        "card.business-days.v1",
        ACCOUNT.encode(),
        raw(envelope("business-day.closed", subject=ACCOUNT)),
        'the Kafka key and the subject must both be "business-day"',
    ),
    (
        "business-day-subject",
        "card.business-days.v1",
        b"business-day",
        raw(envelope("business-day.closed", subject=ACCOUNT)),
        'the Kafka key and the subject must both be "business-day"',
    ),
    (
        "subject-not-account",
        TOPIC,
        b"acc-999",
        raw(envelope("purchase.posted", subject="acc-999")),
        "subject must equal data.account_id",
    ),
    (
        "schema-version-2",
        TOPIC,
        KEY,
        raw(envelope("purchase.posted", schema_version=2)),
        "unsupported_schema_version: 2 is higher than this build reads (1)",
    ),
    (
        "schema-version-0",
        TOPIC,
        KEY,
        raw(envelope("purchase.posted", schema_version=0)),
        "schema_version: must be an integer from 1 to 1",
    ),
    (
        "schema-version-negative",
        TOPIC,
        KEY,
        raw(envelope("purchase.posted", schema_version=-1)),
        "schema_version: must be an integer from 1 to 1",
    ),
    (
        "schema-version-bool",
        TOPIC,
        KEY,
        raw(envelope("purchase.posted", schema_version=True)),
        "schema_version: must be a JSON integer, got a boolean",
    ),
]


@pytest.mark.parametrize(
    ("topic", "key", "value", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in REJECTED],
)
def test_rejected(topic: str, key: bytes | None, value: bytes, expected: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode(topic, key, value)
    reason = caught.value.reason
    assert expected in reason
    assert reason == str(caught.value)
    # short, one line, and never the card number (in any spelling) or a raw string value
    assert len(reason) < 200 and "\n" not in reason
    for secret in (PAN, PAN_SPACED, PAN_DASHED, "4111", "378282246310005", "Electro", "acc-"):
        assert secret not in reason


#: Refused only by ``decode(..., strict=True)`` (how the tests read what the project
#: emits); a consumer's read ignores unknown fields (tolerant reader).
STRICT_REJECTED = [
    (
        "unknown-data-field",
        raw(purchase(colour="red")),
        "data.colour: unknown field (not in the contract)",
    ),
    ("unknown-nested-field", raw(merchant(city="Paris")), "data.merchant.city: unknown field"),
    (
        "unknown-envelope-field",
        raw(envelope("purchase.posted", extra="x")),
        "extra: unknown field",
    ),
]


@pytest.mark.parametrize(
    ("value", "expected"), [pytest.param(*case[1:], id=case[0]) for case in STRICT_REJECTED]
)
def test_strict_decode_rejects_unknown_fields(value: bytes, expected: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode(TOPIC, KEY, value, strict=True)
    assert expected in caught.value.reason
    assert decode(TOPIC, KEY, value).type == "purchase.posted"  # the tolerant read


def test_error_order_envelope_before_routing_before_payload() -> None:
    # A message with a bad payload, on the wrong topic, with the wrong key:
    message = envelope("payment.received", data={**PAYLOADS["payment.received"], "amount": 5})
    with pytest.raises(InvalidEvent, match="not allowed on topic"):
        decode(TOPIC, b"other", raw(message))
    with pytest.raises(InvalidEvent, match="Kafka key does not equal"):
        decode("card.payments.v1", b"other", raw(message))
    with pytest.raises(InvalidEvent, match="data.amount: money must be a JSON string"):
        decode("card.payments.v1", KEY, raw(message))
    # an envelope error wins over everything after it
    message["time"] = "yesterday"
    with pytest.raises(InvalidEvent, match="^time: "):
        decode(TOPIC, b"other", raw(message))
    # an unsupported (higher) schema_version wins over the envelope, routing and payload
    message["schema_version"] = 2
    with pytest.raises(InvalidEvent, match="^unsupported_schema_version: 2 "):
        decode(TOPIC, b"other", raw(message))
    # but the payload is reported before an invalid (0) schema_version
    message = purchase(amount="1.001")
    message["schema_version"] = 0
    with pytest.raises(InvalidEvent, match="^data.amount: "):
        decode(TOPIC, KEY, raw(message))


def test_max_bytes_is_configurable() -> None:
    value = raw(envelope("purchase.posted"))
    decode(TOPIC, KEY, value, max_bytes=len(value))
    with pytest.raises(InvalidEvent, match=f"message is {len(value)} bytes, over the 100-byte"):
        decode(TOPIC, KEY, value, max_bytes=100)


def test_unknown_topic_is_a_configuration_error_not_bad_data() -> None:
    with pytest.raises(ValueError) as caught:
        decode("no.such.topic", KEY, raw(envelope("purchase.posted")))
    assert not isinstance(caught.value, InvalidEvent)


def test_tombstone_is_rejected() -> None:
    with pytest.raises(InvalidEvent, match="tombstone"):
        decode("card.accounts.v1", KEY, None)  # type: ignore[arg-type]


def test_uuid_ids_are_never_taken_for_card_numbers() -> None:
    # all-digit UUID groups that would otherwise form a Luhn-valid 16-digit run
    uuid_like = "41111111-1111-4111-8111-111111111111"
    decode_purchase(envelope("purchase.posted", id=uuid_like, correlation_id=uuid_like))


def test_bytearray_and_memoryview_values() -> None:
    value = raw(envelope("purchase.posted"))
    for wrapped in (bytearray(value), memoryview(value)):
        assert decode(TOPIC, KEY, wrapped).data.amount == Decimal("1234.50")  # type: ignore[arg-type]
