"""PAN guard: detection rules, and the fast pre-check never disagrees with the walk."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import InvalidEvent, decode
from schemas.guard import contains_pan, inspect_message, luhn_valid, mask_pans, redact_key
from tests.builders.examples import ACCOUNT, envelope, raw


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


# --- separators (issue #11): any run of 1-5 separators joins digit groups -----------

SEPARATED_PANS = [
    "Shop 4111_1111_1111_1111",
    "4111.1111.1111.1111",
    "4111/1111/1111/1111",
    "4111\t1111\t1111\t1111",
    "4111\n1111\n1111\n1111",
    "4111  1111  1111  1111",
    "4111\u00a01111\u00a01111\u00a01111",
    "4111\u202f1111\u202f1111\u202f1111",
    "4111\u30001111\u30001111\u30001111",  # ideographic space
    "4111 - 1111 - 1111 - 1111",
    "4111-_-1111./.1111 \t 1111",
    "4111\u20131111\u20131111\u20131111",  # en dash
    "4111\u200b1111\u200b1111\u200b1111",  # zero-width space
    "paid with 3782.822463.10005 today",  # Amex 4-6-5
    "Total 42222222222.22",  # in free text a dot joins (13-digit Visa test number)
    "4111111111111111.00",  # money shape, but its integer part is a PAN
]


@pytest.mark.parametrize("text", SEPARATED_PANS)
def test_separated_card_numbers_are_found_and_masked(text: str) -> None:
    assert contains_pan(text)
    masked = mask_pans(text)
    assert "[PAN]" in masked and "1111" not in masked and "2222" not in masked


@pytest.mark.parametrize("text", SEPARATED_PANS)
@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_separated_card_numbers_are_rejected_at_decode(text: str, ensure_ascii: bool) -> None:
    message = envelope("purchase.posted")
    message["data"]["merchant"]["name"] = text
    value = json.dumps(message, ensure_ascii=ensure_ascii).encode()
    with pytest.raises(InvalidEvent) as caught:
        decode("card.purchases.v1", ACCOUNT.encode(), value)
    assert caught.value.reason == (
        "data.merchant.name: the value contains what looks like a card number (PAN);"
        " card data is never accepted"
    )


@pytest.mark.parametrize(
    "text",
    [
        "41111111-1111-4111-8111-111111111111",  # a UUID (its groups pass Luhn)
        "event 292fdda2-1468-5171-9076-9cab71e49196 done",  # a UUID inside text
        "1234.50",
        "42222222222.22",  # money: the dot is a decimal point (joined, it passes Luhn)
        "999999999999.999",
        "2026-11-28",
        "2026-11-28T09:30:00Z",
        "2026-11-28 09:30:00.123456",
        "2026-11-28T10:40:12.123456789+01:00",
        "28/11/2026 10:40",
        "from 2026-11-28 to 2026-12-28",
        "4111 1111 1111",  # 12 digits
        "41111111111111111111",  # 20 digits, no separator
        "1234567890 1234567890 1234567890",  # no stretch of whole groups with 13-19 digits
        "4111      1111      1111      1111",  # 6 separators break a run
        "4111,1111,1111,1111",  # a comma is not a separator
        "4111:1111:1111:1111",  # nor a colon
        "call +44 20 7946 0958",
        "call (415) 555-1234",
        "4111111111111112",  # fails Luhn
    ],
)
def test_not_card_numbers(text: str) -> None:
    assert not contains_pan(text)
    assert mask_pans(text) == text


def test_money_and_dates_in_a_message_pass() -> None:
    message = envelope("purchase.posted")
    message["data"]["amount"] = "42222222222.22"
    message["data"]["posted_at"] = "2026-11-28T09:30:00.123456Z"
    message["data"]["merchant"]["name"] = "Order 2026-11-28 / 10:40, 1234.50 USD"
    envelope_ = decode("card.purchases.v1", ACCOUNT.encode(), raw(message))
    assert str(envelope_.data.amount) == "42222222222.22"


def test_a_long_run_of_short_groups_is_checked_quickly() -> None:
    started = time.perf_counter()
    assert not contains_pan("1 " * 30_000)
    assert time.perf_counter() - started < 1.0


def _luhn_complete(body: str) -> str:
    """``body`` followed by the check digit that makes it pass Luhn."""
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


_SEPARATOR_CHARS = [" ", "\t", "\n", "\u00a0", "\u202f", "\u3000", ".", "/", "_", "-", "\u2013"]
_SEPARATOR_RUNS = st.lists(st.sampled_from(_SEPARATOR_CHARS), min_size=1, max_size=3).map("".join)
_AROUND = st.text(alphabet="abcXYZé :;,", max_size=10)


@given(
    st.text(alphabet="0123456789", min_size=15, max_size=15),
    st.lists(_SEPARATOR_RUNS, min_size=3, max_size=3),
    _AROUND,
    _AROUND,
)
def test_any_separated_card_number_is_found_rejected_and_masked(
    body: str, separators: list[str], before: str, after: str
) -> None:
    pan = _luhn_complete(body)
    groups = [pan[i : i + 4] for i in range(0, 16, 4)]
    written = groups[0] + "".join(s + g for s, g in zip(separators, groups[1:], strict=True))
    text = before + written + after
    assert contains_pan(text)
    masked = mask_pans(text)
    assert masked == before + "[PAN]" + after
    message = envelope("purchase.posted")
    message["data"]["merchant"]["name"] = text
    for ensure_ascii in (True, False):
        value = json.dumps(message, ensure_ascii=ensure_ascii).encode()
        parsed = json.loads(value)
        assert inspect_message(parsed, max_depth=32, raw=value) is not None


_SEPARATED_PIECES = st.sampled_from(
    [
        "4111",
        "1111",
        "0",
        "5",
        "4",
        " ",
        "  ",
        "-",
        ".",
        "/",
        "_",
        "\t",
        "\n",
        "\u00a0",
        "\u202f",
        "\u2013",
        "\\",
        '"',
        "a",
        "é",
        "١",
        ",",
        "12",
    ]
)


@given(st.lists(_SEPARATED_PIECES, max_size=30).map("".join), st.booleans(), st.booleans())
def test_fast_path_agrees_with_the_walk_for_every_separator(
    text: str, as_key: bool, escaped: bool
) -> None:
    message = envelope("purchase.posted")
    if as_key:
        message["data"][text] = "x"
    else:
        message["data"]["merchant"]["name"] = text
    value = json.dumps(message, ensure_ascii=escaped).encode()
    parsed = json.loads(value)
    slow = inspect_message(parsed, max_depth=32)
    assert inspect_message(parsed, max_depth=32, raw=value) == slow
    assert (slow is not None) == contains_pan(text)


def test_escaped_slashes_and_tabs_in_raw_json_take_the_slow_path() -> None:
    message = envelope("purchase.posted")
    value = raw(message).replace(b'"Electro World"', b'"4111\\/1111\\/1111\\/1111"')
    with pytest.raises(InvalidEvent, match="card number"):
        decode("card.purchases.v1", ACCOUNT.encode(), value)
    value = raw(message).replace(b'"Electro World"', b'"4111\\t1111\\t1111\\t1111"')
    with pytest.raises(InvalidEvent, match="card number"):
        decode("card.purchases.v1", ACCOUNT.encode(), value)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (None, None),
        (b"acc-000123", b"acc-000123"),
        (b"business-day", b"business-day"),
        (b"41111111-1111-4111-8111-111111111111", b"41111111-1111-4111-8111-111111111111"),
        (b"4111111111111111", b"[PAN]"),
        (b"acc 4111_1111_1111_1111", b"acc [PAN]"),
        (b"\xff4111.1111.1111.1111\xfe", b"\xff[PAN]\xfe"),  # other bytes kept as they are
    ],
)
def test_redact_key(key: bytes | None, expected: bytes | None) -> None:
    assert redact_key(key) == expected
    if expected == key:
        assert redact_key(key) is key
