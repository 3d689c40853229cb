"""Benchmarks: each service's sustained throughput against the client's own limit.

Figures, not timed tests. On the local stack with PostgreSQL, in one run:

1. For each service, its input messages are written to a fresh namespace; the raw
   kafka-python consume rate of those same messages (no processing, no commits) is
   measured: the client's limit on this machine.
2. The service is started as a real process (1, then 2 processes on 6 partitions,
   each on its own namespace and database schema) and its sustained rate is taken
   from the consumer group's committed offsets until the lag is 0. Peak memory is
   the process's VmHWM.
   Each run also reports the process's CPU per event and that of the PostgreSQL
   backends serving its database (less moved by other work than events/s).
3. Issue #16, per service, in the same run: the kafka-python pass-through floor over
   the same input topics (:mod:`.bench_floor`: consume, ``json.loads``, produce with
   ``acks=all``, commit per batch); the in-process domain ceiling over the same records
   (:mod:`.bench_ceiling`: the runtime's decode, the handlers and the encode of what
   they emit, no Kafka and no database in the measure); with ``--grown`` the service on
   a clone of a pre-grown database (:mod:`.bench_grow`, a template built once); with
   ``--baseline-tree`` the same runs of another source tree (a worktree of an older
   commit: same interpreter and packages, ``PYTHONPATH`` pointing at it).
4. End-to-end latency purchase.posted -> offer.made at a fixed offered load, from
   the records' own timestamps (both producers run on this machine's clock).

Results go to ``docs/benchmarks/latest.json`` and ``latest.md``.

The workloads are :mod:`shared.tools.bench_workloads`, the runner
:mod:`shared.tools.bench_runner`, the report :mod:`shared.tools.bench_report`; their public
names are importable from here.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.tools.bench_grow import QUICK_SIZE, GrowSize
from shared.tools.bench_report import latency_summary, machine, markdown
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
    "QUICK_SIZE",
    "REPO",
    "WORKLOADS",
    "WORKLOAD_SERVICE",
    "Bench",
    "Extras",
    "GrowSize",
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


@dataclass(frozen=True)
class Extras:
    """The rows and variants added by issue #16 (each can be switched off)."""

    floor: bool = True  # the kafka-python pass-through over the same input
    ceiling: bool = True  # the in-process domain ceiling over the same records
    grown: GrowSize | None = None  # also run each service on a pre-grown database
    baseline_tree: Path | None = None  # also run each service from this source tree
    processes: tuple[int, ...] = (1, 2)
    #: runs of each latency configuration, this tree and the baseline's interleaved: one
    #: p99 of a 15 s run moves by a third between identical runs on 2 shared cores
    e2e_repeat: int = 1
    #: more throughput runs of each service against the baseline tree, one process,
    #: this tree and the baseline interleaved (a pair at a time): the median ratio
    pairs: int = 0


def _ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    return round(a / b, digits) if a and b else None


