"""Kafka over SASL_SSL (SCRAM-SHA-512) with TLS verification and per-service ACLs.

A second, throwaway broker (shared/localstack/secure.py) runs for this module only: its own CA
made by the test, SCRAM users added at format time, the StandardAuthorizer denying what
no ACL grants. The dev broker on 9092 is not touched.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import (
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePatternFilter,
    ResourceType,
)
from kafka.errors import GroupAuthorizationFailedError, KafkaError, TopicAuthorizationFailedError
from pydantic import ValidationError

from schemas.asyncapi import SERVICES
from shared.localstack.secure import (
    SCRAM_MECHANISM,
    Grant,
    SecureBroker,
    free_port,
    service_grants,
    start_secure_broker,
)
from shared.runtime.settings import Settings
from shared.runtime.topics import contract_topics, ensure_topics
from tests.builders import messages as f
from tests.builders.services import PURCHASES as SERVICE
from tests.support import Collector, Producer, running, wait_until

pytestmark = pytest.mark.integration

IN = "card.purchases.v1"
OUT = "purchases.recorded.v1"
SECURITY_MD = Path(__file__).resolve().parents[2] / "docs" / "SECURITY.md"
FAIL_WITHIN_MS = 4000  # how long a refused client may try before giving up


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    secure = start_secure_broker(tmp_path_factory.mktemp("secure-kafka"), free_port())
    try:
        yield secure
    finally:
        secure.stop()


@pytest.fixture(scope="module")
def namespace(broker: SecureBroker) -> tuple[Settings, list[str]]:
    """The admin's settings for this module's topics, and the topics it created.

    Creating them over SASL_SSL is the first proof; the ``purchases`` user then gets
    exactly the ACLs of docs/SECURITY.md (literal names with the prefix).
    """
    admin_settings = broker.settings(
        "admin",
        topic_prefix=f"s{uuid.uuid4().hex[:8]}.",
        topic_partitions=1,
        environment="test",
    )
    created = ensure_topics(admin_settings, timeout_s=30)
    grants = service_grants("purchases", admin_settings.topic_prefix)
    acls = [grant.acl("User:purchases") for grant in grants]
    admin = KafkaAdminClient(**admin_settings.kafka_client_config())
    try:
        result = admin.create_acls(acls)
    finally:
        admin.close()
    assert not result["failed"], result
    # The controller commits ACLs before the broker's authorizer applies them: wait for that.
    wait_until(lambda: _purchases_acls(broker) == set(grants), 15, "the ACLs to apply")
    return admin_settings, created


def _purchases_acls(broker: SecureBroker) -> set[Grant]:
    admin = KafkaAdminClient(**broker.client_config("admin"))
    try:
        found, error = admin.describe_acls(
            ACLFilter(
                "User:purchases",
                None,
                ACLOperation.ANY,
                ACLPermissionType.ANY,
                ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY),
            )
        )
    finally:
        admin.close()
    assert error.errno == 0, error
    assert all(a.permission_type == ACLPermissionType.ALLOW and a.host == "*" for a in found)
    return {
        Grant(
            a.operation.name.title().replace("_", ""),
            a.resource_pattern.resource_type.name.title(),
            a.resource_pattern.resource_name,
        )
        for a in found
    }


def test_topics_are_created_over_sasl_ssl(broker, namespace):
    admin_settings, created = namespace
    assert created == sorted(admin_settings.topic(name) for name in contract_topics())
    consumer = KafkaConsumer(**admin_settings.kafka_client_config(), group_id=None)
    try:
        assert set(created) <= consumer.topics()
    finally:
        consumer.close()


def test_the_purchases_service_runs_as_its_own_user_with_only_its_acls(
    broker, namespace, pg_database
):
    """The card system (here: admin) posts a purchase; the service, logged in as
    ``purchases`` in production mode, records it; admin reads the result."""
    admin_settings, _ = namespace
    # Production also requires TLS to PostgreSQL (sslmode): validated with a URL that
    # asks for it, then pointed at the test database (the local server has no TLS).
    service_settings = broker.settings(
        "purchases",
        topic_prefix=admin_settings.topic_prefix,
        topic_partitions=1,
        database_url=f"{pg_database}?sslmode=verify-full",
        environment="production",
        poll_timeout_ms=100,
        session_timeout_ms=6000,
    ).model_copy(update={"database_url": pg_database})
    assert service_settings.kafka_client_config()["sasl_plain_username"] == "purchases"
    assert SERVICE.consumer_group == "installments-purchases"
    producer, out = Producer(admin_settings), Collector(admin_settings, OUT)
    try:
        acc = f.new_id("acc")
        posted = f.purchase(acc, "250.00")
        producer.send_all(IN, [posted])
        with running(SERVICE, settings=service_settings):
            out.wait_count(1, timeout=45)
        [event] = out.events()
        assert event.type == "purchase.recorded"
        assert event.data.purchase_id == posted["data"]["purchase_id"]
        assert str(event.data.amount) == "250.00"
    finally:
        producer.close()
        out.close()


def test_the_service_user_is_denied_what_its_acls_do_not_grant(broker, namespace):
    admin_settings, _ = namespace
    prefix = admin_settings.topic_prefix
    assert _purchases_acls(broker) == set(service_grants("purchases", prefix))
    config = broker.client_config("purchases")

    producer = KafkaProducer(**config, enable_idempotence=True, acks="all", max_block_ms=10000)
    try:  # allowed: its dead-letter topic; denied: a topic another service owns
        assert producer.send(prefix + IN + ".dlq", b"x").get(timeout=10).offset >= 0
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(prefix + "installments.plans.v1", b"x").get(timeout=10)
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(prefix + IN, b"x").get(timeout=10)  # Read only on its input
    finally:
        producer.close(timeout=5)

    consumer = KafkaConsumer(**config, group_id=None)
    try:  # topics it may not read are not even visible to it (no Describe)
        visible = {t for t in consumer.topics() if t.startswith(prefix)}
    finally:
        consumer.close()
    assert visible == {prefix + t for t in (IN, OUT, IN + ".dlq")}

    other_group = KafkaConsumer(**config, group_id=prefix + "installments-offers")
    try:  # Read on its own group only
        other_group.subscribe([prefix + IN])
        with pytest.raises(GroupAuthorizationFailedError):
            for _ in range(20):
                other_group.poll(timeout_ms=500)
    finally:
        other_group.close()

    admin = KafkaAdminClient(**config)
    try:  # no Create
        with pytest.raises(TopicAuthorizationFailedError):
            admin.create_topics({prefix + "rogue": {"num_partitions": 1, "replication_factor": 1}})
    finally:
        admin.close()


def _refused(broker: SecureBroker, caplog: pytest.LogCaptureFixture, **overrides) -> str:
    """Connect as ``purchases`` with ``overrides``; expect a failure quickly; return logs."""
    caplog.set_level(logging.WARNING, logger="kafka")
    started = time.monotonic()
    with pytest.raises(KafkaError):
        admin = KafkaAdminClient(
            **broker.settings("purchases", **overrides).kafka_client_config(),
            bootstrap_timeout_ms=FAIL_WITHIN_MS,
            request_timeout_ms=FAIL_WITHIN_MS,
        )
        try:
            admin.list_topics()
        finally:
            admin.close()
    assert time.monotonic() - started < FAIL_WITHIN_MS / 1000 + 5
    return caplog.text


def _broker_log(broker: SecureBroker) -> str:
    return broker.log_file.read_text(errors="replace")


def test_a_wrong_password_is_refused(broker, caplog):
    """The broker says why (its log); the client only fails to bootstrap. kafka-python
    3.0.12 often never reports SaslAuthenticationFailedError: when the broker's error
    response and its close arrive in one read, the transport drops the data."""
    failures_before = _broker_log(broker).count("invalid credentials")
    logs = _refused(broker, caplog, kafka_sasl_password="not-the-password")
    assert "CERTIFICATE_VERIFY_FAILED" not in logs  # TLS was fine; SASL refused it
    wait_until(
        lambda: _broker_log(broker).count("invalid credentials") > failures_before,
        10,
        "the broker to log the failed authentication",
    )
    assert f"with SASL mechanism {SCRAM_MECHANISM}" in _broker_log(broker)


def test_a_client_that_does_not_trust_the_test_ca_fails_the_tls_handshake(broker, caplog):
    logs = _refused(broker, caplog, kafka_ssl_cafile=None)  # system CAs only
    assert "CERTIFICATE_VERIFY_FAILED" in logs


def test_the_broker_certificate_names_127_0_0_1_and_localhost(broker):
    """Hostname verification is on: the SAN names the broker; any other name fails."""
    port = int(broker.bootstrap.rpartition(":")[2])

    def handshake(context: ssl.SSLContext, name: str) -> None:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
            context.wrap_socket(sock, server_hostname=name) as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")

    trusting = ssl.create_default_context(cafile=str(broker.ca_file))
    handshake(trusting, "127.0.0.1")
    handshake(trusting, "localhost")
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        handshake(trusting, "kafka.example.com")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(ssl.create_default_context(), "127.0.0.1")


def test_production_refuses_plaintext_kafka(pg_database):
    with pytest.raises(ValidationError, match="PLAINTEXT"):
        Settings(
            environment="production", database_url=pg_database, kafka_security_protocol="PLAINTEXT"
        )


def test_the_acl_table_in_the_docs_matches_the_code():
    """docs/SECURITY.md lists, per service, exactly :func:`service_grants` (no prefix)."""
    row = re.compile(r"^\| `User:([\w-]+)` \| (\w+) \| (\w+) `([^`]+)` \|", re.MULTILINE)
    rows = row.findall(SECURITY_MD.read_text())
    for service in SERVICES:
        documented = {Grant(op, kind, name) for user, op, kind, name in rows if user == service}
        assert documented == set(service_grants(service)), service
