"""The in-process domain cost of a service: decode, handlers (rules, models, emit, encode)
over generated records, without Kafka and with the database kept out of the measurement.

    python -m shared.tools.profile_domain offers [-n 20000] [--batch 500] [--profile 30]

The records are the benchmark's workload of the service (``bench_workloads.WORKLOADS``:
its accounts first, then its input events). They run through the service's own
``Service`` object as the runtime runs a batch (``shared.runtime.batch``): decode every
record, ``repo.load`` the batch, each handler with a :class:`~shared.runtime.api.Context`,
``repo.save``. Only decode and the handlers are timed (CPU time of this process,
``time.process_time``); the repository's load and save run against an in-memory SQLite
database outside the clock, and each measured batch is rolled back, so every run sees the
same state. ``--profile N`` prints cProfile's N costliest functions of the timed part.

Reports CPU µs per event (decode, handlers, total) and the events/s that makes: the
ceiling of a service process with an infinitely fast broker and database (issue #16).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import pstats
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from schemas import decode
from shared import registry
from shared.runtime.api import Context, Service
from shared.runtime.settings import Settings
from shared.runtime.store import migrate
from shared.tools.bench_workloads import WORKLOADS, accounts

Record = tuple[str, str, bytes]


@dataclass
class _Runner:
    """What a Context asks of the runner (the barrier): nothing is ever unread here."""

    group: str
    barriers: dict[Any, Any] = field(default_factory=dict)

    def end_offsets(self, topic: str) -> dict[int, int]:
        return {}


@dataclass
class Timing:
    events: int = 0
    emitted: int = 0
    decode_s: float = 0.0
    handle_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.decode_s + self.handle_s

    def per_event_us(self, seconds: float) -> float:
        return seconds / self.events * 1e6 if self.events else 0.0


class DomainProfile:
    """One service, an in-memory database, and batches of records run in-process."""

    def __init__(self, name: str) -> None:
        self.settings = Settings(
            environment="development", database_url="sqlite:///:memory:{service}"
        )
        self.service: Service = registry.build(name, self.settings)
        self.engine = create_engine(
            "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
        migrate(self.engine, self.service.migrations)
        self.runner = _Runner(self.settings.consumer_group(name))

    def run(
        self,
        records: list[Record],
        *,
        batch: int,
        commit: bool,
        profiler: cProfile.Profile | None = None,
        timing: Timing | None = None,
    ) -> Timing:
        timing = timing or Timing()
        clock = time.process_time
        for start in range(0, len(records), batch):
            chunk = records[start : start + batch]
            if profiler:
                profiler.enable()
            t0 = clock()
            events = [
                decode(topic, key.encode(), value, max_bytes=self.settings.max_message_bytes)
                for topic, key, value in chunk
            ]
            t1 = clock()
            if profiler:
                profiler.disable()
            timing.decode_s += t1 - t0
            with Session(self.engine, autoflush=False) as session:
                session.begin()
                ctx = Context(self.service, self.settings, session, self.runner)  # type: ignore[arg-type]
                if self.service.repository is not None:
                    ctx.repo = self.service.repository(session)
                    ctx.repo.load(events)
                if profiler:
                    profiler.enable()
                t0 = clock()
                for (topic, _key, _value), event in zip(chunk, events, strict=True):
                    handler = self.service.handlers.get(event.type)
                    if handler is None:
                        continue
                    ctx.event, ctx.topic, ctx.staged = event, topic, []
                    handler(ctx, event)
                    timing.emitted += len(ctx.staged)
                t1 = clock()
                if profiler:
                    profiler.disable()
                timing.handle_s += t1 - t0
                timing.events += len(chunk)
                if ctx.repo is not None:
                    ctx.repo.save()
                if commit:
                    session.commit()
                else:
                    session.rollback()
        return timing


def workload(
    name: str, n: int, *, distinct_amounts: bool = False
) -> tuple[list[Record], list[Record]]:
    """The service's accounts and its ``n`` input records (the benchmark's workload).

    ``distinct_amounts``: every purchase gets an amount of its own (the benchmark's repeat
    every 3,000 records), so no offer menu is computed twice: the cost without the cache."""
    n_accounts, events = WORKLOADS[name](n)
    records = list(events)
    if distinct_amounts:
        for i, (topic, key, value) in enumerate(records):
            message = json.loads(value)
            if "amount" in message["data"]:
                message["data"]["amount"] = f"{500 + i // 100}.{i % 100:02d}"
                records[i] = (topic, key, json.dumps(message, separators=(",", ":")).encode())
    return list(accounts(n_accounts)), records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("service", choices=sorted(WORKLOADS))
    parser.add_argument("-n", "--events", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    parser.add_argument(
        "--distinct-amounts", action="store_true", help="no two purchases of the same amount"
    )
    args = parser.parse_args(argv)

    name = args.service
    profile = DomainProfile(registry_name(name))
    account_records, records = workload(name, args.events, distinct_amounts=args.distinct_amounts)
    profile.run(account_records, batch=args.batch, commit=True)
    gc.freeze()  # as a service process does (shared.runtime.runner._tune_gc)
    gc.set_threshold(50_000, 20, 50)
    profile.run(records[: args.batch], batch=args.batch, commit=False)  # warm-up
    best: Timing | None = None
    for _ in range(args.repeat):
        timing = profile.run(records, batch=args.batch, commit=False)
        if best is None or timing.total_s < best.total_s:
            best = timing
    assert best is not None
    print(
        f"{name}: {best.events} events, {best.emitted} emitted; CPU µs/event: "
        f"decode {best.per_event_us(best.decode_s):.1f}, "
        f"handlers {best.per_event_us(best.handle_s):.1f}, "
        f"total {best.per_event_us(best.total_s):.1f} "
        f"({best.events / best.total_s:,.0f} events/s)"
    )
    if args.profile:
        profiler = cProfile.Profile()
        profile.run(records, batch=args.batch, commit=False, profiler=profiler)
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(args.profile)
        stats.sort_stats("cumulative").print_stats(args.profile)
        print(out.getvalue())


def registry_name(workload_name: str) -> str:
    from shared.tools.bench_workloads import service_of

    return service_of(workload_name)


if __name__ == "__main__":
    main()
