"""The one command a user runs: ``installments``.

installments stack up|down|status   the local Kafka broker and PostgreSQL
installments cluster up|down|status a throwaway three-node Kafka cluster (failover tests)
installments topics                 create the contract's topics (idempotent)
installments migrate [SERVICE]      apply database migrations
installments run SERVICE            run one service (purchases, offers, ...)
installments demo                   the whole pipeline on a generated stream
"""

from __future__ import annotations

import json
import signal
from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console

from shared import registry
from shared.localstack.cluster import app as cluster_app
from shared.localstack.stack import app as stack_app
from shared.ops.dlq import CONFIRMABLE, dead_letter_table, iter_rows, read_dead_letters, redrive
from shared.ops.invariants import check as run_checks
from shared.ops.lag import lag_app
from shared.ops.replay import apply_replay, beyond_retention, group_members, plan_replay
from shared.ops.report import build_report, render_report
from shared.ops.retention import retention_app
from shared.registry import SERVICE_NAMES
from shared.runtime import Service, run_service
from shared.runtime.db import make_engine
from shared.runtime.settings import Settings
from shared.runtime.store import migrate as apply_migrations
from shared.runtime.topics import ensure_topics
from shared.tools.bench import QUICK_SIZE, Extras, GrowSize, run_bench, with_reject_workloads
from shared.tools.chaos import run_fault_suite
from shared.tools.demo import run_demo
from shared.tools.simulator import SimConfig, Simulator, wait_groups_idle

