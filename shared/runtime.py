"""The consumer runtime every service runs on: exactly-once effects over Kafka + SQL.

A service is a table of handlers (event type -> function). The runtime owns
everything else. Per poll it does, in this order (the same numbers mark the
steps in :meth:`Runner._process_batch` and :meth:`Runner.run_once`):

1. Poll a batch of records (auto-commit is off).
2. Decode each record; a bad one becomes a dead letter for ``<topic>.dlq`` with
   the headers ``error.reason``, ``error.service``, ``original.topic``,
   ``original.partition``, ``original.offset``. It never blocks its partition.
3. In ONE database transaction for the whole batch:
   a. drop records below the offset stored for their partition (already applied);
   b. skip event ids already in the inbox (duplicates);
   c. run the handlers (each writes the service's state and stages events);
   d. write the inbox rows, the outbox rows (events and dead letters) and the
      next offsets. The offsets are written compare-and-set, so a process that
      lost its partitions (a zombie past its session timeout) fails to commit.
4. Publish the batch's outbox rows with the idempotent producer, flush, then
   delete them (mark sent). A crash before the delete re-publishes the same
   event ids, which consumers dedupe.
5. Commit the offsets to Kafka as well, for lag tools, asynchronously (a failed
   commit is retried; on shutdown the commit is synchronous). The database is the
   source of truth: on (re)assignment the runtime seeks to the stored offsets.

A crash anywhere re-delivers; the stored offsets and the inbox make the
re-delivery harmless. Transient failures (database or broker unavailable) roll
the batch back and retry it with back-off, never skipping or committing.

No single record can stop a service (contract section 6):

- A handler's rejection that changed nothing is dead-lettered inside the batch's
  transaction. Any other failure (a rejection after a change, a handler exception, a
  value the database refuses when the state is written) rolls the transaction back and
  the batch is split: at the failing record when a handler names it, else in halves,
  until the one record is dead-lettered with the reason (:meth:`Runner._apply`).
- The same event id with other content is dead-lettered (``duplicate_id_conflict``):
  the inbox keeps a digest of each applied record's value.
- A record that kills the process (no exception to catch) is counted in the database;
  after ``poison_max_attempts`` deaths it is dead-lettered at the next start
  (:meth:`Runner._watch_for_poison`).
- A dead letter always fits the producer's limit (it is cut, and says so in headers),
  and a producer that failed is replaced.
"""

from __future__ import annotations

import gc
import hashlib
import os
import signal
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from pydantic import BaseModel
from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import InterfaceError as SAInterfaceError
from sqlalchemy.orm import Session

from schemas import Envelope, InvalidEvent, decode, dlq_topic, encode, new_event, topic_for
from shared import faults, kafka_compat, metrics  # noqa: F401 (kafka_compat patches on import)
from shared.db import (
    Migration,
    advance_offsets,
    among,
    bulk_insert,
    consumer_offsets,
    inbox,
    load_offsets,
    load_poison_marks,
    make_engine,
    migrate,
    note_poison_mark,
    outbox,
    stored_offsets,
    utcnow,
)
from shared.logging import configure_logging, redact_text
from shared.settings import Settings

log = structlog.get_logger("runtime")

Handler = Callable[["Context", Envelope], None]


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


class Defer(Exception):
    """Raised by a handler: not yet; retry this message (and its partition) later.

    Raise it before writing anything: the runtime skips the rest of the partition in
    this batch without rolling back the other records' work.
    """

    def __init__(self, reason: str, retry_after_s: float = 0.5) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class _HandlerFailed(Exception):
    """Fast path only: a handler refused or failed on ``failed``; the batch is split there."""

    def __init__(self, failed: _Decoded) -> None:
        super().__init__("handler failed")
        self.failed = failed


class Fenced(Exception):
    """Another process advanced our partition's stored offset: we lost it."""


@dataclass
class Service:
    """What a service is to the runtime: a name, its input topics and its handlers."""

    name: str
    consumes: Sequence[str]
    handlers: Mapping[str, Handler]
    migrations: Sequence[Migration]
    policy: Any = None
    group_id: str | None = None
    #: Optional batch repository: ``repository(session)`` returns an object with
    #: ``load(events)`` (bulk-read what the batch touches) and ``save()`` (bulk-write
    #: what changed). Handlers then use ``ctx.repo`` instead of per-event SQL.
    repository: Callable[[Session], Any] | None = None

    @property
    def consumer_group(self) -> str:
        return self.group_id or f"installments-{self.name}"


TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (OperationalError, SAInterfaceError)


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying the whole batch for: the database or broker is unavailable."""
    if isinstance(exc, TRANSIENT_DB_ERRORS):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, KafkaError) and getattr(exc, "retriable", False)


@dataclass
class Context:
    """What a handler sees: the open session, the current event, and ``emit``."""

    service: Service
    settings: Settings
    session: Session
    runner: Runner
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
        """
        assert self.event is not None, "emit() outside a handler"
        out = new_event(
            event_type,
            subject=subject or self.event.subject,
            data=data,
            source=self.service.name,
            cause=self.event,
            rule=rule,
        )
        topic = self.settings.topic(topic_for(event_type))
        self.staged.append((topic, out.subject, encode(out), out.id))
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


