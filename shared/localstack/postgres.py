"""The local stack's PostgreSQL: Debian's server (installed when missing) with a throwaway,
trust-auth, loopback-only cluster under ``<stack>/postgres``.

Environment: ``INSTALLMENTS_STACK_PG_PORT`` (55432); the state root is
:func:`shared.localstack.common.stack_dir`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from shared.localstack.common import env, locked, log, port_open, run, stack_dir, tail

PG_DATABASE = "installments"


def pg_port() -> int:
    return int(env("PG_PORT", "55432"))


def _pg_bin(tool: str) -> str:
    """Path of a PostgreSQL server binary; installs Debian's ``postgresql`` if missing."""
    for attempt in range(2):
        found = sorted(
            Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"),
            key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
        )
        if found or shutil.which(tool):
            return str(found[-1]) if found else str(shutil.which(tool))
        if attempt or os.geteuid() != 0:
            break
        log("postgres: server binaries missing; installing Debian's postgresql package")
        environ = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update"], "apt-get update", env=environ)
        run(["apt-get", "install", "-y", "postgresql"], "apt-get install postgresql", env=environ)
    raise RuntimeError(f"PostgreSQL's {tool} not found: apt-get install -y postgresql")


def _as_pg(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run ``cmd`` as the ``postgres`` user."""
    if os.geteuid() != 0:
        return cmd
    if subprocess.run(["id", "postgres"], capture_output=True).returncode:
        run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--home-dir",
                "/var/lib/postgresql",
                "postgres",
            ],
            "useradd postgres",
        )
    return ["runuser", "-u", "postgres", "--", *cmd]


def pg_dir() -> Path:
    """``<stack>/postgres``, or a temp folder when the postgres user cannot reach the stack."""
    base = stack_dir()
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0 and subprocess.run(_as_pg(["test", "-x", str(base)])).returncode:
        tag = uuid.uuid5(uuid.NAMESPACE_URL, str(base)).hex[:8]
        base = Path(tempfile.gettempdir()) / f"card-installments-{tag}"
        base.mkdir(mode=0o755, exist_ok=True)
    return base / "postgres"


def pg_url() -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{pg_port()}/{PG_DATABASE}"


def pg_answers() -> bool:
    """True if our PostgreSQL port accepts a connection as ``postgres``."""
    if not port_open(pg_port()):
        return False
    try:
        psycopg.connect(
            host="127.0.0.1", port=pg_port(), user="postgres", dbname="postgres", connect_timeout=2
        ).close()
        return True
    except psycopg.Error:
        return False


def _pg_init(pdir: Path) -> None:
    """initdb a trust-auth, loopback-only, fsync-off cluster owned by the postgres user."""
    (pdir / "run").mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        for path in (pdir, pdir / "run"):
            shutil.chown(path, "postgres", "postgres")
    run(
        _as_pg(
            [
                _pg_bin("initdb"),
                "-D",
                str(pdir / "data"),
                "--auth=trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
            ]
        ),
        "initdb",
        cwd=pdir,
    )
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "unix_socket_directories": f"'{pdir / 'run'}'",
        "max_connections": "200",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
    }
    with open(pdir / "data" / "postgresql.conf", "a") as conf:
        conf.write("\n# card-installments local stack (throwaway: durability off)\n")
        conf.writelines(f"{key} = {value}\n" for key, value in settings.items())


def _pg_ctl(pdir: Path, action: str, started: float, *options: str) -> None:
    """``pg_ctl <action>`` on the local cluster, then wait until it answers (60 s)."""
    command = [_pg_bin("pg_ctl"), "-D", str(pdir / "data"), "-l", str(pdir / "postgres.log")]
    command += [*options, "-w", "-t", "60", "-o", f"-p {pg_port()}", action]
    run(_as_pg(command), f"pg_ctl {action}", cwd=pdir, start_new_session=True)
    while not pg_answers():
        if time.monotonic() > started + 60:
            raise TimeoutError("postgres: no answer:\n" + tail(pdir / "postgres.log"))
        time.sleep(0.1)


def postgres_up() -> str:
    """Start the local PostgreSQL unless it answers, create the database; return its URL."""
    with locked(stack_dir() / ".postgres.lock"):
        if not pg_answers():
            pdir = pg_dir()
            if not (pdir / "data" / "PG_VERSION").exists():
                log(f"postgres: initialising a cluster in {pdir}")
                shutil.rmtree(pdir / "data", ignore_errors=True)
                _pg_init(pdir)
            started = time.monotonic()
            _pg_ctl(pdir, "start", started)
            log(f"postgres: up on 127.0.0.1:{pg_port()} in {time.monotonic() - started:.1f}s")
        with psycopg.connect(
            host="127.0.0.1", port=pg_port(), user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            query = "SELECT 1 FROM pg_database WHERE datname = %s"
            if not conn.execute(query, (PG_DATABASE,)).fetchone():
                conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    return pg_url()


def postgres_down() -> None:
    """Stop the local PostgreSQL (fast shutdown; its data is kept)."""
    with locked(stack_dir() / ".postgres.lock"):
        data = pg_dir() / "data"
        if (data / "postmaster.pid").exists():
            run(
                _as_pg([_pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                "pg_ctl stop",
                cwd=data.parent,
            )
            log("postgres: stopped")


def is_local_postgres(url: str | None) -> bool:
    """True when ``url`` names a database on this project's local PostgreSQL (loopback,
    the stack's port, and the stack's cluster is running): the only server that
    :func:`restart_postgres` may restart."""
    if not url:
        return False
    try:
        parsed = make_url(url)
    except Exception:
        return False
    return (
        parsed.get_backend_name() == "postgresql"
        and parsed.host in ("127.0.0.1", "localhost")
        and parsed.port == pg_port()
        and (pg_dir() / "data" / "postmaster.pid").exists()
    )


def restart_postgres() -> float:
    """Restart the local PostgreSQL (``pg_ctl restart -m fast``: every connection is cut,
    the data is kept); for fault tests. Returns the seconds until it answered again.

    Only the project's own cluster (``installments stack``) is restarted; a server
    named by ``DATABASE_URL`` elsewhere is never touched (see :func:`is_local_postgres`).
    """
    started = time.monotonic()
    with locked(stack_dir() / ".postgres.lock"):
        pdir = pg_dir()
        if not (pdir / "data" / "postmaster.pid").exists():
            raise RuntimeError("postgres: the local cluster is not running; nothing to restart")
        _pg_ctl(pdir, "restart", started, "-m", "fast")
    return time.monotonic() - started
