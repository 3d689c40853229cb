"""The ``installments lag`` commands: ``show`` (the default; table, ``--json``,
``--watch``) and ``exporter``.
"""

from __future__ import annotations

import shutil
import time

import typer
from rich.console import Console
from rich.live import Live

from shared.ops.lag.collector import LagMonitor, pipeline_expectations
from shared.ops.lag.exporter import (
    DEFAULT_EXPORTER_INTERVAL_S,
    DEFAULT_EXPORTER_PORT,
    run_exporter,
)
from shared.ops.lag.render import build_table, reports_to_json
from shared.ops.lag.rules import DEFAULT_STOP_WINDOW_S, DEFAULT_WINDOW_S, GroupReport
from shared.runtime.logging import configure_logging, get_logger
from shared.runtime.settings import Settings

lag_app = typer.Typer(
    help="Consumer-group lag: table/JSON view and a Prometheus exporter.",
    add_completion=False,
)

_GROUP_OPT = typer.Option(
    None,
    "--group",
    "-g",
    help="Also report this group (repeatable); it is reported even if the broker does not know it.",
)
_WINDOW_OPT = typer.Option(DEFAULT_WINDOW_S, "--window", help="Evaluation window (s).")
_STOP_OPT = typer.Option(
    DEFAULT_STOP_WINDOW_S, "--stop-window", help="No commit for this long with lag: STOPPED (s)."
)
_PIPELINE_OPT = typer.Option(
    True,
    "--pipeline/--no-pipeline",
    help="Always report the pipeline's service groups on their input topics.",
)


def _monitor(
    group: list[str] | None, window: float, stop_window: float, pipeline: bool
) -> LagMonitor:

    settings = Settings()
    return LagMonitor(
        settings,
        group or [],
        expected=pipeline_expectations(settings) if pipeline else None,
        window_s=window,
        stop_window_s=stop_window,
    )


def lag_command(
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh until Ctrl-C."),
    json_output: bool = typer.Option(
        False, "--json", help="JSON for scripts (one document per refresh with --watch)."
    ),
    interval: float = typer.Option(5.0, "--interval", "-i", min=0.1, help="Refresh period (s)."),
    group: list[str] | None = _GROUP_OPT,
    window: float = _WINDOW_OPT,
    stop_window: float = _STOP_OPT,
    pipeline: bool = _PIPELINE_OPT,
) -> None:
    """Lag of every pipeline consumer group, including groups with no active members.

    A single run judges from one snapshot (lag with no members: STOPPED); --watch
    builds the history that STALLED / WARNING / REWIND need.
    """

    console = Console(width=max(shutil.get_terminal_size().columns, 180))
    monitor = _monitor(group, window, stop_window, pipeline)
    try:
        if not watch:
            reports = _poll_or_exit(monitor)
            if json_output:
                typer.echo(reports_to_json(reports))
            else:
                console.print(build_table(reports))
            return
        if json_output:
            while True:
                started = time.monotonic()
                typer.echo(reports_to_json(_poll_or_exit(monitor), indent=None))
                time.sleep(max(0.0, interval - (time.monotonic() - started)))

        with Live(build_table(_poll_or_exit(monitor)), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                try:
                    live.update(build_table(monitor.poll()), refresh=True)
                except Exception as exc:  # show it and keep watching
                    console.print(f"[red]collection failed:[/] {type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        pass
    finally:
        monitor.close()


def _poll_or_exit(monitor: LagMonitor) -> list[GroupReport]:
    try:
        return monitor.poll()
    except Exception as exc:
        typer.echo(f"lag: cannot collect from Kafka: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(2) from exc


def exporter_command(
    port: int = typer.Option(DEFAULT_EXPORTER_PORT, "--port", "-p", min=0, max=65535),
    host: str = typer.Option(
        None, "--host", help="bind address (default: INSTALLMENTS_HTTP_HOST, 127.0.0.1)"
    ),
    interval: float = typer.Option(
        DEFAULT_EXPORTER_INTERVAL_S, "--interval", "-i", min=0.1, help="Collection period (s)."
    ),
    group: list[str] | None = _GROUP_OPT,
    window: float = _WINDOW_OPT,
    stop_window: float = _STOP_OPT,
    pipeline: bool = _PIPELINE_OPT,
) -> None:
    """Serve Prometheus /metrics with consumer-group lag until SIGTERM."""

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    monitor = _monitor(group, window, stop_window, pipeline)
    run_exporter(
        monitor,
        host=host or settings.http_host,
        port=port,
        interval_s=interval,
        log=get_logger(name="lag"),
    )


@lag_app.callback(invoke_without_command=True)
def _default(
    ctx: typer.Context,
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh until Ctrl-C."),
    json_output: bool = typer.Option(False, "--json", help="JSON for scripts."),
    interval: float = typer.Option(5.0, "--interval", "-i", min=0.1, help="Refresh period (s)."),
    group: list[str] | None = _GROUP_OPT,
    window: float = _WINDOW_OPT,
    stop_window: float = _STOP_OPT,
    pipeline: bool = _PIPELINE_OPT,
) -> None:
    """Consumer-group lag (``show`` when no command is given)."""
    if ctx.invoked_subcommand is None:
        lag_command(watch, json_output, interval, group, window, stop_window, pipeline)


lag_app.command("show")(lag_command)
lag_app.command("exporter")(exporter_command)
