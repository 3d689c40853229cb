"""structlog configuration: JSON lines in production, a console renderer on a TTY.

The chain is short on purpose: context variables (service, topic, partition,
offset, event id, type are bound per message by the runtime), level, ISO UTC
timestamp, exception and stack formatting, a redaction step, then the renderer.
Tracebacks are turned into text *before* the redaction step, so an exception whose
message holds a card number is masked like any other value. The redaction step is
the last line of defence: no PAN, phone number or e-mail address can reach a log line.

Card numbers are found by :func:`schemas.guard.find_pans`, the very rule the
codec uses to reject a message (one implementation): digit groups joined by runs of
up to five separators (any Unicode whitespace, ``. / _ -``) holding a Luhn-valid
stretch of 13-19 digits; standalone UUIDs (event ids) are never masked.

:func:`configure_logging` also routes what would otherwise print a raw traceback
through the same logger: uncaught exceptions (``sys.excepthook``), exceptions that
end a thread (``threading.excepthook``), unraisable exceptions
(``sys.unraisablehook``) and records of the standard ``logging`` module (Kafka and
SQLAlchemy libraries log there).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any

import structlog

from schemas.guard import PAN_MASK, contains_pan, luhn_valid, mask_pans

__all__ = [
    "configure_logging",
    "get_logger",
    "redact_text",
    "redaction_processor",
    "luhn_ok",
]

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# International (+...) or North-American "(415) 555-1234" forms; never dates or times.
_PHONE = re.compile(r"\+\d[\d .-]{6,}\d|\(\d{3}\)\s?\d{3}[ -]\d{4}")

#: True when a string of digits passes the Luhn check (kept for callers and tests).
luhn_ok = luhn_valid


def redact_text(text: str) -> str:
    """Mask card numbers (:func:`schemas.guard.find_pans`), e-mails and phone numbers."""
    text = mask_pans(text)
    if "@" in text:
        text = _EMAIL.sub("[EMAIL]", text)
    if "+" in text or "(" in text:
        text = _PHONE.sub(_phone_mask, text)
    return text


def _phone_mask(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[PHONE]" if len(digits) >= 8 else match.group(0)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return PAN_MASK if value >= 10**12 and contains_pan(str(value)) else value
    if isinstance(value, dict):
        return {_redact(k) if isinstance(k, str) else k: _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    # Anything else would be rendered with repr() by the renderer: render it here so the
    # text is redacted too. Exceptions and bytes as text, not repr(): repr writes a tab
    # as the two characters "\t", which would hide the separators between digit groups.
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    if isinstance(value, bytes | bytearray | memoryview):
        return redact_text(bytes(value).decode("utf-8", "backslashreplace"))
    return redact_text(repr(value))


def redaction_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> dict[str, Any]:
    """structlog processor: redact every key and value of the event."""
    return {
        (redact_text(k) if isinstance(k, str) else k): _redact(v) for k, v in event_dict.items()
    }


def _processors(renderer: Any) -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Tracebacks and stacks become strings here, before redaction sees them.
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redaction_processor,
        renderer,
    ]


def configure_logging(
    level: str = "INFO", fmt: str = "auto", stream: Any = None, *, hooks: bool = True
) -> None:
    """Configure structlog once per process.

    With ``hooks`` (the default) uncaught exceptions, thread-ending exceptions,
    unraisable exceptions and standard ``logging`` records go through the same
    processors (so through redaction) instead of printing raw text to stderr.
    """
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=_processors(renderer),
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    if hooks:
        install_exception_hooks()


# --- raw tracebacks through the logger -----------------------------------------------

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def _log_exception(event: str, exc_info: _ExcInfo, **fields: Any) -> None:
    try:
        structlog.get_logger("uncaught").critical(event, exc_info=exc_info, **fields)
    except Exception:  # logging must never raise from a hook; say only the type
        _last_resort(f"{event}: {exc_info[0].__name__} (could not be logged)")


def _last_resort(line: str) -> None:
    stream = sys.__stderr__
    if stream is not None:
        stream.write(line + "\n")


def _excepthook(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)  # no message: nothing to redact
        return
    _log_exception("uncaught exception", (exc_type, exc, tb))


def _threading_excepthook(args: threading.ExceptHookArgs) -> None:
    if issubclass(args.exc_type, SystemExit):
        return  # as the default hook: a thread calling sys.exit() is silent
    thread = args.thread.name if args.thread is not None else None
    _log_exception(
        "uncaught exception in a thread",
        (args.exc_type, args.exc_value, args.exc_traceback),  # type: ignore[arg-type]
        thread=thread,
    )


def _unraisablehook(args: Any) -> None:
    _log_exception(
        "unraisable exception",
        (args.exc_type, args.exc_value, args.exc_traceback),
        message=args.err_msg or "Exception ignored in",
        object=repr(args.object),
    )


class _StructlogHandler(logging.Handler):
    """Standard ``logging`` records -> the structlog chain (redaction included)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            logger = structlog.get_logger(record.name)
            fields: dict[str, Any] = {"logger": record.name}
            if record.exc_info and record.exc_info[0] is not None:
                fields["exc_info"] = record.exc_info
            if record.stack_info:
                fields["stack"] = record.stack_info
            logger.log(record.levelno, message, **fields)
        except Exception:
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (stdlib name)
        # The default prints the record's message and arguments raw: name the logger only.
        _last_resort(f"a log record of {record.name!r} could not be logged")


def install_exception_hooks() -> None:
    """Route uncaught, thread, unraisable exceptions and stdlib ``logging`` records
    through structlog (idempotent)."""
    sys.excepthook = _excepthook
    threading.excepthook = _threading_excepthook
    sys.unraisablehook = _unraisablehook
    root = logging.getLogger()
    if not any(isinstance(h, _StructlogHandler) for h in root.handlers):
        root.addHandler(_StructlogHandler())


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger(**bound)
