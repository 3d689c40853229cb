"""structlog configuration: JSON lines in production, a console renderer on a TTY.

The chain is short on purpose: context variables (service, topic, partition,
offset, event id, type are bound per message by the runtime), level, ISO UTC
timestamp, a redaction step, then the renderer. The redaction step is the last
line of defence: no PAN, phone number or e-mail address can reach a log line.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_DIGIT_RUN = re.compile(r"(?<![\d])(?:\d[ -]?){12,18}\d(?![\d])")
# Event ids are UUIDs: their digit groups ("2-1468-5171-9076-9") can pass Luhn, and are
# never card numbers. They are left out of the card-number check, never masked.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# International (+...) or North-American "(415) 555-1234" forms; never dates or times.
_PHONE = re.compile(r"\+\d[\d .-]{6,}\d|\(\d{3}\)\s?\d{3}[ -]\d{4}")


def luhn_ok(digits: str) -> bool:
    """True when a string of digits passes the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def redact_text(text: str) -> str:
    """Mask card numbers (13-19 digits passing Luhn), e-mails and phone numbers."""

    def _pan(match: re.Match[str]) -> str:
        digits = re.sub(r"[ -]", "", match.group(0))
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            return "[PAN]"
        return match.group(0)

    if "-" in text and _UUID.search(text):
        pieces, last = [], 0
        for uuid in _UUID.finditer(text):
            pieces += [_DIGIT_RUN.sub(_pan, text[last : uuid.start()]), uuid.group()]
            last = uuid.end()
        text = "".join(pieces) + _DIGIT_RUN.sub(_pan, text[last:])
    else:
        text = _DIGIT_RUN.sub(_pan, text)
    text = _EMAIL.sub("[EMAIL]", text)
    return _PHONE.sub(_phone_mask, text)


def _phone_mask(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[PHONE]" if len(digits) >= 8 else match.group(0)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def redaction_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> dict[str, Any]:
    """structlog processor: redact every string value of the event."""
    return {k: _redact(v) for k, v in event_dict.items()}


def configure_logging(level: str = "INFO", fmt: str = "auto", stream: Any = None) -> None:
    """Configure structlog once per process."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redaction_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger(**bound)