def _loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def run_bench(
    events: int,
    services: list[str],
    e2e_rates: list[int],
    e2e_seconds: int,
    out_dir: Path,
    log: Callable[[str], None],
    e2e_offers_processes: tuple[int, ...] = (1,),
    extras: Extras | None = None,
) -> dict[str, Any]:
    extras = extras or Extras(floor=False, ceiling=False)
    bench = Bench(events, log)
    base_tree = extras.baseline_tree
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "events_per_service": events,
        "load": {"start": _loadavg()},
        "services": {},
    }
    if base_tree is not None:
        results["baseline"] = _describe_tree(base_tree)
    try:
        for service in services:
            entry: dict[str, Any] = {}
            variant = service != service_of(service)
            ceiling = None
            for processes in extras.processes:
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
                    f" CPU {measured['cpu_us_per_event']} µs/event"
                    f" (PostgreSQL {measured['pg_cpu_us_per_event']});"
                    f" peak RSS {measured['peak_rss_mib']} MiB"
                )
                floor = None
                if extras.floor and not variant:
                    floor = _guarded(
                        results,
                        f"{service} floor",
                        log,
                        bench.floor_rate,
                        settings,
                        topics,
                        count,
                        processes,
                    )
                if floor is not None:
                    measured["floor"] = floor
                    measured["share_of_floor"] = _ratio(
                        measured["events_per_s"], floor["events_per_s"]
                    )
                    log(
                        f"{service} x{processes}: floor {floor['events_per_s']:,} events/s,"
                        f" CPU {floor['cpu_us_per_event']} µs/event;"
                        f" service at {measured['share_of_floor']:.0%} of it"
                    )
                clean = results["services"].get(service_of(service), {})
                if variant and f"processes_{processes}" in clean:
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
                if base_tree is not None and not variant:
                    before = _run_apart(
                        bench,
                        results,
                        log,
                        f"{service} x{processes} baseline",
                        f"{service}-{processes}-baseline",
                        service,
                        processes,
                        base_tree,
                        "-baseline",
                    )
                    if before is None:
                        continue
                    measured["baseline"] = before
                    measured["ratio_to_baseline"] = _ratio(
                        measured["events_per_s"], before["events_per_s"]
                    )
                    measured["cpu_ratio_to_baseline"] = _ratio(
                        measured["cpu_us_per_event"], before["cpu_us_per_event"]
                    )
                    log(
                        f"{service} x{processes} baseline: {before['events_per_s']:,} events/s,"
                        f" CPU {before['cpu_us_per_event']} µs/event; now"
                        f" {measured['ratio_to_baseline']}x the events/s"
                    )
            if extras.ceiling and not variant:
                ceiling = _guarded(
                    results,
                    f"{service} ceiling",
                    log,
                    bench.ceiling,
                    service,
                    bench.inputs[service],
                )
            if extras.ceiling and not variant and ceiling is not None:
                entry["ceiling"] = ceiling
                log(
                    f"{service}: in-process ceiling {ceiling['events_per_s']:,} events/s"
                    f" ({ceiling['cpu_us_per_event']} µs CPU/event)"
                )
                before_ceiling = (
                    _guarded(
                        results,
                        f"{service} baseline ceiling",
                        log,
                        bench.ceiling,
                        service,
                        bench.inputs[service],
                        base_tree,
                    )
                    if base_tree is not None
                    else None
                )
                if before_ceiling is not None:
                    entry["baseline_ceiling"] = before_ceiling
                    log(
                        f"{service}: baseline in-process ceiling"
                        f" {entry['baseline_ceiling']['events_per_s']:,} events/s"
                    )
                one = entry.get("processes_1")
                if one is not None:
                    one["share_of_ceiling"] = _ratio(one["events_per_s"], ceiling["events_per_s"])
            grown = None
            if extras.grown is not None and not variant:
                grown = _guarded(
                    results, f"{service} grown", log, _grown_run, bench, service, extras.grown
                )
                bench.cleanup(f"grown-{service}")
            if grown is not None:
                assert extras.grown is not None
                grown["size"] = asdict(extras.grown)
                empty = entry.get("processes_1") or {}
                for key in ("events_per_s", "cpu_us_per_event", "pg_cpu_us_per_event"):
                    grown[f"{key}_grown_over_empty"] = _ratio(grown[key], empty.get(key))
                total = (grown["cpu_us_per_event"] or 0) + (grown["pg_cpu_us_per_event"] or 0)
                empty_total = (empty.get("cpu_us_per_event") or 0) + (
                    empty.get("pg_cpu_us_per_event") or 0
                )
                grown["cost_grown_over_empty"] = _ratio(total, empty_total)
                entry["grown"] = grown
                log(
                    f"{service} on the grown database: {grown['events_per_s']:,} events/s,"
                    f" CPU {grown['cpu_us_per_event']} + PostgreSQL"
                    f" {grown['pg_cpu_us_per_event']} µs/event;"
                    f" cost grown/empty {grown['cost_grown_over_empty']}"
                )
            results["services"][service] = entry
        if extras.pairs and base_tree is not None:
            results["pairs"] = throughput_pairs(
                bench,
                [s for s in services if s == service_of(s)],
                extras.pairs,
                base_tree,
                log,
                results,
            )
        if e2e_rates:
            results["latency"] = []
            trees: list[tuple[Path, str]] = [(REPO, "")]
            if base_tree is not None:
                trees.append((base_tree, "-baseline"))
            runs = max(1, extras.e2e_repeat)
            for processes in e2e_offers_processes:
                for rate in e2e_rates:
                    for run in range(runs):
                        for tree, label in trees:
                            # each run its own topics and database (a deleted topic's name
                            # cannot be created again at once)
                            name = f"{label}-r{run + 1}" if runs > 1 else label
                            lat = bench.latency(rate, e2e_seconds, processes, tree, name)
                            bench.cleanup(f"e2e-{rate}-{processes}{name}")
                            if label:
                                lat["baseline"] = True
                            lat["rate"] = rate
                            if runs > 1:
                                lat["run"] = run + 1
                            results["latency"].append(lat)
                            log(
                                f"end-to-end{label} at {lat['offered_per_s']:,}/s, {processes}"
                                f" offers process(es){f', run {run + 1}' if runs > 1 else ''}:"
                                f" p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms,"
                                f" p99 {lat['p99_ms']} ms"
                            )
            results["latency_summary"] = latency_summary(results["latency"])
    finally:
        bench.cleanup()
    results["load"]["end"] = _loadavg()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps(results, indent=2))
    (out_dir / "latest.md").write_text(markdown(results))
    return results


