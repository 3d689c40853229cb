"""A throwaway single-node Kafka (KRaft) broker with SASL/SCRAM-SHA-512 over TLS.

For tests and demos of the secure client configuration (docs/SECURITY.md). It runs
next to the plaintext dev broker of :mod:`shared.localstack.stack` and shares its
configuration builder and process start (:mod:`shared.localstack.broker`) and its cached
jars; everything else lives in ``workdir``:

- ``tls/``: a CA made for this broker only (``ca.pem``, the file clients trust) and
  the broker's certificate (CN=kafka-broker, SAN ``IP:127.0.0.1, DNS:localhost``) in a
  PKCS12 keystore;
- ``server.properties``: listener ``SASL_SSL`` on ``port`` (clients and inter-broker,
  SCRAM-SHA-512 only) and ``CONTROLLER`` on a free port over mutual TLS (KRaft cannot
  use SCRAM for the controller: the credentials live in the metadata it serves);
  ``StandardAuthorizer`` with ``allow.everyone.if.no.acl.found=false``: principals
  other than the super users get nothing unless an ACL grants it;
- ``data/`` (formatted with the SCRAM users), ``logs/`` (server.log, which also records
  every failed authentication, kafka.out).

Users (all SCRAM-SHA-512, random passwords): ``admin`` (super user: topics, ACLs),
``broker`` (super user: the broker's own inter-broker login) and one ordinary user per
name in ``service_users`` (default: ``purchases``), with no rights until ACLs grant them.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka.admin import ACL, ACLOperation, ACLPermissionType, ResourcePattern, ResourceType

from schemas import TOPICS, dlq_topic
from schemas.asyncapi import CONSUMERS, SERVICES
from shared import registry
from shared.localstack.broker import (
    THROWAWAY_JVM,
    kafka_answers,
    server_properties,
    start_broker,
    stop_process_group,
)
from shared.localstack.common import free_port, log, run
from shared.runtime.settings import Settings

SCRAM_MECHANISM = "SCRAM-SHA-512"
BROKER_CN = "kafka-broker"  # the broker's certificate subject: its principal on the controller
START_DEADLINE_S = 90.0


@dataclass
class SecureBroker:
    """A running secure broker; :meth:`stop` ends it (its workdir is kept)."""

    bootstrap: str
    ca_file: Path
    users: dict[str, str] = field(repr=False)  # SCRAM-SHA-512 user -> password
    workdir: Path
    controller_port: int
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log_file(self) -> Path:
        return self.workdir / "logs" / "server.log"

    def client_config(self, user: str = "admin", **overrides: Any) -> dict[str, Any]:
        """kafka-python connection options for ``user`` (verifying the broker against the CA)."""
        return {**self.settings(user).kafka_client_config(), **overrides}

    def settings(self, user: str = "admin", **overrides: Any) -> Settings:
        """:class:`Settings` that connect as ``user`` over SASL_SSL."""
        return _settings(self.bootstrap, self.ca_file, user, self.users[user], **overrides)

    def stop(self) -> None:
        """SIGTERM the broker's process group; SIGKILL it after a deadline. Idempotent."""
        if self.process.poll() is not None:
            return
        started = time.monotonic()
        stop_process_group(self.pid, lambda: self.process.poll() is None, name="secure kafka")
        log(f"secure kafka: stopped pid {self.pid} in {time.monotonic() - started:.1f}s")


def _settings(bootstrap: str, ca: Path, user: str, password: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": SCRAM_MECHANISM,
        "kafka_sasl_username": user,
        "kafka_sasl_password": password,
        "kafka_ssl_cafile": str(ca),
    }
    values.update(overrides)
    return Settings(**values)


