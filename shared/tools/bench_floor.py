"""The kafka-python pass-through floor: what one process costs that does only the Kafka
part of a service's loop over the same input, with the runtime's client settings.

Per poll: ``json.loads`` each record's value, produce it (its key and value) to one
output topic with the idempotent producer (``acks=all``, the runtime's ``linger_ms`` and
``batch_size``), flush, then commit the batch's offsets asynchronously (as the runtime
does; the last commit is synchronous). No validation, no handler, no database. The
benchmark measures it like a service (committed offsets of its group, the process's
CPU): a service at 100 % of the floor would cost nothing but Kafka.

Run by path (``python -P .../bench_floor.py``) with ``PYTHONPATH`` at this tree: besides
kafka-python it imports only the runtime's patches of kafka-python 3.0.12
(:mod:`shared.runtime.kafka_compat`; without them a consumer that joins its group under
load can stay "rebalancing" for ever, as the services' consumers did).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata

try:  # the same client fixes as the services (patches on import)
    from shared.runtime import kafka_compat  # noqa: F401
except ImportError:  # pragma: no cover - a tree without them
    pass


def run(bootstrap: str, group: str, topics: list[str], out_topic: str, max_records: int) -> None:
    stop = False

    def _stop(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id="bench-floor-consumer",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_records,
        fetch_max_bytes=52428800,
        max_partition_fetch_bytes=4194304,
    )
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        batch_size=1048576,
        client_id="bench-floor-producer",
    )
    consumer.subscribe(topics)
    try:
        while not stop:
            batch = consumer.poll(timeout_ms=200, max_records=max_records)
            if not batch:
                continue
            offsets = {}
            for tp, records in batch.items():
                for r in records:
                    json.loads(r.value)
                    producer.send(out_topic, key=r.key, value=r.value)
                offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
            producer.flush()
            consumer.commit_async(offsets)
    finally:
        producer.flush()
        producer.close()
        try:
            consumer.commit()
        finally:
            consumer.close(autocommit=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="kafka-python pass-through (benchmark floor)")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--out-topic", required=True)
    parser.add_argument("--max-records", type=int, default=1000)
    parser.add_argument("topics", nargs="+")
    args = parser.parse_args(argv)
    run(args.bootstrap, args.group, args.topics, args.out_topic, args.max_records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
