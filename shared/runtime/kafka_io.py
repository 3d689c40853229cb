"""Kafka side of the loop: publish the outbox with the idempotent producer (replaced
when it fails), commit offsets for lag tools, seek partitions to the database's
offsets on (re)assignment and after a deferral.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from sqlalchemy import select

from shared.runtime import faults, metrics
from shared.runtime.base import RunnerBase
from shared.runtime.records import is_transient
from shared.runtime.store import delete_sent, outbox

log = structlog.get_logger("runtime")


class _Rebalance(ConsumerRebalanceListener):
    """Non-blocking: only notes partitions; the loop seeks them from the database."""

    def __init__(self, runner: KafkaIO) -> None:
        self.runner = runner

    # kafka-python runs these on its IO thread: only touch state under the lock.
    def on_partitions_revoked(self, revoked: Any) -> None:
        if revoked:
            log.info("partitions revoked", service=self.runner.service.name, count=len(revoked))
            # The loop overlaps: let the commit in flight land first, so the partitions'
            # next owner reads the offsets it stored. Bounded (this blocks the client's
            # heartbeats); correctness does not depend on it (compare-and-set offsets).
            self.runner._await_commit(min(5.0, self.runner.settings.session_timeout_ms / 4000))
        self.runner.forget(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        with self.runner.lock:
            self.runner.pending_seek.update(assigned)
            self.runner._poison_fresh.update(assigned)
            if assigned:
                self.runner._leftovers_due = True
        if assigned:
            self.runner.consumer.pause(*assigned)


class KafkaIO(RunnerBase):
    """Steps 4 and 5 of the loop, and seeking: publish the outbox, commit offsets to
    Kafka for lag tools, seek (re)assigned partitions to the offsets in the database."""

    def _await_commit(self, timeout: float) -> None:
        """Wait for the database commit in flight, if any (the overlapping loop)."""

    def _publish(self, sent: list[Any], *, mark_later: bool = False) -> None:
        """Step 4: publish outbox rows in order, flush, then mark them sent (delete them):
        here, in a transaction of their own, or (``mark_later``: a batch's own rows) in
        the next batch's transaction (:meth:`BatchProcessing._write`), or by
        :meth:`mark_published` when the loop goes idle or stops."""
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
        batches = sorted({row["batch"] for row in sent})
        metrics.count_emitted(self.service.name, len(sent))
        if mark_later:
            with self.lock:
                self._published_batches.update(batches)
            return
        self._mark_sent(batches)

    def mark_published(self) -> None:
        """Mark sent, in a transaction of their own, the batches published and not yet
        marked (no batch came after them: the loop is idle, or stopping)."""
        with self.lock:
            batches = sorted(self._published_batches)
        if batches:
            self._mark_sent(batches)
            with self.lock:
                self._published_batches.difference_update(batches)

    def _mark_sent(self, batches: list[str]) -> None:
        """Delete the outbox rows of ``batches``. The rows are out: a database failure
        here must not kill the loop (the rows would only be re-published, same ids, at
        the next start): retry."""
        while True:
            try:
                with self.engine.begin() as conn:
                    delete_sent(conn, batches)
                break
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if self.stop_event.is_set():
                    log.warning("stopping before marking sent; re-published at next start")
                    return
                self._sleep_backoff(exc)

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
        """Publish outbox rows left by an earlier run or a dead peer (crash after commit,
        before send): at start, and whenever partitions are assigned."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(outbox).order_by(outbox.c.seq)).mappings().all()
        with self.lock:  # this process's own, published and waiting to be marked sent
            rows = [row for row in rows if row["batch"] not in self._published_batches]
        if rows:
            log.info("publishing outbox leftovers", count=len(rows))
            self._publish([dict(row) for row in rows])
        return len(rows)

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
            for tp, offset in next_offsets.items():
                # Never back: with the overlap, a batch the writer published late may
                # report an offset older than one sought and committed since.
                if offset >= self._kafka_requested.get(tp, -1):
                    self._kafka_pending[tp] = offset
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
            with self.lock:
                due = self._leftovers_due and bool(tps)
                if due:
                    self._leftovers_due = False
            if due:
                # A peer that died between its database commit and its publish (step 4)
                # left outbox rows that no process sent until one started: its partitions
                # come by a rebalance, so send them now, before any newer record of theirs
                # is handled (per-key order). A row a live peer is sending right now may
                # go out twice: same id, same bytes, and every consumer's inbox drops it.
                # (A re-seek of partitions already held does not look: its own rows are
                # published by the loop.)
                try:
                    self.publish_pending()
                except BaseException:
                    self._leftovers_due = True  # tried again with the seek
                    raise
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._retry_later(exc)
            return
        # Explicit offsets only: kafka-python 3.0.12's seek_to_beginning() leaves a
        # partition waiting for an offset reset that can get lost (paused at the time),
        # and the partition is then never fetched again.
        fresh = [tp for tp in tps if tp not in stored]
        try:
            beginnings = self.consumer.beginning_offsets(fresh) if fresh else {}
        except (KafkaError, KeyError) as exc:
            # The broker could not say where a partition begins (a timeout, or its topic
            # deleted under the service: kafka-python 3.0.12 then raises KeyError). The
            # partitions stay paused and pending; a rebalance revokes those that are gone.
            self._retry_later(exc)
            return
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
