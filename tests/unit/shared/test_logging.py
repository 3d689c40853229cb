"""The redaction step: no card number, e-mail or phone reaches a log line; dates do."""

import io
import json

import pytest
import structlog

from shared.logging import configure_logging, redact_text


@pytest.mark.parametrize(
    "text,expected",
    [
        ("card 4111111111111111", "card [PAN]"),
        ("card 4111 1111 1111 1111 end", "card [PAN] end"),
        ("card 4111-1111-1111-1111", "card [PAN]"),
        ("not luhn 4111111111111112", "not luhn 4111111111111112"),
        ("mail jane.doe@example.com", "mail [EMAIL]"),
        ("call +44 20 7946 0958", "call [PHONE]"),
        ("call (415) 555-1234", "call [PHONE]"),
        ("at 2026-11-28T10:40:12.123456Z", "at 2026-11-28T10:40:12.123456Z"),
        (
            "due 2026-03-08, offset 123456, amount 1234.50",
            "due 2026-03-08, offset 123456, amount 1234.50",
        ),
    ],
)
def test_redact_text(text, expected):
    assert redact_text(text) == expected


def test_log_lines_are_json_with_timestamps_and_no_card_data():
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    structlog.get_logger("t").warning("refused", reason="name 4111111111111111", to="a@b.io")
    line = json.loads(out.getvalue())
    assert line["reason"] == "name [PAN]" and line["to"] == "[EMAIL]"
    assert line["timestamp"].startswith("20") and "[PHONE]" not in line["timestamp"]
    configure_logging("INFO", "json")


def test_event_ids_are_never_masked_but_card_numbers_next_to_them_are():
    from shared.logging import redact_text

    uuid = "292fdda2-1468-5171-9076-9cab71e49196"  # its digit groups pass Luhn
    assert redact_text(f"event {uuid}") == f"event {uuid}"
    assert redact_text(f"{uuid} paid with 4111 1111 1111 1111") == f"{uuid} paid with [PAN]"
