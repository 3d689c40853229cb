"""The kafka-python workarounds of shared/runtime/kafka_compat.py, on the real broker.

A partition paused while its records are next in line, then resumed, must be
fetched again to the end (kafka-python 3.0.12 left it parked for ever).
"""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

import shared.runtime.kafka_compat  # noqa: F401  (the patch under test, as the runtime applies it)

pytestmark = pytest.mark.integration

PER_PARTITION = 1500


def test_paused_then_resumed_partition_is_read_to_the_end(stack):
    bootstrap, _ = stack
    topic = f"compat-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 2, 1)])
    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        for i in range(2 * PER_PARTITION):
            producer.send(topic, partition=i % 2, value=b"x" * 100)
        producer.flush()
        producer.close()
        a, b = TopicPartition(topic, 0), TopicPartition(topic, 1)
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
        )
        consumer.assign([a, b])
        consumer.seek(a, 0)
        consumer.seek(b, 0)
        got = {a: 0, b: 0}
        paused_at: float | None = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and min(got.values()) < PER_PARTITION:
            for tp, records in consumer.poll(timeout_ms=200, max_records=50).items():
                got[tp] += len(records)
            if paused_at is None and got[a] > 0:
                consumer.pause(a)  # its next records are in line: they get parked
                paused_at = time.monotonic()
            elif paused_at is not None and a in consumer.paused():
                if time.monotonic() - paused_at > 1 and got[b] == PER_PARTITION:
                    consumer.resume(a)
        consumer.close()
        assert paused_at is not None
        assert got == {a: PER_PARTITION, b: PER_PARTITION}
    finally:
        admin.delete_topics([topic])
        admin.close()
