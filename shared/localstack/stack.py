"""The project's own local stack: a single-node Kafka (KRaft) broker and a PostgreSQL cluster.

No Docker: Kafka is the official broker from Maven Central, resolved once with Maven into a
cache that outlives the work tree; PostgreSQL is Debian's server with a throwaway cluster.
State lives under ``<repo>/.stack``; both run detached, so they outlive the command that
started them and are shared by every test run and service on the machine.

Environment: ``INSTALLMENTS_STACK_DIR`` (state root), ``INSTALLMENTS_STACK_CACHE`` (jars),
``INSTALLMENTS_STACK_KAFKA_VERSION``, ``INSTALLMENTS_STACK_KAFKA_PORT`` (9092),
``INSTALLMENTS_STACK_KAFKA_CONTROLLER_PORT`` (9093), ``INSTALLMENTS_STACK_PG_PORT`` (55432).
``ensure_stack`` starts nothing for ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL`` when set.

CLI: ``python -m shared.localstack.stack up [--no-postgres] | down | status``.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import typer

from shared.runtime import DEAD_LETTER_OVERHEAD
from shared.runtime.settings import Settings

DEFAULT_KAFKA_VERSION = "4.1.2"
KAFKA_START_DEADLINE_S = 90.0
KAFKA_STOP_DEADLINE_S = 30.0
PG_DATABASE = "installments"
_ASSETS = Path(__file__).with_name("assets")  # pom.xml, log4j2.xml, server.properties
_JVM_OPTS = [
    "-Xms128m",
    "-Xmx768m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
]
_BROKER_MAIN = "kafka.Kafka"


# --------------------------------------------------------------------------- settings


def _env(name: str, default: str) -> str:
    """``INSTALLMENTS_STACK_<name>``, or ``default`` when unset or empty."""
    return os.environ.get(f"INSTALLMENTS_STACK_{name}") or default


def kafka_version() -> str:
    return _env("KAFKA_VERSION", DEFAULT_KAFKA_VERSION)


def kafka_port() -> int:
    return int(_env("KAFKA_PORT", "9092"))


def controller_port() -> int:
    return int(_env("KAFKA_CONTROLLER_PORT", "9093"))


def pg_port() -> int:
    return int(_env("PG_PORT", "55432"))


def stack_dir() -> Path:
    """State root: ``$INSTALLMENTS_STACK_DIR``, else ``<repo>/.stack`` (cwd if no repo)."""
    repo = Path(__file__).resolve().parents[1]
    default = (repo if (repo / "pyproject.toml").exists() else Path.cwd()) / ".stack"
    return Path(_env("DIR", str(default))).resolve()


def cache_dir() -> Path:
    """Jar cache root, shared by work trees and kept between runs."""
    return Path(_env("CACHE", str(Path.home() / ".cache" / "card-installments"))).resolve()


# --------------------------------------------------------------------------- helpers


def _log(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise start/stop across processes (test workers, CLI) with an flock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _run(cmd: list[str], what: str, **kw) -> str:
    """Run a command to completion; raise with the tail of its output when it fails."""
    res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kw)
    if res.returncode != 0:
        output = (res.stderr or res.stdout)[-2000:]
        raise RuntimeError(f"{what} failed (exit {res.returncode}): {output}")
    return res.stdout


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def _alive(pid: int) -> bool:
    """True while ``pid`` is a running broker (the command line check guards pid reuse)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it was our child and has exited
    try:
        return _BROKER_MAIN.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


# --------------------------------------------------------------------------- kafka


def _kafka_dir() -> Path:
    return stack_dir() / "kafka"


