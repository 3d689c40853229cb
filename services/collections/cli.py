"""The collections team's view: ``installments collections cases|reserve``.

A typer app meant to be mounted into the main CLI (``app.add_typer(app, name=
"collections")``); it reads the collections service's database (``DATABASE_URL``).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date
from decimal import Decimal
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from services.collections import queries
from services.collections.policy import load_policy
from shared.runtime.db import make_engine
from shared.runtime.settings import Settings

app = typer.Typer(
    help="Collections: open cases and the risk reserve.", no_args_is_help=True,
    add_completion=False,
)  # fmt: skip
console = Console()


def _engine() -> Engine:
    return make_engine(Settings(), "collections")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _percent(rate: Decimal) -> str:
    text = f"{rate * 100:f}"
    return (text.rstrip("0").rstrip(".") if "." in text else text) + " %"


def _print_json(rows: list[dict[str, Any]]) -> None:
    typer.echo(json.dumps([{k: _plain(v) for k, v in row.items()} for row in rows], indent=2))


def _read(fn: Any, *args: Any) -> Any:
    engine = _engine()
    try:
        return fn(engine, *args)
    except (OperationalError, ProgrammingError) as exc:
        Console(stderr=True).print(
            "[red]cannot read the collections database[/red] "
            f"({type(exc).__name__}); run `installments migrate collections` first?"
        )
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()


@app.command()
def cases(as_json: bool = typer.Option(False, "--json", help="print JSON instead")) -> None:
    """Open cases, highest level first, then oldest first."""
    rows = _read(queries.open_cases)
    if as_json:
        _print_json([asdict(row) for row in rows])
        return
    table = Table(title=f"Open collections cases ({len(rows)})")
    for name in ("case", "account", "level", "action", "bucket", "DPD", "overdue", "opened",
                 "as of"):  # fmt: skip
        table.add_column(name, justify="right" if name in ("level", "DPD", "overdue") else "left")
    for row in rows:
        table.add_row(
            row.case_id,
            row.account_id,
            str(row.level),
            row.action or "-",
            row.bucket or "-",
            str(row.days_past_due),
            f"{row.overdue_amount} {row.currency}",
            row.opened_on.isoformat(),
            row.business_date.isoformat(),
        )
    console.print(table)


@app.command()
def reserve(as_json: bool = typer.Option(False, "--json", help="print JSON instead")) -> None:
    """Risk reserve by bucket: outstanding principal x the bucket's rate."""
    policy = load_policy(Settings().policy_file)
    lines = _read(queries.risk_reserve, policy)
    if as_json:
        _print_json([asdict(line) for line in lines])
        return
    table = Table(title="Risk reserve")
    for name in ("currency", "bucket", "accounts", "principal", "rate", "reserve"):
        table.add_column(name, justify="left" if name in ("currency", "bucket") else "right")
    for line in lines:
        table.add_row(
            line.currency,
            line.bucket,
            str(line.accounts),
            str(line.principal),
            _percent(line.rate),
            str(line.reserve),
        )
    for currency, total in queries.reserve_totals(lines).items():
        table.add_row(currency, "[b]total[/b]", "", "", "", f"[b]{total}[/b]")
    if not lines:
        table.caption = "nothing outstanding"
    console.print(table)


# --------------------------------------------------------------------- the console


@app.command()
def web(
    host: str | None = typer.Option(None, help="interface (INSTALLMENTS_CONSOLE_HOST)"),
    port: int | None = typer.Option(None, help="port (INSTALLMENTS_CONSOLE_PORT, 8080)"),
) -> None:
    """The collections console: work queue, case pages, contact outcomes (web)."""
    from services.collections.console.server import serve
    from services.collections.console.settings import ConsoleSettings

    serve(ConsoleSettings(), host, port)


@app.command("add-agent")
def add_agent(
    username: str = typer.Argument(..., help="the agent's sign-in name"),
    agent_ref: str | None = typer.Option(
        None, help="opaque reference carried by contact.recorded (default: the username)"
    ),
    users_file: str | None = typer.Option(
        None, help="the users file (default: INSTALLMENTS_CONSOLE_USERS_FILE)"
    ),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="read the password from stdin instead of prompting"
    ),
) -> None:
    """Add an agent to the console's users file, or set their new password (scrypt)."""
    import sys

    from services.collections.console.agents import add_agent as add
    from services.collections.console.settings import ConsoleSettings

    path = users_file or ConsoleSettings().console_users_file
    if not path:
        Console(stderr=True).print(
            "[red]no users file[/red]: pass --users-file or set INSTALLMENTS_CONSOLE_USERS_FILE"
        )
        raise typer.Exit(2)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        agent = add(path, username, password, agent_ref)
    except ValueError as exc:
        Console(stderr=True).print(f"[red]refused[/red]: {exc}")
        raise typer.Exit(2) from exc
    typer.echo(f"agent {agent.username} (agent_ref {agent.agent_ref}) saved in {path}")


@app.command("bench-console")
def bench_console(
    cases: int = typer.Option(100_000, help="cases to seed (80 % open)"),
    page_size: int = typer.Option(50, help="rows per page"),
    repeat: int = typer.Option(30, help="timed runs per scenario"),
    out: str = typer.Option("docs/benchmarks/console.json", help="where to write the JSON"),
) -> None:
    """Time the console's work-queue pages on N cases in a scratch PostgreSQL schema."""
    from services.collections.console import bench

    result = bench.run(cases, page_size, repeat)
    bench.write(result, out)
    table = Table(title=f"Work queue page, {result['open_cases']:,} open of {cases:,} cases")
    for name in ("scenario", "indexes", "rows", "median ms", "p95 ms"):
        table.add_column(name, justify="left" if name in ("scenario", "indexes") else "right")
    for label, scenarios in result["results"].items():
        for name, figures in scenarios.items():
            table.add_row(
                name, label.split(" queue")[0], str(figures["rows"]),
                str(figures["median_ms"]), str(figures["p95_ms"]),
            )  # fmt: skip
    console.print(table)
    typer.echo(f"written to {out}")
