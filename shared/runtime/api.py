"""What a service author needs: :class:`Service`, :class:`Context` (with ``emit`` and
the barrier ``wait_for``), :class:`Reject` and :class:`Defer`.

A service is a table of handlers (event type -> function) and this is all a handler
sees; the machinery that runs it (poll, transactions, outbox, offsets) is in
:mod:`shared.runtime.runner` and the modules beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from kafka import TopicPartition
from pydantic import BaseModel
from sqlalchemy.orm import Session

from schemas import Envelope, encode, new_event, topic_for
from schemas.codec import encode_with_pydantic
from schemas.registry import consumer_group
from shared.runtime.db import Migration
from shared.runtime.settings import Settings
from shared.runtime.store import stored_offsets


def checked_encoding(
    event_type: str, data: BaseModel, fields: dict[str, Any]
) -> tuple[Envelope, bytes]:
    """The trusted event and its bytes, checked: the payload validated from its fields
    (``new_event``'s default), and the trusted build written by :func:`schemas.encode`
    equal to the validated build written by pydantic, byte for byte. Raises the
    validation error, or ``AssertionError`` when the bytes differ (a bug either way)."""
    validated = new_event(event_type, data=data, **fields)
    out = new_event(event_type, data=data, trusted=True, **fields)
    value = encode(out)
    reference = encode_with_pydantic(validated)
    if value != reference:
        raise AssertionError(
            f"{event_type}: the trusted encoding differs from pydantic's:\n"
            f"  {value!r}\n  {reference!r}"
        )
    return out, value


class RunnerView(Protocol):
    """What a :class:`Context` asks of the runner that runs it (the barrier)."""

    group: str
    barriers: dict[tuple[str, int, str], tuple[str, dict[int, int]]]

    def end_offsets(self, topic: str) -> dict[int, int]: ...


Handler = Callable[["Context", Envelope], None]

log = structlog.get_logger("runtime")


class Reject(Exception):
    """Raised by a handler: this message is invalid for the business; dead-letter it.

    The message's own changes are rolled back; the reason goes into the
    ``error.reason`` header, so it must be readable and carry no card data.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# A batch repository that counts its in-memory changes in an int attribute ``changes``
# (every method that changes anything adds one) lets the runtime dead-letter a rejection
# that changed nothing in place, in the batch's one transaction. Without it (or after a
# change), a rejection rolls the transaction back and the batch is split at the record.


#: Records a service applies per second of a topic it waits for (account upserts, payments).
BARRIER_RECORDS_PER_S = 10_000
BARRIER_MAX_DELAY_S = 2.0


def barrier_delay(behind: int) -> float:
    """How long a barrier waits before it looks again: 0.1 s + the time ``behind`` records
    take to apply, at most 2 s. A retry is cheap (the partition is paused and fetched
    again from its stored offset), while a long wait idles the partition: at service
    start with a backlog, a 5 s wait (the first version) cut a points process from
    6,200 to 3,900 events/s in the benchmark, waiting for accounts applied in 0.5 s."""
    return min(BARRIER_MAX_DELAY_S, 0.1 + behind / BARRIER_RECORDS_PER_S)


class NotLoaded(KeyError):
    """A repository was asked for a key its batch did not preload: the service's
    ``PRELOAD`` table (next to ``HANDLERS``) misses it. A programming error, not an
    absent row (a preloaded key that does not exist answers None)."""


class Defer(Exception):
    """Raised by a handler: not yet; retry this message (and its partition) later.

    Raise it before writing anything: the runtime skips the rest of the partition in
    this batch without rolling back the other records' work.
    """

    def __init__(self, reason: str, retry_after_s: float = 0.5) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


@dataclass
class Service:
    """What a service is to the runtime: a name, its handlers (the topics it consumes
    follow from them), its migrations, policy and batch repository."""

    name: str
    handlers: Mapping[str, Handler]
    migrations: Sequence[Migration]
    policy: Any = None
    #: Optional batch repository: ``repository(session)`` returns an object with
    #: ``load(events)`` (bulk-read what the batch touches) and ``save()`` (bulk-write
    #: what changed). Handlers then use ``ctx.repo`` instead of per-event SQL.
    repository: Callable[[Session], Any] | None = None

    @property
    def consumes(self) -> list[str]:
        """The contract topics of the event types it handles (each type has one topic),
        in the order of the handler table."""
        return list(dict.fromkeys(topic_for(event_type) for event_type in self.handlers))

    @property
    def consumer_group(self) -> str:
        """Its consumer group without the topic prefix (``Settings.consumer_group`` adds it)."""
        return consumer_group(self.name)


@dataclass
class Context:
    """What a handler sees: the open session, the current event, and ``emit``."""

    service: Service
    settings: Settings
    session: Session
    runner: RunnerView
    event: Envelope | None = None
    topic: str = ""
    partition: int = -1
    offset: int = -1
    record: Any = None
    staged: list[tuple[str, str, bytes, str]] = field(default_factory=list)
    batch_progress: dict[TopicPartition, int] = field(default_factory=dict)
    repo: Any = None
    #: Physical topics found fully applied by :meth:`unread` during this Context (one
    #: batch transaction): the rest of the batch takes them as read, with no look-up.
    caught_up: set[str] = field(default_factory=set)

    @property
    def policy(self) -> Any:
        return self.service.policy

    @property
    def headers(self) -> dict[str, bytes]:
        """The current record's Kafka headers (an operator's re-drive may add some)."""
        headers = getattr(self.record, "headers", None) or []
        return {key: value or b"" for key, value in headers}

    @property
    def log(self) -> Any:
        """A logger bound with the current message's service, topic, partition, offset,
        event id and type (bound on use: most events log nothing)."""
        event = self.event
        return structlog.get_logger(self.service.name).bind(
            service=self.service.name,
            topic=self.topic,
            partition=self.partition,
            offset=self.offset,
            event_id=event.id if event else None,
            type=event.type if event else None,
        )

    def emit(
        self, event_type: str, data: BaseModel, *, rule: str, subject: str | None = None
    ) -> Envelope:
        """Stage an event caused by the current one; it is published after the commit.

        The id is derived from the cause's id and ``rule``: a replay emits the same
        ids, so downstream dedupe holds. ``rule`` must be unique per emitted event
        of one cause.

        ``data`` may be built with ``model_construct`` (no validation): what a service
        builds itself is not validated again on the way out (``new_event(trusted=True)``,
        then :func:`schemas.encode`). In the test environment (``environment="test"``,
        as tests/harness.py runs every service) each event is also built the validating
        way and written by pydantic, and the two must be the same bytes
        (:func:`checked_encoding`): a malformed event fails the test that emits it.
        """
        assert self.event is not None, "emit() outside a handler"
        fields: dict[str, Any] = {
            "subject": subject or self.event.subject,
            "source": self.service.name,
            "cause": self.event,
            "rule": rule,
        }
        if self.settings.environment == "test":
            out, value = checked_encoding(event_type, data, fields)
        else:
            out = new_event(event_type, data=data, trusted=True, **fields)
            value = encode(out)
        topic = self.settings.topic(topic_for(event_type))
        self.staged.append((topic, out.subject, value, out.id))
        return out

    def stored_offsets(self, topic: str) -> dict[int, int]:
        """This consumer group's progress on a contract topic, across all its processes.

        Includes the records this batch has already handled (not yet written).
        """
        physical = self.settings.topic(topic)
        progress = stored_offsets(self.session.connection(), self.runner.group, physical)
        for tp, offset in self.batch_progress.items():
            if tp.topic == physical:
                progress[tp.partition] = max(offset, progress.get(tp.partition, 0))
        return progress

    def end_offsets(self, topic: str) -> dict[int, int]:
        """The broker's log-end offset per partition of a contract topic."""
        return self.runner.end_offsets(self.settings.topic(topic))

    def unread(self, topic: str) -> int:
        """How many records of contract ``topic``, published before the current event was
        first looked at, this consumer group has not applied yet (0: caught up).

        The first look notes the broker's end offsets of ``topic`` (a snapshot, kept by
        the runner per waiting partition and barrier topic until another event of that
        partition looks, so a deferred event is compared with the same snapshot on every
        retry); each look compares them with
        this group's stored offsets (all its processes, plus this batch's progress). The
        wait is thus for the records published before the event, not for every record
        published since (steady traffic would keep it waiting). The snapshot is lost on
        a restart: the next look takes a new, later one, which is stricter and still
        correct.

        Per-batch shortcut: when a snapshot taken during this batch is satisfied, every
        record of the batch (all polled before it) has its predecessors applied, and the
        stored offsets only grow within a batch, so the topic is taken as read for the
        rest of the batch (``caught_up``) with no further look-up.
        """
        assert self.event is not None, "unread() outside a handler"
        physical = self.settings.topic(topic)
        if physical in self.caught_up:
            return 0
        key = (self.settings.topic(self.topic), self.partition, physical)
        noted = self.runner.barriers.get(key)
        fresh = noted is None or noted[0] != self.event.id
        if fresh:
            ends = self.end_offsets(topic)
            self.runner.barriers[key] = (self.event.id, ends)
        else:
            assert noted is not None
            ends = noted[1]
        stored = self.stored_offsets(topic)
        behind = sum(max(0, end - stored.get(p, 0)) for p, end in ends.items())
        if behind == 0 and fresh:
            self.caught_up.add(physical)
        # The snapshot stays (a second look by the same event gives the same answer) until
        # the next event of the partition that must look replaces it.
        return behind

    def wait_for(self, topic: str, what: str | None = None) -> None:
        """Barrier: raise :class:`Defer` until every record of contract ``topic``
        published before the current event has been applied by this consumer group
        (:meth:`unread` is 0); return at once when it has.

        Call it before the handler writes anything (the contract of ``Defer``). The
        retry delay is about the time the backlog takes to apply (:func:`barrier_delay`).
        """
        behind = self.unread(topic)
        if behind:
            raise Defer(
                f"waiting for {what or topic} to catch up ({behind} not yet applied)",
                retry_after_s=barrier_delay(behind),
            )
