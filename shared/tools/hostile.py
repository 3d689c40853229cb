"""Hostile input: messages a card system, a bug or an attacker might send.

Each generator returns ``(kind, key, value)``. Seeded: the same seed gives the same
messages. Two sets:

- :func:`hostile_messages`: malformed input (bad JSON, float money, card numbers, ...).
  Every one must end in the dead-letter topic with a reason, and never crash a service
  or block a partition.
- :func:`extreme_messages` / :func:`extreme_business_days` (``--extremes``):
  *schema-valid extremes* and their neighbours just past the limits of
  :mod:`schemas.limits`: the longest ids, the largest amounts, control characters in
  ids, dates at the ends of the calendar, far-future business days, values near 1 MiB,
  one event id with two contents, card numbers with odd separators. A kind in
  :data:`EXTREME_MUST_DLQ` must be dead-lettered; the others may be applied or
  dead-lettered, but either way exactly once, and the valid messages after them flow
  (CONTRACT section 6: no single message stops a service).

``python -m shared.tools.hostile [--extremes] [--count N] [--seed S] [--send]`` lists
the messages (kind, topic, key, size) and, with ``--send``, publishes them to the
configured broker (``KAFKA_BOOTSTRAP_SERVERS``, ``INSTALLMENTS_TOPIC_PREFIX``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import uuid
from collections.abc import Callable, Iterator
from decimal import ROUND_DOWN, Decimal
from typing import Any

from schemas.guard import mask_pans
from schemas.limits import AMOUNT_INTEGER_DIGITS, AMOUNT_MAX, ID_MAX, TEXT_MAX
from schemas.money import MINOR_UNITS

PAN = "4111111111111111"  # a test card number (passes Luhn)


def _purchase(rng: random.Random, account: str) -> dict[str, Any]:
    return {
        "id": str(uuid.UUID(int=rng.getrandbits(128))),
        "type": "purchase.posted",
        "source": "card-system",
        "time": "2026-03-02T10:00:00Z",
        "subject": account,
        "schema_version": 1,
        "data": {
            "purchase_id": f"pur-{rng.getrandbits(40):x}x",
            "account_id": account,
            "card_token": "tok-abc",
            "card_last4": "4242",
            "amount": "120.50",
            "currency": "USD",
            "merchant": {"merchant_id": "m-1", "name": "Shop", "mcc": "5732"},
            "channel": "pos",
            "posted_at": "2026-03-02T10:00:00Z",
        },
    }


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def mutate(msg: dict[str, Any]) -> Any:
        target = msg
        *parents, last = path.split(".")
        for p in parents:
            target = target[p]
        target[last] = value
        return msg

    return mutate


def _drop(path: str) -> Callable[[dict[str, Any]], Any]:
    def mutate(msg: dict[str, Any]) -> Any:
        target = msg
        *parents, last = path.split(".")
        for p in parents:
            target = target[p]
        del target[last]
        return msg

    return mutate


def _deep(depth: int) -> Callable[[dict[str, Any]], Any]:
    def mutate(msg: dict[str, Any]) -> Any:
        nested: Any = "x"
        for _ in range(depth):
            nested = {"n": nested}
        msg["data"]["merchant"]["extra"] = nested
        return msg

    return mutate


#: kind -> mutation of a valid purchase (a dict -> JSON) or raw bytes producer
MUTATIONS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "float money": _set("data.amount", 120.5),
    "int money": _set("data.amount", 120),
    "huge number 1e309": lambda m: json.dumps(m).replace('"120.50"', "1e309"),
    "NaN money": lambda m: json.dumps(m).replace('"120.50"', "NaN"),
    "negative amount": _set("data.amount", "-5.00"),
    "zero amount": _set("data.amount", "0.00"),
    "too many decimals": _set("data.amount", "1.005"),
    "exponent in money": _set("data.amount", "1E+3"),
    "unknown currency": _set("data.currency", "XYZ"),
    "PAN in merchant name": _set("data.merchant.name", f"shop {PAN}"),
    "PAN with spaces": _set("data.merchant.name", "4111 1111 1111 1111"),
    "PAN as card token": _set("data.card_token", PAN),
    # An unknown field ("data.pin", "data.cvv") is not hostile since the second release:
    # consumers ignore unknown fields (tolerant reader) and never copy them along; one that
    # holds a card number still is (see "PAN with underscores in an unknown field").
    "wrong type (int id)": _set("data.purchase_id", 12345),
    "wrong type (bool amount)": _set("data.amount", True),
    "bad mcc": _set("data.merchant.mcc", "57A2"),
    "huge string": _set("data.merchant.name", "A" * 20000),
    "deep nesting": _deep(200),
    "oversize message": _set("data.merchant.name", "B" * 70000),
    "unknown event type": _set("type", "purchase.teleported"),
    "type not on topic": _set("type", "payment.received"),
    "missing id": _drop("id"),
    "missing data": _drop("data"),
    "bad time": _set("time", "yesterday"),
    "schema version 2": _set("schema_version", 2),
    "subject differs from account": _set("subject", "acc-other"),
}

RAW: dict[str, bytes | None] = {
    "invalid JSON": b"{not json",
    "empty message": b"",
    "JSON array": b"[1, 2, 3]",
    "JSON string": b'"hello"',
    "not UTF-8": b"\xff\xfe\x00garbage",
    "tombstone": None,
    "duplicate keys": b'{"id": "a", "id": "b"}',
}


def hostile_messages(
    count: int, seed: int, account: str
) -> Iterator[tuple[str, bytes, bytes | None]]:
    """``count`` hostile messages for ``card.purchases.v1``, cycling through every kind."""
    rng = random.Random(seed)
    kinds = sorted(MUTATIONS) + sorted(RAW) + ["wrong key"]
    for i in range(count):
        kind = kinds[i % len(kinds)]
        key = account.encode()
        if kind in RAW:
            yield kind, key, RAW[kind]
            continue
        msg = _purchase(rng, account)
        if kind == "wrong key":
            key = b"acc-someone-else"
            yield kind, key, json.dumps(msg).encode()
            continue
        out = MUTATIONS[kind](msg)
        yield kind, key, (out if isinstance(out, str) else json.dumps(out)).encode()


def valid_purchases(count: int, seed: int, account: str) -> Iterator[bytes]:
    rng = random.Random(seed + 1)
    for _ in range(count):
        yield json.dumps(_purchase(rng, account)).encode()


# --- schema-valid extremes -------------------------------------------------------------

PURCHASES_TOPIC = "card.purchases.v1"
BUSINESS_DAYS_TOPIC = "card.business-days.v1"
BUSINESS_DAY_KEY = b"business-day"
#: A value near 1 MiB: under the broker's default limit (1,048,588 bytes a batch), far
#: over the contract's 64 KiB: dead-lettered ``too_large``, never applied.
NEAR_MIB = 1_040_000


def _luhn_complete(prefix: str) -> str:
    """``prefix`` plus the Luhn check digit."""
    total = 0
    for i, ch in enumerate(reversed(prefix)):
        d = int(ch)
        if i % 2 == 0:  # doubled: the check digit will be at position 0
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return prefix + str((10 - total % 10) % 10)


PAN_19 = _luhn_complete("411111111111111111")  # a 19-digit number that passes Luhn


def _grouped(pan: str, sep: str, size: int = 4) -> str:
    return sep.join(pan[i : i + size] for i in range(0, len(pan), size))


def _fullwidth(digits: str) -> str:
    return "".join(chr(0xFF10 + int(d)) for d in digits)


def _largest(currency: str) -> str:
    """The largest amount the schema accepts in ``currency``."""
    step = Decimal(1).scaleb(-MINOR_UNITS[currency])
    return str(AMOUNT_MAX.quantize(step, rounding=ROUND_DOWN))


def _long(prefix: str, length: int, rng: random.Random) -> str:
    body = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(length))
    return (prefix + body)[:length]


def _set_account(account: str) -> Callable[[dict[str, Any]], Any]:
    def mutate(msg: dict[str, Any]) -> Any:
        msg["subject"] = msg["data"]["account_id"] = account
        return msg

    return mutate


def _near_mib(msg: dict[str, Any]) -> Any:
    msg["data"]["padding"] = ""
    msg["data"]["padding"] = "p" * (NEAR_MIB - len(json.dumps(msg).encode()))
    return msg


def _extremes(rng: random.Random, account: str) -> dict[str, Callable[[dict[str, Any]], Any]]:
    """kind -> mutation of a valid purchase of ``account``."""
    over = "1" + "0" * AMOUNT_INTEGER_DIGITS + ".00"
    return {
        # at the limits: the schema accepts them, the services must cope
        f"purchase_id of {ID_MAX} characters (longest)": _set(
            "data.purchase_id", _long("pur-", ID_MAX, rng)
        ),
        f"account_id of {ID_MAX} characters (longest)": _set_account(
            _long(account + "-", ID_MAX, rng)
        ),
        f"card_token of {ID_MAX} characters (longest)": _set(
            "data.card_token", _long("tok-", ID_MAX, rng)
        ),
        f"merchant name of {TEXT_MAX} characters (longest)": _set(
            "data.merchant.name", _long("Shop ", TEXT_MAX, rng)
        ),
        "largest amount (USD)": _set("data.amount", _largest("USD")),
        "largest amount, 3 decimals (KWD)": lambda m: _set("data.currency", "KWD")(
            _set("data.amount", _largest("KWD"))(m)
        ),
        "amount 3000000000.00": _set("data.amount", "3000000000.00"),
        "smallest amount": _set("data.amount", "0.01"),
        "tab in merchant name": _set("data.merchant.name", "Shop\tNorth"),
        # Up to schemas.guard.MAX_SEPARATOR_RUN (5) separators still join digit groups;
        # a wider gap separates numbers (documented rule), so the 6-character one may apply.
        "PAN with 4-character separators": _set("data.merchant.name", _grouped(PAN, " -- ")),
        "PAN with 6-character separators": _set("data.merchant.name", _grouped(PAN, " ---- ")),
        # just past the limits, or impossible to apply: dead-lettered
        f"purchase_id of {ID_MAX + 1} characters": _set(
            "data.purchase_id", _long("pur-", ID_MAX + 1, rng)
        ),
        f"purchase_id of {ID_MAX * 4} characters": _set(
            "data.purchase_id", _long("pur-", ID_MAX * 4, rng)
        ),
        f"amount with {AMOUNT_INTEGER_DIGITS + 1} digits": _set("data.amount", over),
        "NUL in purchase_id": _set("data.purchase_id", "pur-\u0000-x"),
        "NUL in account_id and subject": _set_account(account + "\u0000"),
        "NUL in merchant name": _set("data.merchant.name", "Shop\u0000"),
        "U+001F in merchant_id": _set("data.merchant.merchant_id", "m-\u001f"),
        "DEL in card_token": _set("data.card_token", "tok-\u007f"),
        "U+0085 (C1) in card_token": _set("data.card_token", "tok-\u0085"),
        "posted in year 9999": _set("data.posted_at", "9999-12-31T23:59:59Z"),
        "posted in year 0001": _set("data.posted_at", "0001-01-01T00:00:00Z"),
        "posted_at past year 9999 in UTC": _set("data.posted_at", "9999-12-31T23:00:00-05:00"),
        "time before year 0001 in UTC": _set("time", "0001-01-01T00:00:00+05:00"),
        f"value of {NEAR_MIB:,} bytes": _near_mib,
        "PAN with underscores": _set("data.merchant.name", f"Shop {_grouped(PAN, '_')}"),
        "PAN with dots": _set("data.merchant.name", f"Shop {_grouped(PAN, '.')}"),
        "PAN with slashes": _set("data.merchant.name", f"Shop {_grouped(PAN, '/')}"),
        "PAN with no-break spaces": _set("data.merchant.name", _grouped(PAN, "\u00a0")),
        "PAN with mixed separators": _set("data.merchant.name", "4111-1111 1111 _ 1111"),
        "PAN in full-width digits": _set("data.merchant.name", f"Shop {_fullwidth(PAN)}"),
        "19-digit PAN in groups of 4": _set("data.merchant.name", _grouped(PAN_19, " ")),
        "PAN with underscores in an unknown field": _set("data.note", _grouped(PAN, "_")),
        "PAN with underscores as key and subject": _set_account(_grouped(PAN, "_")),
    }


#: Extreme kinds that may be applied (valid, at the limits); all others must be
#: dead-lettered. Either way: exactly once.
EXTREME_MAY_APPLY = frozenset(
    {
        f"purchase_id of {ID_MAX} characters (longest)",
        f"account_id of {ID_MAX} characters (longest)",
        f"card_token of {ID_MAX} characters (longest)",
        f"merchant name of {TEXT_MAX} characters (longest)",
        "largest amount (USD)",
        "largest amount, 3 decimals (KWD)",
        "amount 3000000000.00",
        "smallest amount",
        "tab in merchant name",
        "PAN with 6-character separators",
        "duplicate id: the original",
        "first business day",
    }
)
DUPLICATE_ORIGINAL = "duplicate id: the original"
DUPLICATE_CONFLICT = "duplicate id with other content"


def extreme_kinds(account: str = "acc-x") -> list[str]:
    """Every kind :func:`extreme_messages` yields, in order."""
    return [*_extremes(random.Random(0), account), DUPLICATE_ORIGINAL, DUPLICATE_CONFLICT]


def extreme_messages(
    seed: int, account: str, *, near_mib: bool = True
) -> Iterator[tuple[str, bytes, bytes | None]]:
    """Every schema-valid extreme once, for ``card.purchases.v1``: ``(kind, key, value)``.

    The key is the message's subject (an extreme account id moves the key with it). The
    duplicate pair comes last: the original (valid), then the same event id with another
    amount. ``near_mib=False`` leaves out the value near 1 MiB.
    """
    rng = random.Random(seed)
    for kind, mutate in _extremes(rng, account).items():
        if kind.startswith("value of") and not near_mib:
            continue
        msg = mutate(_purchase(rng, account))
        yield kind, msg["subject"].encode(), json.dumps(msg).encode()
    original = _purchase(rng, account)
    yield DUPLICATE_ORIGINAL, account.encode(), json.dumps(original).encode()
    conflict = _purchase(rng, account)
    conflict["id"], conflict["data"]["amount"] = original["id"], "99.99"
    yield DUPLICATE_CONFLICT, account.encode(), json.dumps(conflict).encode()


def _business_day(rng: random.Random, day: str) -> bytes:
    return json.dumps(
        {
            "id": str(uuid.UUID(int=rng.getrandbits(128))),
            "type": "business-day.closed",
            "source": "card-system",
            "time": "2026-03-02T23:59:00Z",
            "subject": "business-day",
            "schema_version": 1,
            "data": {"business_date": day},
        }
    ).encode()


#: The first business day of :func:`extreme_business_days` (valid: a service takes its
#: first business date as it comes); the others jump from it and must be held.
FIRST_BUSINESS_DAY = "2026-03-02"


def extreme_business_days(seed: int) -> Iterator[tuple[str, bytes, bytes | None]]:
    """For ``card.business-days.v1``: a plausible first day, then implausible jumps
    (each dead-lettered ``business_date_jump`` by the services that keep a clock)."""
    rng = random.Random(seed)
    yield "first business day", BUSINESS_DAY_KEY, _business_day(rng, FIRST_BUSINESS_DAY)
    for kind, day in (
        ("business day far in the future (2099-01-01)", "2099-01-01"),
        ("business day 9999-12-31", "9999-12-31"),
        ("business day 0001-01-01", "0001-01-01"),
        ("business day 8 days ahead", "2026-03-10"),
    ):
        yield kind, BUSINESS_DAY_KEY, _business_day(rng, day)


#: The extreme kinds (both generators) that must be dead-lettered.
EXTREME_MUST_DLQ = (
    frozenset(extreme_kinds()) | {kind for kind, _, _ in extreme_business_days(0)}
) - EXTREME_MAY_APPLY


# --- command line -----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.tools.hostile", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--extremes", action="store_true", help="schema-valid extremes")
    parser.add_argument("--count", type=int, default=100, help="malformed messages (default 100)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--account", default="acc-hostile")
    parser.add_argument("--send", action="store_true", help="publish to the configured broker")
    args = parser.parse_args(argv)
    batches: list[tuple[str, Iterator[tuple[str, bytes, bytes | None]]]]
    if args.extremes:
        batches = [
            (PURCHASES_TOPIC, extreme_messages(args.seed, args.account)),
            (BUSINESS_DAYS_TOPIC, extreme_business_days(args.seed)),
        ]
    else:
        batches = [(PURCHASES_TOPIC, hostile_messages(args.count, args.seed, args.account))]
    producer = settings = None
    if args.send:
        from kafka import KafkaProducer

        from shared.runtime.settings import Settings

        settings = Settings()
        producer = KafkaProducer(**settings.kafka_client_config(), acks="all")
    for topic, messages in batches:
        for kind, key, value in messages:
            size = 0 if value is None else len(value)
            expect = ""
            if args.extremes:
                expect = "applied or DLQ" if kind in EXTREME_MAY_APPLY else "DLQ"
            # never print a card number (the key of the PAN-as-key kind holds one)
            shown = mask_pans(key.decode("utf-8", "replace"))
            shown = shown.encode("unicode_escape").decode()[:40]
            print(f"{kind}\t{topic}\t{shown}\t{size}\t{expect}".rstrip())
            if producer is not None and settings is not None:
                producer.send(settings.topic(topic), key=key, value=value)
    if producer is not None:
        producer.flush()
        producer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