def kafka_libs() -> Path:
    """Folder with the broker's jars, resolved with Maven on first use (then cached)."""
    home = cache_dir() / f"kafka-{kafka_version()}"
    libs, tmp = home / "libs", home / "libs.tmp"
    with _locked(home / ".lock"):
        if (libs / ".complete").exists():
            return libs
        if not shutil.which("mvn"):
            raise RuntimeError("Maven (mvn) is needed to fetch Kafka: apt-get install -y maven")
        _log(f"kafka: fetching kafka_2.13 {kafka_version()} and its dependencies with Maven")
        started = time.monotonic()
        shutil.copy(_ASSETS / "pom.xml", home / "pom.xml")
        shutil.rmtree(tmp, ignore_errors=True)
        _run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(home / "pom.xml"),
                "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
                f"-Dkafka.version={kafka_version()}",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={tmp}",
            ],
            "mvn copy-dependencies",
        )
        jars = list(tmp.glob("*.jar"))
        size = sum(j.stat().st_size for j in jars) / 2**20
        (tmp / ".complete").touch()
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
        _log(f"kafka: {len(jars)} jars ({size:.0f} MiB) in {time.monotonic() - started:.1f}s")
    return libs


def _jvm(main: str, *args: str) -> list[str]:
    """A JVM command line running ``main`` from the cached broker jars."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java:
        raise RuntimeError("Java 17+ is needed for Kafka: apt-get install -y openjdk-17-jre")
    return [
        java,
        *_JVM_OPTS,
        f"-Dkafka.logs.dir={_kafka_dir() / 'logs'}",
        f"-Dlog4j2.configurationFile={_ASSETS / 'log4j2.xml'}",
        "-cp",
        str(kafka_libs() / "*"),
        main,
        *args,
    ]


def broker_message_max_bytes() -> int:
    """The broker's ``message.max.bytes``: the producers' limit plus batch framing."""
    return Settings().kafka_max_request_bytes + DEAD_LETTER_OVERHEAD


def _prepare_kafka_dir(kdir: Path) -> Path:
    """Write server.properties; format the KRaft log dir (again if the controller moved)."""
    (kdir / "logs").mkdir(parents=True, exist_ok=True)
    props = kdir / "server.properties"
    template = string.Template((_ASSETS / "server.properties").read_text())
    props.write_text(
        template.substitute(
            port=kafka_port(),
            controller_port=controller_port(),
            data_dir=kdir / "data",
            message_max_bytes=broker_message_max_bytes(),
        )
    )
    stamp = kdir / "formatted-controller-port"
    if (kdir / "data" / "meta.properties").exists() and stamp.exists():
        if stamp.read_text().strip() == str(controller_port()):
            return props
        _log("kafka: the controller port changed; wiping the local broker's data")
    shutil.rmtree(kdir / "data", ignore_errors=True)
    cluster_id = "-"
    while cluster_id.startswith("-"):  # Kafka's Uuid text form; it may not start with '-'
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    _run(
        _jvm(
            "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id, "-c", str(props)
        ),
        "kafka storage format",
    )
    stamp.write_text(str(controller_port()))
    return props


def _kafka_pid() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        pid = int((_kafka_dir() / "kafka.pid").read_text())
        if _alive(pid):
            return pid
    return None


def kafka_answers(bootstrap: str | None = None, timeout_s: float = 3.0) -> bool:
    """True if a broker at ``bootstrap`` (default: ours) answers a metadata request."""
    from kafka import KafkaAdminClient

    bootstrap = bootstrap or f"127.0.0.1:{kafka_port()}"
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if host in ("127.0.0.1", "localhost") and not _port_open(int(port)):
        return False  # fast path: nothing listens
    ms = int(timeout_s * 1000)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="stack-probe",
            bootstrap_timeout_ms=ms,
            request_timeout_ms=ms,
        )
        try:
            admin.list_topics()
        finally:
            admin.close()
        return True
    except Exception:
        return False


def _raise_fd_limit() -> None:
    """A broker keeps files open per partition: give it as many descriptors as allowed.

    The test suite creates thousands of (small) partitions; the usual soft limit
    of 1024 (or a hard one of 20,000) is not enough for a long-lived dev broker.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for wanted in (1_048_576, 262_144, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(wanted, hard)))
            return
        except (ValueError, OSError):
            continue


