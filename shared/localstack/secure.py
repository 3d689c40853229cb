"""A throwaway single-node Kafka (KRaft) broker with SASL/SCRAM-SHA-512 over TLS.

For tests and demos of the secure client configuration (docs/SECURITY.md). It runs
next to the plaintext dev broker of :mod:`shared.localstack.stack` and shares only its cached
jars, JVM options and log4j2 configuration; everything else lives in ``workdir``:

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

import base64
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas import TOPICS, dlq_topic
from shared.localstack.stack import _ASSETS, _jvm, _log, _port_open, _raise_fd_limit, _run, _tail
from shared.runtime.settings import Settings

SCRAM_MECHANISM = "SCRAM-SHA-512"
BROKER_CN = "kafka-broker"  # the broker's certificate subject: its principal on the controller
START_DEADLINE_S = 90.0
STOP_DEADLINE_S = 30.0
# The dev broker's JVM options with a smaller heap; logs go to our own folder. A broker that
# lives for one test module gains nothing from the C2 compiler: C1 only starts it in ~60% of
# the time (measured: 9 s instead of 16 s on two busy cores).
_JVM_OVERRIDES = {"-Xms": "-Xms64m", "-Xmx": "-Xmx512m"}
_JVM_EXTRA = ["-XX:TieredStopAtLevel=1"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": self.bootstrap,
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": SCRAM_MECHANISM,
            "kafka_sasl_username": user,
            "kafka_sasl_password": self.users[user],
            "kafka_ssl_cafile": str(self.ca_file),
        }
        values.update(overrides)
        return Settings(**values)

    def stop(self) -> None:
        """SIGTERM the broker's process group; SIGKILL it after a deadline. Idempotent."""
        if self.process.poll() is not None:
            return
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            _log(f"secure kafka: pid {self.pid} ignored SIGTERM; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        _log(f"secure kafka: stopped pid {self.pid} in {time.monotonic() - started:.1f}s")


# --------------------------------------------------------------------------- ACLs


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL on a literal resource, in ``kafka-acls.sh`` words."""

    operation: str  # Read, Write, Describe, IdempotentWrite, ...
    resource_type: str  # Topic, Group, Cluster
    name: str  # the topic or group name; "kafka-cluster" for the cluster

    def acl(self, principal: str) -> Any:
        """The kafka-python ``ACL`` (any host) granting this to ``principal``."""
        from kafka.admin import ACL, ACLOperation, ACLPermissionType, ResourcePattern, ResourceType

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
    from schemas.asyncapi import CONSUMERS, SERVICES

    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; one of: {', '.join(SERVICES)}")
    consumes = CONSUMERS[service]
    emits = [name for name, spec in TOPICS.items() if spec.producer == service]
    grants = [Grant("Read", "Topic", topic_prefix + t) for t in consumes]
    grants.append(Grant("Read", "Group", f"{topic_prefix}installments-{service}"))
    grants += [Grant("Write", "Topic", topic_prefix + t) for t in emits]
    grants += [Grant("Write", "Topic", topic_prefix + dlq_topic(t)) for t in consumes]
    grants.append(Grant("IdempotentWrite", "Cluster", "kafka-cluster"))
    return grants


# --------------------------------------------------------------------------- TLS material


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if not openssl:
        raise RuntimeError("openssl is needed for the test CA: apt-get install -y openssl")
    _run([openssl, *args], f"openssl {args[0]}", cwd=cwd)


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


def _child_setup() -> None:
    """In the broker's process before exec: many file descriptors (as the dev broker), and
    SIGTERM when the process that started it dies, so that a killed test run does not
    leave a throwaway broker behind (Linux ``PR_SET_PDEATHSIG``; best effort elsewhere)."""
    _raise_fd_limit()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _log4j2_config(logs: Path) -> Path:
    """The dev broker's log4j2.xml plus the network layer's INFO lines, which are where
    the broker reports each failed authentication (SASL or TLS) and its reason."""
    xml = (_ASSETS / "log4j2.xml").read_text()
    extra = '    <Logger name="org.apache.kafka.common.network.Selector" level="INFO"/>\n'
    if "</Loggers>" not in xml:
        raise RuntimeError(f"unexpected {_ASSETS / 'log4j2.xml'}: no </Loggers>")
    path = logs / "log4j2.xml"
    path.write_text(xml.replace("  </Loggers>", extra + "  </Loggers>", 1))
    return path


def _jvm_cmd(logs: Path, main: str, *args: str) -> list[str]:
    """:func:`shared.localstack.stack._jvm` (classpath, JVM options) with our heap, log folder and
    logging configuration."""
    swaps = {
        **_JVM_OVERRIDES,
        "-Dkafka.logs.dir=": f"-Dkafka.logs.dir={logs}",
        "-Dlog4j2.configurationFile=": f"-Dlog4j2.configurationFile={_log4j2_config(logs)}",
    }
    java, *rest = _jvm(main, *args)
    return [
        java,
        *_JVM_EXTRA,
        *(
            next((new for prefix, new in swaps.items() if arg.startswith(prefix)), arg)
            for arg in rest
        ),
    ]


def _server_properties(
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
    return f"""\
# Single-node KRaft broker+controller with SASL/SCRAM over TLS (shared/localstack/secure.py).
process.roles=broker,controller
node.id=2
controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}
listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
log.dirs={workdir / "data"}