# --------------------------------------------------------------------------- ACLs


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL on a literal resource, in ``kafka-acls.sh`` words."""

    operation: str  # Read, Write, Describe, IdempotentWrite, ...
    resource_type: str  # Topic, Group, Cluster
    name: str  # the topic or group name; "kafka-cluster" for the cluster

    def acl(self, principal: str) -> Any:
        """The kafka-python ``ACL`` (any host) granting this to ``principal``."""
        operation = ACLOperation[re.sub(r"(?<=.)(?=[A-Z])", "_", self.operation).upper()]
        pattern = ResourcePattern(ResourceType[self.resource_type.upper()], self.name)
        return ACL(principal, "*", operation, ACLPermissionType.ALLOW, pattern)


def service_grants(service: str, topic_prefix: str = "") -> list[Grant]:
    """Least privilege for a pipeline service (docs/SECURITY.md has the same table).

    Read on each consumed topic and on the group ``installments-<service>``; Write on the
    topics whose contract producer it is and on the ``.dlq`` of each consumed topic;
    IdempotentWrite on the cluster (the runtime's producer is idempotent; brokers since
    3.0 also accept Write on any topic for it, KIP-679). ``topic_prefix`` namespaces
    topics and group as :class:`Settings` does.
    """
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; one of: {', '.join(SERVICES)}")
    consumes = CONSUMERS[service]
    emits = [name for name, spec in TOPICS.items() if spec.producer == service]
    grants = [Grant("Read", "Topic", topic_prefix + t) for t in consumes]
    group = registry.group_name(Settings(topic_prefix=topic_prefix), service)
    grants.append(Grant("Read", "Group", group))
    grants += [Grant("Write", "Topic", topic_prefix + t) for t in emits]
    grants += [Grant("Write", "Topic", topic_prefix + dlq_topic(t)) for t in consumes]
    grants.append(Grant("IdempotentWrite", "Cluster", "kafka-cluster"))
    return grants


# --------------------------------------------------------------------------- TLS material


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if not openssl:
        raise RuntimeError("openssl is needed for the test CA: apt-get install -y openssl")
    run([openssl, *args], f"openssl {args[0]}", cwd=cwd)


def make_tls_material(tls: Path, password: str) -> tuple[Path, Path]:
    """A throwaway CA and a broker certificate signed by it; returns (ca.pem, broker.p12).

    The certificate names the broker ``127.0.0.1`` and ``localhost`` in its subject
    alternative names (clients verify the SAN, not the CN) and allows server and client
    authentication (the broker also presents it to its controller listener).
    """
    tls.mkdir(parents=True, exist_ok=True)
    ca_subject = "/CN=card-installments-test-CA"
    _openssl(
        *"req -x509 -newkey rsa:2048 -nodes -days 2 -keyout ca.key -out ca.pem".split(),
        *("-subj", ca_subject, "-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
        cwd=tls,
    )
    _openssl(
        *"req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr".split(),
        *("-subj", f"/CN={BROKER_CN}"),
        cwd=tls,
    )
    (tls / "broker.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl(
        *"x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -days 2 -sha256".split(),
        *("-set_serial", str(secrets.randbits(63)), "-extfile", "broker.ext"),
        *("-out", "broker.pem"),
        cwd=tls,
    )
    _openssl(
        *"pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem".split(),
        *("-name", "broker", "-out", "broker.p12", "-passout", f"pass:{password}"),
        cwd=tls,
    )
    for secret in ("ca.key", "broker.key"):
        (tls / secret).chmod(0o600)
    return tls / "ca.pem", tls / "broker.p12"


# --------------------------------------------------------------------------- broker


def _secure_properties(
    workdir: Path,
    port: int,
    controller_port: int,
    ca: Path,
    keystore: Path,
    store_password: str,
    broker_password: str,
) -> str:
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required"
        f' username="broker" password="{broker_password}";'
    )
    return server_properties(
        about="Single-node KRaft broker+controller, SASL/SCRAM over TLS (localstack/secure.py).",
        node_id=2,
        port=port,
        controller_port=controller_port,
        data_dir=workdir / "data",
        listener="SASL_SSL",
        controller_protocol="SSL",
        sections={
            "SASL: SCRAM-SHA-512 only; the JAAS username/password are the broker's own login.": {
                "sasl.enabled.mechanisms": SCRAM_MECHANISM,
                "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
                "listener.name.sasl_ssl.sasl.enabled.mechanisms": SCRAM_MECHANISM,
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": jaas,
            },
            "TLS: one keystore for every listener; the controller listener wants a client cert.": {
                "ssl.keystore.type": "PKCS12",
                "ssl.keystore.location": keystore,
                "ssl.keystore.password": store_password,
                "ssl.key.password": store_password,
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": ca,
                "ssl.endpoint.identification.algorithm": "https",
                "ssl.enabled.protocols": "TLSv1.3,TLSv1.2",
                "listener.name.controller.ssl.client.auth": "required",
            },
            "ACLs: nothing is allowed without one, except to the super users.": {
                "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "allow.everyone.if.no.acl.found": False,
                "super.users": f"User:admin;User:broker;User:CN={BROKER_CN}",
            },
        },
    )


def start_secure_broker(
    workdir: Path, port: int, service_users: Iterable[str] = ("purchases",)
) -> SecureBroker:
    """Make TLS material, configure, format (with the SCRAM users) and start a broker.

    Blocks until ``admin`` can list topics over SASL_SSL on ``127.0.0.1:<port>``.
    ``workdir`` should be empty or unused: its data folder is formatted afresh.
    """
    workdir = Path(workdir).resolve()
    started = time.monotonic()
    store_password = secrets.token_hex(16)
    ca, keystore = make_tls_material(workdir / "tls", store_password)
    users = {name: secrets.token_hex(16) for name in ("admin", "broker", *service_users)}
    controller = free_port()
    while controller == port:
        controller = free_port()
    props = _secure_properties(
        workdir, port, controller, ca, keystore, store_password, users["broker"]
    )
    scram = [
        arg
        for name, password in users.items()
        for arg in ("--add-scram", f"{SCRAM_MECHANISM}=[name={name},password={password}]")
    ]
    shutil.rmtree(workdir / "data", ignore_errors=True)  # formatted afresh, with the users
    bootstrap = f"127.0.0.1:{port}"
    admin: dict[str, Any] = _settings(bootstrap, ca, "admin", users["admin"]).kafka_client_config()
    admin["client_id"] = "secure-stack-probe"

    def answers() -> bool:  # to a metadata request from admin over SASL_SSL
        return kafka_answers(bootstrap, **admin)

    proc = start_broker(
        workdir,
        props,
        name="secure kafka",
        detail=f"SASL_SSL on {bootstrap}",
        jvm=THROWAWAY_JVM,
        format_args=("--standalone", *scram),
        detached=False,
        answers=answers,
        deadline_s=START_DEADLINE_S,
    )
    log(f"secure kafka: up on {bootstrap} in {time.monotonic() - started:.1f}s")
    return SecureBroker(
        bootstrap=bootstrap,
        ca_file=ca,
        users=users,
        workdir=workdir,
        controller_port=controller,
        process=proc,
    )
