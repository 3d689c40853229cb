"""The benchmark's #16 rows on the real stack with tiny input, so that their code cannot
rot: the pass-through floor, the in-process ceiling, PostgreSQL CPU per event and a run
on a (tiny) grown database cloned from its template. No speed is asserted."""

from __future__ import annotations

import sys
from typing import Any

from sqlalchemy import create_engine, text

from shared.tools.bench import Bench, GrowSize
from shared.tools.bench_grow import template_name


def test_floor_ceiling_and_grown_rows(stack: tuple[str, str]) -> None:
    messages: list[str] = []
    bench = Bench(200, messages.append)
    size = GrowSize(accounts=50, installments=100, inbox=300)
    try:
        settings = bench.settings("collections-1")
        count, topics = bench.load(settings, "collections")
        run = bench.service_rate(settings, "collections", topics, count, 1)
        assert run["events"] == count and run["cpu_us_per_event"] is not None
        assert run["pg_cpu_us_per_event"] is not None
        # the loop thread's share of the run (clock ticks of 10 ms on a run this short:
        # only that it was measured, and is a share)
        assert run["loop_busy"] is not None and 0 <= run["loop_busy"] < 1.5
        floor = bench.floor_rate(settings, topics, count, 1)
        assert floor["events"] == count and floor["events_per_s"] > 0
        ceiling: dict[str, Any] = bench.ceiling("collections", bench.inputs["collections"])
        assert ceiling["events"] == count and ceiling["emitted"] > 0
        bench.cleanup("collections-1")

        grown_settings, _ = bench.grown_settings("collections", size)
        count, topics = bench.load(grown_settings, "collections")
        grown = bench.service_rate(grown_settings, "collections", topics, count, 1, label="-g")
        assert grown["events"] == count
        engine = create_engine(grown_settings.database_url)
        with engine.connect() as conn:
            inbox = conn.execute(text("SELECT count(*) FROM collections.inbox")).scalar()
        engine.dispose()
        assert inbox is not None and inbox >= size.inbox + count
    finally:
        bench.cleanup()
        admin = create_engine(stack[1], isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            name = template_name("collections", size)
            if conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first():
                conn.execute(text(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE false'))
                conn.execute(text(f'DROP DATABASE "{name}"'))
        admin.dispose()


def test_latency_run_sees_an_offer_for_every_purchase(stack: tuple[str, str]) -> None:
    """The end-to-end latency run (prepared purchases sent in 5 ms bursts): every
    purchase it sent is answered by an offer, and the percentiles are of those."""
    bench = Bench(100, lambda _message: None)
    try:
        lat = bench.latency(rate=300, seconds=2, offers_processes=1)
        assert lat["purchases"] == 600
        assert lat["offers_seen"] == 600
        assert 0 < lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"] <= lat["max_ms"]
        assert 250 <= lat["offered_per_s"] <= 350
        assert 0 < lat["generator_cores"] < 2  # its CPU while sending, per second
        # each hop of the latency, from purchase.recorded's timestamp: both positive, and
        # together no more than the whole (each p50 is of the same purchases)
        hops = lat["hops"]
        assert set(hops) == {"purchases", "offers"}
        for hop in hops.values():
            assert 0 < hop["p50_ms"] <= hop["p99_ms"] <= lat["max_ms"]
        assert hops["purchases"]["p50_ms"] < lat["p99_ms"]
    finally:
        bench.cleanup()


def test_batch_cost_measures_both_sizes_and_drops_its_database(stack: tuple[str, str]) -> None:
    from shared.tools.bench_batch import fit, measure

    admin = create_engine(stack[1], isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        before = set(conn.execute(text("SELECT datname FROM pg_database")).scalars())
    result = measure("offers", [5, 50], stack[1], events_per_size=100)
    with admin.connect() as conn:
        after = set(conn.execute(text("SELECT datname FROM pg_database")).scalars())
    admin.dispose()
    assert not {d for d in after - before if d.startswith("bench_batch_")}
    sizes = result["sizes"]
    assert [r["batch_size"] for r in sizes] == [5, 50]
    assert [r["batches"] for r in sizes] == [20, 2]
    assert all(r["events"] == 100 and r["cpu_ms_per_batch"] > 0 for r in sizes)
    assert result["fit"] == fit(sizes) and result["fit"] is not None


def test_batch_cost_fit_is_the_line_through_the_smallest_and_largest_size() -> None:
    from shared.tools.bench_batch import fit

    rows = [
        {"batch_size": 10, "cpu_ms_per_batch": 7.0},
        {"batch_size": 100, "cpu_ms_per_batch": 20.0},
        {"batch_size": 1000, "cpu_ms_per_batch": 160.0},
    ]
    assert fit(rows) == {"fixed_cpu_ms_per_batch": 5.455, "cpu_us_per_record": 154.5}
    assert fit(rows[:1]) is None


def test_client_floor_runs_each_client_in_its_own_process(stack: tuple[str, str]) -> None:
    """The client floor (``bench_client_floor``): kafka-python passes every input record
    through in a process of its own; confluent-kafka, not a dependency of the project, is
    measured where the interpreter given has it and otherwise reported as missing while
    the other client is still measured. No speed is asserted."""
    import importlib.util

    from shared.tools.bench_client_floor import measure

    messages: list[str] = []
    pythons = {"kafka-python": sys.executable, "confluent-kafka": sys.executable}
    result = measure("collections", 150, 1, pythons, log=messages.append)
    runs = {r["client"]: r for r in result["runs"]}
    assert set(runs) == {"kafka-python", "confluent-kafka"}
    assert result["events"] == 150  # the service's benchmark input
    assert runs["kafka-python"]["events"] == result["events"]
    assert runs["kafka-python"]["cpu_us_per_event"] > 0
    if importlib.util.find_spec("confluent_kafka") is None:
        assert runs["confluent-kafka"]["error"] == (
            f"confluent-kafka is not installed for {sys.executable}"
        )
        assert set(result["medians"]) == {"kafka-python"}
    else:
        assert runs["confluent-kafka"]["events"] == result["events"]
    assert any(m.startswith("run 1, kafka-python: ") for m in messages)