# SASL: SCRAM-SHA-512 only; the JAAS username/password are the broker's own login.
sasl.enabled.mechanisms={SCRAM_MECHANISM}
sasl.mechanism.inter.broker.protocol={SCRAM_MECHANISM}
listener.name.sasl_ssl.sasl.enabled.mechanisms={SCRAM_MECHANISM}
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}

# TLS: one keystore for every listener; the controller listener wants a client cert.
ssl.keystore.type=PKCS12
ssl.keystore.location={keystore}
ssl.keystore.password={store_password}
ssl.key.password={store_password}
ssl.truststore.type=PEM
ssl.truststore.location={ca}
ssl.endpoint.identification.algorithm=https
ssl.enabled.protocols=TLSv1.3,TLSv1.2
listener.name.controller.ssl.client.auth=required

# ACLs: nothing is allowed without one, except to the super users.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:broker;User:CN={BROKER_CN}
auto.create.topics.enable=false

# One broker: every internal topic has one replica.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
"""


def _answers(broker: SecureBroker, timeout_ms: int = 3000) -> bool:
    """True if the broker answers a metadata request from ``admin`` over SASL_SSL."""
    from kafka import KafkaAdminClient

    if not _port_open(int(broker.bootstrap.rpartition(":")[2])):
        return False
    try:
        admin = KafkaAdminClient(
            **broker.client_config("admin"),
            client_id="secure-stack-probe",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
        )
    except Exception:
        return False
    try:
        admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        admin.close()


def start_secure_broker(
    workdir: Path, port: int, service_users: Iterable[str] = ("purchases",)
) -> SecureBroker:
    """Make TLS material, configure, format (with the SCRAM users) and start a broker.

    Blocks until ``admin`` can list topics over SASL_SSL on ``127.0.0.1:<port>``.
    ``workdir`` should be empty or unused: its data folder is formatted afresh.
    """
    workdir = Path(workdir).resolve()
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    store_password = secrets.token_hex(16)
    ca, keystore = make_tls_material(workdir / "tls", store_password)
    users = {name: secrets.token_hex(16) for name in ("admin", "broker", *service_users)}
    controller = free_port()
    while controller == port:
        controller = free_port()

    props = workdir / "server.properties"
    props.write_text(
        _server_properties(workdir, port, controller, ca, keystore, store_password, users["broker"])
    )
    props.chmod(0o600)  # it holds the keystore password and the broker's SCRAM password
    shutil.rmtree(workdir / "data", ignore_errors=True)
    cluster_id = "-"
    while cluster_id.startswith("-"):  # Kafka's Uuid text form may not start with '-'
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    scram = [
        arg
        for name, password in users.items()
        for arg in ("--add-scram", f"{SCRAM_MECHANISM}=[name={name},password={password}]")
    ]
    fmt = ["format", "--standalone", "-t", cluster_id, "-c", str(props), *scram]
    _run(_jvm_cmd(logs, "kafka.tools.StorageTool", *fmt), "kafka storage format (secure)")

    with open(logs / "kafka.out", "ab") as out:
        proc = subprocess.Popen(
            _jvm_cmd(logs, "kafka.Kafka", str(props)),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_child_setup,
        )
    broker = SecureBroker(
        bootstrap=f"127.0.0.1:{port}",
        ca_file=ca,
        users=users,
        workdir=workdir,
        controller_port=controller,
        process=proc,
    )
    _log(f"secure kafka: starting (pid {proc.pid}, SASL_SSL on {broker.bootstrap}, in {workdir})")
    try:
        while not _answers(broker):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"secure kafka exited during start-up (exit {proc.returncode})"
                    f":\n{_tail(logs / 'kafka.out')}\n{_tail(broker.log_file)}"
                )
            if time.monotonic() > started + START_DEADLINE_S:
                raise TimeoutError(
                    f"secure kafka: no answer in {START_DEADLINE_S:.0f}s:\n{_tail(broker.log_file)}"
                )
            time.sleep(0.25)
    except BaseException:
        broker.stop()
        raise
    _log(f"secure kafka: up on {broker.bootstrap} in {time.monotonic() - started:.1f}s")
    return broker
