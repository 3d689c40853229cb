"""The benchmark's #16 rows on tiny input, so that their code cannot rot: the in-process
ceiling (no broker, no PostgreSQL: it runs the handlers on SQLite), the grower's column
values and the report's tables. Speed is never asserted (figures, not timed tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.runtime.settings import Settings
from shared.tools import bench_ceiling
from shared.tools.bench import REPO, markdown
from shared.tools.bench_grow import QUICK_SIZE, GrowSize, column_expression, grown
from shared.tools.bench_runner import workload_records


@pytest.mark.parametrize("service", ["offers", "points", "reminders", "purchases", "collections"])
def test_ceiling_runs_every_record_through_the_handlers(service: str, tmp_path: Path) -> None:
    records = workload_records(Settings(environment="test"), service, 60)
    path = tmp_path / "input"
    count = bench_ceiling.write_input(path, records)
    result = bench_ceiling.measure(service, path, tmp_path)
    assert result["events"] == count
    assert sum(result["outcomes"].values()) == count
    assert result["outcomes"].get("applied", 0) >= count * 0.9  # what the process applies
    assert result["emitted"] > 0
    assert result["cpu_us_per_event"] > 0


def test_ceiling_runs_by_path_for_another_tree(tmp_path: Path) -> None:
    """The way the bench runs it (``python -P <file>``, PYTHONPATH at a tree): one JSON line."""
    path = tmp_path / "input"
    bench_ceiling.write_input(
        path, workload_records(Settings(environment="test"), "collections", 30)
    )
    done = subprocess.run(
        [sys.executable, "-P", bench_ceiling.__file__, "collections", str(path)],
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        cwd=REPO,
        capture_output=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout.decode().splitlines()[-1])
    assert result["service"] == "collections" and result["events"] == 30


def test_grower_values() -> None:
    size = GrowSize(accounts=10, installments=50, inbox=200)
    inbox = {"consumer": "g", "topic": "t"}
    assert column_expression("inbox", "consumer", "character varying", 100, True, size, inbox) == (
        "'g'"
    )
    assert "i % 10" in column_expression(
        "plans", "account_id", "character varying", 64, False, size, inbox
    )
    assert column_expression("plans", "seq", "integer", None, True, size, inbox) == "i"
    assert "2026-03-01" in column_expression(
        "business_days", "business_date", "date", None, True, size, inbox
    )
    assert size.rows("inbox", []) == 200 and size.rows("installments", []) == 50
    assert size.rows("business_days", []) == 365 and size.rows("plans", []) == 10
    assert not grown("outbox") and not grown("plans_archive") and grown("inbox")
    assert QUICK_SIZE.accounts < GrowSize().accounts


def test_report_carries_the_floor_ceiling_baseline_and_grown_figures() -> None:
    run = {"events_per_s": 1000, "cpu_us_per_event": 300.0, "pg_cpu_us_per_event": 50.0}
    result = {
        "when": "2026-12-07T00:00:00+00:00",
        "machine": {
            "cores": 2,
            "cpu": "Test CPU",
            "memory_gib": 1.0,
            "python": "3.11",
            "kafka": "4.1.2",
            "database": "PostgreSQL",
        },
        "events_per_service": 100,
        "load": {"start": [3.0, 2.0, 1.0], "end": [4.0, 3.0, 2.0]},
        "baseline": {"tree": "/tmp/base", "commit": "7e872b6 x"},
        "services": {
            "offers": {
                "processes_1": {
                    **run,
                    "processes": 1,
                    "raw_consume_per_s": 50000,
                    "ratio_to_raw": 0.02,
                    "peak_rss_mib": [100.0],
                    "floor": {"events_per_s": 20000, "cpu_us_per_event": 25.0},
                    "share_of_floor": 0.05,
                    "share_of_ceiling": 0.25,
                    "loop_busy": 0.613,
                    "baseline": {**run, "events_per_s": 500, "cpu_us_per_event": 600.0},
                    "ratio_to_baseline": 2.0,
                    "cpu_ratio_to_baseline": 0.5,
                },
                "ceiling": {"events_per_s": 4000, "cpu_us_per_event": 250.0},
                "baseline_ceiling": {"events_per_s": 2000, "cpu_us_per_event": 500.0},
                "grown": {
                    **run,
                    "size": {"accounts": 10, "installments": 50, "inbox": 200},
                    "events_per_s_grown_over_empty": 0.9,
                    "cost_grown_over_empty": 1.1,
                },
            }
        },
    }
    text = markdown(result)
    assert "3.00 / 2.00 / 1.00" in text
    floor_row = (
        "| offers | 1 | 1,000 | 20,000 | 5% | 4,000 | 25% | 300.0 / 25.0 / 250.0 | 50.0 | 61% |"
    )
    assert floor_row in text
    assert "| offers | 1 | 500 | 1,000 | 2.00× | 600.0 | 300.0 | 0.50× |" in text
    assert "| offers | 2,000 | 4,000 | 2.00× |" in text
    assert "| offers | 1,000 | 0.90× | 300.0 | 50.0 | 1.10× |" in text


def test_purchases_are_posted_through_the_day_so_the_velocity_screen_sees_real_spacing() -> None:
    from datetime import datetime, timedelta

    from shared.tools.bench_workloads import DAY0, _purchase

    times = [datetime.fromisoformat(_purchase(i, 2000)[1]["posted_at"]) for i in range(0, 40_000)]
    assert all(t.date() == DAY0 for t in times)
    same_account = [t for i, t in enumerate(times) if i % 2000 == 7]
    gaps = {b - a for a, b in zip(same_account, same_account[1:], strict=False)}
    assert gaps == {timedelta(seconds=500)}  # 2,000 accounts, four purchases a second
    wrapped = datetime.fromisoformat(_purchase(4 * 16 * 3600, 2000)[1]["posted_at"])
    assert wrapped == times[0]


def test_bench_service_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.tools.bench_runner import _service_env

    monkeypatch.setenv("BENCH_SERVICE_ENV", "INSTALLMENTS_FETCH_MIN_BYTES=262144  A=b=c")
    assert _service_env() == {"INSTALLMENTS_FETCH_MIN_BYTES": "262144", "A": "b=c"}
    monkeypatch.setenv("BENCH_SERVICE_ENV", "NOT_A_PAIR")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        _service_env()
    monkeypatch.delenv("BENCH_SERVICE_ENV")
    assert _service_env() == {}


def test_client_floor_medians_leave_out_failed_runs() -> None:
    from shared.tools.bench_client_floor import _medians

    runs = [
        {"client": "kafka-python", "events_per_s": 30000, "cpu_us_per_event": 32.0},
        {"client": "kafka-python", "events_per_s": 28000, "cpu_us_per_event": 34.0},
        {"client": "kafka-python", "events_per_s": 31000, "cpu_us_per_event": 31.0},
        {"client": "confluent-kafka", "error": "confluent-kafka is not installed for x"},
    ]
    assert _medians(runs) == {
        "kafka-python": {"runs": 3, "events_per_s": 30000, "cpu_us_per_event": 32.0}
    }
    runs[-1] = {"client": "confluent-kafka", "events_per_s": 140000, "cpu_us_per_event": 6.5}
    assert _medians(runs)["confluent-kafka"] == {
        "runs": 1,
        "events_per_s": 140000,
        "cpu_us_per_event": 6.5,
    }
