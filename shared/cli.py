"""The one command a user runs: ``installments``.

    installments stack up|down|status   the local Kafka broker and PostgreSQL
    installments topics                 create the contract's topics (idempotent)
    installments migrate [SERVICE]      apply database migrations
    installments run SERVICE            run one service (purchases, offers, ...)
    installments demo                   the whole pipeline on a generated stream
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from rich.console import Console

from shared.settings import Settings

SERVICE_NAMES = ("purchases", "offers", "points", "reminders", "collections")

app = typer.Typer(help="Credit-card installment pipeline: services, stack and operations.",
                  no_args_is_help=True, add_completion=False)
console = Console(stderr=True)


def load_service(name: str) -> Any:
    """The Service object of ``services/<name>/bootstrap.py``."""
    if name not in SERVICE_NAMES:
        raise typer.BadParameter(f"unknown service {name!r}; one of: {', '.join(SERVICE_NAMES)}")
    return importlib.import_module(f"services.{name}.bootstrap").SERVICE


def available_services() -> list[str]:
    """Services whose code is present (all five once the pipeline is complete)."""
    found = []
    for name in SERVICE_NAMES:
        try:
            importlib.import_module(f"services.{name}.bootstrap")
        except ModuleNotFoundError:
            continue
        found.append(name)
    return found


@app.command()
def topics() -> None:
    """Create every topic of the contract (and DLQs) that is missing."""
    from shared.topics import ensure_topics

    created = ensure_topics(Settings())
    console.print(f"created {len(created)} topic(s)" + (": " + ", ".join(created) if created else ""))


@app.command()
def migrate(service: str = typer.Argument(None, help="one service; all when omitted")) -> None:
    """Apply the missing database migrations."""
    from shared.db import make_engine
    from shared.db import migrate as apply

    settings = Settings()
    for name in [service] if service else available_services():
        svc = load_service(name)
        applied = apply(make_engine(settings, name), svc.migrations)
        console.print(f"{name}: " + (", ".join(applied) if applied else "up to date"))


@app.command()
def run(service: str = typer.Argument(..., help="|".join(SERVICE_NAMES))) -> None:
    """Run one service until SIGTERM."""
    from shared.runtime import run_service

    run_service(load_service(service))


@app.command()
def demo(
    accounts: int = typer.Option(1000, help="accounts in the simulated portfolio"),
    days: int = typer.Option(90, help="business days to simulate"),
    seed: int = typer.Option(42, help="random seed (same seed, same events)"),
    keep_running: bool = typer.Option(False, help="leave the services running afterwards"),
) -> None:
    """README command one: the whole pipeline on a local broker, with the KPI report."""
    from shared.tools.demo import run_demo

    run_demo(accounts, days, seed, Console(), keep_running=keep_running)


@app.command()
def simulate(
    accounts: int = typer.Option(100, help="accounts in the simulated portfolio"),
    days: int = typer.Option(30, help="business days to simulate"),
    seed: int = typer.Option(42, help="random seed (same seed, same events)"),
) -> None:
    """Play the card system and the customer channel against a running pipeline."""
    from shared.cli_support import groups_of_pipeline
    from shared.tools.simulator import SimConfig, Simulator, wait_groups_idle

    settings = Settings()
    groups = groups_of_pipeline(settings)
    sim = Simulator(settings, SimConfig(accounts=accounts, days=days, seed=seed),
                    lambda t: wait_groups_idle(settings, groups, t),
                    lambda day, what: console.print(f"day {day + 1}/{days}: {what}"))
    stats = sim.run()
    console.print(stats)


@app.command()
def report(json_output: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """The business report (KPIs), rebuilt from the topics of a running system."""
    import json

    from shared.tools.report import build_report, render_report

    figures = build_report(Settings())
    if json_output:
        typer.echo(json.dumps(figures, indent=2))
    else:
        render_report(figures, Console())


@app.command()
def bench(
    events: int = typer.Option(50000, help="input events per service and run"),
    service: list[str] = typer.Option(None, help="services to measure (default: all)"),
    e2e_rate: int = typer.Option(2000, help="offered load for the latency run (0 = skip)"),
    e2e_seconds: int = typer.Option(10, help="length of the latency run"),
    out: str = typer.Option("docs/benchmarks", help="where latest.json and latest.md go"),
) -> None:
    """Benchmarks on the local stack with PostgreSQL: throughput vs raw client, latency."""
    from pathlib import Path

    from shared.tools.bench import run_bench

    run_bench(events, service or available_services(), e2e_rate, e2e_seconds, Path(out),
              lambda msg: console.print(msg))


def _mount_optional() -> None:
    try:
        from shared.stack import app as stack_app
    except ImportError:  # pragma: no cover - stack module missing in a partial checkout
        return
    app.add_typer(stack_app, name="stack", help="The local Kafka broker and PostgreSQL.")
    from shared.lag import lag_app

    app.add_typer(lag_app, name="lag", help="Consumer-group lag: table, --json, --watch, exporter.")


_mount_optional()


def main() -> None:
    app()