app = typer.Typer(
    help="Credit-card installment pipeline: services, stack and operations.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


def service_of(name: str, settings: Settings) -> Service:
    """The service ``name`` (a clear CLI error for an unknown one)."""
    try:
        return registry.build(name, settings)
    except registry.UnknownService as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command()
def topics() -> None:
    """Create every topic of the contract (and DLQs) that is missing."""
    created = ensure_topics(Settings())
    console.print(
        f"created {len(created)} topic(s)" + (": " + ", ".join(created) if created else "")
    )


@app.command()
def migrate(service: str = typer.Argument(None, help="one service; all when omitted")) -> None:
    """Apply the missing database migrations."""
    settings = Settings()
    for name in [service] if service else SERVICE_NAMES:
        svc = service_of(name, settings)
        applied = apply_migrations(make_engine(settings, name), svc.migrations)
        console.print(f"{name}: " + (", ".join(applied) if applied else "up to date"))


@app.command()
def run(service: str = typer.Argument(..., help="|".join(SERVICE_NAMES))) -> None:
    """Run one service until SIGTERM."""
    settings = Settings()
    run_service(service_of(service, settings), settings)


@app.command()
def demo(
    accounts: int = typer.Option(1000, help="accounts in the simulated portfolio"),
    days: int = typer.Option(90, help="business days to simulate"),
    seed: int = typer.Option(42, help="random seed (same seed, same events)"),
    keep_running: bool = typer.Option(False, help="leave the services running afterwards"),
) -> None:
    """README command one: the whole pipeline on a local broker, with the KPI report."""
    run_demo(accounts, days, seed, Console(), keep_running=keep_running)


@app.command()
def simulate(
    accounts: int = typer.Option(100, help="accounts in the simulated portfolio"),
    days: int = typer.Option(30, help="business days to simulate"),
    seed: int = typer.Option(42, help="random seed (same seed, same events)"),
) -> None:
    """Play the card system and the customer channel against a running pipeline."""
    settings = Settings()
    groups = registry.groups(settings)
    sim = Simulator(
        settings,
        SimConfig(accounts=accounts, days=days, seed=seed),
        lambda t: wait_groups_idle(settings, groups, t),
        lambda day, what: console.print(f"day {day + 1}/{days}: {what}"),
    )
    stats = sim.run()
    console.print(stats)


@app.command()
def report(json_output: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """The business report (KPIs), rebuilt from the topics of a running system."""
    figures = build_report(Settings())
    if json_output:
        typer.echo(json.dumps(figures, indent=2))
    else:
        render_report(figures, Console())


@app.command()
def bench(
    events: int = typer.Option(50000, help="input events per service and run"),
    service: list[str] = typer.Option(
        None,
        help="services to measure (default: all); purchases adds purchases-rejects"
        " (1 % of its input rejected), measured against it",
    ),
    e2e_rate: list[int] = typer.Option(
        [500, 1000, 2000],
        help="offered load(s) of the latency runs, purchases/s; repeat for a sweep (0 = skip)",
    ),
    e2e_seconds: int = typer.Option(10, help="length of each latency run"),
    e2e_offers_processes: list[int] = typer.Option(
        [1, 2], help="offers processes in the latency runs; repeat for several (each rate each)"
    ),
    e2e_repeat: int = typer.Option(
        1,
        min=1,
        help="runs of each latency configuration (this tree and --baseline-tree"
        " interleaved); latest.md adds the median p99",
    ),
    pairs: int = typer.Option(
        0,
        min=0,
        help="with --baseline-tree: this many more throughput runs of each service and of"
        " the baseline, one process, interleaved; latest.md adds each pair's ratio and the"
        " median",
    ),
    processes: list[int] = typer.Option([1, 2], help="process counts of the throughput runs"),
    floor: bool = typer.Option(True, help="the kafka-python pass-through floor row (#16)"),
    ceiling: bool = typer.Option(True, help="the in-process domain ceiling row (#16)"),
    grown: bool = typer.Option(False, help="also run each service on a pre-grown database"),
    grown_accounts: int = typer.Option(1_000_000, help="accounts of the grown database"),
    grown_installments: int = typer.Option(
        5_000_000, help="rows of each installment-like table of the grown database"
    ),
    grown_inbox: int = typer.Option(20_000_000, help="inbox rows of the grown database"),
    baseline_tree: Path = typer.Option(
        None,
        help="another source tree (e.g. a git worktree of an older commit) whose services"
        " are measured in the same run (same interpreter, PYTHONPATH at the tree)",
    ),
    quick: bool = typer.Option(
        False,
        "--quick",
        help="smoke-test sizes: 3,000 events, 1 process, the grown database at 2,000"
        " accounts, one 3 s latency run at 2,000/s with two offers processes",
    ),
    out: str = typer.Option("docs/benchmarks", help="where latest.json and latest.md go"),
) -> None:
    """Benchmarks on the local stack with PostgreSQL: throughput vs raw client, the
    pass-through floor and the in-process ceiling, a baseline tree, a grown database,
    latency."""
    size = GrowSize(grown_accounts, grown_installments, grown_inbox)
    if quick:
        events, processes, size = 3000, [1], QUICK_SIZE
        e2e_rate, e2e_seconds, e2e_offers_processes = [2000], 3, [2]
    run_bench(
        events,
        with_reject_workloads(service or list(SERVICE_NAMES)),
        [r for r in e2e_rate if r > 0],
        e2e_seconds,
        Path(out),
        lambda msg: console.print(msg),
        tuple(e2e_offers_processes),
        Extras(
            floor=floor,
            ceiling=ceiling,
            grown=size if grown else None,
            baseline_tree=baseline_tree.resolve() if baseline_tree else None,
            processes=tuple(processes),
            e2e_repeat=e2e_repeat,
            pairs=pairs,
        ),
    )


dlq_app = typer.Typer(help="Dead-letter topics: inspect and re-drive.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def dlq_list(
    topic: str = typer.Option(None, help="a consumed topic (its .dlq); all when omitted"),
    json_output: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Every dead letter: where it came from, which service refused it, why."""
    letters, consumer = read_dead_letters(Settings(), topic)
    consumer.close()
    if json_output:
        typer.echo(json.dumps([d.as_dict() for d in letters], indent=2))
    else:
        Console().print(dead_letter_table(letters))


@dlq_app.command("redrive")
def dlq_redrive(
    topic: str = typer.Option(None, help="a consumed topic (its .dlq); all when omitted"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would be re-published"),
    reason_contains: str = typer.Option(None, help="only letters whose reason contains this"),
    limit: int = typer.Option(None, help="at most this many"),
    confirm: str = typer.Option(
        None,
        help="confirm what was held: only letters whose reason starts with this code"
        " (business_date_jump), re-driven with the header installments.confirm",
    ),
) -> None:
    """Re-publish dead letters to their original topics (after fixing the cause)."""
    if confirm is not None and confirm not in CONFIRMABLE:
        raise typer.BadParameter(f"one of {', '.join(CONFIRMABLE)}", param_hint="--confirm")
    chosen = redrive(
        Settings(),
        topic,
        dry_run=dry_run,
        reason_contains=reason_contains,
        limit=limit,
        confirm=confirm,
    )
    for row in iter_rows(chosen):
        console.print(" | ".join(row))
    verb = "would re-drive" if dry_run else "re-drove"
    console.print(f"{verb} {len(chosen)} dead letter(s)")


@app.command()
def replay(
    service: str = typer.Argument(..., help="|".join(SERVICE_NAMES)),
    to_offset: int = typer.Option(None, help="move back to this offset on every partition"),
    to_time: str = typer.Option(
        None, help="move back to the first record at/after this ISO time, e.g. 2026-11-28T09:00:00Z"
    ),
    topic: str = typer.Option(None, help="only this consumed topic"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show the moves only"),
    force: bool = typer.Option(False, help="even if the group still has members"),
    beyond_retention_ok: bool = typer.Option(
        False, "--beyond-retention", help="even below the offsets whose inbox rows were pruned"
    ),
) -> None:
    """Replay a (stopped) service from an offset or a time; effects stay exactly once
    (within the inbox retention window: README "Retention")."""
    if (to_offset is None) == (to_time is None):
        raise typer.BadParameter("give exactly one of --to-offset or --to-time")
    settings = Settings()
    svc = service_of(service, settings)
    when = datetime.fromisoformat(to_time.replace("Z", "+00:00")) if to_time else None
    moves = plan_replay(settings, svc, to_offset=to_offset, to_time=when, topic=topic)
    for tp, (current, target) in sorted(moves.items()):
        console.print(f"{tp.topic}[{tp.partition}]: {current} -> {target}")
    pruned = beyond_retention(settings, svc, moves)
    for tp, offset in sorted(pruned.items()):
        console.print(
            f"[yellow]{tp.topic}[{tp.partition}]: inbox rows up to offset {offset} were"
            " pruned; records there may apply a second time[/]"
        )
    if dry_run:
        console.print("dry run: nothing moved")
        return
    if pruned and not beyond_retention_ok:
        console.print(
            "[red]refused: replay from after the pruned offsets (or --beyond-retention)[/]"
        )
        raise typer.Exit(2)
    members = group_members(settings, registry.group_name(settings, service))
    if members and not force:
        console.print(f"[red]{service} still has {members} running consumer(s); stop it first[/]")
        raise typer.Exit(2)
    apply_replay(settings, svc, moves)
    console.print(f"moved {len(moves)} partition(s); start {service} to replay")


@app.command()
def check(json_output: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Check the pipeline's invariants from its topics; exit 1 on any violation."""
    result = run_checks(Settings())
    if json_output:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    else:
        for name, n in sorted(result.checked.items()):
            console.print(f"{n:8d}  {name}")
        for violation in result.violations:
            console.print(f"[red]VIOLATION[/] {violation}")
        console.print(f"{sum(result.checked.values())} checks, {len(result.violations)} violations")
    raise typer.Exit(0 if result.ok else 1)


FAULTS_HELP = (
    "The fault suite: a seeded story calm and under faults; invariants; same outputs.\n\n"
    "Faults, in a seeded order: sigkill; after_db_commit and after_publish (crashes between"
    " the database commit, the publish and the Kafka commit); pause (SIGSTOP past the"
    " session timeout); storm (extra members join a group, then leave or vanish); pg_drop"
    " (the services' database connections terminated); pg_restart (PostgreSQL restarted:"
    " only the local stack's, skipped when DATABASE_URL points elsewhere). Stored and"
    " Kafka-committed offsets are watched during the run: none may ever move back."
)


@app.command(help=FAULTS_HELP)
def faults(
    accounts: int = typer.Option(30, help="accounts in the story"),
    days: int = typer.Option(
        45, help="days in the story (the first installments fall due after a month)"
    ),
    seed: int = typer.Option(1, help="seed of the story and of the fault schedule"),
    every: float = typer.Option(3.0, help="seconds between injected faults"),
    out: str = typer.Option("docs/faults-latest.json", help="where the result goes"),
    keep: bool = typer.Option(
        False, "--keep", help="keep the runs' topics and databases (deleted by default)"
    ),
) -> None:
    """The fault suite: a seeded story calm and under faults; invariants; same outputs."""
    result = run_fault_suite(accounts, days, seed, every, keep=keep)
    figures = result.as_dict()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(figures, indent=2))
    for line in figures["faults"]:
        console.print(line)
    for line in figures["notes"]:
        console.print(f"[yellow]note[/] {line}")
    kinds = ", ".join(f"{n} {kind}" for kind, n in figures["faults_by_kind"].items())
    console.print(
        f"{figures['faults_injected']} faults ({kinds}), {figures['input_events']} input events,"
        f" {figures['output_events']} output events, {figures['invariant_checks']} checks,"
        f" {len(result.violations)} violations, {len(result.differences)} differences"
    )
    for line in result.violations + result.differences:
        console.print(f"[red]{line}[/]")
    raise typer.Exit(0 if not (result.violations or result.differences) else 1)


app.add_typer(stack_app, name="stack", help="The local Kafka broker and PostgreSQL.")
app.add_typer(
    cluster_app, name="cluster", help="A throwaway three-node Kafka cluster (failover tests)."
)
app.add_typer(lag_app, name="lag", help="Consumer-group lag: table, --json, --watch, exporter.")
app.add_typer(
    retention_app, name="retention", help="Prune inboxes and archive finished items (#16)."
)
for _name, (_service_app, _help) in registry.SERVICE_CLIS.items():
    app.add_typer(_service_app, name=_name, help=_help)


def exit_on_sigterm() -> None:
    """End this process on SIGTERM as on an error: ``finally`` blocks run.

    The commands that start processes (``demo``, ``faults``, ``bench``, ``simulate``)
    stop them in ``finally`` blocks, but CPython's default for SIGTERM ends the process
    without running any: a ``kill`` of ``installments faults`` left its service processes
    running, retrying forever against the database it had dropped. ``installments run``
    replaces this with the service's own handler (a graceful stop)."""
    signal.signal(signal.SIGTERM, _exit_143)


def _exit_143(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    exit_on_sigterm()
    app()
