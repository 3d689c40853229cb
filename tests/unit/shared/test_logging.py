"""The redaction step: no card number, e-mail or phone reaches a log line; dates do."""

import io
import json
import logging
import sys
import threading

import pytest
import structlog

from schemas.guard import contains_pan
from shared.runtime.logging import (
    _StructlogHandler,
    configure_logging,
    redact_text,
    redaction_processor,
)


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
    from shared.runtime.logging import redact_text

    uuid = "292fdda2-1468-5171-9076-9cab71e49196"  # its digit groups pass Luhn
    assert redact_text(f"event {uuid}") == f"event {uuid}"
    assert redact_text(f"{uuid} paid with 4111 1111 1111 1111") == f"{uuid} paid with [PAN]"


# --- issue #11: one card-number rule, tracebacks and raw exception paths ------------


@pytest.mark.parametrize(
    "text",
    [
        "Shop 4111_1111_1111_1111",
        "4111.1111.1111.1111",
        "4111/1111/1111/1111",
        "4111\t1111\t1111\t1111",
        "4111  1111  1111  1111",
        "4111\u00a01111\u00a01111\u00a01111",
        "4111\u202f1111\u202f1111\u202f1111",
        "4111 - 1111 - 1111 - 1111",
    ],
)
def test_every_separator_form_is_masked(text):
    masked = redact_text(f"refused {text} end")
    assert masked.startswith("refused ") and "[PAN]" in masked and "1111" not in masked


@pytest.mark.parametrize(
    "text",
    [
        "event 292fdda2-1468-5171-9076-9cab71e49196",
        "amount 1234.50 due 2026-03-08 at 2026-11-28T10:40:12.123456Z",
        "offsets 1234567890 1234567890 1234567890",
        "short 4111 1111 1111",
    ],
)
def test_what_is_not_a_card_number_is_left_alone(text):
    assert redact_text(text) == text


def test_postgres_error_text_with_row_values_is_masked():
    """psycopg's messages carry row values in DETAIL / CONTEXT (captured from
    PostgreSQL 16; tests/integration/test_db_error_text.py makes them for real)."""
    check = (
        'new row for relation "t" violates check constraint "t_n_check"\n'
        "DETAIL:  Failing row contains (b, ok, 4111_1111_1111_1111, jane@example.com)."
    )
    copy = (
        "value too long for type character varying(5)\n"
        'CONTEXT:  COPY t, line 1, column name: "4111.1111.1111.1111"'
    )
    assert redact_text(check).endswith("Failing row contains (b, ok, [PAN], [EMAIL]).")
    assert redact_text(copy).endswith('column name: "[PAN]"')


@pytest.fixture
def hooks_restored():
    saved = sys.excepthook, threading.excepthook, sys.unraisablehook
    handlers = list(logging.getLogger().handlers)
    yield
    sys.excepthook, threading.excepthook, sys.unraisablehook = saved
    logging.getLogger().handlers[:] = handlers
    configure_logging("INFO", "json", hooks=False)


def _lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_logged_traceback_is_formatted_then_redacted(hooks_restored):
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    try:
        raise ValueError("card 4111_1111_1111_1111 refused")
    except ValueError:
        structlog.get_logger("t").exception("handler failed")
    [line] = _lines(out)
    assert "Traceback (most recent call last)" in line["exception"]
    assert "ValueError: card [PAN] refused" in line["exception"]
    assert "4111" not in out.getvalue()


def test_processor_order_formats_exceptions_before_redaction():
    from shared.runtime.logging import _processors

    chain = _processors(structlog.processors.JSONRenderer())
    assert chain.index(structlog.processors.format_exc_info) < chain.index(redaction_processor)


def test_values_rendered_with_repr_are_redacted_too(hooks_restored):
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    structlog.get_logger("t").error(
        "odd values",
        err=ValueError("x " + "\t".join(["4111", "1111", "1111", "1111"])),
        key=b"4111111111111111",
        number=4111111111111111,
        **{"4111 1111 1111 1111": 1},
    )
    [line] = _lines(out)
    assert line["err"] == "ValueError: x [PAN]" and line["key"] == "[PAN]"
    assert line["number"] == "[PAN]" and line["[PAN]"] == 1


def test_uncaught_exceptions_go_through_the_json_logger(hooks_restored):
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    try:
        raise RuntimeError("uncaught 4111/1111/1111/1111")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())

    def boom():  # tab-separated (built here: a traceback shows this source line)
        raise RuntimeError("in a thread " + "\t".join(["4111", "1111", "1111", "1111"]))

    worker = threading.Thread(target=boom, name="worker-1")
    worker.start()
    worker.join()
    # A library's logging record, handed to the root handler configure_logging added
    # (not logged for real: pytest's own capture handler would keep the raw text).
    [handler] = [h for h in logging.getLogger().handlers if isinstance(h, _StructlogHandler)]
    error = ValueError("4111111111111111")
    handler.handle(
        logging.LogRecord(
            "kafka.conn",
            logging.ERROR,
            __file__,
            1,
            "broker said %s",
            ("4111 - 1111 - 1111 - 1111",),
            (ValueError, error, None),
        )
    )
    lines = _lines(out)
    assert [line["event"] for line in lines] == [
        "uncaught exception",
        "uncaught exception in a thread",
        "broker said [PAN]",
    ]
    assert "RuntimeError: uncaught [PAN]" in lines[0]["exception"]
    assert lines[1]["thread"] == "worker-1"
    assert "RuntimeError: in a thread [PAN]" in lines[1]["exception"]
    assert lines[2]["logger"] == "kafka.conn" and "ValueError: [PAN]" in lines[2]["exception"]
    assert not any(contains_pan(value) for line in lines for value in line.values())


def test_hooks_are_installed_once(hooks_restored):
    configure_logging("INFO", "json", stream=io.StringIO())
    configure_logging("INFO", "json", stream=io.StringIO())
    handlers = logging.getLogger().handlers
    assert sum(isinstance(h, _StructlogHandler) for h in handlers) == 1
