"""``installments bench --pairs N``: each service and the baseline tree's run back to back,
N times; each pair's ratios and their medians; a failed run leaves its pair without one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.tools.bench import throughput_pairs
from shared.tools.bench_runner import REPO

BASE = Path("/tmp/some-baseline-tree")


class FakeBench:
    """Stands in for bench_runner.Bench: records the order of the runs and answers each
    with the next figures of its tree."""

    def __init__(self, figures: dict[Path, list[Any]]) -> None:
        self.figures = figures
        self.calls: list[tuple[str, Path, str]] = []
        self.cleaned: list[str] = []

    def settings(self, namespace: str) -> str:
        return namespace

    def load(self, settings: str, service: str) -> tuple[int, list[str]]:
        return 100, [f"{settings}.in"]

    def service_rate(self, settings, service, topics, count, processes, tree, label):
        assert processes == 1 and count == 100
        self.calls.append((service, tree, label))
        answer = self.figures[tree].pop(0)
        if isinstance(answer, Exception):
            raise answer
        events, cpu = answer
        return {"events_per_s": events, "cpu_us_per_event": cpu}

    def cleanup(self, namespace: str) -> None:
        self.cleaned.append(namespace)


def test_pairs_run_interleaved_and_report_the_median_ratio():
    bench = FakeBench(
        {
            REPO: [(1200, 80.0), (1000, 90.0), (1500, 70.0)],
            BASE: [(1000, 100.0), (1000, 100.0), (1000, 100.0)],
        }
    )
    results: dict[str, Any] = {}
    out = throughput_pairs(bench, ["points"], 3, BASE, lambda _m: None, results)  # type: ignore[arg-type]
    assert [tree for _, tree, _ in bench.calls] == [REPO, BASE] * 3  # back to back
    assert [label for *_, label in bench.calls][:2] == ["-pair1", "-pair1-baseline"]
    assert [p["ratio"] for p in out["points"]["pairs"]] == [1.2, 1.0, 1.5]
    assert [p["cpu_ratio"] for p in out["points"]["pairs"]] == [0.8, 0.9, 0.7]
    assert out["points"]["median_ratio"] == 1.2
    assert out["points"]["median_cpu_ratio"] == 0.8
    assert len(bench.cleaned) == 6  # every run's topics and database dropped
    assert "errors" not in results


def test_a_failed_run_is_noted_and_its_pair_has_no_ratio():
    bench = FakeBench(
        {
            REPO: [(1200, 80.0), (1100, 85.0)],
            BASE: [TimeoutError("points: 10/100 after 600 s"), (1000, 100.0)],
        }
    )
    results: dict[str, Any] = {}
    out = throughput_pairs(bench, ["points"], 2, BASE, lambda _m: None, results)  # type: ignore[arg-type]
    pairs = out["points"]["pairs"]
    assert pairs[0]["ratio"] is None and pairs[0]["baseline"] is None
    assert pairs[1]["ratio"] == 1.1
    assert out["points"]["median_ratio"] == 1.1  # of the pairs that have one
    assert results["errors"] == ["points pair 1-baseline: TimeoutError: points: 10/100 after 600 s"]
