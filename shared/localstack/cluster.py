"""A throwaway three-node Kafka (KRaft) cluster for replication and failover tests.

Each node is a combined ``broker,controller`` JVM on free ports of 127.0.0.1, and the
three form a static controller quorum (``controller.quorum.voters``; Kafka 4.1's
StorageTool formats such nodes without ``--standalone`` / ``--initial-controllers``).
Topics default to three replicas with ``min.insync.replicas=2``, the internal topics
(consumer offsets, transactions) too, so the cluster survives one node and refuses
``acks=all`` writes when two are down.

Everything lives in one folder (``node-<id>/{server.properties,data,logs}``). Each node's
configuration and process start are :mod:`shared.localstack.broker`'s, with the throwaway
brokers' JVM (as :mod:`shared.localstack.secure`'s) and a smaller heap per node.

    cluster = LocalCluster(tmp_path).start()
    try:
        leader = cluster.leader_of("topic", 0)
        cluster.kill(leader)          # SIGKILL
        cluster.restart(leader)       # same data, same ports
    finally:
        cluster.stop()

CLI: ``installments cluster up [--dir D] | status [--dir D] | down [--dir D]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from kafka import KafkaAdminClient

from shared.localstack.broker import (
    THROWAWAY_JVM,
    alive,
    kafka_answers,
    new_cluster_id,
    server_properties,
    signal_group,
    start_broker,
    wait_for_broker,
    wait_stopped,
)
from shared.localstack.common import free_port, log, port_open, stack_dir
from shared.runtime.settings import Settings

NODE_IDS = (1, 2, 3)
NODE_JVM = dataclasses.replace(THROWAWAY_JVM, xmx="256m")  # three JVMs share two cores
START_DEADLINE_S = 120.0
STOP_DEADLINE_S = 30.0
STATE_FILE = "cluster.json"  # ports and pids, for the CLI's status/down


def _node_properties(node: Node, voters: str) -> str:
    return server_properties(
        about="One node of a three-node KRaft cluster (shared/localstack/cluster.py).",
        node_id=node.node_id,
        port=node.port,
        controller_port=node.controller_port,
        data_dir=node.workdir / "data",
        voters=voters,
        replicas=len(NODE_IDS),
        sections={
            "Fail over quickly: a silent broker is fenced after 6 s (default 9 s).": {
                "broker.session.timeout.ms": 6000,
                "broker.heartbeat.interval.ms": 1000,
            },
            "Few threads: three brokers on a 2-core machine.": {
                "num.replica.fetchers": 1,
                "background.threads": 2,
                "log.cleaner.threads": 1,
            },
        },
    )


@dataclass
class Node:
    """One combined broker+controller of a :class:`LocalCluster`."""

    node_id: int
    port: int
    controller_port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    pid: int | None = None  # also set for a node found through the state file (CLI)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.workdir / "logs" / "server.log"

    def running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return self.pid is not None and alive(self.pid)


class LocalCluster:
    """Three KRaft nodes on free ports in ``workdir`` (a new temp folder by default)."""

    def __init__(self, workdir: Path | str | None = None, *, detached: bool = False) -> None:
        # detached: the nodes outlive this process (CLI); otherwise they get SIGTERM
        # when the thread that started them ends, so a killed test leaves nothing behind.
        self.detached = detached
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kafka-cluster-")).resolve()
        self.cluster_id = ""
        ports: set[int] = set()
        while len(ports) < 2 * len(NODE_IDS):
            ports.add(free_port())
        ordered = sorted(ports)
        self.nodes: dict[int, Node] = {
            node_id: Node(
                node_id, ordered[2 * i], ordered[2 * i + 1], self.workdir / f"node-{node_id}"
            )
            for i, node_id in enumerate(NODE_IDS)
        }

    # ------------------------------------------------------------------ lifecycle

    @property
    def bootstrap(self) -> str:
        """Every node's client listener (clients find the others through metadata)."""
        return ",".join(node.bootstrap for node in self.nodes.values())

    @property
    def voters(self) -> str:
        return ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes.values())

    def start(self, timeout_s: float = START_DEADLINE_S) -> LocalCluster:
        """Format the three nodes, start them and wait until each answers and all three
        are registered brokers. Stops whatever it started if that fails."""
        started = time.monotonic()
        self.cluster_id = self.cluster_id or new_cluster_id()
        try:
            for node in self.nodes.values():
                self._launch(node)
            self._save_state()
            for node in self.nodes.values():
                self._wait_answers(node, started + timeout_s)
            self.wait_brokers(
                len(self.nodes), timeout_s=max(1.0, started + timeout_s - time.monotonic())
            )
        except BaseException:
            self.stop()
            raise
        log(f"cluster: 3 nodes up on {self.bootstrap} in {time.monotonic() - started:.1f}s")
        return self

    def stop(self) -> None:
        """SIGTERM every running node (SIGKILL after a deadline). Idempotent; data is kept."""
        for node in self.nodes.values():
            self._signal(node, signal.SIGTERM)
        for node in self.nodes.values():
            self._wait_exit(node, STOP_DEADLINE_S)
        self._save_state()

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (no controlled shutdown, no flush) and reap it."""
        node = self.nodes[node_id]
        self._signal(node, signal.SIGKILL)
        self._wait_exit(node, STOP_DEADLINE_S)
        log(f"cluster: killed node {node_id}")

    def stop_node(self, node_id: int) -> None:
        """SIGTERM one node (controlled shutdown) and wait for it to exit."""
        node = self.nodes[node_id]
        started = time.monotonic()
        self._signal(node, signal.SIGTERM)
        self._wait_exit(node, STOP_DEADLINE_S)
        log(f"cluster: stopped node {node_id} in {time.monotonic() - started:.1f}s")

    def restart(self, node_id: int, *, wait: bool = True, timeout_s: float = 90.0) -> None:
        """Start a stopped or killed node again with its data and ports (stopping it
        first if it runs); with ``wait``, until it answers and is a registered broker.

        Call it from a thread that outlives the node: the node gets SIGTERM when the
        thread that started it ends (``PR_SET_PDEATHSIG``, see broker.start_broker)."""
        node = self.nodes[node_id]
        if node.running():
            self.stop_node(node_id)
        started = time.monotonic()
        self._launch(node)
        self._save_state()
        if wait:
            self.wait_ready(node_id, timeout_s=timeout_s)
            log(f"cluster: node {node_id} back in {time.monotonic() - started:.1f}s")

    def wait_ready(self, node_id: int, timeout_s: float = 90.0) -> None:
        """Until ``node_id`` answers clients and the cluster lists it as a broker."""
        deadline = time.monotonic() + timeout_s
        self._wait_answers(self.nodes[node_id], deadline)
        while node_id not in self.broker_ids():
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster: node {node_id} not registered in {timeout_s:.0f}s")
            time.sleep(0.25)

    def running_ids(self) -> list[int]:
        return [n.node_id for n in self.nodes.values() if n.running()]

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ clients

    def settings(self, **overrides: Any) -> Settings:
        """:class:`Settings` for this cluster, topics with three replicas by default."""
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": self.live_bootstrap(),
            "topic_replication": len(self.nodes),
        }
        values.update(overrides)
        return Settings(**values)

    def live_bootstrap(self) -> str:
        """The running nodes' listeners (all of them when none runs)."""
        live = [n.bootstrap for n in self.nodes.values() if n.running()]
        return ",".join(live) or self.bootstrap

    def admin(self, **config: Any) -> Any:
        return KafkaAdminClient(
            bootstrap_servers=self.live_bootstrap().split(","),
            client_id="cluster-admin",
            request_timeout_ms=5000,
            **config,
        )

    def describe(self, topic: str) -> dict[int, dict[str, Any]]:
        """``{partition: {"leader": id, "replicas": [...], "isr": [...]}}`` from metadata."""
        admin = self.admin()
        try:
            (found,) = admin.describe_topics([topic])
        finally:
            admin.close()
        return {
            p["partition_index"]: {
                "leader": p["leader_id"],
                "replicas": list(p["replica_nodes"]),
                "isr": list(p["isr_nodes"]),
            }
            for p in found.get("partitions") or []
        }

    def leader_of(self, topic: str, partition: int = 0) -> int:
        """The node id leading ``topic``/``partition`` (-1 while there is none)."""
        return int(self.describe(topic).get(partition, {"leader": -1})["leader"])

    def broker_ids(self) -> list[int]:
        """Broker ids the cluster currently lists (registered and not fenced)."""
        admin = self.admin()
        try:
            return sorted(b["broker_id"] for b in admin.describe_cluster()["brokers"])
        except Exception:
            return []
        finally:
            admin.close()

    def wait_brokers(self, count: int, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.broker_ids()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster: {count} brokers not registered in {timeout_s:.0f}s")
            time.sleep(0.25)

    def wait_in_sync(self, topic: str, replicas: int = 3, timeout_s: float = 60.0) -> None:
        """Until every partition of ``topic`` has a leader and ``replicas`` in-sync replicas."""
        deadline, seen = time.monotonic() + timeout_s, {}
        while True:
            with contextlib.suppress(Exception):
                seen = self.describe(topic)
                if seen and all(
                    p["leader"] >= 0 and len(p["isr"]) >= replicas for p in seen.values()
                ):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"cluster: {topic} not {replicas} in sync in {timeout_s:.0f}s: {seen}"
                )
            time.sleep(0.25)

    def wait_leader_change(
        self, topic: str, partition: int, old: int, timeout_s: float = 30.0
    ) -> int:
        """Until ``topic``/``partition`` has a leader other than ``old``; returns it."""
        deadline = time.monotonic() + timeout_s
        leader = old
        while True:
            with contextlib.suppress(Exception):
                leader = self.leader_of(topic, partition)
                if leader not in (old, -1):
                    return leader
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"cluster: {topic}-{partition} still led by {leader} after {timeout_s:.0f}s"
                )
            time.sleep(0.1)

    # ------------------------------------------------------------------ internals

    def _launch(self, node: Node) -> None:
        """Start ``node`` (formatting its storage first if it is new), without waiting."""
        node.process = start_broker(
            node.workdir,
            _node_properties(node, self.voters),
            name=f"cluster: node {node.node_id}",
            detail=node.bootstrap,
            jvm=NODE_JVM,
            cluster_id=self.cluster_id,
            format_args=(),  # a static quorum (controller.quorum.voters): not --standalone
            detached=self.detached,
        )
        node.pid = node.process.pid

    def _wait_answers(self, node: Node, deadline: float) -> None:
        wait_for_broker(
            f"cluster: node {node.node_id}",
            node.workdir,
            lambda: kafka_answers(node.bootstrap, timeout_s=2.0),
            node.running,
            deadline=deadline,
        )

    @staticmethod
    def _signal(node: Node, sig: signal.Signals) -> None:
        if node.running() and node.pid is not None:
            signal_group(node.pid, sig)

    @staticmethod
    def _wait_exit(node: Node, timeout_s: float) -> None:
        if node.pid is not None:
            name = f"cluster: node {node.node_id}"
            wait_stopped(node.pid, node.running, name=name, deadline_s=timeout_s)

    def _save_state(self) -> None:
        state = {
            "cluster_id": self.cluster_id,
            "nodes": {
                str(n.node_id): {
                    "port": n.port,
                    "controller_port": n.controller_port,
                    "pid": n.pid if n.running() else None,
                }
                for n in self.nodes.values()
            },
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / STATE_FILE).write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, workdir: Path | str) -> LocalCluster:
        """The cluster described by ``workdir/cluster.json`` (for status and down)."""
        cluster = cls.__new__(cls)
        cluster.detached = True
        cluster.workdir = Path(workdir).resolve()
        state = json.loads((cluster.workdir / STATE_FILE).read_text())
        cluster.cluster_id = state["cluster_id"]
        cluster.nodes = {
            int(k): Node(
                int(k), v["port"], v["controller_port"], cluster.workdir / f"node-{k}", pid=v["pid"]
            )
            for k, v in state["nodes"].items()
        }
        return cluster


