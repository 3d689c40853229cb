"""The runner's state: settings, engine, consumer and producer, the partitions waiting
for a seek, deferred or watched, and the back-off every part shares.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import structlog
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.partitioner.default import DefaultPartitioner
from sqlalchemy import Engine

from shared.runtime.api import Service
from shared.runtime.db import make_engine
from shared.runtime.settings import Settings
from shared.runtime.store import load_offsets

log = structlog.get_logger("runtime")

#: Keys whose partition :class:`KeyPartitioner` remembers (then it starts afresh).
PARTITION_MEMO_KEYS = 65536

#: How every service's producer sends (with a :class:`KeyPartitioner` of its own). Big
#: producer batches: every full batch wakes the sender thread, which then competes for the
#: GIL with the loop (profiled: half the publish time went to wake-ups with the 16 KiB
#: default). flush() ends each one.
PRODUCER_SETTINGS: dict[str, Any] = {
    "enable_idempotence": True,
    "acks": "all",
    "linger_ms": 5,
    "batch_size": 1048576,
}


class KeyPartitioner(DefaultPartitioner):
    """kafka-python's default partitioner (murmur2 of the key, as the Java client, so a
    key lands where every other producer puts it), remembering the partition of the
    last keys seen: the default hashes every record's key in pure Python and sorts the
    topic's partitions each time (about 4.5 µs a record, measured), and an account's
    events follow one another. An entry holds the topic's partition count it was
    computed for, so a topic that gains partitions is hashed again; at
    :data:`PARTITION_MEMO_KEYS` entries the memo is emptied (bounded memory)."""

    def __init__(self) -> None:
        self._memo: dict[tuple[str, bytes], tuple[int, int]] = {}

    def partition(
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: bytes | None,
        cluster: Any,
    ) -> int:
        partitions = cluster.partitions_for_topic(topic)
        if serialized_key is None or not partitions:
            return int(super().partition(topic, key, serialized_key, value, None, cluster))
        count = len(partitions)
        hit = self._memo.get((topic, serialized_key))
        if hit is not None and hit[0] == count:
            return hit[1]
        chosen = int(super().partition(topic, key, serialized_key, value, None, cluster))
        if len(self._memo) >= PARTITION_MEMO_KEYS:
            self._memo.clear()
        self._memo[(topic, serialized_key)] = (count, chosen)
        return chosen


class RunnerBase:
    """The state of a running service and the small helpers every part of the runner
    uses (the loop is :class:`shared.runtime.runner.Runner`)."""

    def __init__(
        self,
        service: Service,
        settings: Settings | None = None,
        *,
        engine: Engine | None = None,
        consumer_overrides: Mapping[str, Any] | None = None,
        consumer: KafkaConsumer | None = None,
    ) -> None:
        """``consumer``: one to use instead of joining the group at :meth:`start`
        (tests/harness.py passes a stand-in to run batches without a broker)."""
        self.service = service
        self.settings = settings or Settings()
        self.engine = engine or make_engine(self.settings, service.name)
        # The topic prefix namespaces consumer groups too (tests, demo runs).
        self.group = self.settings.consumer_group(service.name)
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
        self._consumer: KafkaConsumer | None = consumer
        self._producer: KafkaProducer | None = None
        #: Outbox batches published and not yet marked sent (deleted): the next batch's
        #: transaction deletes them (step 4 of shared.runtime.runner).
        self._published_batches: set[str] = set()
        self._backoff = 0.0
        self._kafka_pending: dict[TopicPartition, int] = {}  # to commit to Kafka
        self._kafka_requested: dict[TopicPartition, int] = {}  # last commit asked for
        #: Crash counting (:meth:`_watch_for_poison`): partitions assigned whose first
        #: batch is not noted yet, and partitions tried one record at a time after a
        #: death, up to the offset noted.
        self._poison_fresh: set[TopicPartition] = set()
        self._careful: dict[TopicPartition, int] = {}
        #: Partitions came by a rebalance: send the outbox rows a dead peer may have left
        #: (:meth:`KafkaIO._seek_pending`); not for a re-seek of partitions already held.
        self._leftovers_due = False

    @property
    def consumer(self) -> KafkaConsumer:
        assert self._consumer is not None
        return self._consumer

    @property
    def producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(
                **self.settings.kafka_client_config(),
                **PRODUCER_SETTINGS,
                partitioner=KeyPartitioner(),
                max_request_size=self.settings.kafka_max_request_bytes,
                client_id=f"{self.service.name}-producer",
            )
        return self._producer

    def stop(self) -> None:
        """Ask the loop to finish its batch and exit (safe from a signal handler)."""
        self.stop_event.set()

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

    def _refetch(self, tps: set[TopicPartition]) -> None:
        """Fetch these partitions again from the offsets stored in the database."""
        with self.lock:
            self.pending_seek.update(tps)
        self.consumer.pause(*tps)

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

    def _load_offsets(self, conn: Any, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        stored = load_offsets(conn, self.group, [(tp.topic, tp.partition) for tp in tps])
        return {TopicPartition(t, p): offset for (t, p), offset in stored.items()}
