"""Steps 2 and 3 of the loop: decode a batch, apply it in one transaction, and split
it when one record cannot be applied (the record is dead-lettered, the rest applied).
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from kafka import TopicPartition
from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from schemas import InvalidEvent, decode, dlq_topic
from shared.runtime import faults, metrics
from shared.runtime.api import Context, Defer, NotLoaded, Reject
from shared.runtime.base import RunnerBase
from shared.runtime.db import Prebuilt, bulk_insert, utcnow
from shared.runtime.logging import redact_text
from shared.runtime.records import (
    DEAD_LETTER_OVERHEAD,
    PROGRAMMING_ERRORS,
    BatchResult,
    Fenced,
    _Committed,
    _Decoded,
    _HandlerFailed,
    content_digest,
    dead_letter_key,
    event_type_of,
    is_transient,
    storage_reason,
)
from shared.runtime.store import advance_offsets, consumer_offsets, delete_sent, inbox, outbox

log = structlog.get_logger("runtime")

#: Step 3b's inbox look-up: the content digest of each id of a batch already applied.
_SEEN_IDS = Prebuilt(
    lambda among: select(inbox.c.event_id, inbox.c.digest).where(
        inbox.c.consumer == bindparam("consumer"), among(inbox.c.event_id)
    )
)


@dataclass(eq=False)
class _Handled:
    """A transaction whose handlers have run (steps 3a-3c): still open, its writes
    (step 3d) and its commit to do (:meth:`BatchProcessing._write`)."""

    decoded: list[_Decoded]
    session: Session
    repo: Any
    stored: dict[TopicPartition, int]
    next_offsets: dict[TopicPartition, int]
    inbox_rows: list[dict[str, Any]]
    outbox_rows: list[dict[str, Any]]
    deferred: set[TopicPartition]
    now: Any


def _unique_race(exc: BaseException) -> bool:
    """A unique constraint refused a row (PostgreSQL sqlstate 23505; SQLite ``UNIQUE
    constraint failed``): most often another transaction committed the same row since
    this one looked: the inbox's (consumer, event id) when the same event id sits in two
    partitions read by two processes, or a state row that two events create."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc  # COPY raises the driver's own
    if isinstance(orig, sqlite3.IntegrityError):
        return str(orig).startswith("UNIQUE constraint failed:")
    return getattr(orig, "sqlstate", None) == "23505"


