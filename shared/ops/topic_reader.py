"""Read a whole topic of a namespace, raw: what the invariant checker and the fault
suite look at (no consumer group, from the beginning to the end offsets noted first).
"""

from __future__ import annotations

from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition

from shared.runtime.settings import Settings


@dataclass
class Raw:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]


def read_raw(settings: Settings, topic: str) -> list[Raw]:
    consumer = KafkaConsumer(
        **settings.kafka_client_config(),
        group_id=None,
        enable_auto_commit=False,
        client_id="invariants",
    )
    try:
        physical = settings.topic(topic)
        tps = [TopicPartition(physical, p) for p in consumer.partitions_for_topic(physical) or []]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[Raw] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for tp, records in consumer.poll(timeout_ms=500, max_records=10000).items():
                out.extend(
                    Raw(
                        topic,
                        r.partition,
                        r.offset,
                        r.key,
                        r.value,
                        {k: v.decode(errors="replace") for k, v in r.headers or []},
                    )
                    for r in records
                    if r.offset < ends[tp]
                )
        out.sort(key=lambda r: (r.partition, r.offset))
        return out
    finally:
        consumer.close()
