"""The benchmark's Markdown table: every measured figure appears, nothing invented."""

from __future__ import annotations

from shared.tools.bench import markdown
from shared.tools.bench_report import latency_summary

RESULT = {
    "when": "2026-11-28T15:00:00+00:00",
    "machine": {
        "cores": 2,
        "cpu": "Test CPU",
        "memory_gib": 23.5,
        "python": "3.11.7",
        "kafka": "4.1.2",
        "database": "PostgreSQL (local, fsync off)",
    },
    "events_per_service": 50000,
    "services": {
        "offers": {
            "processes_1": {
                "processes": 1,
                "events_per_s": 3112,
                "cpu_us_per_event": 301.5,
                "raw_consume_per_s": 106453,
                "ratio_to_raw": 0.029,
                "peak_rss_mib": [178.5],
            },
            "processes_2": {
                "processes": 2,
                "events_per_s": 4186,
                "raw_consume_per_s": 123717,
                "ratio_to_raw": 0.034,
                "peak_rss_mib": [143.1, 133.2],
            },
        },
        "offers-rejects": {
            "processes_1": {
                "processes": 1,
                "events_per_s": 2800,
                "cpu_us_per_event": 331.7,
                "ratio_to_clean": 0.9,
                "cpu_ratio_to_clean": 1.1,
                "raw_consume_per_s": 100000,
                "ratio_to_raw": 0.028,
                "peak_rss_mib": [170.0],
            },
        },
    },
    "latency": [
        {
            "offers_processes": 2,
            "offered_per_s": 1999,
            "generator_cores": 0.123,
            "purchases": 20000,
            "offers_seen": 20000,
            "p50_ms": 534.0,
            "p95_ms": 1086.2,
            "p99_ms": 1413.7,
            "max_ms": 1600.2,
            "peak_rss_mib": {"purchases": 90.1},
            "hops": {
                "purchases": {"p50_ms": 201.5, "p99_ms": 700.1},
                "offers": {"p50_ms": 330.0, "p99_ms": 800.9},
            },
        }
    ],
}


def test_markdown_table_carries_every_figure():
    text = markdown(RESULT)
    assert "| offers | 1 | 3,112 | 301.5 | 106,453 | 3% | 178.5 |" in text
    assert "| offers | 2 | 4,186 | - | 123,717 | 3% | 143.1, 133.2 |" in text  # older result
    assert (
        "| offers-rejects | 1 | 2,800 (90% of clean) | 331.7 (110% of clean) | 100,000 | 3% |"
        in text
    )
    assert "| 1,999 | 2 | 534.0 | 1086.2 | 1413.7 | 1600.2 | 20,000 of 20,000 |" in text
    assert "| {'purchases': 90.1} | 0.12 |" in text  # the load generator's CPU
    assert "| 0.12 | 201.5 / 700.1 | 330.0 / 800.9 |" in text  # each hop
    assert "2 cores (Test CPU)" in text


def test_older_results_without_the_process_count_read_as_one_process():
    old = {**RESULT, "latency": [{**RESULT["latency"][0]}]}
    del old["latency"][0]["offers_processes"]
    del old["latency"][0]["generator_cores"]
    del old["latency"][0]["hops"]
    assert "| 1,999 | 1 | 534.0 |" in markdown(old)
    assert "| {'purchases': 90.1} | - | - | - |" in markdown(old)


def test_repeated_latency_runs_are_summarised_per_configuration():
    one = RESULT["latency"][0]
    runs = [
        {**one, "rate": 2000, "run": 1, "p50_ms": 100.0, "p99_ms": 210.0},
        {**one, "rate": 2000, "run": 1, "p50_ms": 300.0, "p99_ms": 700.0, "baseline": True},
        {**one, "rate": 2000, "run": 2, "p50_ms": 120.0, "p99_ms": 330.5},
        {**one, "rate": 2000, "run": 2, "p50_ms": 310.0, "p99_ms": 650.0, "baseline": True},
        {**one, "rate": 2000, "run": 3, "p50_ms": 110.0, "p99_ms": 190.0},
        {**one, "rate": 2000, "run": 3, "p50_ms": 290.0, "p99_ms": 800.0, "baseline": True},
    ]
    summary = latency_summary(runs)
    assert summary == [
        {
            "rate": 2000,
            "offers_processes": 2,
            "baseline": False,
            "runs": 3,
            "p50_ms_median": 110.0,
            "p99_ms_median": 210.0,
            "p99_ms": [210.0, 330.5, 190.0],
        },
        {
            "rate": 2000,
            "offers_processes": 2,
            "baseline": True,
            "runs": 3,
            "p50_ms_median": 300.0,
            "p99_ms_median": 700.0,
            "p99_ms": [700.0, 650.0, 800.0],
        },
    ]
    text = markdown({**RESULT, "latency": runs, "latency_summary": summary})
    assert "| 1,999 | 2 (baseline), run 2 | 310.0 |" in text
    assert "| 2,000 | 2 | 3 | 110.0 | 210.0 | 210.0, 330.5, 190.0 |" in text
    assert "| 2,000 | 2 (baseline) | 3 | 300.0 | 700.0 | 700.0, 650.0, 800.0 |" in text


def test_a_single_latency_run_gets_no_summary_table():
    text = markdown({**RESULT, "latency_summary": latency_summary(RESULT["latency"])})
    assert "p99 ms, median" not in text


def test_interleaved_pairs_show_each_ratio_and_the_median():
    pairs = {
        "points": {
            "pairs": [
                {"pair": 1, "ratio": 1.41, "cpu_ratio": 0.8},
                {"pair": 2, "ratio": 1.1, "cpu_ratio": 0.86},
                {"pair": 3, "ratio": None, "cpu_ratio": None},
            ],
            "median_ratio": 1.255,
            "median_cpu_ratio": 0.83,
        }
    }
    text = markdown({**RESULT, "pairs": pairs})
    assert "| points | 3 | 1.41, 1.10, - | 1.25× | 0.80, 0.86, - | 0.83× |" in text
