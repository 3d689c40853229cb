"""The integration suite's Kafka broker and PostgreSQL as containers (testcontainers).

Chosen by one setting: ``INSTALLMENTS_TEST_STACK=containers`` (default ``local``: the
project's own broker and PostgreSQL processes, :mod:`shared.localstack`). The images are
``KAFKA_IMAGE`` (default ``apache/kafka:4.1.2``) and ``POSTGRES_IMAGE`` (``postgres:16``):
``bash scripts/docker.sh images`` prints the ones this machine has, public or the local
stand-ins it builds where public images cannot be pulled. Both containers live for the
test session and are removed at its end (Ryuk, testcontainers' reaper, is turned off
when its image cannot be pulled; the fixture's ``finally`` removes them instead).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator

STACK_SETTING = "INSTALLMENTS_TEST_STACK"
KAFKA_IMAGE = "apache/kafka:4.1.2"
POSTGRES_IMAGE = "postgres:16"
CLUSTER_ID = "mVHCImsvShidEJ-Kpx4ZjA"


def wanted() -> bool:
    """True when the suite's stack is to run as containers (``INSTALLMENTS_TEST_STACK``)."""
    choice = os.environ.get(STACK_SETTING, "local").strip().lower()
    if choice not in ("local", "containers"):
        raise ValueError(f"{STACK_SETTING} must be 'local' or 'containers', not {choice!r}")
    return choice == "containers"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kafka_env(port: int) -> dict[str, str]:
    """A single KRaft node, configured as docker-compose.yml configures it; clients reach it
    on the host's ``port`` (advertised), the broker itself on its internal BROKER listener."""
    return {
        "CLUSTER_ID": CLUSTER_ID,
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,BROKER://:9094,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port},BROKER://localhost:9094",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": (
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT"
        ),
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "BROKER",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS": "3",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_MESSAGE_MAX_BYTES": "1049600",
        "KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m",
    }


def _wait_for_kafka(bootstrap: str, deadline_s: float = 120.0) -> None:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
            try:
                admin.list_topics()
                return
            finally:
                admin.close()
        except (KafkaError, OSError) as exc:
            last = exc
            time.sleep(1)
    raise RuntimeError(f"the Kafka container did not answer on {bootstrap}: {last!r}")


@contextlib.contextmanager
def container_stack() -> Iterator[tuple[str, str]]:
    """Start Kafka and PostgreSQL containers; yield (bootstrap servers, admin database URL)."""
    import docker
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.core.container import DockerContainer

    kafka_image = os.environ.get("KAFKA_IMAGE", KAFKA_IMAGE)
    postgres_image = os.environ.get("POSTGRES_IMAGE", POSTGRES_IMAGE)
    client = docker.from_env()
    ryuk = os.environ.get("RYUK_CONTAINER_IMAGE", "testcontainers/ryuk:0.8.1")
    try:
        client.images.get(ryuk)
    except docker.errors.ImageNotFound:
        try:
            client.images.pull(ryuk)
        except docker.errors.APIError:
            os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    port = _free_port()
    kafka = DockerContainer(kafka_image)
    for key, value in _kafka_env(port).items():
        kafka.with_env(key, value)
    kafka.with_bind_ports(9092, port)
    postgres = PostgresContainer(
        postgres_image,
        username="installments",
        password="installments",
        dbname="installments",
        driver="psycopg",
    )
    with kafka, postgres:
        bootstrap = f"127.0.0.1:{port}"
        _wait_for_kafka(bootstrap)
        url = postgres.get_connection_url(host="127.0.0.1")
        yield bootstrap, url
