"""A service's in-process domain ceiling: its handlers over the benchmark's input, with
the runtime's own decode and encode, and neither Kafka nor the database in the measure.

The records of a workload (the same bytes the process run consumes, written by
:meth:`shared.tools.bench_runner.Bench.load`) are cut into batches of the runtime's
``poll_max_records``. Per batch, what is timed is what the runtime does per record
outside I/O: decode (``Runner._decode``: envelope, contract validation, content
digest) and ``Runner._handle_one`` (dedupe check, the handler, every ``ctx.emit``
building, validating and encoding its event, the outbox row), i.e. the real batch path
minus the database and the broker. What is NOT timed: the batch repository's ``load``
and ``save`` (run on a SQLite file, so that each batch sees the state the earlier ones
left, as in production). Barriers answer "caught up" (every account record comes before
the events, as in the process run, which waits for them).

Run by path (``python -P .../bench_ceiling.py``) so that the same file measures another
source tree: with ``PYTHONPATH=<tree>`` every import below (``schemas``,
``shared.runtime``, ``shared.registry``, the services) is that tree's; the file itself
imports nothing of ``shared.tools``. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PARTITIONS = 6


@dataclass
class Record:
    """What the batch code reads of a consumer record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[Any] = field(default_factory=list)
    timestamp: int = 0


class _NoConsumer:
    """The runner asks a consumer for nothing on this path but pause (a Defer)."""

    def pause(self, *tps: Any) -> None:
        pass

    def seek(self, tp: Any, offset: int) -> None:
        pass

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(PARTITIONS))

    def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return {tp: 0 for tp in tps}


def write_input(path: Path, records: Any) -> int:
    """Write (contract topic, key, value bytes) records as the ceiling's input file."""
    count = 0
    with open(path, "wb") as fh:
        for topic, key, value in records:
            fh.write(topic.encode() + b"\t" + key.encode() + b"\t" + value + b"\n")
            count += 1
    return count


def read_input(path: Path, prefix: str) -> list[Record]:
    """The input file as records, each key on a fixed partition, offsets per partition."""
    next_offset: dict[tuple[str, int], int] = {}
    out: list[Record] = []
    with open(path, "rb") as fh:
        for line in fh:
            topic, key, value = line.rstrip(b"\n").split(b"\t", 2)
            physical = prefix + topic.decode()
            partition = zlib.crc32(key) % PARTITIONS
            offset = next_offset.get((physical, partition), 0)
            next_offset[(physical, partition)] = offset + 1
            out.append(Record(physical, partition, offset, key, value))
    return out


def measure(service_name: str, input_path: Path, workdir: Path) -> dict[str, Any]:
    """Run ``service_name``'s handlers over the input file; the timed figures."""
    from sqlalchemy.orm import Session

    from shared import registry
    from shared.runtime import Runner
    from shared.runtime.api import Context
    from shared.runtime.db import utcnow
    from shared.runtime.logging import configure_logging
    from shared.runtime.settings import Settings
    from shared.runtime.store import migrate

    class CeilingContext(Context):
        def unread(self, topic: str) -> int:
            return 0  # every record it waits for came before (the input's order)

    configure_logging("WARNING", "json")  # as the process runs of the benchmark
    settings = Settings(
        # as the services run in the bench (and in production): not "test", where every
        # emitted event is built twice to check the trusted encoding against pydantic's
        environment="development",
        database_url=f"sqlite:///{workdir}/{{service}}.sqlite3",
        topic_prefix="ceiling.",
    )
    service = registry.build(service_name, settings)
    runner = Runner(service, settings, consumer=_NoConsumer())  # type: ignore[arg-type]
    migrate(runner.engine, service.migrations)
    records = read_input(input_path, settings.topic_prefix)
    batch_size = settings.poll_max_records
    try:  # the service processes' garbage-collector settings, where the tree has them
        from shared.runtime.runner import _tune_gc

        _tune_gc()
    except ImportError:
        pass
    wall = cpu = 0.0
    outcomes: dict[str, int] = {}
    emitted = 0
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        w0, c0 = time.perf_counter(), time.process_time()
        decoded = [runner._decode(r) for r in batch]
        w1, c1 = time.perf_counter(), time.process_time()
        wall, cpu = wall + w1 - w0, cpu + c1 - c0
        with Session(runner.engine, autoflush=False) as session, session.begin():
            ctx = CeilingContext(service, settings, session, runner)
            if service.repository is not None:
                ctx.repo = service.repository(session)
                ctx.repo.load([d.event for d in decoded if d.event is not None])
            seen: dict[str, str | None] = {}
            outbox_rows: list[dict[str, Any]] = []
            now = utcnow()
            w0, c0 = time.perf_counter(), time.process_time()
            for d in decoded:
                try:
                    outcome = runner._handle_one(ctx, d, seen, outbox_rows, now, False)
                except Exception as exc:  # _HandlerFailed: the runtime would split here
                    outcome = f"failed:{type(exc).__name__}"
                if outcome == "applied" and d.event is not None:
                    seen[d.event.id] = d.digest
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
            w1, c1 = time.perf_counter(), time.process_time()
            wall, cpu = wall + w1 - w0, cpu + c1 - c0
            emitted += len(outbox_rows)
            if ctx.repo is not None:
                ctx.repo.save()
    runner.engine.dispose()
    n = len(records)
    return {
        "service": service_name,
        "events": n,
        "batch_size": batch_size,
        # One thread, no I/O in the timed part: its rate on a core of its own is the
        # inverse of its CPU time (the wall-clock rate also counts the time other
        # processes of a loaded machine held the core).
        "events_per_s": round(n / cpu) if cpu else None,
        "wall_events_per_s": round(n / wall) if wall else None,
        "cpu_us_per_event": round(cpu * 1e6 / n, 1) if n else None,
        "cpu_seconds": round(cpu, 3),
        "seconds": round(wall, 3),
        "emitted": emitted,
        "outcomes": outcomes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("service")
    parser.add_argument("input", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-ceiling-") as tmp:
        result = measure(args.service, args.input, Path(tmp))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
