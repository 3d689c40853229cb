"""Hostile input: messages a card system, a bug or an attacker might send.

Each generator returns ``(kind, key, value)``; every one of them must end in the
dead-letter topic with a reason, and never crash a service or block a partition.
Seeded: the same seed gives the same messages.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Iterator
from typing import Any

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
    "CVV field": _set("data.cvv", "123"),
    "unknown field": _set("data.pin", "0000"),
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
