"""One Kafka (KRaft) broker process, written once for the dev broker (:mod:`.stack`), the
nodes of the three-node cluster (:mod:`.cluster`) and the SASL/SCRAM broker (:mod:`.secure`):

- :func:`server_properties`: its configuration, their differences as parameters;
- :class:`Jvm`: its JVM command line (the cached jars, heap, log4j2 configuration);
- :func:`start_broker`: write the configuration, format the KRaft storage unless it is
  formatted, start the JVM, wait until the broker answers (the logs' tail if it does not);
- :func:`stop_process_group`, or its halves :func:`signal_group` and :func:`wait_stopped`
  to stop several brokers at once.

A broker's folder holds ``server.properties``, ``data/`` (its KRaft log dir) and ``logs/``
(``server.log``, ``kafka.out``).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import resource
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient

from shared.localstack.common import ASSETS, log, port_open, run, tail
from shared.localstack.jars import kafka_libs
from shared.runtime import DEAD_LETTER_OVERHEAD
from shared.runtime.settings import Settings

BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
START_DEADLINE_S = 90.0
STOP_DEADLINE_S = 30.0
_JVM_OPTS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)
_MAX_BYTES_NOTE = """\
Set together with the producers' limit (INSTALLMENTS_KAFKA_MAX_REQUEST_BYTES) plus
record-batch framing, so every dead letter the services cut to that limit is accepted."""


# --------------------------------------------------------------------------- configuration


def broker_message_max_bytes() -> int:
    """The broker's ``message.max.bytes``: the producers' limit plus batch framing."""
    return Settings().kafka_max_request_bytes + DEAD_LETTER_OVERHEAD


def new_cluster_id() -> str:
    """A random KRaft cluster id (Kafka's Uuid text form, which may not start with '-')."""
    cluster_id = "-"
    while cluster_id.startswith("-"):
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    return cluster_id


def _text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def server_properties(
    *,
    about: str,
    node_id: int,
    port: int,
    controller_port: int,
    data_dir: Path,
    voters: str = "",
    listener: str = "PLAINTEXT",
    controller_protocol: str = "PLAINTEXT",
    replicas: int = 1,
    offsets_partitions: int = 3,
    transaction_partitions: int = 3,
    auto_create_topics: bool = False,
    io_threads: int = 2,
    sections: Mapping[str, Mapping[str, object]] | None = None,
) -> str:
    """``server.properties`` of a combined broker+controller on 127.0.0.1.

    ``about``: the header comment. ``voters``: a static controller quorum
    (``id@127.0.0.1:port,...``); empty: this node is the quorum on its own
    (``controller.quorum.bootstrap.servers``, formatted ``--standalone``). ``listener``: the
    client and inter-broker listener, named after its security protocol; the controller
    listener speaks ``controller_protocol``. Every topic, the internal ones too, gets
    ``replicas`` replicas, and an ``acks=all`` write needs a majority of them in sync.
    ``message.max.bytes`` is :func:`broker_message_max_bytes`. ``sections``: more settings,
    each block under its comment; setting a key twice is an error.
    """
    min_isr = replicas // 2 + 1
    quorum = (
        {"controller.quorum.voters": voters}
        if voters
        else {"controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}"}
    )
    listeners = f"{listener}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}"
    protocols = f"{listener}:{listener},CONTROLLER:{controller_protocol}"
    blocks: dict[str, Mapping[str, object]] = {
        about: {
            "process.roles": "broker,controller",
            "node.id": node_id,
            **quorum,
            "listeners": listeners,
            "advertised.listeners": listeners,
            "listener.security.protocol.map": protocols,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": listener,
            "log.dirs": data_dir,
        },
        _MAX_BYTES_NOTE: {"message.max.bytes": broker_message_max_bytes()},
        f"{replicas} replica(s) everywhere; an acks=all write needs {min_isr} of them in sync.": {
            "num.partitions": 1,
            "default.replication.factor": replicas,
            "min.insync.replicas": min_isr,
            "unclean.leader.election.enable": False,
            "auto.create.topics.enable": auto_create_topics,
            "offsets.topic.replication.factor": replicas,
            "offsets.topic.num.partitions": offsets_partitions,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": transaction_partitions,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
        },
        "Fast group joins in tests; few threads on a 2-core machine.": {
            "group.initial.rebalance.delay.ms": 0,
            "num.network.threads": 2,
            "num.io.threads": io_threads,
        },
        **(sections or {}),
    }
    seen: set[str] = set()
    lines: list[str] = []
    for comment, props in blocks.items():
        if twice := seen & props.keys():
            raise ValueError(f"server.properties: {sorted(twice)} set twice")
        seen |= props.keys()
        lines += ["", *(f"# {line}" for line in comment.splitlines())]
        lines += [f"{key}={_text(value)}" for key, value in props.items()]
    return "\n".join(lines[1:]) + "\n"


# --------------------------------------------------------------------------- JVM


@dataclass(frozen=True)
class Jvm:
    """A broker JVM's heap and options; :meth:`command` is its command line."""

    xms: str = "128m"
    xmx: str = "768m"
    options: tuple[str, ...] = ()
    # Also log the network layer's INFO lines: where the broker reports each failed
    # authentication (SASL or TLS) and its reason.
    log_auth_failures: bool = False

    def command(self, logs: Path, main: str, *args: str) -> list[str]:
        """``java ... main args`` on the cached broker jars, logging into ``logs``."""
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if not java:
            raise RuntimeError("Java 17+ is needed for Kafka: apt-get install -y openjdk-17-jre")
        log4j = _log4j2_config(logs) if self.log_auth_failures else ASSETS / "log4j2.xml"
        return [
            java,
            f"-Xms{self.xms}",
            f"-Xmx{self.xmx}",
            *_JVM_OPTS,
            *self.options,
            f"-Dkafka.logs.dir={logs}",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            str(kafka_libs() / "*"),
            main,
            *args,
        ]


DEV_JVM = Jvm()
# A broker that lives for one test module gains nothing from the C2 compiler: C1 only starts
# it in ~60% of the time (measured: 9 s instead of 16 s on two busy cores).
THROWAWAY_JVM = Jvm(
    xms="64m", xmx="512m", options=("-XX:TieredStopAtLevel=1",), log_auth_failures=True
)


def _log4j2_config(logs: Path) -> Path:
    """The assets' log4j2.xml plus the network layer's INFO lines, in ``logs``."""
    xml = (ASSETS / "log4j2.xml").read_text()
    extra = '    <Logger name="org.apache.kafka.common.network.Selector" level="INFO"/>\n'
    if "</Loggers>" not in xml:
        raise RuntimeError(f"unexpected {ASSETS / 'log4j2.xml'}: no </Loggers>")
    path = logs / "log4j2.xml"
    path.write_text(xml.replace("  </Loggers>", extra + "  </Loggers>", 1))
    return path


def _raise_fd_limit() -> None:
    """A broker keeps files open per partition: give it as many descriptors as allowed.

    The test suite creates thousands of (small) partitions; the usual soft limit
    of 1024 (or a hard one of 20,000) is not enough for a long-lived dev broker.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for wanted in (1_048_576, 262_144, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(wanted, hard)))
            return
        except (ValueError, OSError):
            continue


def _die_with_parent() -> None:
    """Many file descriptors, and SIGTERM when the thread that started the broker ends, so
    that a killed test run does not leave a throwaway broker behind (Linux
    ``PR_SET_PDEATHSIG``; best effort elsewhere)."""
    _raise_fd_limit()
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


# --------------------------------------------------------------------------- process


def alive(pid: int) -> bool:
    """True while ``pid`` is a running broker (the command line check guards pid reuse)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it was our child and has exited
    try:
        return BROKER_MAIN.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def kafka_answers(bootstrap: str, timeout_s: float = 3.0, **config: Any) -> bool:
    """True if a broker at ``bootstrap`` answers a metadata request; ``config``: more
    kafka-python client options (security settings, ``client_id``)."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if host in ("127.0.0.1", "localhost") and not port_open(int(port)):
        return False  # fast path: nothing listens
    ms = int(timeout_s * 1000)
    options = {"bootstrap_servers": bootstrap, "client_id": "stack-probe", **config}
    options.update(bootstrap_timeout_ms=ms, request_timeout_ms=ms)
    try:
        admin = KafkaAdminClient(**options)
        try:
            admin.list_topics()
        finally:
            admin.close()
        return True
    except Exception:
        return False


def start_broker(
    workdir: Path,
    properties: str,
    *,
    name: str,
    detail: str = "",
    jvm: Jvm = DEV_JVM,
    cluster_id: str | None = None,
    format_args: Sequence[str] = ("--standalone",),
    detached: bool = True,
    pid_file: Path | None = None,
    answers: Callable[[], bool] | None = None,
    deadline_s: float = START_DEADLINE_S,
) -> subprocess.Popen[bytes]:
    """Start the broker of ``workdir`` and return its process.

    Writes ``properties`` to ``server.properties`` (owner-only: it may hold passwords),
    formats ``data/`` as KRaft storage unless it holds a ``meta.properties`` already (with
    ``cluster_id``, else a new one, and ``format_args`` such as ``--standalone`` or
    ``--add-scram``), and starts the JVM in a session of its own. ``detached``: the broker
    outlives this process; otherwise it gets SIGTERM when the thread that started it ends.
    ``pid_file`` gets its pid. ``name`` and ``detail`` are for log lines and errors.

    With ``answers``, waits until it returns true: if the broker exits first or does not
    answer within ``deadline_s``, it is stopped and the error carries its logs' tail.
    """
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    props = workdir / "server.properties"
    props.write_text(properties)
    props.chmod(0o600)
    if not (workdir / "data" / "meta.properties").exists():
        fmt = ["format", "-t", cluster_id or new_cluster_id(), "-c", str(props), *format_args]
        run(jvm.command(logs, STORAGE_TOOL, *fmt), f"kafka storage format ({name})")
    started = time.monotonic()
    with open(logs / "kafka.out", "ab") as out:
        proc = subprocess.Popen(
            jvm.command(logs, BROKER_MAIN, str(props)),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_raise_fd_limit if detached else _die_with_parent,
        )
    if pid_file is not None:
        pid_file.write_text(str(proc.pid))
    log(f"{name}: starting (pid {proc.pid}{', ' + detail if detail else ''}, logs in {logs})")
    if answers is None:
        return proc

    def running() -> bool:
        # poll(), not alive(): the child's command line is briefly not java's while it starts
        return proc.poll() is None

    try:
        wait_for_broker(name, workdir, answers, running, deadline=started + deadline_s)
    except BaseException as exc:
        # A detached broker that is merely interrupted (Ctrl-C) keeps starting.
        if not detached or isinstance(exc, RuntimeError | TimeoutError):
            stop_process_group(proc.pid, running, name=name)
            if pid_file is not None:
                pid_file.unlink(missing_ok=True)
        raise
    return proc


def wait_for_broker(
    name: str,
    workdir: Path,
    answers: Callable[[], bool],
    running: Callable[[], bool],
    *,
    deadline: float,
) -> None:
    """Until ``answers()``. Raises RuntimeError when ``running()`` turns false first and
    TimeoutError past ``deadline`` (``time.monotonic()``), with the tail of its logs."""
    logs = workdir / "logs"
    begun = time.monotonic()
    next_note = begun + 5
    while not answers():
        now = time.monotonic()
        if not running():
            raise RuntimeError(
                f"{name}: the broker exited during start-up:\n"
                f"{tail(logs / 'kafka.out')}\n{tail(logs / 'server.log')}"
            )
        if now > deadline:
            raise TimeoutError(
                f"{name}: no answer in {now - begun:.0f}s:\n{tail(logs / 'server.log')}"
            )
        if now >= next_note:
            log(f"{name}: waiting for the broker ({now - begun:.0f}s)")
            next_note += 5
        time.sleep(0.25)


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group of ``pid`` (the broker's session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def wait_stopped(
    pid: int, running: Callable[[], bool], *, name: str, deadline_s: float = STOP_DEADLINE_S
) -> None:
    """Until ``running()`` is false; SIGKILL the group of ``pid`` after ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while running() and time.monotonic() < deadline:
        time.sleep(0.05)
    if running():
        log(f"{name}: pid {pid} ignored SIGTERM for {deadline_s:.0f}s; killing it")
        signal_group(pid, signal.SIGKILL)
        while running():
            time.sleep(0.05)


def stop_process_group(
    pid: int, running: Callable[[], bool], *, name: str, deadline_s: float = STOP_DEADLINE_S
) -> None:
    """SIGTERM the broker's process group (a controlled shutdown); SIGKILL after a deadline.
    Nothing is signalled once ``running()`` is false (its pid may be another's by then)."""
    if not running():
        return
    signal_group(pid, signal.SIGTERM)
    wait_stopped(pid, running, name=name, deadline_s=deadline_s)
