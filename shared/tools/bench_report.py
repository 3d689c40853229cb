"""The benchmark's report: the machine it ran on and ``latest.md``, the results as
markdown tables."""

from __future__ import annotations

import os
import platform
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
    for service, entry in r["services"].items():
        for key in sorted(entry):
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
            " offers seen | peak RSS MiB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for lat in r["latency"]:
            lines.append(
                f"| {lat['offered_per_s']:,} | {lat.get('offers_processes', 1)} |"
                f" {lat['p50_ms']} | {lat['p95_ms']} |"
                f" {lat['p99_ms']} | {lat['max_ms']} | {lat['offers_seen']:,} of"
                f" {lat['purchases']:,} | {lat['peak_rss_mib']} |"
            )
    return "\n".join(lines) + "\n"