class _Rebalance(ConsumerRebalanceListener):
    """Non-blocking: only notes partitions; the loop seeks them from the database."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    # kafka-python runs these on its IO thread: only touch state under the lock.
    def on_partitions_revoked(self, revoked: Any) -> None:
        if revoked:
            log.info("partitions revoked", service=self.runner.service.name, count=len(revoked))
        self.runner.forget(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        with self.runner.lock:
            self.runner.pending_seek.update(assigned)
            self.runner._poison_fresh.update(assigned)
        if assigned:
            self.runner.consumer.pause(*assigned)


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
class _BatchOutcome:
    """What the transactions of one batch committed, merged in order."""

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


class Runner:
    """Runs one service: the loop of :func:`run_once` until stopped."""

    def __init__(
        self,
        service: Service,
        settings: Settings | None = None,
        *,
        engine: Engine | None = None,
        consumer_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.service = service
        self.settings = settings or Settings()
        self.engine = engine or make_engine(self.settings, service.name)
        # The topic prefix namespaces consumer groups too (tests, demo runs).
        self.group = self.settings.topic_prefix + service.consumer_group
        self.stop_event = threading.Event()
        self.pending_seek: set[TopicPartition] = set()
        self.lock = threading.Lock()  # pending_seek / deferred_until are touched by callbacks
        self.loop_at = time.monotonic()  # last time the loop went round (for the watchdog)
        self.deferred_until: dict[TopicPartition, float] = {}
        #: Barrier snapshots (``Context.unread``): (waiting topic, partition, barrier
        #: topic) -> (event id, end offsets of the barrier topic when first looked at).
        #: One entry per waiting partition and barrier topic (the next event of the
        #: partition that looks replaces it): bounded, no leak.
        self.barriers: dict[tuple[str, int, str], tuple[str, dict[int, int]]] = {}
        self.assigned: set[TopicPartition] = set()
        self.ready = False
        self._consumer_overrides = dict(consumer_overrides or {})
        self._consumer: KafkaConsumer | None = None
        self._producer: KafkaProducer | None = None
        self._backoff = 0.0
        self._kafka_pending: dict[TopicPartition, int] = {}  # to commit to Kafka
        self._kafka_requested: dict[TopicPartition, int] = {}  # last commit asked for
        #: Crash counting (:meth:`_watch_for_poison`): partitions assigned whose first
        #: batch is not noted yet, and partitions tried one record at a time after a
        #: death, up to the offset noted.
        self._poison_fresh: set[TopicPartition] = set()
        self._careful: dict[TopicPartition, int] = {}

    # --- wiring -----------------------------------------------------------

    @property
    def consumer(self) -> KafkaConsumer:
        assert self._consumer is not None
        return self._consumer

    @property
    def producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(
                **self.settings.kafka_client_config(),
                enable_idempotence=True,
                acks="all",
                linger_ms=5,
                # Big producer batches: every full batch wakes the sender thread, which
                # then competes for the GIL with the loop (profiled: half the publish
                # time went to wake-ups with the 16 KiB default). flush() ends each one.
                batch_size=1048576,
                max_request_size=self.settings.kafka_max_request_bytes,
                client_id=f"{self.service.name}-producer",
            )
        return self._producer

    def start(self) -> None:
        """Migrate (when allowed), publish leftovers, then join the consumer group."""
        if self.settings.auto_migrate:
            for name in migrate(self.engine, self.service.migrations):
                log.info("migration applied", service=self.service.name, migration=name)
        self.publish_pending()
        config: dict[str, Any] = {
            **self.settings.kafka_client_config(),
            "group_id": self.group,
            "client_id": f"{self.service.name}-consumer",
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "session_timeout_ms": self.settings.session_timeout_ms,
            "heartbeat_interval_ms": max(500, self.settings.session_timeout_ms // 4),
            "max_poll_interval_ms": self.settings.max_poll_interval_ms,
            "max_poll_records": self.settings.poll_max_records,
            "fetch_max_bytes": 52428800,
            "max_partition_fetch_bytes": 4194304,
            "metadata_max_age_ms": 30000,  # see new partitions/topics within 30 s
        }
        config.update(self._consumer_overrides)
        self._consumer = KafkaConsumer(**config)
        topics = [self.settings.topic(t) for t in self.service.consumes]
        self._consumer.subscribe(topics=topics, listener=_Rebalance(self))
        log.info("service started", service=self.service.name, group=self.group, topics=topics)

    def stop(self) -> None:
        """Ask the loop to finish its batch and exit (safe from a signal handler)."""
        self.stop_event.set()

    def close(self) -> None:
        if self._consumer is not None:
            self._final_commit()
            self._consumer.close(autocommit=False)
            self._consumer = None
        if self._producer is not None:
            self._producer.flush()
            self._producer.close()
            self._producer = None
        self.engine.dispose()
        self.ready = False

    def run(self, *, install_signal_handlers: bool = True) -> None:
        """Start, loop until SIGTERM/SIGINT or :meth:`stop`, then close cleanly."""
        if install_signal_handlers and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())
            self._start_watchdog()
        self.start()
        try:
            while not self.stop_event.is_set():
                self.run_once()
        finally:
            log.info("service stopping", service=self.service.name)
            self.close()

    def _start_watchdog(self) -> None:
        """Exit the process if the loop stops going round (a client call that never returns).

        kafka-python can block inside ``poll`` when the coordinator is lost under heavy
        load. Nothing is lost by exiting: the database holds state and offsets, and the
        supervisor (compose, systemd, Kubernetes) restarts the process.
        """
        limit = self.settings.loop_stall_timeout_s

        def watch() -> None:
            while not self.stop_event.wait(limit / 4):
                stalled = time.monotonic() - self.loop_at
                if stalled > limit:
                    log.critical(
                        "consumer loop stalled; exiting for a restart",
                        stalled_s=round(stalled),
                        service=self.service.name,
                    )
                    os._exit(75)

        threading.Thread(target=watch, daemon=True, name="watchdog").start()

    # --- the loop -----------------------------------------------------------

    def run_once(self) -> int:
        """One poll-process-publish-commit cycle. Returns the number of records seen."""
        # Step 1: poll a batch (auto-commit off). Rebalance callbacks run inside.
        batch = self.consumer.poll(
            timeout_ms=self.settings.poll_timeout_ms,
            max_records=self.settings.poll_max_records,
        )
        self.assigned = set(self.consumer.assignment())
        self._seek_pending()
        self._resume_deferred()
        self.loop_at = time.monotonic()
        with self.lock:
            pending = set(self.pending_seek)
        records = [r for tp, recs in batch.items() if tp not in pending for r in recs]
        self.ready = True
        if not records:
            if self._kafka_pending:
                self._commit_kafka({})
            return 0
        out = _BatchOutcome()
        failure: BaseException | None = None
        try:
            # Crash counting: a record that killed the process before is tried alone,
            # and dead-lettered once it has killed it poison_max_attempts times.
            todo = self._watch_for_poison(records, out)
            if todo:
                self._process_batch(todo, out)  # steps 2 and 3
            self._backoff = 0.0
        except Fenced as exc:
            log.warning("partition fenced; resyncing from the database", reason=str(exc))
            self._resync_all()
        except Exception as exc:
            if not is_transient(exc):
                raise
            failure = exc
        if out.sent or out.next_offsets:
            faults.maybe_crash("after_db_commit")
        # Step 4: publish the outbox rows committed (even when a later part of the batch
        # failed: they are in the database already), flush, mark sent.
        self._publish(out.sent)
        # Step 5: commit the offsets to Kafka too (lag tools read them).
        self._commit_kafka(out.next_offsets)
        if failure is not None:
            self._retry_later(failure)
        return len(records)

    def _watch_for_poison(self, records: list[Any], out: _BatchOutcome) -> list[Any]:
        """Count, in the database, the processes that died on a partition's records.

        Only a partition's first batch after it is assigned is watched (and, after a
        death, its records one at a time), so a healthy stream pays one small write per
        assignment, not per batch:

        1. Note the first offset of the batch (and its last) in ``poison_watch``, with
           ``attempts`` 1, before processing it.
        2. A process that finds the note at the offset it starts from knows the one
           before it died there (it never got past it): ``attempts`` + 1, and the
           records up to the noted last offset are tried one per batch (each noted
           first), so the next death points at one record. Nothing else runs in that
           batch, so an innocent record never shares the blame.
        3. A record whose note shows ``poison_max_attempts`` deaths is dead-lettered
           without running its handler; its partition moves on.
        Returns the records to process now; the others are fetched again (re-seek).
        """
        with self.lock:
            watched = self._poison_fresh | set(self._careful)
        by_tp: dict[TopicPartition, list[Any]] = defaultdict(list)
        for rec in records:
            tp = TopicPartition(rec.topic, rec.partition)
            if tp in watched:
                by_tp[tp].append(rec)
        if not by_tp:
            return records
        now = utcnow()
        with self.engine.begin() as conn:
            marks = load_poison_marks(conn, self.group, [(tp.topic, tp.partition) for tp in by_tp])
            careful: list[TopicPartition] = []
            for tp, recs in by_tp.items():
                mark = marks.get((tp.topic, tp.partition))
                if mark is not None and mark.offset == recs[0].offset:
                    # A process started here before and never got past it: it died.
                    self._careful[tp] = max(self._careful.get(tp, -1), mark.last_offset)
                if tp in self._careful and recs[0].offset > self._careful[tp]:
                    del self._careful[tp]  # past the records of the batch that died
                if tp in self._careful:
                    careful.append(tp)
            if careful:
                tp = careful[0]
                rec = by_tp[tp][0]
                mark = marks.get((tp.topic, tp.partition))
                deaths = mark.attempts if mark is not None and mark.offset == rec.offset else 0
                note_poison_mark(
                    conn,
                    self.group,
                    tp.topic,
                    tp.partition,
                    rec.offset,
                    self._careful[tp],
                    deaths + 1,
                    now,
                )
                self._refetch({TopicPartition(r.topic, r.partition) for r in records})
                chosen = [rec]
            else:
                for tp, recs in by_tp.items():
                    note_poison_mark(
                        conn,
                        self.group,
                        tp.topic,
                        tp.partition,
                        recs[0].offset,
                        recs[-1].offset,
                        1,
                        now,
                    )
                chosen = records
        with self.lock:
            self._poison_fresh.difference_update(by_tp)
        if careful and deaths >= self.settings.poison_max_attempts:
            d = self._decode(chosen[0])
            reason = f"poison: the {self.service.name} process died {deaths} times on this record"
            log.error(
                "record killed the process repeatedly; sent to the DLQ",
                service=self.service.name,
                topic=d.contract_topic,
                partition=d.record.partition,
                offset=d.record.offset,
                deaths=deaths,
            )
            metrics.count(self.service.name, d.event.type if d.event else "?", "dlq")
            self._dead_letter_alone(d, reason, out)
            return []
        return chosen

    def _refetch(self, tps: set[TopicPartition]) -> None:
        """Fetch these partitions again from the offsets stored in the database."""
        with self.lock:
            self.pending_seek.update(tps)
        self.consumer.pause(*tps)

    def _process_batch(
        self, records: list[Any], out: _BatchOutcome | None = None
    ) -> tuple[dict[TopicPartition, int], list[Any]]:
        """Steps 2 and 3. Returns the next offsets and the outbox rows written.

        Fast path: the whole batch in one transaction, no savepoints. A failure splits
        the batch instead of replaying it record by record (:meth:`_apply`), so one bad
        record among a thousand costs a few transactions, not a thousand. ``out``
        collects what was committed, even when a later part of the batch then fails
        (the caller still publishes it).
        """
        started = time.perf_counter()
        out = out if out is not None else _BatchOutcome()
        # Step 2: decode; bad records become dead letters.
        decoded = [self._decode(r) for r in records]
        self._apply(decoded, out)
        metrics.observe_batch(self.service.name, len(records), time.perf_counter() - started)
        return out.next_offsets, out.sent

    def _apply(self, chunk: list[_Decoded], out: _BatchOutcome) -> None:
        """Step 3 over ``chunk`` (in partition order), isolating what cannot be applied.

        1. Try the whole chunk in one transaction (one record: isolated, with a savepoint
           around its handler, so a handler failure dead-letters it in that transaction).
        2. A handler refused or failed on record i (the fast path knows which): apply
           the records before it, then record i alone, then go on with the rest.
        3. The transaction failed elsewhere, with an error that is not transient (a value
           the database cannot store, found when the state is written): split the chunk
           in two and apply each half; a single record that still fails is
           dead-lettered with the database's reason in a transaction of its own
           (:meth:`_quarantine`), and its partition moves on.
        Transient errors and fencing propagate: the caller retries the batch (what was
        committed is skipped then by the stored offsets).
        """
        pending = chunk
        while pending:
            pending = [d for d in pending if d.tp not in out.blocked]
            if not pending:
                return
            try:
                out.add(self._transaction(pending, isolated=len(pending) == 1))
                return
            except _HandlerFailed as exc:
                at = next(i for i, d in enumerate(pending) if d is exc.failed)
                if at:
                    self._apply(pending[:at], out)
                self._apply([pending[at]], out)
                pending = pending[at + 1 :]
            except Exception as exc:
                if isinstance(exc, Fenced) or is_transient(exc):
                    raise
                if len(pending) == 1:
                    self._quarantine(pending[0], exc, out)
                    return
                half = len(pending) // 2
                log.warning(
                    "batch could not be written; splitting it to isolate the record",
                    service=self.service.name,
                    records=len(pending),
                    error=type(exc).__name__,
                )
                self._apply(pending[:half], out)
                pending = pending[half:]

    def _quarantine(self, d: _Decoded, exc: BaseException, out: _BatchOutcome) -> None:
        """Dead-letter one record whose own transaction failed, and move its partition on.

        Nothing of its effect is kept (that transaction was rolled back); this one writes
        only the dead letter and the next stored offset (compare-and-set, as always).
        """
        reason = storage_reason(exc)
        rec = d.record
        log.error(
            "record cannot be applied; sent to the DLQ",
            service=self.service.name,
            topic=d.contract_topic,
            partition=rec.partition,
            offset=rec.offset,
            event_id=d.event.id if d.event else None,
            reason=reason,
        )
        metrics.count(self.service.name, d.event.type if d.event else "?", "dlq")
        self._dead_letter_alone(d, reason, out)

    def _dead_letter_alone(self, d: _Decoded, reason: str, out: _BatchOutcome) -> None:
        """One transaction: the dead letter of ``d`` and its partition's next offset."""
        now = utcnow()
        with Session(self.engine, autoflush=False) as session, session.begin():
            conn = session.connection()
            stored = self._load_offsets(conn, [d.tp])
            if stored.get(d.tp) is not None and d.record.offset < stored[d.tp]:
                return  # applied (or dead-lettered) by an earlier batch
            rows = [self._dead_letter(d, reason, now)]
            rows[0]["batch"] = uuid.uuid4().hex
            bulk_insert(conn, outbox, rows)
            next_offsets = {d.tp: d.record.offset + 1}
            self._store_offsets(session, conn, stored, next_offsets, now)
        out.add(_Committed(next_offsets, rows, set()))

    def _transaction(self, decoded: list[_Decoded], *, isolated: bool) -> _Committed:
        """Step 3: one database transaction over ``decoded`` (in partition order)."""
        by_tp: dict[TopicPartition, list[_Decoded]] = defaultdict(list)
        for d in decoded:
            by_tp[d.tp].append(d)
        with Session(self.engine, autoflush=False) as session, session.begin():
            ctx = Context(self.service, self.settings, session, self)
            conn = session.connection()
            stored = self._load_offsets(conn, list(by_tp))
            # Step 3a: drop what an earlier batch already applied (stored offset is ahead).
            todo = [
                d
                for tp, items in by_tp.items()
                for d in items
                if stored.get(tp) is None or d.record.offset >= stored[tp]
            ]
            # Step 3b: ids already in the inbox are duplicates (or conflicts: same id,
            # other content).
            seen = self._seen_ids(conn, [d.event.id for d in todo if d.event is not None])
            if self.service.repository is not None:
                ctx.repo = self.service.repository(session)
                ctx.repo.load([d.event for d in todo if d.event is not None])
            inbox_rows: list[dict[str, Any]] = []
            outbox_rows: list[dict[str, Any]] = []
            # Start from the stored offsets: a batch of records that were all applied
            # before (a re-delivery after a crash) still commits them to Kafka, or the
            # lag would show them as unconsumed until the next record arrives.
            next_offsets: dict[TopicPartition, int] = {
                tp: stored[tp] for tp in by_tp if tp in stored
            }
            now = utcnow()
            deferred: set[TopicPartition] = set()
            # Step 3c: the handlers.
            for d in todo:
                if d.tp in deferred:
                    continue
                rec = d.record
                outcome = self._handle_one(ctx, d, seen, outbox_rows, now, isolated)
                if outcome == "defer":
                    deferred.add(d.tp)
                    continue
                if outcome == "applied" and d.event is not None:
                    seen[d.event.id] = d.digest
                    inbox_rows.append(
                        {
                            "consumer": self.group,
                            "event_id": d.event.id,
                            "topic": rec.topic,
                            "partition": rec.partition,
                            "offset": rec.offset,
                            "processed_at": now,
                            "digest": d.digest,
                        }
                    )
                next_offsets[d.tp] = rec.offset + 1
                ctx.batch_progress[d.tp] = rec.offset + 1
            # Step 3d: state, inbox, outbox and offsets, in the same transaction.
            if ctx.repo is not None:
                ctx.repo.save()
            bulk_insert(conn, inbox, inbox_rows)
            if outbox_rows:
                batch = uuid.uuid4().hex
                for row in outbox_rows:
                    row["batch"] = batch
                bulk_insert(conn, outbox, outbox_rows)
            self._store_offsets(session, conn, stored, next_offsets, now)
        return _Committed(next_offsets, outbox_rows, deferred)

    def _handle_one(
        self,
        ctx: Context,
        d: _Decoded,
        seen: dict[str, str | None],
        outbox_rows: list[dict[str, Any]],
        now: Any,
        isolated: bool,
    ) -> str:
        """Run one record through its handler. Returns applied|skipped|dead|defer.

        Not isolated (fast path): any refusal or failure raises :class:`_HandlerFailed`
        so the caller replays the batch one record at a time. Isolated: the record's
        changes are rolled back (savepoint) and it is dead-lettered or deferred.
        """
        rec = d.record
        if d.event is None:
            log.warning(
                "undecodable message dead-lettered",
                service=self.service.name,
                topic=d.contract_topic,
                partition=rec.partition,
                offset=rec.offset,
                reason=d.error,
            )
            outbox_rows.append(self._dead_letter(d, d.error or "undecodable", now))
            metrics.count(self.service.name, "?", "dlq")
            return "dead"
        event = d.event
        if event.id in seen:
            known = seen[event.id]
            if known is not None and known != d.digest:
                # The same id with other content: never silently dropped (the first one
                # stays applied; this one waits in the DLQ for a person to look).
                log.warning(
                    "event id reused with different content; dead-lettered",
                    service=self.service.name,
                    topic=d.contract_topic,
                    partition=rec.partition,
                    offset=rec.offset,
                    event_id=event.id,
                    type=event.type,
                )
                outbox_rows.append(
                    self._dead_letter(
                        d,
                        "duplicate_id_conflict: this event id was applied before with"
                        " different content",
                        now,
                    )
                )
                metrics.count(self.service.name, event.type, "dlq")
                return "dead"
            log.info(
                "duplicate event skipped",
                service=self.service.name,
                topic=d.contract_topic,
                partition=rec.partition,
                offset=rec.offset,
                event_id=event.id,
                type=event.type,
            )
            metrics.count(self.service.name, event.type, "duplicate")
            return "skipped"
        handler = self.service.handlers.get(event.type)
        if handler is None:
            return "skipped"  # not ours: move on
        ctx.event, ctx.topic, ctx.partition, ctx.offset, ctx.record = (
            event,
            d.contract_topic,
            rec.partition,
            rec.offset,
            rec,
        )
        ctx.staged = []
        savepoint = ctx.session.begin_nested() if isolated else None
        faults.maybe_die_on(rec.value)
        changes = getattr(ctx.repo, "changes", None)
        started = time.perf_counter()
        try:
            handler(ctx, event)
            if savepoint is not None:
                savepoint.commit()
        except Defer as exc:
            # A handler raises Defer before it writes anything (documented contract), so
            # even in the fast path nothing needs rolling back: skip the partition.
            if savepoint is not None:
                savepoint.rollback()
            return self._refused(ctx, d, exc, outbox_rows, now)
        except Exception as exc:
            if savepoint is not None:
                savepoint.rollback()
            if is_transient(exc):
                raise
            if isolated:
                ctx.repo = None  # this transaction holds only this record: drop its changes
            elif not (
                isinstance(exc, Reject)
                and changes is not None
                and getattr(ctx.repo, "changes", None) == changes
            ):
                raise _HandlerFailed(d) from exc
            # Isolated, or a rejection that changed nothing (the repository counts its
            # changes): dead-letter it here; the rest of the transaction goes on.
            return self._refused(ctx, d, exc, outbox_rows, now)
        metrics.observe_handler(self.service.name, event.type, time.perf_counter() - started)
        metrics.count(self.service.name, event.type, "processed")
        for topic, key, value, event_id in ctx.staged:
            outbox_rows.append(
                {
                    "event_id": event_id,
                    "topic": topic,
                    "key": key.encode(),
                    "value": value,
                    "headers": [],
                    "created_at": now,
                }
            )
        return "applied"

    def _refused(
        self, ctx: Context, d: _Decoded, exc: Exception, outbox_rows: list[dict[str, Any]], now: Any
    ) -> str:
        """A handler refused or failed and its record changed nothing (isolated, or a
        rejection the repository saw no change from): dead-letter or defer it."""
        event = d.event
        assert event is not None
        if isinstance(exc, Defer):
            ctx.log.info("event deferred", reason=exc.reason)
            # Pause now; when the time comes the partition is re-sought from the offset
            # stored in the database (exactly this record) and resumed (_seek_pending).
            self.deferred_until[d.tp] = time.monotonic() + exc.retry_after_s
            self.consumer.pause(d.tp)
            return "defer"
        if isinstance(exc, Reject):
            ctx.log.warning("event rejected to the DLQ", reason=exc.reason)
            reason = exc.reason
            metrics.count(self.service.name, event.type, "dlq")
        else:
            ctx.log.error(
                "handler failed; event sent to the DLQ", error=type(exc).__name__, exc_info=exc
            )
            reason = f"handler error: {type(exc).__name__}: {redact_text(str(exc))[:300]}"
            metrics.count(self.service.name, event.type, "failed")
        outbox_rows.append(self._dead_letter(d, reason, now))
        # Not in the inbox: once the cause is fixed, a re-drive of the same event from
        # the DLQ (a new offset) must be processed. The stored offset still keeps a
        # re-delivery of this record from being dead-lettered twice.
        return "dead"

    def _decode(self, rec: Any) -> _Decoded:
        tp = TopicPartition(rec.topic, rec.partition)
        contract_topic = self.settings.contract_topic(rec.topic)
        try:
            event = decode(
                contract_topic, rec.key, rec.value, max_bytes=self.settings.max_message_bytes
            )
            return _Decoded(rec, tp, contract_topic, event, None, content_digest(rec.value))
        except InvalidEvent as exc:
            return _Decoded(rec, tp, contract_topic, None, exc.reason)

    def _dead_letter(self, d: _Decoded, reason: str, now: Any) -> dict[str, Any]:
        """The outbox row of ``d``'s dead letter: the original bytes and the headers.

        It always fits what the producer may send (``kafka_max_request_bytes``, set
        together with the broker's ``message.max.bytes``): when the original would not,
        the dead letter keeps a bounded prefix and says so in headers
        (``error.truncated``, ``original.size``, ``original.sha256``). A key holding a
        card number is masked.
        """
        rec = d.record
        headers = [
            ["error.reason", redact_text(reason)[:500]],
            ["error.service", self.service.name],
            ["original.topic", d.contract_topic],
            ["original.partition", str(rec.partition)],
            ["original.offset", str(rec.offset)],
        ]
        key = dead_letter_key(rec.key)
        value = rec.value if rec.value is not None else b""
        budget = self.settings.kafka_max_request_bytes - DEAD_LETTER_OVERHEAD - len(key or b"")
        budget -= sum(len(k) + len(v.encode()) for k, v in headers)
        if len(value) > budget:
            headers += [
                ["error.truncated", "true"],
                ["original.size", str(len(value))],
                ["original.sha256", hashlib.sha256(value).hexdigest()],
            ]
            value = value[: max(0, min(budget - 256, self.settings.max_message_bytes))]
        where = f"{rec.topic}:{rec.partition}:{rec.offset}".encode()
        return {
            "event_id": f"dlq:{content_digest(where)}",
            "topic": self.settings.topic(dlq_topic(d.contract_topic)),
            "key": key,
            "value": value,
            "headers": headers,
            "created_at": now,
        }

    # --- stored offsets, inbox --------------------------------------------------

    def _load_offsets(self, conn: Any, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        stored = load_offsets(conn, self.group, [(tp.topic, tp.partition) for tp in tps])
        return {TopicPartition(t, p): offset for (t, p), offset in stored.items()}

    def _seen_ids(self, conn: Any, ids: list[str]) -> dict[str, str | None]:
        """The inbox's content digest of each id of ``ids`` already applied."""
        if not ids:
            return {}
        rows = conn.execute(
            select(inbox.c.event_id, inbox.c.digest).where(
                inbox.c.consumer == self.group, among(inbox.c.event_id, ids, conn.dialect.name)
            )
        )
        return {row[0]: row[1] for row in rows}

    def _store_offsets(
        self,
        session: Session,
        conn: Any,
        stored: dict[TopicPartition, int],
        next_offsets: dict[TopicPartition, int],
        now: Any,
    ) -> None:
        """Compare-and-set each partition's next offset (fencing a zombie process)."""
        changes = [
            (tp.topic, tp.partition, stored[tp], offset)
            for tp, offset in next_offsets.items()
            if tp in stored and offset != stored[tp]
        ]
        if advance_offsets(conn, self.group, changes, now) != len(changes):
            moved = ", ".join(f"{t}[{p}] from {old}" for t, p, old, _ in changes)
            raise Fenced(f"another process moved a stored offset ({moved})")
        for tp, offset in next_offsets.items():
            if tp not in stored:
                try:
                    with session.begin_nested():
                        conn.execute(
                            insert(consumer_offsets).values(
                                consumer=self.group,
                                topic=tp.topic,
                                partition=tp.partition,
                                next_offset=offset,
                                updated_at=now,
                            )
                        )
                except DBAPIError as exc:
                    if is_transient(exc):
                        raise
                    raise Fenced(f"{tp.topic}[{tp.partition}] claimed by another process") from exc

    # --- publishing ----------------------------------------------------------

    def _publish(self, sent: list[Any]) -> None:
        """Step 4: publish outbox rows in order, flush, then delete them (mark sent)."""
        if not sent:
            return
        while True:
            try:
                futures = [
                    self.producer.send(
                        row["topic"],
                        key=row["key"],
                        value=row["value"],
                        headers=[(k, v.encode()) for k, v in row["headers"]],
                    )
                    for row in sent
                ]
                self.producer.flush()
                for f in futures:
                    f.get(timeout=30)
                faults.maybe_crash("after_publish")
                break
            except KafkaError as exc:
                # A producer that failed may be left refusing every later send (kafka-python's
                # idempotent producer after a rejected record): replace it. Rows already
                # sent go out again with the same ids, which consumers dedupe.
                self._replace_producer(exc)
                if self.stop_event.is_set():
                    log.warning("stopping with unsent outbox rows; they go out at next start")
                    return
                self._sleep_backoff(exc)
        # Mark sent. The rows are out: a database failure here must not kill the loop
        # (the rows would only be re-published, same ids, at the next start): retry.
        batches = sorted({row["batch"] for row in sent})
        while True:
            try:
                with self.engine.begin() as conn:
                    conn.execute(delete(outbox).where(outbox.c.batch.in_(batches)))
                break
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if self.stop_event.is_set():
                    log.warning("stopping before marking sent; re-published at next start")
                    return
                self._sleep_backoff(exc)
        metrics.count_emitted(self.service.name, len(sent))

    def _replace_producer(self, exc: BaseException) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        log.warning("producer failed; replacing it", error=type(exc).__name__)
        try:
            producer.close(timeout=1)
        except Exception as close_exc:  # closing a broken producer is best effort
            log.warning("closing the failed producer", error=type(close_exc).__name__)

    def publish_pending(self) -> int:
        """Publish outbox rows left by an earlier run (crash after commit, before send)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(outbox).order_by(outbox.c.seq)).mappings().all()
        if rows:
            log.info("publishing outbox leftovers", count=len(rows))
            self._publish([dict(row) for row in rows])
        return len(rows)

    # --- offsets in Kafka, seeking -----------------------------------------------

    def _commit_kafka(self, next_offsets: dict[TopicPartition, int], *, sync: bool = False) -> None:
        """Commit to Kafka what the database holds; a failed commit is retried later.

        Kafka's committed offsets only feed lag tools (the database is the source of
        truth), so the loop commits asynchronously: a synchronous commit cost a broker
        round trip per batch (~7 ms, a quarter of a batch's latency at low load). A
        commit that fails (a rebalance, say) is retried on the next batch or idle poll,
        unless a later commit of that partition was asked for meanwhile: a lost commit
        on a quiet partition would otherwise show a lag that never goes away.
        """
        with self.lock:
            self._kafka_pending.update(next_offsets)
            for tp in [tp for tp in self._kafka_pending if tp not in self.assigned]:
                del self._kafka_pending[tp]  # no longer ours: the new owner commits it
            owned = {
                tp: OffsetAndMetadata(o, "", -1)
                for tp, o in self._kafka_pending.items()
                if tp in self.assigned
            }
            for tp, om in owned.items():
                self._kafka_pending.pop(tp, None)
                self._kafka_requested[tp] = om.offset
        if not owned:
            return
        try:
            if sync:
                self.consumer.commit(owned)
            else:
                self.consumer.commit_async(owned, callback=self._kafka_committed)
        except KafkaError as exc:
            self._kafka_committed(owned, exc)

    def _kafka_committed(self, offsets: dict[TopicPartition, Any], result: Any) -> None:
        """Commit callback (kafka-python's IO thread): re-queue what failed."""
        if not isinstance(result, BaseException):
            return
        log.warning("kafka offset commit failed; retried later", error=type(result).__name__)
        with self.lock:
            for tp, om in offsets.items():
                if self._kafka_requested.get(tp) == om.offset:  # nothing newer asked for
                    self._kafka_pending.setdefault(tp, om.offset)

    def _final_commit(self) -> None:
        """On shutdown, commit to Kafka exactly what the database holds (for lag tools)."""
        try:
            with self.engine.connect() as conn:
                stored = self._load_offsets(conn, list(self.assigned))
            self._commit_kafka(stored, sync=True)
        except Exception as exc:  # best effort: the database stays the source of truth
            log.warning("final offset commit skipped", error=type(exc).__name__)

    def _seek_pending(self) -> None:
        """Seek newly assigned partitions to the offsets stored in the database."""
        # The assignment callback runs on kafka-python's IO thread and may land after
        # poll() returned: read the assignment afresh, and keep (paused) partitions that
        # are not in it yet pending until they are, or until they are revoked.
        self.assigned = set(self.consumer.assignment())
        with self.lock:
            if not self.pending_seek:
                return
            tps = [tp for tp in self.pending_seek if tp in self.assigned]
        try:
            with self.engine.connect() as conn:
                stored = self._load_offsets(conn, tps)
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._retry_later(exc)
            return
        # Explicit offsets only: kafka-python 3.0.12's seek_to_beginning() leaves a
        # partition waiting for an offset reset that can get lost (paused at the time),
        # and the partition is then never fetched again.
        fresh = [tp for tp in tps if tp not in stored]
        beginnings = self.consumer.beginning_offsets(fresh) if fresh else {}
        if tps:
            self.consumer.resume(*tps)  # resume first: a seek on a paused partition that
            # had buffered records can leave it unfetched (kafka-python 3.0.12)
        for tp in tps:
            self.consumer.seek(tp, stored[tp] if tp in stored else beginnings[tp])
        if tps:
            self._commit_kafka({tp: stored[tp] for tp in tps if tp in stored})
            log.info(
                "partitions assigned",
                service=self.service.name,
                partitions=sorted(f"{tp.topic}[{tp.partition}]" for tp in tps),
                from_database=len(stored),
            )
        with self.lock:
            self.pending_seek.difference_update(tps)
            waiting = len(self.pending_seek)
        if waiting:
            log.info(
                "assigned partitions not yet visible", service=self.service.name, waiting=waiting
            )

    def _resume_deferred(self) -> None:
        now = time.monotonic()
        for tp, until in list(self.deferred_until.items()):
            if tp not in self.assigned:
                del self.deferred_until[tp]
            elif now >= until:
                del self.deferred_until[tp]
                with self.lock:
                    self.pending_seek.add(tp)  # re-seek from the database, then resume
            elif tp not in self.consumer.paused():
                self.consumer.pause(tp)

    def _resync_all(self) -> None:
        with self.lock:
            self.pending_seek.update(self.assigned)
        if self.assigned:
            self.consumer.pause(*self.assigned)

    def _retry_later(self, exc: BaseException) -> None:
        self._resync_all()
        self._sleep_backoff(exc)

    def _sleep_backoff(self, exc: BaseException) -> None:
        self._backoff = min(self.settings.retry_backoff_max_s, max(0.5, self._backoff * 2))
        log.warning(
            "transient failure; retrying", error=type(exc).__name__, retry_in_s=self._backoff
        )
        self.stop_event.wait(self._backoff)

    def forget(self, revoked: Any) -> None:
        with self.lock:
            for tp in revoked:
                self.pending_seek.discard(tp)
                self.deferred_until.pop(tp, None)
                self._poison_fresh.discard(tp)
                self._careful.pop(tp, None)

    def end_offsets(self, topic: str) -> dict[int, int]:
        parts = self.consumer.partitions_for_topic(topic) or set()
        ends = self.consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: off for tp, off in ends.items()}


#: Allocations between two young-generation collections (CPython's default: 700).
GC_GEN0_THRESHOLD = 50_000


def _tune_gc() -> None:
    """Fewer garbage-collector passes in a service process: every batch allocates
    hundreds of thousands of short-lived objects (records, models, decimals) that
    reference counting frees, so at CPython's default the collector ran every 700
    allocations and scanned the long-lived startup objects (modules, SQLAlchemy
    metadata, pydantic validators) again and again. ``gc.freeze()`` moves those out
    of the collector's view; cycles are still collected, just less often. About 5 %
    more events/s in the offers and reminders profiles."""
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 50)


def run_service(service: Service, settings: Settings | None = None) -> None:
    """Entry point used by ``python -m services.<name>`` and ``installments run``."""
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_format)
    runner = Runner(service, settings)
    _tune_gc()
    server = metrics.serve(settings.http_port, runner) if settings.http_port is not None else None
    try:
        runner.run()
    finally:
        if server is not None:
            server.shutdown()
