"""The main job: the whole pipeline on a local broker, driven by the simulator.

1. Bring up the local Kafka broker (PostgreSQL only when DATABASE_URL says so;
   otherwise each service gets its own SQLite file).
2. Create the topics of a fresh namespace for this run (``demo-<run>.``).
3. Start every service as its own OS process.
4. Simulate N accounts over D business days, with a progress bar.
5. Wait until every consumer group's lag is 0; print the report and the lag table;
   save the report as JSON.
6. Stop the services with SIGTERM.
"""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shared.ops.report import build_report, render_report
from shared.registry import SERVICE_NAMES
from shared.runtime.db import create_database
from shared.runtime.settings import Settings
from shared.runtime.topics import committed_offsets
from shared.tools.pipeline import Pipeline
from shared.tools.simulator import DEMO_POLICY_YAML, SimConfig, Simulator

REPO = Path(__file__).resolve().parents[2]


def run_demo(
    accounts: int, days: int, seed: int, console: Console, keep_running: bool = False
) -> dict[str, Any]:
    from shared.localstack.stack import ensure_stack
    from shared.runtime.topics import ensure_topics

    run = datetime.now().strftime("%Y%m%dT%H%M%S")  # no 14-digit run: see bench_runner
    workdir = REPO / ".data" / f"demo-{run}"
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]1/6[/] local stack (run {run}, files in {workdir})")
    bootstrap, db_url = ensure_stack(need_postgres=False)
    if db_url and db_url.startswith("postgresql"):
        db_url = create_database(db_url, f"installments_demo_{run}")
        console.print(f"    PostgreSQL database {db_url.rpartition('/')[2]}")
    else:
        db_url = f"sqlite:///{workdir}/{{service}}.sqlite3"
        console.print("    embedded SQLite, one file per service")
    policy = workdir / "policy.yaml"
    policy.write_text(DEMO_POLICY_YAML)
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        database_url=db_url,
        topic_prefix=f"demo-{run}.",
        policy_file=str(policy),
    )
    console.print("[bold]2/6[/] topics")
    ensure_topics(settings)

    services = list(SERVICE_NAMES)
    console.print(f"[bold]3/6[/] starting {len(services)} services: {', '.join(services)}")
    pipeline = Pipeline(settings, services, workdir / "logs")
    pipeline.start()
    groups = pipeline.groups
    wait_idle = pipeline.wait_idle

    try:
        config = SimConfig(accounts=accounts, days=days, seed=seed)
        console.print(
            f"[bold]4/6[/] simulating {accounts} accounts over {days} business days (seed {seed})"
        )
        started = time.monotonic()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("days", total=days)

            def on_progress(day: int, what: str) -> None:
                progress.update(task, completed=day, description=what)

            sim = Simulator(settings, config, wait_idle, on_progress)
            stats = sim.run()
            progress.update(task, completed=days, description="done")
        elapsed = time.monotonic() - started
        console.print("[bold]5/6[/] waiting for every consumer group's lag to reach 0")
        wait_idle(300)
        report = build_report(settings)
        report["run"] = {
            "namespace": settings.topic_prefix,
            "database": db_url.split("@")[-1],
            "accounts": stats.accounts,
            "days": stats.days,
            "input_events": stats.events,
            "purchases_posted": stats.purchases,
            "refunds_posted": stats.refunds,
            "payments_posted": stats.payments,
            "decisions": dict(stats.decisions),
            "pre_approved_accounts": stats.pre_approved_accounts,
            "fraud_bursts": stats.fraud_bursts,
            "amount_spikes": stats.amount_spikes,
            "cnp_purchases": stats.cnp_purchases,
            "reviews_closed": dict(stats.reviews),
            "plan_refunds": dict(stats.plan_refunds),
            "contacts_recorded": dict(stats.contacts),
            "promises_played": dict(stats.promises),
            "seconds": round(elapsed, 1),
        }
        from shared.ops.invariants import check

        checked = check(settings)
        report["invariants"] = {
            "checks": sum(checked.checked.values()),
            "violations": len(checked.violations),
            "first_violations": checked.violations[:5] or "-",
        }
        report["lag"] = lag_rows(settings, groups)
        render_report(report, console)
        (workdir / "report.json").write_text(json.dumps(report, indent=2))
        console.print(f"report saved to {workdir / 'report.json'}")
        if keep_running:
            console.print("services keep running; Ctrl-C to stop")
            signal.pause()
        return report
    finally:
        console.print("[bold]6/6[/] stopping services")
        pipeline.stop()


def lag_rows(settings: Settings, groups: dict[str, list[str]]) -> dict[str, dict[str, int]]:
    """Lag per group and topic (log end minus committed), for the report's lag table."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(**settings.kafka_client_config(), client_id="demo-lag")
    consumer = KafkaConsumer(**settings.kafka_client_config(), group_id=None)
    rows: dict[str, dict[str, int]] = {}
    try:
        all_committed = committed_offsets(admin, list(groups))
        for group, topics in groups.items():
            committed = all_committed.get(group, {})
            rows[group] = {}
            for t in topics:
                physical = settings.topic(t)
                tps = [
                    TopicPartition(physical, p)
                    for p in consumer.partitions_for_topic(physical) or set()
                ]
                ends = consumer.end_offsets(tps)
                rows[group][t] = sum(
                    end - (committed[tp].offset if tp in committed else 0)
                    for tp, end in ends.items()
                )
    finally:
        admin.close()
        consumer.close()
    return rows
