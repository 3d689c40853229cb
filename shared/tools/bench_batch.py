"""A service's cost per batch on PostgreSQL: the fixed part and the part per record.

The runtime's batch path (``process_batch``: decode, the transaction with its stored
offsets, inbox look-up, repository load, handlers, COPY of state, inbox and outbox, the
compare-and-set of the offsets, commit), in process, on a fresh database of the
PostgreSQL server of ``DATABASE_URL``, without Kafka: the benchmark's own input records
(:func:`shared.tools.bench_runner.workload_records`), the accounts first, then the
events cut into batches of each size asked for. CPU is this process's (user + sys),
wall the elapsed time (which also counts waiting for PostgreSQL on its round trips).

Fitting ``cpu = a + b * n`` over two sizes gives ``a``, what every batch costs whatever
its size (the statements and round trips), and ``b``, the cost per record. At small
batches (the latency runs: ~10-100 records) ``a`` dominates; at 1,000 ``b`` does.

Run it for another source tree with ``PYTHONPATH=<tree>``: every import below is that
tree's. Prints one JSON object; ``--out`` also writes it to a file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

WARM_UP = 1000  # events applied before the clock starts (the accounts too)


def measure(
    service_name: str, sizes: list[int], server_url: str, events_per_size: int = 2000
) -> dict[str, Any]:
    """Per size in ``sizes``: CPU and wall per batch and per event of ``process_batch``."""
    import tempfile

    from shared import registry
    from shared.runtime import Runner
    from shared.runtime.db import create_database, drop_databases
    from shared.runtime.logging import configure_logging
    from shared.runtime.runner import _tune_gc
    from shared.runtime.settings import Settings
    from shared.runtime.store import migrate
    from shared.tools.bench_ceiling import _NoConsumer, read_input, write_input
    from shared.tools.bench_runner import workload_records

    configure_logging("WARNING", "json")  # as the services run in the benchmark
    name = f"bench_batch_{uuid.uuid4().hex[:12]}"
    url = create_database(server_url, name)
    try:
        settings = Settings(environment="development", database_url=url, topic_prefix="batch.")
        needed = WARM_UP + events_per_size * len(sizes)
        with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
            path = Path(tmp) / "input"
            write_input(path, workload_records(settings, service_name, needed))
            records = read_input(path, settings.topic_prefix)
        service = registry.build(service_name, settings)
        runner = Runner(service, settings, consumer=_NoConsumer())  # type: ignore[arg-type]
        migrate(runner.engine, service.migrations)
        _tune_gc()  # the garbage-collector settings of a service process
        accounts = [r for r in records if ".accounts." in r.topic]
        events = [r for r in records if ".accounts." not in r.topic]
        for start in range(0, len(accounts), 500):
            runner.process_batch(accounts[start : start + 500])
        for start in range(0, min(WARM_UP, len(events)), 500):
            runner.process_batch(events[start : start + 500])
        position = min(WARM_UP, len(events))
        rows = []
        for size in sizes:
            part = events[position : position + events_per_size]
            position += len(part)
            if not part:
                break
            c0, w0 = time.process_time(), time.perf_counter()
            for start in range(0, len(part), size):
                runner.process_batch(part[start : start + size])
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            batches = -(-len(part) // size)
            rows.append(
                {
                    "batch_size": size,
                    "events": len(part),
                    "batches": batches,
                    "cpu_ms_per_batch": round(cpu * 1e3 / batches, 3),
                    "wall_ms_per_batch": round(wall * 1e3 / batches, 3),
                    "cpu_us_per_event": round(cpu * 1e6 / len(part), 1),
                    "wall_us_per_event": round(wall * 1e6 / len(part), 1),
                }
            )
        runner.engine.dispose()
    finally:
        drop_databases(server_url, [name])
    return {"service": service_name, "sizes": rows, "fit": fit(rows)}


def fit(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    """``cpu = a + b * n`` through the smallest and the largest batch size measured."""
    if len(rows) < 2:
        return None
    small, large = rows[0], rows[-1]
    n1, n2 = small["batch_size"], large["batch_size"]
    if n1 == n2:
        return None
    c1, c2 = small["cpu_ms_per_batch"], large["cpu_ms_per_batch"]
    b = (c2 - c1) / (n2 - n1)
    return {"fixed_cpu_ms_per_batch": round(c1 - b * n1, 3), "cpu_us_per_record": round(b * 1e3, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("service", nargs="+", help="services to measure")
    parser.add_argument("--sizes", default="10,100,1000", help="batch sizes, comma-separated")
    parser.add_argument("--events", type=int, default=2000, help="events timed per size")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    from shared.runtime.settings import Settings

    server_url = Settings().database_url
    if not server_url.startswith("postgresql"):
        parser.error("DATABASE_URL must name a PostgreSQL server (the batch path's database)")
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    if not sizes or sizes[0] < 1:
        parser.error("--sizes: positive integers, e.g. 10,100,1000")
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "services": [measure(s, sizes, server_url, args.events) for s in args.service],
    }
    for item in result["services"]:
        for row in item["sizes"]:
            print(
                f"{item['service']}: batches of {row['batch_size']}: "
                f"{row['cpu_ms_per_batch']} ms CPU a batch, {row['cpu_us_per_event']} us an event"
                f" (wall {row['wall_us_per_event']} us)",
                file=sys.stderr,
            )
        if item["fit"]:
            print(
                f"{item['service']}: fixed {item['fit']['fixed_cpu_ms_per_batch']} ms CPU a batch"
                f" + {item['fit']['cpu_us_per_record']} us a record",
                file=sys.stderr,
            )
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
