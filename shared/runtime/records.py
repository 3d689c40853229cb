"""The runtime's records of one batch: a decoded record, what a transaction committed,
the batch's outcome; dead letters' keys and reasons; which errors are transient.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from kafka import TopicPartition
from kafka.errors import KafkaError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import InterfaceError as SAInterfaceError

from schemas import EVENT_TYPES, Envelope
from shared.runtime.api import NotLoaded
from shared.runtime.logging import redact_text

if TYPE_CHECKING:
    pass

log = structlog.get_logger("runtime")


class _HandlerFailed(Exception):
    """Fast path only: a handler refused or failed on ``failed``; the batch is split there."""

    def __init__(self, failed: _Decoded) -> None:
        super().__init__("handler failed")
        self.failed = failed


class Fenced(Exception):
    """Another process advanced our partition's stored offset: we lost it."""


TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (OperationalError, SAInterfaceError)


#: Exceptions that mean a bug in the service, not a record it cannot apply. Raised outside
#: a handler (building the repository, loading, saving) or a repository refusing a key
#: its PRELOAD table missed, they stop the process instead of dead-lettering record after
#: record: the supervisor restarts it, and crash counting isolates a record that keeps
#: triggering one (shared.runtime.poison).
PROGRAMMING_ERRORS: tuple[type[BaseException], ...] = (
    TypeError,
    AttributeError,
    NameError,
    AssertionError,
    ImportError,
    NotImplementedError,
    NotLoaded,
)


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying the whole batch for: the database or broker is unavailable."""
    if isinstance(exc, TRANSIENT_DB_ERRORS):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, KafkaError) and getattr(exc, "retriable", False)


@dataclass(eq=False)
class _Decoded:
    record: Any
    tp: TopicPartition
    contract_topic: str
    event: Envelope | None
    error: str | None
    #: Content digest of the record's value (the inbox keeps it: same id, other content
    #: is a conflict, not a duplicate).
    digest: str | None = None


@dataclass
class _Committed:
    """What one committed transaction of a batch wrote."""

    next_offsets: dict[TopicPartition, int]
    sent: list[dict[str, Any]]
    deferred: set[TopicPartition]


@dataclass
class BatchResult:
    """What the transactions of one batch committed, merged in order: the next offset
    of each partition and the outbox rows to publish."""

    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)
    #: Partitions deferred in this batch: their later records wait for the retry.
    blocked: set[TopicPartition] = field(default_factory=set)

    def add(self, committed: _Committed) -> None:
        self.next_offsets.update(committed.next_offsets)
        self.sent.extend(committed.sent)
        self.blocked |= committed.deferred


#: Bytes a dead letter leaves for the record and batch framing beyond its key, value and
#: headers (Kafka's v2 record batch header is 61 bytes; generous on purpose).
DEAD_LETTER_OVERHEAD = 1024
#: The longest key a dead letter keeps (a longer one is cut, and the cut says so).
DEAD_LETTER_KEY_MAX = 1024


def dead_letter_key(key: bytes | None) -> bytes | None:
    """A dead letter's Kafka key: the original, masked if it holds a card number, and
    at most :data:`DEAD_LETTER_KEY_MAX` bytes."""
    if key is None:
        return None
    text = key.decode("utf-8", "replace")
    masked = redact_text(text)
    if masked != text:
        key = masked.encode()
    if len(key) > DEAD_LETTER_KEY_MAX:
        key = key[:DEAD_LETTER_KEY_MAX]
    return key


def content_digest(value: bytes | None) -> str:
    """The digest of a record's value the inbox keeps (32 hex characters)."""
    return hashlib.blake2b(value or b"", digest_size=16).hexdigest()


def storage_reason(exc: BaseException) -> str:
    """A dead letter's reason for a record the database refused: the error class and
    the first line of the driver's message, redacted (no parameters: the engine hides
    them, and a card number in a message is masked)."""
    orig = getattr(exc, "orig", None) or exc
    first_line = (str(orig).strip().splitlines() or [""])[0]
    return f"storage error: {type(orig).__name__}: {redact_text(first_line)[:300]}"


def event_type_of(d: _Decoded) -> str:
    """The record's event type for metrics labels: the decoded one, else the ``type`` of
    the raw JSON when it names a contract event type (the label set stays bounded), else
    ``"?"``. Only called for dead letters, so the extra parse costs nothing on the path."""
    if d.event is not None:
        return d.event.type
    try:
        kind = json.loads(d.record.value).get("type")
    except (ValueError, TypeError, AttributeError):
        return "?"
    return kind if isinstance(kind, str) and kind in EVENT_TYPES else "?"
