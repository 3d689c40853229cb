"""Benchmarks: each service's sustained throughput against the client's own limit.

Figures, not timed tests. On the local stack with PostgreSQL, in one run:

1. For each service, its input messages are written to a fresh namespace; the raw
   kafka-python consume rate of those same messages (no processing, no commits) is
   measured: the client's limit on this machine.
2. The service is started as a real process (1, then 2 processes on 6 partitions,
   each on its own namespace and database schema) and its sustained rate is taken
   from the consumer group's committed offsets until the lag is 0. Peak memory is
   the process's VmHWM.
3. End-to-end latency purchase.posted -> offer.made at a fixed offered load, from
   the records' own timestamps (both producers run on this machine's clock).

Results go to ``docs/benchmarks/latest.json`` and ``latest.md``.

The workloads are :mod:`shared.tools.bench_workloads`, the runner
:mod:`shared.tools.bench_runner`, the report :mod:`shared.tools.bench_report`; their public
names are importable from here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.tools.bench_report import machine, markdown
from shared.tools.bench_runner import REPO, Bench
from shared.tools.bench_workloads import (
    DAY0,
    WORKLOAD_SERVICE,
    WORKLOADS,
    accounts,
    delinquencies,
    due_soon,
    purchases_posted,
    purchases_recorded,
    purchases_with_rejects,
    service_of,
    with_reject_workloads,
)

__all__ = [
    "DAY0",
    "REPO",
    "WORKLOADS",
    "WORKLOAD_SERVICE",
    "Bench",
    "accounts",
    "delinquencies",
    "due_soon",
    "machine",
    "markdown",
    "purchases_posted",
    "purchases_recorded",
    "purchases_with_rejects",
    "run_bench",
    "service_of",
    "with_reject_workloads",
]


def run_bench(
    events: int,
    services: list[str],
    e2e_rates: list[int],
    e2e_seconds: int,
    out_dir: Path,
    log: Callable[[str], None],
    e2e_offers_processes: tuple[int, ...] = (1,),
) -> dict[str, Any]:
    bench = Bench(events, log)
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "events_per_service": events,
        "services": {},
    }
    try:
        for service in services:
            entry: dict[str, Any] = {}
            for processes in (1, 2):
                settings = bench.settings(f"{service}-{processes}")
                count, topics = bench.load(settings, service)
                raw = bench.raw_rate(settings, topics, count)
                log(f"{service}: raw kafka-python consume {raw:,.0f} msg/s ({count} messages)")
                measured = bench.service_rate(settings, service, topics, count, processes)
                measured["raw_consume_per_s"] = round(raw)
                measured["ratio_to_raw"] = round(measured["events_per_s"] / raw, 3)
                log(
                    f"{service} x{processes}: {measured['events_per_s']:,} events/s"
                    f" = {measured['ratio_to_raw']:.0%} of raw;"
                    f" peak RSS {measured['peak_rss_mib']} MiB"
                )
                clean = results["services"].get(service_of(service), {})
                if service != service_of(service) and f"processes_{processes}" in clean:
                    base = clean[f"processes_{processes}"]
                    measured["ratio_to_clean"] = round(
                        measured["events_per_s"] / base["events_per_s"], 3
                    )
                    if measured["cpu_us_per_event"] and base["cpu_us_per_event"]:
                        measured["cpu_ratio_to_clean"] = round(
                            measured["cpu_us_per_event"] / base["cpu_us_per_event"], 3
                        )
                    log(
                        f"{service} x{processes}:"
                        f" {measured['ratio_to_clean']:.0%} of the clean rate"
                    )
                entry[f"processes_{processes}"] = measured
                bench.cleanup(f"{service}-{processes}")
            results["services"][service] = entry
        if e2e_rates:
            results["latency"] = []
            for processes in e2e_offers_processes:
                for rate in e2e_rates:
                    lat = bench.latency(rate, e2e_seconds, processes)
                    bench.cleanup(f"e2e-{rate}-{processes}")
                    results["latency"].append(lat)
                    log(
                        f"end-to-end at {lat['offered_per_s']:,}/s, {processes} offers"
                        f" process(es): p50 {lat['p50_ms']} ms,"
                        f" p95 {lat['p95_ms']} ms, p99 {lat['p99_ms']} ms"
                    )
    finally:
        bench.cleanup()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps(results, indent=2))
    (out_dir / "latest.md").write_text(markdown(results))
    return results
