"""What the Kafka client alone costs a service, for two Python clients (issue #16).

The pass-through floor of the benchmark (consume, ``json.loads``, produce with the
idempotent producer and ``acks=all``, flush and commit per batch), run over the same
input with:

- ``kafka-python``: the project's client, with the runtime's producer settings and its
  partitioner (:class:`shared.runtime.base.KeyPartitioner`) and client patches;
- ``confluent-kafka``: librdkafka (C) behind a Python binding, with the settings the
  contract asks of such a client (``partitioner=murmur2_random``, as the Java client).

Not a dependency of the project: this measures what a change of client would give, for
the decision. Give an interpreter that has it with ``--confluent-python`` (default: this
one); when it has not, the run says so and the other client is still measured.

    python -m shared.tools.bench_client_floor [--service points] [--events 30000]
        [--runs 3] [--confluent-python PATH] [--out FILE]

The input is the benchmark's own for ``--service`` (:meth:`Bench.load`). Each run is a
process of its own, run by path with only the client imported in the timed loop, a new
consumer group from the start of the input: its CPU (``getrusage``: user + sys of every
thread, the client's own I/O threads included) and wall time from its first non-empty
poll to its last record. The clients alternate, run by run, so a change of the machine's
load falls on both. Prints a line per run and the medians; ``--out`` writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

CLIENTS = ("kafka-python", "confluent-kafka")
MAX_RECORDS = 1000  # a poll's records: the runtime's default poll_max_records
RUN_TIMEOUT_S = 300.0


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _KafkaPython:
    def __init__(self, bootstrap: str, topics: list[str], group: str) -> None:
        from kafka import KafkaConsumer, KafkaProducer

        from shared.runtime import kafka_compat  # noqa: F401 (the runtime's client patches)
        from shared.runtime.base import PRODUCER_SETTINGS, KeyPartitioner

        self.consumer = KafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=MAX_RECORDS,
            fetch_max_bytes=52428800,
            max_partition_fetch_bytes=4194304,
        )
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap, **PRODUCER_SETTINGS, partitioner=KeyPartitioner()
        )
        self._offsets: dict[Any, Any] = {}

    def poll(self) -> list[tuple[bytes | None, bytes]]:
        from kafka import OffsetAndMetadata

        batch = self.consumer.poll(timeout_ms=200, max_records=MAX_RECORDS)
        self._offsets = {
            tp: OffsetAndMetadata(records[-1].offset + 1, "", -1) for tp, records in batch.items()
        }
        return [(r.key, r.value) for records in batch.values() for r in records]

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.producer.send(topic, key=key, value=value)

    def end_batch(self) -> None:
        self.producer.flush()
        self.consumer.commit_async(self._offsets)

    def close(self) -> None:
        self.producer.close()
        self.consumer.close(autocommit=False)


class _Confluent:
    def __init__(self, bootstrap: str, topics: list[str], group: str) -> None:
        from confluent_kafka import Consumer, Producer

        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        self.consumer.subscribe(topics)
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "partitioner": "murmur2_random",
            }
        )

    def poll(self) -> list[tuple[bytes | None, bytes]]:
        out = []
        for message in self.consumer.consume(num_messages=MAX_RECORDS, timeout=0.2):
            if message.error() is not None:
                raise RuntimeError(f"consume failed: {message.error()}")
            out.append((message.key(), message.value()))
        return out

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.producer.produce(topic, key=key, value=value)

    def end_batch(self) -> None:
        self.producer.flush()
        self.consumer.commit(asynchronous=True)

    def close(self) -> None:
        self.producer.flush()
        self.consumer.close()


def run_child(
    client: str, bootstrap: str, topics: list[str], out_topic: str, events: int
) -> dict[str, Any]:
    """One run: pass ``events`` records of ``topics`` through ``client`` to ``out_topic``."""
    io = (_KafkaPython if client == "kafka-python" else _Confluent)(
        bootstrap, topics, f"client-floor-{uuid.uuid4().hex[:12]}"
    )
    seen = 0
    started: tuple[float, float] | None = None
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while seen < events:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{client}: {seen} of {events} records in {RUN_TIMEOUT_S} s")
            records = io.poll()
            if not records:
                continue
            if started is None:
                started = (time.monotonic(), _cpu_s())
            for key, value in records:
                json.loads(value)
                io.send(out_topic, key, value)
            io.end_batch()
            seen += len(records)
        assert started is not None
        wall, cpu = time.monotonic() - started[0], _cpu_s() - started[1]
    finally:
        io.close()
    return {
        "client": client,
        "events": seen,
        "events_per_s": round(seen / wall),
        "cpu_us_per_event": round(cpu / seen * 1e6, 1),
    }


def _run(
    client: str, python: str, bootstrap: str, topics: list[str], out_topic: str, events: int
) -> dict[str, Any]:
    """A run in a process of its own (its CPU is only its own)."""
    repo = Path(__file__).resolve().parents[2]
    command = [python, "-P", __file__, "--child", client, "--bootstrap", bootstrap]
    command += ["--out-topic", out_topic, "--events", str(events), *topics]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S + 60,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        if "No module named 'confluent_kafka'" in last:
            last = f"confluent-kafka is not installed for {python}"
        return {"client": client, "error": last[:300]}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for client in CLIENTS:
        good = [r for r in runs if r["client"] == client and "error" not in r]
        if good:
            out[client] = {
                "runs": len(good),
                "events_per_s": round(statistics.median(r["events_per_s"] for r in good)),
                "cpu_us_per_event": round(
                    statistics.median(r["cpu_us_per_event"] for r in good), 1
                ),
            }
    return out


def measure(
    service: str, events: int, runs: int, pythons: dict[str, str], log: Any = print
) -> dict[str, Any]:
    """``runs`` runs of each client in ``pythons`` (client -> interpreter), alternating,
    over the benchmark's input of ``service``."""
    from kafka.admin import KafkaAdminClient, NewTopic

    from shared.tools.bench_runner import Bench

    bench = Bench(events, log)
    try:
        settings = bench.settings("client-floor")
        count, topics = bench.load(settings, service)
        names = [settings.topic(t) for t in topics]
        out_topic = settings.topic("bench.client-floor.v1")
        admin = KafkaAdminClient(**settings.kafka_client_config())
        try:
            admin.create_topics([NewTopic(out_topic, settings.topic_partitions, 1)])
        finally:
            admin.close()
        results: list[dict[str, Any]] = []
        for i in range(runs):
            for client, python in pythons.items():
                result = _run(client, python, bench.bootstrap, names, out_topic, count)
                result["run"] = i + 1
                results.append(result)
                log(
                    f"run {i + 1}, {client}: "
                    + (
                        result["error"]
                        if "error" in result
                        else f"{result['events_per_s']:,} events/s, "
                        f"{result['cpu_us_per_event']} us CPU an event"
                    )
                )
    finally:
        bench.cleanup()
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "service_input": service,
        "events": count,
        "runs": results,
        "medians": _medians(results),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--service", default="points", help="whose benchmark input to use")
    parser.add_argument("--events", type=int, default=30000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--confluent-python", default=sys.executable)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--out-topic", help=argparse.SUPPRESS)
    parser.add_argument("topics", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = run_child(args.child, args.bootstrap, args.topics, args.out_topic, args.events)
        print(json.dumps(result))
        return 0
    clients = [c for c in args.clients.split(",") if c]
    unknown = set(clients) - set(CLIENTS)
    if unknown or not clients:
        parser.error(f"--clients: a comma-separated choice of {', '.join(CLIENTS)}")
    if args.events < 1 or args.runs < 1:
        parser.error("--events and --runs must be at least 1")
    pythons = {
        c: (args.confluent_python if c == "confluent-kafka" else sys.executable) for c in clients
    }
    result = measure(args.service, args.events, args.runs, pythons)
    for client, m in result["medians"].items():
        print(
            f"{client}: median of {m['runs']}: {m['events_per_s']:,} events/s, "
            f"{m['cpu_us_per_event']} us CPU an event"
        )
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