class BatchProcessing(RunnerBase):
    """Steps 2 and 3 of the loop: decode, then the database transaction(s) of a batch,
    isolating what cannot be applied (see :meth:`_apply`)."""

    def process_batch(self, records: list[Any], out: BatchResult | None = None) -> BatchResult:
        """Steps 2 and 3 over polled ``records``: what was committed (the next offsets and
        the outbox rows to publish). Public: tests/harness.py runs batches through it.

        Fast path: the whole batch in one transaction, no savepoints. A failure splits
        the batch instead of replaying it record by record (:meth:`_apply`), so one bad
        record among a thousand costs a few transactions, not a thousand. ``out``
        collects what was committed, even when a later part of the batch then fails
        (the caller still publishes it).
        """
        started = time.perf_counter()
        out = out if out is not None else BatchResult()
        # Step 2: decode; bad records become dead letters.
        decoded = [self._decode(r) for r in records]
        self._apply(decoded, out)
        metrics.observe_batch(self.service.name, len(records), time.perf_counter() - started)
        return out

    def _apply(
        self,
        chunk: list[_Decoded],
        out: BatchResult,
        hand_off: Callable[[_Handled], None] | None = None,
    ) -> None:
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
        4. ``hand_off`` (the overlapping loop, this level only, never the recursive calls):
           the last transaction of the chunk runs its handlers here and is handed off open
           (:class:`_Handled`) for its writes and commit; everything before it is
           committed already. If that commit fails, the loop applies the handed-off
           records again through this method, without ``hand_off`` (1 to 3).
        """
        pending = chunk
        races = 0
        while pending:
            pending = [d for d in pending if d.tp not in out.blocked]
            if not pending:
                return
            try:
                if hand_off is not None:
                    hand_off(self._handle(pending, isolated=len(pending) == 1))
                    return
                out.add(self._transaction(pending, isolated=len(pending) == 1))
                return
            except _HandlerFailed as exc:
                at = next(i for i, d in enumerate(pending) if d is exc.failed)
                if at:
                    self._apply(pending[:at], out)
                self._apply([pending[at]], out)
                pending = pending[at + 1 :]
            except Exception as exc:
                if isinstance(exc, (Fenced, *PROGRAMMING_ERRORS)) or is_transient(exc):
                    raise
                if _unique_race(exc) and races < 3:
                    # Another consumer of the group committed one of these event ids (or a
                    # row they create) after this transaction looked (the same id in two
                    # partitions, read by two processes at once). Not the record's fault:
                    # try again; the look-up now sees the id, and the record is skipped as a
                    # duplicate (or dead-lettered as a conflict when its content differs).
                    # A refusal that is no race fails the same way three times, and the
                    # chunk is then split as below.
                    races += 1
                    log.info(
                        "a unique constraint refused a row, maybe committed concurrently by"
                        " another consumer; trying again",
                        service=self.service.name,
                        records=len(pending),
                        attempt=races,
                    )
                    continue
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

    def _quarantine(self, d: _Decoded, exc: BaseException, out: BatchResult) -> None:
        """Dead-letter one record whose own transaction failed, and move its partition on.

        Nothing of its effect is kept (that transaction was rolled back); this one writes
        only the dead letter and the next stored offset (compare-and-set, as always).
        """
        reason = storage_reason(exc)
        self._logger(d).error("record cannot be applied; sent to the DLQ", reason=reason)
        metrics.count(self.service.name, event_type_of(d), "dlq")
        self._dead_letter_alone(d, reason, out)

    def _dead_letter_alone(self, d: _Decoded, reason: str, out: BatchResult) -> None:
        """One transaction: the dead letter of ``d`` and its partition's next offset."""
        now = utcnow()
        with Session(self.engine, autoflush=False) as session, session.begin():
            conn = session.connection()
            stored = self._load_offsets(conn, [d.tp])
            if stored.get(d.tp) is not None and d.record.offset < stored[d.tp]:
                return  # applied (or dead-lettered) by an earlier batch
            rows = [self._dead_letter(d, reason, now)]
            rows[0]["batch"] = uuid.uuid4().hex
            bulk_insert(conn, outbox, rows, binary=True)
            next_offsets = {d.tp: d.record.offset + 1}
            self._store_offsets(session, conn, stored, next_offsets, now)
        out.add(_Committed(next_offsets, rows, set()))

    def _transaction(self, decoded: list[_Decoded], *, isolated: bool) -> _Committed:
        """Step 3: one database transaction over ``decoded`` (in partition order)."""
        return self._write(self._handle(decoded, isolated=isolated))

    def _handle(self, decoded: list[_Decoded], *, isolated: bool) -> _Handled:
        """Steps 3a to 3c of one transaction: open it, drop what the stored offsets say was
        applied, look the rest up in the inbox, load the repository and run the handlers.
        The transaction stays open; :meth:`_write` writes it and commits (on this thread,
        or on the writer thread when the loop overlaps: :mod:`shared.runtime.runner`).
        Any exception rolls it back and closes it here."""
        by_tp: dict[TopicPartition, list[_Decoded]] = defaultdict(list)
        for d in decoded:
            by_tp[d.tp].append(d)
        session = Session(self.engine, autoflush=False)
        try:
            session.begin()
            ctx = Context(self.service, self.settings, session, self)
            conn = session.connection()
            stored = self._load_offsets(conn, list(by_tp))
            # Step 3a: drop what an earlier batch already applied (stored offset is ahead):
            # no inbox look-up, no repository load, no handler for those records.
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
        except BaseException:
            session.close()  # rolls the transaction back
            raise
        return _Handled(
            decoded, session, ctx.repo, stored, next_offsets, inbox_rows, outbox_rows, deferred, now
        )

    def _write(self, h: _Handled) -> _Committed:
        """Step 3d: state, inbox, outbox and offsets, in the transaction :meth:`_handle`
        opened, then commit it. Any exception rolls it back (nothing of it is kept)."""
        session = h.session
        published: list[str] = []
        try:
            conn = session.connection()
            # The inbox first: an event another process is committing at the same moment
            # (the same id in two partitions) then waits on, and fails at, the inbox's key,
            # before any state row of it is written (_unique_race, in _apply).
            bulk_insert(conn, inbox, h.inbox_rows, binary=True)
            if h.repo is not None:
                h.repo.save()
            if h.outbox_rows:
                batch = uuid.uuid4().hex
                for row in h.outbox_rows:
                    row["batch"] = batch
                bulk_insert(conn, outbox, h.outbox_rows, binary=True)
            self._store_offsets(session, conn, h.stored, h.next_offsets, h.now)
            # Step 4's marking sent of the batches published before this one (their rows
            # are out; deleted here instead of in a transaction of their own).
            with self.lock:
                published = sorted(self._published_batches)
            if published:
                delete_sent(conn, published)
            # A crash here loses the whole transaction (written, not committed).
            faults.maybe_crash("while_writing", after="next_batch_decoded")
            session.commit()
        finally:
            session.close()
        if published:
            with self.lock:
                self._published_batches.difference_update(published)
        return _Committed(h.next_offsets, h.outbox_rows, h.deferred)

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

        Not isolated (fast path): a refusal that changed nothing is dead-lettered here;
        any other refusal or failure raises :class:`_HandlerFailed`, and the caller splits
        the batch at this record. Isolated: the record's changes are rolled back
        (savepoint) and it is dead-lettered or deferred.
        """
        rec = d.record
        if d.event is None:
            self._logger(d).warning("undecodable message dead-lettered", reason=d.error)
            outbox_rows.append(self._dead_letter(d, d.error or "undecodable", now))
            metrics.count(self.service.name, event_type_of(d), "dlq")
            return "dead"
        event = d.event
        if event.id in seen:
            known = seen[event.id]
            if known is not None and known != d.digest:
                # The same id with other content: never silently dropped (the first one
                # stays applied; this one waits in the DLQ for a person to look).
                self._logger(d).warning("event id reused with different content; dead-lettered")
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
            self._logger(d).info("duplicate event skipped")
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
            if is_transient(exc) or isinstance(exc, NotLoaded):
                raise  # retried; or a PRELOAD table that misses a key: a bug, not the record
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

    def _logger(self, d: _Decoded) -> Any:
        """A logger bound with the record's service, topic, partition, offset, event id
        and type (the ones a handler gets from ``ctx.log``)."""
        event = d.event
        return log.bind(
            service=self.service.name,
            topic=d.contract_topic,
            partition=d.record.partition,
            offset=d.record.offset,
            event_id=event.id if event else None,
            type=event.type if event else None,
        )

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

    def _seen_ids(self, conn: Any, ids: list[str]) -> dict[str, str | None]:
        """The inbox's content digest of each id of ``ids`` already applied."""
        if not ids:
            return {}
        rows = conn.execute(
            _SEEN_IDS(conn.dialect.name), {"consumer": self.group, "ids": ids}
        ).all()
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
