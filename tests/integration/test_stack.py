"""The local stack (shared/localstack/stack.py) against a real broker and a real PostgreSQL.

The stack is left running at the end: other suites reuse it.
"""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from sqlalchemy import create_engine, text

import shared.localstack.stack as local_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bootstrap() -> str:
    return local_stack.kafka_up()


@pytest.fixture
def admin(bootstrap: str):
    client = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-stack")
    yield client
    client.close()


def test_kafka_up_is_idempotent(bootstrap: str) -> None:
    started = time.monotonic()
    assert local_stack.kafka_up() == bootstrap
    assert time.monotonic() - started < 5, "a running broker must be reused, not restarted"


def test_broker_answers_metadata(admin: KafkaAdminClient) -> None:
    cluster = admin.describe_cluster()
    assert [b["broker_id"] for b in cluster["brokers"]] == [1]
    assert isinstance(admin.list_topics(), list)


def test_create_topic_produce_and_consume(bootstrap: str, admin: KafkaAdminClient) -> None:
    topic = f"stack-test-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        meta = producer.send(topic, key=b"acc-1", value=b"hello").get(timeout=30)
        producer.close()
        assert meta.offset == 0

        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"stack-test-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        try:
            received = []
            deadline = time.monotonic() + 30
            while not received and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=1000).values():
                    received.extend(records)
            assert [(r.key, r.value) for r in received] == [(b"acc-1", b"hello")]
        finally:
            consumer.close()
    finally:
        admin.delete_topics([topic])


def test_postgres_up_gives_a_working_url() -> None:
    url = local_stack.postgres_up()
    assert url.startswith("postgresql+psycopg://") and url.endswith("/installments")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()
    assert local_stack.postgres_up() == url  # idempotent


def test_status_reports_both_running(bootstrap: str) -> None:
    local_stack.postgres_up()
    info = local_stack.status()
    assert info["kafka"]["answers"] and info["kafka"]["bootstrap"] == bootstrap
    assert info["postgres"]["answers"]


def test_ensure_stack_honours_env(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_start() -> str:
        raise AssertionError("nothing should be started when the env names the servers")

    monkeypatch.setattr(local_stack, "kafka_up", must_not_start)
    monkeypatch.setattr(local_stack, "postgres_up", must_not_start)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker.example:19092")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///elsewhere.db")
    assert local_stack.ensure_stack() == ("broker.example:19092", "sqlite:///elsewhere.db")
    monkeypatch.delenv("DATABASE_URL")
    assert local_stack.ensure_stack(need_postgres=False) == ("broker.example:19092", None)
