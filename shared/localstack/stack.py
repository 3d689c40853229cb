"""The project's own local stack: a single-node Kafka (KRaft) broker and a PostgreSQL cluster.

No Docker: Kafka is the official broker from Maven Central, resolved once with Maven into a
cache that outlives the work tree (:mod:`.jars`); PostgreSQL is Debian's server with a
throwaway cluster (:mod:`.postgres`). State lives under ``<repo>/.stack``; both run
detached, so they outlive the command that started them and are shared by every test run
and service on the machine. The broker's configuration and process are :mod:`.broker`'s.

Environment: ``INSTALLMENTS_STACK_DIR`` (state root), ``INSTALLMENTS_STACK_CACHE`` (jars),
``INSTALLMENTS_STACK_KAFKA_VERSION``, ``INSTALLMENTS_STACK_KAFKA_PORT`` (9092),
``INSTALLMENTS_STACK_KAFKA_CONTROLLER_PORT`` (9093), ``INSTALLMENTS_STACK_PG_PORT`` (55432).
``ensure_stack`` starts nothing for ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL`` when set.

CLI: ``installments stack up [--no-postgres] | down | status``
(or ``python -m shared.localstack.stack``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from shared.localstack.broker import (
    START_DEADLINE_S,
    alive,
    kafka_answers,
    server_properties,
    start_broker,
    stop_process_group,
    wait_for_broker,
)
from shared.localstack.common import env, locked, log, port_open, stack_dir
from shared.localstack.jars import kafka_libs, kafka_version
from shared.localstack.postgres import pg_answers, pg_dir, pg_url, postgres_down, postgres_up

# --------------------------------------------------------------------------- kafka


def kafka_port() -> int:
    return int(env("KAFKA_PORT", "9092"))


def controller_port() -> int:
    return int(env("KAFKA_CONTROLLER_PORT", "9093"))


def _kafka_dir() -> Path:
    return stack_dir() / "kafka"


def _dev_properties(kdir: Path) -> str:
    return server_properties(
        about="Single-node KRaft broker+controller of the local stack (localstack/stack.py).",
        node_id=1,
        port=kafka_port(),
        controller_port=controller_port(),
        data_dir=kdir / "data",
        offsets_partitions=10,
        transaction_partitions=50,  # Kafka's default
        auto_create_topics=True,  # Kafka's default
        io_threads=4,
    )


def _forget_data_if_controller_moved(kdir: Path) -> None:
    """The KRaft storage records its controller: wipe it when the controller port changed
    (the next start formats it afresh); the stamp names the port it is formatted for."""
    stamp, data = kdir / "formatted-controller-port", kdir / "data"
    formatted = (data / "meta.properties").exists() and stamp.exists()
    if formatted and stamp.read_text().strip() == str(controller_port()):
        return
    if formatted:
        log("kafka: the controller port changed; wiping the local broker's data")
    shutil.rmtree(data, ignore_errors=True)
    kdir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(str(controller_port()))


def _kafka_pid() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        pid = int((_kafka_dir() / "kafka.pid").read_text())
        if alive(pid):
            return pid
    return None


def kafka_up() -> str:
    """Start the broker unless it answers already; return its bootstrap servers."""
    bootstrap, kdir = f"127.0.0.1:{kafka_port()}", _kafka_dir()
    if kafka_answers(bootstrap):
        return bootstrap

    def answers() -> bool:
        return kafka_answers(bootstrap, timeout_s=2.0)

    with locked(stack_dir() / ".kafka.lock"):
        if kafka_answers(bootstrap):
            return bootstrap
        kafka_libs()  # before the clock starts: a first download is not start-up time
        started = time.monotonic()
        pid = _kafka_pid()
        if pid is None:
            _forget_data_if_controller_moved(kdir)
            start_broker(
                kdir,
                _dev_properties(kdir),
                name="kafka",
                detail=f"Kafka {kafka_version()}",
                pid_file=kdir / "kafka.pid",
                answers=answers,
                deadline_s=START_DEADLINE_S,
            )
        else:
            log(f"kafka: broker pid {pid} runs but does not answer yet; waiting")
            try:
                wait_for_broker(
                    "kafka", kdir, answers, lambda: alive(pid), deadline=started + START_DEADLINE_S
                )
            except RuntimeError:  # it exited
                (kdir / "kafka.pid").unlink(missing_ok=True)
                raise
            except TimeoutError:
                _stop(pid)
                raise
        log(f"kafka: up on {bootstrap} in {time.monotonic() - started:.1f}s")
    return bootstrap


def _stop(pid: int) -> None:
    """Stop the broker's process group (SIGKILL after a deadline); drop the pid file."""
    stop_process_group(pid, lambda: alive(pid), name="kafka")
    (_kafka_dir() / "kafka.pid").unlink(missing_ok=True)


def kafka_down() -> None:
    """Stop the broker this stack started (its data is kept)."""
    with locked(stack_dir() / ".kafka.lock"):
        pid = _kafka_pid()
        if pid is None:
            (_kafka_dir() / "kafka.pid").unlink(missing_ok=True)
            if port_open(kafka_port()):
                log(f"kafka: port {kafka_port()} is served by a process this stack did not start")
            return
        started = time.monotonic()
        _stop(pid)
        log(f"kafka: stopped pid {pid} in {time.monotonic() - started:.1f}s")


def restart_kafka() -> str:
    """Stop and start the broker, keeping its data (for fault tests)."""
    kafka_down()
    return kafka_up()


# --------------------------------------------------------------------------- together


def ensure_stack(need_postgres: bool = True) -> tuple[str, str | None]:
    """Bootstrap servers and database URL. ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL``
    win when set (nothing is started for them); otherwise the local stack is brought up."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or kafka_up()
    url = os.environ.get("DATABASE_URL") or (postgres_up() if need_postgres else None)
    return bootstrap, url


def status() -> dict:
    """Where each part is and whether it answers; starts nothing."""
    bootstrap = f"127.0.0.1:{kafka_port()}"
    return {
        "kafka": {
            "version": kafka_version(),
            "bootstrap": bootstrap,
            "answers": kafka_answers(bootstrap),
            "pid": _kafka_pid(),
            "dir": str(_kafka_dir()),
        },
        "postgres": {"url": pg_url(), "answers": pg_answers(), "dir": str(pg_dir())},
    }


app = typer.Typer(
    help="Local Kafka (KRaft) broker and PostgreSQL for development and tests.",
    no_args_is_help=True,
)


@app.command()
def up(no_postgres: bool = typer.Option(False, "--no-postgres", help="Kafka only.")) -> None:
    """Start the stack (idempotent) and print its connection settings.

    Starts nothing for a part whose KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL is set.
    """
    bootstrap, url = ensure_stack(need_postgres=not no_postgres)
    typer.echo(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}")
    if url:
        typer.echo(f"DATABASE_URL={url}")


@app.command()
def down() -> None:
    """Stop the stack (data stays in the state dir)."""
    kafka_down()
    postgres_down()


@app.command(name="status")
def status_cmd() -> None:
    """Show whether each part answers, where, and its state dir."""
    table = Table("service", "answers", "where", "state dir")
    for name, info in status().items():
        pid = f" (pid {info['pid']})" if info.get("pid") else ""
        table.add_row(
            name,
            "yes" if info["answers"] else "no",
            (info.get("bootstrap") or info["url"]) + pid,
            info["dir"],
        )
    Console(width=max(shutil.get_terminal_size().columns, 140)).print(table)


if __name__ == "__main__":
    app()
