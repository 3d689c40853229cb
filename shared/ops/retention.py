"""Operator's tool: ``installments retention run [--service NAME] [--dry-run]``.

Runs :func:`shared.runtime.retention.run_retention` for one service or all of them:
prune each inbox past ``INSTALLMENTS_RETENTION_INBOX_DAYS`` and move what each service
declares finished (``services/<name>/retention.py``) to its ``*_archive`` tables, in
short chunks, printing progress. Safe while the services run (README "Retention").
"""

from __future__ import annotations

from collections.abc import Callable

import typer
from rich.console import Console

from shared import registry
from shared.runtime.db import make_engine
from shared.runtime.retention import RetentionReport, run_retention
from shared.runtime.settings import Settings
from shared.runtime.store import migrate

retention_app = typer.Typer(no_args_is_help=True, add_completion=False)
console = Console(stderr=True)


def run_for(
    settings: Settings,
    services: list[str],
    *,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[RetentionReport]:
    """One retention run per service of ``services`` (in pipeline order)."""
    reports = []
    for name in services:
        service = registry.build(name, settings)
        engine = make_engine(settings, name)
        try:
            if settings.auto_migrate and not dry_run:
                migrate(engine, service.migrations)  # the archive tables and the index
            reports.append(
                run_retention(
                    engine,
                    name,
                    registry.RETENTION[name],
                    settings,
                    dry_run=dry_run,
                    progress=_prefixed(progress, name),
                )
            )
        finally:
            engine.dispose()
    return reports


def _prefixed(progress: Callable[[str], None] | None, name: str) -> Callable[[str], None] | None:
    if progress is None:
        return None
    sink = progress
    return lambda line: sink(f"{name}: {line}")


@retention_app.command("run")
def run(
    service: str = typer.Option(None, "--service", help="one service; all when omitted"),
    dry_run: bool = typer.Option(False, "--dry-run", help="count only; change nothing"),
) -> None:
    """Prune the inboxes and archive finished items (in chunks; the services may run)."""
    if service is not None and service not in registry.SERVICE_NAMES:
        raise typer.BadParameter(str(registry.UnknownService(service)))
    settings = Settings()
    names = [service] if service else list(registry.SERVICE_NAMES)
    console.print(
        f"retention{' (dry run)' if dry_run else ''}: inbox window"
        f" {settings.retention_inbox_days} days, archive after"
        f" {settings.retention_archive_after_days} business days"
    )
    for report in run_for(settings, names, dry_run=dry_run, progress=console.print):
        for line in report.lines():
            console.print(line)
