"""The benchmark's report: the machine it ran on and ``latest.md``, the results as
markdown tables."""

from __future__ import annotations

import os
import platform
import statistics
from typing import Any

from shared.localstack.jars import kafka_version
from shared.tools.bench_workloads import WORKLOAD_SERVICE


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(
                line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "kafka": kafka_version(),
        "os": platform.platform(),
        "database": "PostgreSQL (local, fsync off)",
    }


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Run {r['when']} on {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Python "
        f"{m['python']}, Kafka {m['kafka']}, {m['database']}. {r['events_per_service']:,} input"
        " events per service; topics with 6 partitions. `installments bench` writes this file.",
        "",
        "| service | processes | events/s | CPU µs/event | raw kafka-python msg/s | ratio |"
        " peak RSS MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    if r.get("load"):
        load = r["load"]
        lines.insert(3, "")
        lines.insert(
            4,
            f"Load average (1, 5, 15 min) at the start {_fmt_load(load.get('start'))}, at the"
            f" end {_fmt_load(load.get('end'))}: on a machine shared with other work, CPU µs"
            " per event (the processes' own, and their PostgreSQL backends') compare better"
            " than events/s.",
        )
    for service, entry in r["services"].items():
        for key in sorted(k for k in entry if k.startswith("processes_")):
            e = entry[key]
            clean = f" ({e['ratio_to_clean']:.0%} of clean)" if "ratio_to_clean" in e else ""
            cpu = e.get("cpu_us_per_event")
            cpu_text = "-" if cpu is None else f"{cpu:,}"
            if "cpu_ratio_to_clean" in e:
                cpu_text += f" ({e['cpu_ratio_to_clean']:.0%} of clean)"
            lines.append(
                f"| {service} | {e['processes']} | {e['events_per_s']:,}{clean} | {cpu_text} | "
                f"{e['raw_consume_per_s']:,} | {e['ratio_to_raw']:.0%} | "
                f"{', '.join(map(str, e['peak_rss_mib']))} |"
            )
    lines += _issue16_tables(r)
    if any(service in WORKLOAD_SERVICE for service in r["services"]):
        lines += [
            "",
            "`purchases-rejects`: the purchases input with 1 % of its records refunds of"
            " purchases never recorded, each rejected by the handler and dead-lettered (the"
            " runtime dead-letters a rejection that changed nothing inside the batch's"
            " transaction; before issue #11 each one replayed the batch record by record).",
        ]
    if r.get("latency"):
        lines += [
            "",
            "End-to-end latency, purchase.posted → offer.made (one purchases process and one or"
            " two offers processes, the load generator on the same machine):",
            "",
            "| offered purchases/s | offers processes | p50 ms | p95 ms | p99 ms | max ms |"
            " offers seen | peak RSS MiB | load generator, cores |"
            " p50 / p99 ms, hop purchases | hop offers |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for lat in r["latency"]:
            run = f", run {lat['run']}" if lat.get("run") else ""
            lines.append(
                f"| {lat['offered_per_s']:,} | {lat.get('offers_processes', 1)}"
                f"{' (baseline)' if lat.get('baseline') else ''}{run} |"
                f" {lat['p50_ms']} | {lat['p95_ms']} |"
                f" {lat['p99_ms']} | {lat['max_ms']} | {lat['offers_seen']:,} of"
                f" {lat['purchases']:,} | {lat['peak_rss_mib']} |"
                f" {_n(lat.get('generator_cores'), '{:.2f}')} |"
                f" {_hop(lat, 'purchases')} | {_hop(lat, 'offers')} |"
            )
    if r.get("pairs"):
        lines += [
            "",
            "Interleaved pairs against the baseline (one process each, back to back on the"
            " same input; a pair shares the machine's state, single runs do not):",
            "",
            "| service | pairs | events/s × of each pair | median × |"
            " CPU µs/event × of each pair | median × |",
            "|---|---|---|---|---|---|",
        ]
        for service, p in r["pairs"].items():
            ratios = ", ".join(_n(x.get("ratio"), "{:.2f}") for x in p["pairs"])
            cpu = ", ".join(_n(x.get("cpu_ratio"), "{:.2f}") for x in p["pairs"])
            lines.append(
                f"| {service} | {len(p['pairs'])} | {ratios} |"
                f" {_n(p.get('median_ratio'), '{:.2f}')}× | {cpu} |"
                f" {_n(p.get('median_cpu_ratio'), '{:.2f}')}× |"
            )
    several = [row for row in r.get("latency_summary") or () if row["runs"] > 1]
    if several:
        lines += [
            "",
            "The same latency configuration run several times (this tree and the baseline"
            " interleaved): one run's p99 moves by a third between identical runs here.",
            "",
            "| offered purchases/s | offers processes | runs | p50 ms, median |"
            " p99 ms, median | p99 ms of each run |",
            "|---|---|---|---|---|---|",
        ]
        for row in several:
            lines.append(
                f"| {row['rate']:,} | {row['offers_processes']}"
                f"{' (baseline)' if row['baseline'] else ''} | {row['runs']} |"
                f" {row['p50_ms_median']} | {row['p99_ms_median']} |"
                f" {', '.join(str(v) for v in row['p99_ms'])} |"
            )
    return "\n".join(lines) + "\n"


def latency_summary(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latency runs grouped by configuration (offered rate, offers processes, this
    tree or the baseline): how many, the median p50 and p99, and each run's p99."""
    groups: dict[tuple[int, int, bool], list[dict[str, Any]]] = {}
    for lat in runs:
        key = (
            lat.get("rate", lat["offered_per_s"]),
            lat.get("offers_processes", 1),
            bool(lat.get("baseline")),
        )
        groups.setdefault(key, []).append(lat)
    return [
        {
            "rate": rate,
            "offers_processes": processes,
            "baseline": baseline,
            "runs": len(group),
            "p50_ms_median": round(statistics.median(lat["p50_ms"] for lat in group), 1),
            "p99_ms_median": round(statistics.median(lat["p99_ms"] for lat in group), 1),
            "p99_ms": [lat["p99_ms"] for lat in group],
        }
        for (rate, processes, baseline), group in groups.items()
    ]


def _hop(lat: dict[str, Any], name: str) -> str:
    """One hop's share of the latency (purchase.posted -> purchase.recorded -> the offer)."""
    hop = (lat.get("hops") or {}).get(name)
    return f"{hop['p50_ms']} / {hop['p99_ms']}" if hop else "-"


def _fmt_load(values: Any) -> str:
    return " / ".join(f"{v:.2f}" for v in values) if values else "-"


def _n(value: Any, pattern: str = "{:,}") -> str:
    return "-" if value is None else pattern.format(value)


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value:.0%}"


def _x(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}×"


def _issue16_tables(r: dict[str, Any]) -> list[str]:
    """The floor and ceiling shares, the baseline ratios and the grown database (#16)."""
    services = r["services"]
    lines: list[str] = []
    rows = [
        (name, key, e)
        for name, entry in services.items()
        for key, e in sorted(entry.items())
        if key.startswith("processes_") and ("floor" in e or "share_of_ceiling" in e)
    ]
    if rows:
        lines += [
            "",
            "Against the kafka-python pass-through floor (same input: consume, json.loads,"
            " produce acks=all, commit per batch) and the in-process domain ceiling (the"
            " handlers over the same records with the runtime's decode and encode, no Kafka,"
            " no database; its rate is 1 / its CPU time, one thread). CPU µs per event:"
            " process user+sys; PostgreSQL: the backends serving the run's database. Loop"
            " busy: the share of the run the service's main thread (its consumer loop) was"
            " on a core; the rest it waited for PostgreSQL, the broker or the GIL.",
            "",
            "| service | processes | events/s | floor events/s | share of floor |"
            " ceiling events/s | share of ceiling | CPU µs/event service / floor / ceiling |"
            " PostgreSQL CPU µs/event | loop busy |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, _key, e in rows:
            floor = e.get("floor") or {}
            ceiling = services[name].get("ceiling") or {}
            one = e["processes"] == 1
            lines.append(
                f"| {name} | {e['processes']} | {e['events_per_s']:,} |"
                f" {_n(floor.get('events_per_s'))} | {_pct(e.get('share_of_floor'))} |"
                f" {_n(ceiling.get('events_per_s')) if one else '-'} |"
                f" {_pct(e.get('share_of_ceiling'))} |"
                f" {_n(e.get('cpu_us_per_event'))} / {_n(floor.get('cpu_us_per_event'))} /"
                f" {_n(ceiling.get('cpu_us_per_event')) if one else '-'} |"
                f" {_n(e.get('pg_cpu_us_per_event'))} | {_pct(e.get('loop_busy'))} |"
            )
    base_rows = [
        (name, e)
        for name, entry in services.items()
        for key, e in sorted(entry.items())
        if key.startswith("processes_") and "baseline" in e
    ]
    if base_rows:
        base = r.get("baseline") or {}
        lines += [
            "",
            f"Against the baseline, measured in the same run: `{base.get('commit', '?')}`"
            f" (its services run from `{base.get('tree', '?')}`, same interpreter and"
            " packages).",
            "",
            "| service | processes | baseline events/s | events/s | × | baseline CPU µs/event"
            " | CPU µs/event | × | baseline PostgreSQL µs/event | PostgreSQL µs/event |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, e in base_rows:
            b = e["baseline"]
            lines.append(
                f"| {name} | {e['processes']} | {b['events_per_s']:,} | {e['events_per_s']:,}"
                f" | {_x(e.get('ratio_to_baseline'))} | {_n(b.get('cpu_us_per_event'))} |"
                f" {_n(e.get('cpu_us_per_event'))} | {_x(e.get('cpu_ratio_to_baseline'))} |"
                f" {_n(b.get('pg_cpu_us_per_event'))} | {_n(e.get('pg_cpu_us_per_event'))} |"
            )
        ceilings = [
            (name, entry["baseline_ceiling"], entry["ceiling"])
            for name, entry in services.items()
            if "baseline_ceiling" in entry and "ceiling" in entry
        ]
        if ceilings:
            lines += [
                "",
                "| service | baseline ceiling events/s | ceiling events/s | × |",
                "|---|---|---|---|",
            ]
            for name, b, c in ceilings:
                ratio = c["events_per_s"] / b["events_per_s"] if b.get("events_per_s") else None
                lines.append(
                    f"| {name} | {_n(b.get('events_per_s'))} | {_n(c.get('events_per_s'))} |"
                    f" {_x(ratio)} |"
                )
    grown = [(name, entry["grown"]) for name, entry in services.items() if "grown" in entry]
    if grown:
        size = grown[0][1].get("size", {})
        lines += [
            "",
            "On a pre-grown database (one process; a clone of a template built once with the"
            f" service's migrations: {size.get('accounts', 0):,} accounts,"
            f" {size.get('installments', 0):,} installment-like rows,"
            f" {size.get('inbox', 0):,} inbox rows; see `shared/tools/bench_grow.py`),"
            " against the empty database of the 1-process run above:",
            "",
            "| service | events/s grown | grown / empty | CPU µs/event grown | PostgreSQL µs/event"
            " grown | cost (process + PostgreSQL) grown / empty |",
            "|---|---|---|---|---|---|",
        ]
        for name, g in grown:
            lines.append(
                f"| {name} | {g['events_per_s']:,} | {_x(g.get('events_per_s_grown_over_empty'))}"
                f" | {_n(g.get('cpu_us_per_event'))} | {_n(g.get('pg_cpu_us_per_event'))} |"
                f" {_x(g.get('cost_grown_over_empty'))} |"
            )
    return lines