def kafka_up() -> str:
    """Start the broker unless it answers already; return its bootstrap servers."""
    bootstrap, kdir = f"127.0.0.1:{kafka_port()}", _kafka_dir()
    if kafka_answers(bootstrap):
        return bootstrap
    with _locked(stack_dir() / ".kafka.lock"):
        if kafka_answers(bootstrap):
            return bootstrap
        kafka_libs()  # before the clock starts: a first download is not start-up time
        started = time.monotonic()
        pid, proc = _kafka_pid(), None
        if pid is None:
            props = _prepare_kafka_dir(kdir)
            with open(kdir / "logs" / "kafka.out", "ab") as out:
                proc = subprocess.Popen(
                    _jvm(_BROKER_MAIN, str(props)),
                    cwd=kdir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_raise_fd_limit,
                )
            pid = proc.pid
            (kdir / "kafka.pid").write_text(str(pid))
            _log(f"kafka: starting {kafka_version()} (pid {pid}, logs in {kdir / 'logs'})")
        else:
            _log(f"kafka: broker pid {pid} runs but does not answer yet; waiting")
        next_note = started + 5
        while not kafka_answers(bootstrap, timeout_s=2.0):
            now = time.monotonic()
            # our own child: poll() (its command line is briefly not java's while it starts)
            if (proc.poll() is not None) if proc else not _alive(pid):
                (kdir / "kafka.pid").unlink(missing_ok=True)
                raise RuntimeError(
                    f"kafka: the broker exited during start-up:\n"
                    f"{_tail(kdir / 'logs' / 'kafka.out')}\n"
                    f"{_tail(kdir / 'logs' / 'server.log')}"
                )
            if now > started + KAFKA_START_DEADLINE_S:
                _stop(pid)
                raise TimeoutError(
                    f"kafka: no answer in {KAFKA_START_DEADLINE_S:.0f}s:\n"
                    f"{_tail(kdir / 'logs' / 'server.log')}"
                )
            if now >= next_note:
                _log(f"kafka: waiting for the broker ({now - started:.0f}s)")
                next_note += 5
            time.sleep(0.25)
        _log(f"kafka: up on {bootstrap} in {time.monotonic() - started:.1f}s")
    return bootstrap