def throughput_pairs(
    bench: Bench,
    services: list[str],
    pairs: int,
    base_tree: Path,
    log: Callable[[str], None],
    results: dict[str, Any],
) -> dict[str, Any]:
    """``pairs`` interleaved runs of each service and of the baseline tree's, one process
    each on the same input (a run's own topics and database): each pair's ratio of
    events/s and of CPU per event, and their medians. One run's events/s moves by a third
    between identical runs on this machine's 2 shared cores; a pair measured back to back
    shares the machine's state, and the median of several pairs is what a target is read
    against. A run that fails is noted under ``errors`` and leaves its pair without a
    ratio (``results``: the benchmark's, as :func:`_guarded` notes failures)."""
    out: dict[str, Any] = {}
    for service in services:
        rows = []
        for i in range(1, pairs + 1):
            row: dict[str, Any] = {"pair": i}
            for tree, label in ((REPO, ""), (base_tree, "-baseline")):
                row["baseline" if label else "this"] = _run_apart(
                    bench,
                    results,
                    log,
                    f"{service} pair {i}{label}",
                    f"{service}-pair{i}{label}",
                    service,
                    1,
                    tree,
                    f"-pair{i}{label}",
                )
            this, before = row["this"] or {}, row["baseline"] or {}
            row["ratio"] = _ratio(this.get("events_per_s"), before.get("events_per_s"))
            row["cpu_ratio"] = _ratio(this.get("cpu_us_per_event"), before.get("cpu_us_per_event"))
            log(
                f"{service} pair {i}: {this.get('events_per_s')} against"
                f" {before.get('events_per_s')} events/s ({row['ratio']}x), CPU per"
                f" event {row['cpu_ratio']}x"
            )
            rows.append(row)
        ratios = [r["ratio"] for r in rows if r["ratio"] is not None]
        cpu = [r["cpu_ratio"] for r in rows if r["cpu_ratio"] is not None]
        out[service] = {
            "pairs": rows,
            "median_ratio": round(statistics.median(ratios), 3) if ratios else None,
            "median_cpu_ratio": round(statistics.median(cpu), 3) if cpu else None,
        }
    return out


def _run_apart(
    bench: Bench,
    results: dict[str, Any],
    log: Callable[[str], None],
    what: str,
    namespace: str,
    service: str,
    processes: int,
    tree: Path,
    label: str,
) -> dict[str, Any] | None:
    """One throughput run of ``service`` from ``tree`` on a namespace of its own (topics
    and database, dropped after it): its figures, or None when it failed (noted under
    ``errors`` by :func:`_guarded`). ``label`` names the run's log file."""
    settings = bench.settings(namespace)
    count, topics = bench.load(settings, service)
    try:
        return _guarded(
            results,
            what,
            log,
            bench.service_rate,
            settings,
            service,
            topics,
            count,
            processes,
            tree,
            label,
        )
    finally:
        bench.cleanup(namespace)


def _grown_run(bench: Bench, service: str, size: GrowSize) -> dict[str, Any]:
    settings, built_s = bench.grown_settings(service, size)
    count, topics = bench.load(settings, service)
    grown = bench.service_rate(settings, service, topics, count, 1, label="-grown")
    grown["template_build_s"] = round(built_s, 1)
    return grown


def _guarded(
    results: dict[str, Any],
    what: str,
    log: Callable[[str], None],
    fn: Callable[..., Any],
    *args: Any,
) -> Any:
    """``fn(*args)``, or None with the error noted in the results: one failed extra run
    (a timeout on a loaded machine) must not lose the whole benchmark's figures."""
    try:
        return fn(*args)
    except Exception as exc:
        log(f"{what}: FAILED ({type(exc).__name__}: {exc})")
        results.setdefault("errors", []).append(f"{what}: {type(exc).__name__}: {exc}"[:500])
        return None


def _describe_tree(tree: Path) -> dict[str, str]:
    """The commit a baseline tree is at (a git worktree), for the report."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(tree), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"tree": str(tree), "commit": commit[:120]}
