"""Operator's tool: replay a service from an offset or a time.

Replay moves a stopped service's stored offsets (database, and Kafka's committed
offsets for the lag tools) back to an offset or a time. Effects are exactly once:
events already applied are skipped by the inbox and re-emitted events keep their
ids; what was dead-lettered is tried again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.structs import OffsetAndMetadata
from sqlalchemy import and_, select, update

from shared import registry
from shared.runtime.db import make_engine, utcnow
from shared.runtime.retention import pruned_horizon
from shared.runtime.settings import Settings
from shared.runtime.store import consumer_offsets


def group_members(settings: Settings, group: str) -> int:
    admin = KafkaAdminClient(**settings.kafka_client_config(), client_id="installments-replay")
    try:
        described = admin.describe_groups([group]).get(group) or {}
        return len(described.get("members") or [])
    finally:
        admin.close()


def plan_replay(
    settings: Settings,
    service: Any,
    *,
    to_offset: int | None,
    to_time: datetime | None,
    topic: str | None,
) -> dict[TopicPartition, tuple[int, int]]:
    """Partition -> (stored next offset now, offset to move back to)."""
    group = registry.group_name(settings, service.name)
    topics = [topic] if topic else list(service.consumes)
    for t in topics:
        if t not in service.consumes:
            raise ValueError(f"{service.name} does not consume {t}")
    engine = make_engine(settings, service.name)
    consumer = KafkaConsumer(**settings.kafka_client_config(), group_id=None)
    try:
        tps = [
            TopicPartition(settings.topic(t), p)
            for t in topics
            for p in consumer.partitions_for_topic(settings.topic(t)) or set()
        ]
        with engine.connect() as conn:
            rows = conn.execute(
                select(consumer_offsets).where(consumer_offsets.c.consumer == group)
            )
            stored = {TopicPartition(r.topic, r.partition): r.next_offset for r in rows}
        if to_time is not None:
            found = consumer.offsets_for_times({tp: int(to_time.timestamp() * 1000) for tp in tps})
            ends = consumer.end_offsets(tps)
            targets = {tp: (found[tp].offset if found.get(tp) else ends[tp]) for tp in tps}
        else:
            starts = consumer.beginning_offsets(tps)
            targets = {tp: max(starts[tp], to_offset or 0) for tp in tps}
        return {
            tp: (stored.get(tp, 0), min(targets[tp], stored.get(tp, 0)))
            for tp in tps
            if tp in stored
        }
    finally:
        consumer.close()
        engine.dispose()


def apply_replay(
    settings: Settings, service: Any, moves: dict[TopicPartition, tuple[int, int]]
) -> None:
    """Move the stored offsets back (compare-and-set), then Kafka's committed offsets."""
    group = registry.group_name(settings, service.name)
    engine = make_engine(settings, service.name)
    try:
        with engine.begin() as conn:
            for tp, (current, target) in moves.items():
                result = conn.execute(
                    update(consumer_offsets)
                    .where(
                        and_(
                            consumer_offsets.c.consumer == group,
                            consumer_offsets.c.topic == tp.topic,
                            consumer_offsets.c.partition == tp.partition,
                            consumer_offsets.c.next_offset == current,
                        )
                    )
                    .values(next_offset=target, updated_at=utcnow())
                )
                if result.rowcount != 1:
                    raise RuntimeError(
                        f"{tp.topic}[{tp.partition}] moved meanwhile; is the service still running?"
                    )
    finally:
        engine.dispose()
    consumer = KafkaConsumer(
        **settings.kafka_client_config(), group_id=group, enable_auto_commit=False
    )
    try:
        consumer.commit({tp: OffsetAndMetadata(t, "", -1) for tp, (_c, t) in moves.items()})
    finally:
        consumer.close()


def beyond_retention(
    settings: Settings, service: Any, moves: dict[TopicPartition, tuple[int, int]]
) -> dict[TopicPartition, int]:
    """The partitions ``moves`` would take back to or below the highest offset whose inbox
    row retention pruned (partition -> that offset): replaying those records could apply
    an event a second time (README "Retention")."""
    group = registry.group_name(settings, service.name)
    engine = make_engine(settings, service.name)
    try:
        with engine.connect() as conn:
            horizon = pruned_horizon(conn, group)
    finally:
        engine.dispose()
    return {
        tp: horizon[(tp.topic, tp.partition)]
        for tp, (_current, target) in moves.items()
        if (tp.topic, tp.partition) in horizon and target <= horizon[(tp.topic, tp.partition)]
    }