def _stop(pid: int) -> None:
    """SIGTERM the broker's process group, wait, SIGKILL after a deadline; drop the pid file."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + KAFKA_STOP_DEADLINE_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        _log(f"kafka: pid {pid} ignored SIGTERM for {KAFKA_STOP_DEADLINE_S:.0f}s; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.1)
    (_kafka_dir() / "kafka.pid").unlink(missing_ok=True)


def kafka_down() -> None:
    """Stop the broker this stack started (its data is kept)."""
    with _locked(stack_dir() / ".kafka.lock"):
        pid = _kafka_pid()
        if pid is None:
            (_kafka_dir() / "kafka.pid").unlink(missing_ok=True)
            if _port_open(kafka_port()):
                _log(f"kafka: port {kafka_port()} is served by a process this stack did not start")
            return
        started = time.monotonic()
        _stop(pid)
        _log(f"kafka: stopped pid {pid} in {time.monotonic() - started:.1f}s")


def restart_kafka() -> str:
    """Stop and start the broker, keeping its data (for fault tests)."""
    kafka_down()
    return kafka_up()


# --------------------------------------------------------------------------- postgres


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
        _log("postgres: server binaries missing; installing Debian's postgresql package")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "update"], "apt-get update", env=env)
        _run(["apt-get", "install", "-y", "postgresql"], "apt-get install postgresql", env=env)
    raise RuntimeError(f"PostgreSQL's {tool} not found: apt-get install -y postgresql")


def _as_pg(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run ``cmd`` as the ``postgres`` user."""
    if os.geteuid() != 0:
        return cmd
    if subprocess.run(["id", "postgres"], capture_output=True).returncode:
        _run(
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


def _pg_dir() -> Path:
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
    import psycopg

    if not _port_open(pg_port()):
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
    _run(
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
    _run(_as_pg(command), f"pg_ctl {action}", cwd=pdir, start_new_session=True)
    while not pg_answers():
        if time.monotonic() > started + 60:
            raise TimeoutError("postgres: no answer:\n" + _tail(pdir / "postgres.log"))
        time.sleep(0.1)


def postgres_up() -> str:
    """Start the local PostgreSQL unless it answers, create the database; return its URL."""
    import psycopg

    with _locked(stack_dir() / ".postgres.lock"):
        if not pg_answers():
            pdir = _pg_dir()
            if not (pdir / "data" / "PG_VERSION").exists():
                _log(f"postgres: initialising a cluster in {pdir}")
                shutil.rmtree(pdir / "data", ignore_errors=True)
                _pg_init(pdir)
            started = time.monotonic()
            _pg_ctl(pdir, "start", started)
            _log(f"postgres: up on 127.0.0.1:{pg_port()} in {time.monotonic() - started:.1f}s")
        with psycopg.connect(
            host="127.0.0.1", port=pg_port(), user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            query = "SELECT 1 FROM pg_database WHERE datname = %s"
            if not conn.execute(query, (PG_DATABASE,)).fetchone():
                conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    return pg_url()


def postgres_down() -> None:
    """Stop the local PostgreSQL (fast shutdown; its data is kept)."""
    with _locked(stack_dir() / ".postgres.lock"):
        data = _pg_dir() / "data"
        if (data / "postmaster.pid").exists():
            _run(
                _as_pg([_pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                "pg_ctl stop",
                cwd=data.parent,
            )
            _log("postgres: stopped")


def is_local_postgres(url: str | None) -> bool:
    """True when ``url`` names a database on this project's local PostgreSQL (loopback,
    the stack's port, and the stack's cluster is running): the only server that
    :func:`restart_postgres` may restart."""
    from sqlalchemy.engine import make_url

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
        and (_pg_dir() / "data" / "postmaster.pid").exists()
    )


def restart_postgres() -> float:
    """Restart the local PostgreSQL (``pg_ctl restart -m fast``: every connection is cut,
    the data is kept); for fault tests. Returns the seconds until it answered again.

    Only the project's own cluster (``installments stack``) is restarted; a server
    named by ``DATABASE_URL`` elsewhere is never touched (see :func:`is_local_postgres`).
    """
    started = time.monotonic()
    with _locked(stack_dir() / ".postgres.lock"):
        pdir = _pg_dir()
        if not (pdir / "data" / "postmaster.pid").exists():
            raise RuntimeError("postgres: the local cluster is not running; nothing to restart")
        _pg_ctl(pdir, "restart", started, "-m", "fast")
    return time.monotonic() - started


# --------------------------------------------------------------------------- together


def ensure_stack(need_postgres: bool = True) -> tuple[str, str | None]:
    """Bootstrap servers and database URL. ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL``
    win when set (nothing is started for them); otherwise the local stack is brought up."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or kafka_up()
    url = os.environ.get("DATABASE_URL") or (postgres_up() if need_postgres else None)
    return bootstrap, url


def status() -> dict:
    """Where each part is and whether it answers; starts nothing."""
    return {
        "kafka": {
            "version": kafka_version(),
            "bootstrap": f"127.0.0.1:{kafka_port()}",
            "answers": kafka_answers(),
            "pid": _kafka_pid(),
            "dir": str(_kafka_dir()),
        },
        "postgres": {"url": pg_url(), "answers": pg_answers(), "dir": str(_pg_dir())},
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
    from rich.console import Console
    from rich.table import Table

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
