"""PAN guard: detection rules, and the fast pre-check never disagrees with the walk."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import InvalidEvent, decode
from schemas.guard import contains_pan, inspect_message, luhn_valid

from .examples import ACCOUNT, envelope, raw


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4111111111111111", True),
        ("card 4111 1111 1111 1111 exp 12/29", True),
        ("4111-1111-1111-1111", True),
        ("378282246310005", True),  # 15-digit Amex
        ("6011000990139424", True),
        ("4222222222222", True),  # 13 digits
        ("ref4111111111111111x", True),  # glued to letters
        ("4111 1111 1111 1111 2026", True),  # glued to another digit group
        ("٤١١١١١١١١١١١١١١١", True),  # Arabic-Indic digits
        ("4111111111111112", False),  # fails Luhn
        ("411111111111", False),  # 12 digits
        ("41111111111111111111", False),  # 20 digits, no separators: not a PAN
        ("4111  1111  1111  1111", True),  # repeated separators join groups too
        ("2026-11-28T09:30:00Z", False),
        ("41111111-1111-4111-8111-111111111111", False),  # a UUID is an id
        ("", False),
    ],
)
def test_contains_pan(text: str, expected: bool) -> None:
    assert contains_pan(text) is expected


def test_luhn() -> None:
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")


def test_pretty_printed_and_non_ascii_messages_pass() -> None:
    message = envelope("purchase.posted")
    message["data"]["merchant"]["name"] = "Ça coûte ١٢ euros — 2026-11-28"
    value = json.dumps(message, indent=4, ensure_ascii=False).encode()
    assert decode("card.purchases.v1", ACCOUNT.encode(), value).data.merchant.name.startswith("Ça")


def test_pan_in_non_ascii_digits_is_rejected_without_echo() -> None:
    message = envelope("purchase.posted")
    message["data"]["merchant"]["name"] = "٤١١١١١١١١١١١١١١١"
    with pytest.raises(InvalidEvent) as caught:
        decode("card.purchases.v1", ACCOUNT.encode(), raw(message))
    assert "card number" in caught.value.reason and "١" not in caught.value.reason


_PIECES = st.sampled_from(["4111", "1111", "0", "5", " ", "-", "a", "é", "٤", "١", ",", "12"])


@given(
    st.lists(_PIECES, max_size=30).map("".join),
    st.booleans(),
    st.booleans(),
)
def test_fast_path_agrees_with_the_full_walk(text: str, as_key: bool, escaped: bool) -> None:
    message = envelope("purchase.posted")
    if as_key:
        message["data"][text] = "x"
    else:
        message["data"]["merchant"]["name"] = text
    value = json.dumps(message, ensure_ascii=escaped).encode()
    parsed = json.loads(value)
    slow = inspect_message(parsed, max_depth=32)
    fast = inspect_message(parsed, max_depth=32, raw=value)
    assert fast == slow
    assert (slow is not None) == contains_pan(text)