# --------------------------------------------------------------------------- CLI

app = typer.Typer(no_args_is_help=True, add_completion=False)
_DIR_HELP = "The cluster's folder (state, data, logs)."


def _default_dir() -> Path:
    return stack_dir() / "cluster"


@app.command()
def up(directory: Path = typer.Option(None, "--dir", help=_DIR_HELP)) -> None:
    """Start a fresh three-node cluster (formats its folder) and print its bootstrap."""
    directory = (directory or _default_dir()).resolve()
    if (directory / STATE_FILE).exists() and LocalCluster.load(directory).running_ids():
        raise typer.BadParameter(
            f"a cluster runs in {directory}: `installments cluster down` first"
        )
    if directory.exists():
        shutil.rmtree(directory)
    cluster = LocalCluster(directory, detached=True)  # outlives this command
    cluster.start()
    print(cluster.bootstrap)


@app.command()
def status(directory: Path = typer.Option(None, "--dir", help=_DIR_HELP)) -> None:
    """Each node: pid, ports, whether it answers."""
    directory = (directory or _default_dir()).resolve()
    if not (directory / STATE_FILE).exists():
        print(f"no cluster in {directory}")
        raise typer.Exit(1)
    cluster = LocalCluster.load(directory)
    for node in cluster.nodes.values():
        answers = node.running() and port_open(node.port) and kafka_answers(node.bootstrap)
        state = "up" if answers else ("starting" if node.running() else "down")
        ports = f"{node.bootstrap} controller={node.controller_port}"
        print(f"node {node.node_id}: {state:8} pid={node.pid} {ports}")
    print(f"bootstrap: {cluster.bootstrap}")


@app.command()
def down(directory: Path = typer.Option(None, "--dir", help=_DIR_HELP)) -> None:
    """Stop every node of the cluster (its data is kept until the next up)."""
    directory = (directory or _default_dir()).resolve()
    if not (directory / STATE_FILE).exists():
        print(f"no cluster in {directory}")
        return
    LocalCluster.load(directory).stop()
    print("stopped")
