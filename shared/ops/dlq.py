"""Operator's tools: inspect and re-drive dead letters (replay: :mod:`shared.ops.replay`).

Dead letters: every consumed topic ``T`` has ``T.dlq``; a message there carries the
original bytes and key, and the headers ``error.reason``, ``error.service``,
``original.topic``, ``original.partition``, ``original.offset``.

Re-drive re-publishes the original bytes (same key, so the same partition and
order rules) to the original topic. Progress is kept in the consumer group
``installments-dlq-redrive`` so a second run continues where the first stopped;
``--dry-run`` shows what would go and moves nothing. Re-driving is safe: an event
that was applied meanwhile is a duplicate for the inbox; a dead-lettered event was
never put in the inbox, so after the fix it is processed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata
from rich.table import Table

from schemas import TOPICS, dlq_topic
from schemas.business_days import CONFIRM_HEADER, CONFIRMABLE
from shared.runtime.settings import Settings

REDRIVE_GROUP = "installments-dlq-redrive"
#: ``redrive(confirm=...)`` adds this header to the re-driven records: an operator's
#: confirmation of what the service held (the reason code). The services that hold a
#: record until confirmed read it (offers, reminders: ``business_date_jump``).


@dataclass
class DeadLetter:
    dlq_topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def original_topic(self) -> str:
        return self.headers.get("original.topic", "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "dlq_topic": self.dlq_topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp_ms": self.timestamp_ms,
            "key": (self.key or b"").decode(errors="replace"),
            "bytes": len(self.value),
            **self.headers,
        }


def dlq_topics(topic: str | None = None) -> list[str]:
    """Contract DLQ topic names (all, or the one of ``topic``)."""
    names = [topic] if topic else list(TOPICS)
    for name in names:
        if name not in TOPICS:
            raise ValueError(f"unknown topic {name!r}; one of: {', '.join(TOPICS)}")
    return [dlq_topic(n) for n in names]


def read_dead_letters(
    settings: Settings, topic: str | None = None, *, group: str | None = None
) -> tuple[list[DeadLetter], KafkaConsumer]:
    """Dead letters from the beginning (or from ``group``'s committed offsets) to the end."""
    consumer = KafkaConsumer(
        **settings.kafka_client_config(),
        group_id=group,
        enable_auto_commit=False,
        client_id="installments-dlq",
    )
    tps = [
        TopicPartition(settings.topic(t), p)
        for t in dlq_topics(topic)
        for p in consumer.partitions_for_topic(settings.topic(t)) or set()
    ]
    consumer.assign(tps)
    letters: list[DeadLetter] = []
    if not tps:
        return letters, consumer
    for tp in tps:
        committed = consumer.committed(tp) if group else None
        if committed is None:
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)
    ends = consumer.end_offsets(tps)
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        for tp, records in consumer.poll(timeout_ms=500, max_records=5000).items():
            for r in records:
                if r.offset >= ends[tp]:
                    continue
                letters.append(
                    DeadLetter(
                        settings.contract_topic(r.topic),
                        r.partition,
                        r.offset,
                        r.timestamp,
                        r.key,
                        r.value,
                        {k: v.decode(errors="replace") for k, v in r.headers or []},
                    )
                )
    letters.sort(key=lambda d: (d.timestamp_ms, d.dlq_topic, d.partition, d.offset))
    return letters, consumer


def redrive(
    settings: Settings,
    topic: str | None,
    *,
    dry_run: bool,
    reason_contains: str | None,
    limit: int | None,
    confirm: str | None = None,
) -> list[DeadLetter]:
    """Re-publish dead letters to their original topics; returns those (to be) re-driven.

    ``confirm`` (one of :data:`CONFIRMABLE`): re-drive only the letters whose reason starts
    with it, each with the header ``installments.confirm: <confirm>``, so the service
    applies what it held (e.g. a jump of business date the operator checked)."""
    if confirm is not None and confirm not in CONFIRMABLE:
        raise ValueError(f"--confirm must be one of {', '.join(CONFIRMABLE)}")
    group = settings.topic_prefix + REDRIVE_GROUP
    letters, consumer = read_dead_letters(settings, topic, group=group)
    try:
        chosen = [
            d
            for d in letters
            if (reason_contains is None or reason_contains in d.headers.get("error.reason", ""))
            and (confirm is None or d.headers.get("error.reason", "").startswith(confirm))
        ]
        if limit is not None:
            chosen = chosen[:limit]
        if dry_run or not chosen:
            return chosen
        producer = KafkaProducer(
            **settings.kafka_client_config(),
            acks="all",
            enable_idempotence=True,
            client_id="installments-dlq-redrive",
        )
        for d in chosen:
            if d.original_topic not in TOPICS:
                raise ValueError(
                    f"dead letter {d.dlq_topic}@{d.offset} has no valid original.topic"
                )
            producer.send(
                settings.topic(d.original_topic),
                key=d.key,
                value=d.value,
                headers=[("redriven.from", f"{d.dlq_topic}@{d.partition}:{d.offset}".encode())]
                + ([(CONFIRM_HEADER, confirm.encode())] if confirm is not None else []),
            )
        producer.flush()
        producer.close()
        # Progress: the highest re-driven offset per DLQ partition (+1). With a filter,
        # skipped letters before it are passed over too, and the command says so.
        progress: dict[TopicPartition, int] = {}
        for d in chosen:
            tp = TopicPartition(settings.topic(d.dlq_topic), d.partition)
            progress[tp] = max(progress.get(tp, 0), d.offset + 1)
        consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in progress.items()})
        return chosen
    finally:
        consumer.close()


def iter_rows(letters: list[DeadLetter]) -> Iterator[list[str]]:
    for d in letters:
        h = d.headers
        yield [
            d.dlq_topic,
            f"{d.partition}:{d.offset}",
            h.get("error.service", "?"),
            f"{h.get('original.topic', '?')}[{h.get('original.partition', '?')}]"
            f"@{h.get('original.offset', '?')}",
            h.get("error.reason", "")[:120],
        ]


def dead_letter_table(letters: list[DeadLetter]) -> Table:
    """``installments dlq list``: one row per dead letter."""
    table = Table(
        "dlq topic",
        "partition:offset",
        "service",
        "original",
        "reason",
        title=f"{len(letters)} dead letter(s)",
    )
    for row in iter_rows(letters):
        table.add_row(*row)
    return table
