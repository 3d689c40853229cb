"""Helpers for integration tests: real Kafka, real PostgreSQL, bounded polling.

Each test gets its own topic prefix and its own PostgreSQL database, so tests are
independent. Nothing here sleeps for correctness: every wait polls with a deadline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from schemas import Envelope, decode
from shared.runtime import Runner, Service
from shared.runtime.settings import Settings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that reproduce ``settings`` in a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSTALLMENTS_")}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "DATABASE_URL": settings.database_url,
            "INSTALLMENTS_TOPIC_PREFIX": settings.topic_prefix,
            "INSTALLMENTS_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "INSTALLMENTS_POLL_TIMEOUT_MS": str(settings.poll_timeout_ms),
            "INSTALLMENTS_SESSION_TIMEOUT_MS": str(settings.session_timeout_ms),
            "INSTALLMENTS_ENVIRONMENT": settings.environment,
            "INSTALLMENTS_LOG_FORMAT": "json",
            "PYTHONPATH": REPO,
        }
    )
    if settings.policy_file:
        env["INSTALLMENTS_POLICY_FILE"] = settings.policy_file
    env["INSTALLMENTS_KAFKA_SECURITY_PROTOCOL"] = settings.kafka_security_protocol
    for name in ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_ssl_cafile"):
        if getattr(settings, name):
            env[f"INSTALLMENTS_{name.upper()}"] = getattr(settings, name)
    if settings.kafka_sasl_password:
        env["INSTALLMENTS_KAFKA_SASL_PASSWORD"] = settings.kafka_sasl_password.get_secret_value()
    return env


def envelope(
    event_type: str,
    subject: str,
    data: dict[str, Any],
    *,
    event_id: str | None = None,
    time_: str | None = None,
    source: str = "card-system",
) -> dict[str, Any]:
    """A raw contract envelope (a dict), as an outside producer would write it."""
    return {
        "id": event_id or str(uuid.uuid4()),
        "type": event_type,
        "source": source,
        "time": time_ or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "subject": subject,
        "schema_version": 1,
        "data": data,
    }


class Producer:
    """Publishes raw envelopes or bytes to contract topics of a test's namespace."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer = KafkaProducer(
            **settings.kafka_client_config(), acks="all", enable_idempotence=True, linger_ms=2
        )

    def send(
        self, topic: str, value: dict[str, Any] | bytes, key: str | bytes | None = None
    ) -> None:
        if isinstance(value, dict):
            key = key if key is not None else value["subject"]
            value = json.dumps(value).encode()
        if isinstance(key, str):
            key = key.encode()
        self._producer.send(self.settings.topic(topic), key=key, value=value)

    def send_all(self, topic: str, values: Iterable[dict[str, Any]]) -> None:
        for v in values:
            self.send(topic, v)
        self.flush()

    def flush(self) -> None:
        self._producer.flush(timeout=30)

    def close(self) -> None:
        self._producer.close()


class Collector:
    """Reads a topic of the test's namespace from the beginning (no consumer group)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = settings.topic(topic)
        self.contract_topic = topic
        self._consumer = KafkaConsumer(
            **settings.kafka_client_config(), enable_auto_commit=False, group_id=None
        )
        parts = None
        deadline = time.monotonic() + 30
        while not parts and time.monotonic() < deadline:
            parts = self._consumer.partitions_for_topic(self.topic)
        assert parts, f"topic {self.topic} not found"
        tps = [TopicPartition(self.topic, p) for p in parts]
        self._consumer.assign(tps)
        self._consumer.seek_to_beginning(*tps)
        self.records: list[Any] = []

    def poll(self) -> None:
        for recs in self._consumer.poll(timeout_ms=100).values():
            self.records.extend(recs)

    def events(self) -> list[Envelope]:
        return [decode(self.contract_topic, r.key, r.value) for r in self.records]

    def wait_for(
        self, predicate: Callable[[list[Any]], bool], timeout: float = 60.0, what: str = ""
    ) -> list[Any]:
        """Poll until ``predicate(records)`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            if predicate(self.records):
                return self.records
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what or 'records'} on {self.topic};"
            f" have {len(self.records)}"
        )

    def wait_count(self, n: int, timeout: float = 60.0) -> list[Any]:
        return self.wait_for(lambda rs: len(rs) >= n, timeout, f"{n} records")

    def settle(self, quiet_s: float = 1.5) -> list[Any]:
        """Keep polling until nothing new arrives for ``quiet_s`` (to check 'no more')."""
        last, since = len(self.records), time.monotonic()
        while time.monotonic() - since < quiet_s:
            self.poll()
            if len(self.records) != last:
                last, since = len(self.records), time.monotonic()
        return self.records

    def close(self) -> None:
        self._consumer.close()


class ServiceThread:
    """Runs a service in a thread of the test process (fast start, clean stop)."""

    def __init__(self, service: Service, settings: Settings) -> None:
        self.runner = Runner(service, settings)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name=service.name)

    def _run(self) -> None:
        try:
            self.runner.run(install_signal_handlers=False)
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def start(self) -> ServiceThread:
        self.thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.runner.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "service thread did not stop"
        if self.error:
            raise self.error


@contextmanager
def running(*services: Service, settings: Settings):
    threads = [ServiceThread(s, settings).start() for s in services]
    try:
        yield threads
    finally:
        for t in threads:
            t.stop()


#: Processes started by tests; the autouse fixture in conftest kills leftovers.
STARTED: list[subprocess.Popen[bytes]] = []
#: Where service processes log when a test names no file (set by conftest, so the
#: session-end log scan reads them).
LOG_DIR: str | None = None


def start_process(
    service: str,
    settings: Settings,
    extra_env: dict[str, str] | None = None,
    log_path: str | None = None,
) -> subprocess.Popen[bytes]:
    """Run ``python -m services.<service>`` as a real OS process."""
    env = settings_env(settings)
    env.update(extra_env or {})
    if log_path is None and LOG_DIR is not None:
        log_path = os.path.join(LOG_DIR, f"{service}-{len(STARTED)}.log")
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", f"services.{service}"], env=env, cwd=REPO, stdout=out, stderr=out
    )
    STARTED.append(proc)
    return proc


def kill_leftovers() -> None:
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
