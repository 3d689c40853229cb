"""The consumer runtime every service runs on: exactly-once effects over Kafka + SQL.

A service is a table of handlers (event type -> function). The runtime owns
everything else. Per poll it does, in this order (the same numbers mark the
steps in :meth:`Runner.run_once` and :mod:`shared.runtime.batch`):

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
import os
import signal
import threading
import time
from typing import Any

import structlog
from kafka import KafkaConsumer

from shared.runtime import (
    faults,
    kafka_compat,  # noqa: F401 (kafka_compat patches on import)
    metrics,
)
from shared.runtime.api import Service
from shared.runtime.kafka_io import KafkaIO, _Rebalance
from shared.runtime.logging import configure_logging
from shared.runtime.poison import PoisonWatch
from shared.runtime.records import BatchResult, Fenced, is_transient
from shared.runtime.settings import Settings
from shared.runtime.store import migrate

log = structlog.get_logger("runtime")


class Runner(PoisonWatch, KafkaIO):
    """Runs one service: the loop of :meth:`run_once` until stopped."""

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
        out = BatchResult()
        failure: BaseException | None = None
        try:
            # Crash counting: a record that killed the process before is tried alone,
            # and dead-lettered once it has killed it poison_max_attempts times.
            todo = self._watch_for_poison(records, out)
            if todo:
                self.process_batch(todo, out)  # steps 2 and 3
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
    server = (
        metrics.serve(settings.http_port, runner, settings.http_host)
        if settings.http_port is not None
        else None
    )
    try:
        runner.run()
    finally:
        if server is not None:
            server.shutdown()
