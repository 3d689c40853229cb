"""The benchmark runner: :class:`Bench` loads a workload into a fresh namespace (its own
topics and database), measures the client's raw consume rate, a service's sustained rate
as real processes, and the end-to-end latency at a fixed offered load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from sqlalchemy import create_engine, text

from shared import registry
from shared.localstack.stack import ensure_stack
from shared.runtime.settings import Settings
from shared.runtime.topics import committed_offsets, delete_namespace, ensure_topics
from shared.tools.bench_workloads import WORKLOADS, _env, _purchase, accounts, service_of

REPO = Path(__file__).resolve().parents[2]


class Bench:
    def __init__(self, events: int, log: Callable[[str], None]) -> None:
        self.events = events
        self.log = log
        bootstrap, admin_url = ensure_stack(need_postgres=True)
        assert admin_url, "the benchmark needs PostgreSQL"
        self.bootstrap, self.admin_url = bootstrap, admin_url
        self.run = datetime.now().strftime("%Y%m%d%H%M%S")
        self.workdir = REPO / ".data" / f"bench-{self.run}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_urls: dict[str, str] = {}

    def _database(self, name: str) -> str:
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return f"{self.admin_url.rpartition('/')[0]}/{name}"

    def cleanup(self, namespace: str | None = None) -> None:
        """Delete a namespace's (default: every one's) topics and database. Each run's are
        deleted once it is measured: the broker would otherwise carry hundreds of idle
        benchmark partitions into the next runs (and the latency runs come last), and a
        broker that keeps thousands of them takes minutes to start."""
        namespaces = [namespace] if namespace is not None else list(self.db_urls)
        for name in namespaces:
            delete_namespace(self.settings(name))
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for name in namespaces:
                database = self.db_urls.pop(name).rpartition("/")[2]
                conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()

    def settings(self, namespace: str) -> Settings:
        """A namespace with its own topics AND its own database: a second run must not
        find the first run's rows (it would skip them as duplicates and look fast)."""
        if namespace not in self.db_urls:
            name = f"bench_{self.run}_{namespace.replace('-', '_')}"
            self.db_urls[namespace] = self._database(name)
        return Settings(
            kafka_bootstrap_servers=self.bootstrap,
            database_url=self.db_urls[namespace],
            topic_prefix=f"bench-{self.run}-{namespace}.",
            topic_partitions=6,
        )

    def load(self, settings: Settings, service: str) -> tuple[int, list[str]]:
        """Write the service's input to its namespace; returns (input count, topics)."""
        ensure_topics(settings)
        n_accounts, events = WORKLOADS[service](self.events)
        producer = KafkaProducer(
            **settings.kafka_client_config(),
            acks=1,
            linger_ms=20,
            batch_size=262144,
            compression_type=None,
        )
        topics: set[str] = set()
        count = 0
        # Accounts only for a service that reads them: what it does not consume would
        # never be committed, and the run would wait for it until its timeout.
        consumes = registry.consumed_topics(settings, service_of(service))
        reads_accounts = "card.accounts.v1" in consumes
        for stream in (accounts(n_accounts) if reads_accounts else iter(()), events):
            for topic, key, value in stream:
                producer.send(settings.topic(topic), key=key.encode(), value=value)
                topics.add(topic)
                count += 1
        producer.flush()
        producer.close()
        return count, sorted(topics)

    def raw_rate(self, settings: Settings, topics: list[str], expected: int) -> float:
        """The client's limit: consume the same messages with a bare KafkaConsumer."""
        consumer = KafkaConsumer(
            **settings.kafka_client_config(),
            group_id=None,
            enable_auto_commit=False,
            max_poll_records=5000,
            fetch_max_bytes=52428800,
            max_partition_fetch_bytes=4194304,
        )
        tps = [
            TopicPartition(settings.topic(t), p)
            for t in topics
            for p in consumer.partitions_for_topic(settings.topic(t)) or set()
        ]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        seen, started = 0, time.perf_counter()
        while seen < expected:
            for records in consumer.poll(timeout_ms=500, max_records=5000).values():
                seen += len(records)
        elapsed = time.perf_counter() - started
        consumer.close()
        return seen / elapsed

    def service_rate(
        self, settings: Settings, service: str, topics: list[str], expected: int, processes: int
    ) -> dict[str, Any]:
        """Start the service as ``processes`` OS processes; measure until its lag is 0."""
        workload, service = service, service_of(service)
        env = {k: v for k, v in os.environ.items() if not k.startswith("INSTALLMENTS_")}
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "DATABASE_URL": settings.database_url,
                "INSTALLMENTS_TOPIC_PREFIX": settings.topic_prefix,
                "INSTALLMENTS_LOG_LEVEL": "WARNING",
                "INSTALLMENTS_LOG_FORMAT": "json",
                "PYTHONPATH": str(REPO),
            }
        )
        log = open(self.workdir / f"{workload}-{processes}.log", "ab")
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", f"services.{service}"],
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=log,
            )
            for _ in range(processes)
        ]
        group = registry.group_name(settings, service)
        admin = KafkaAdminClient(**settings.kafka_client_config())
        peak_kib = [0] * processes
        try:
            samples: list[tuple[float, int, float]] = []
            deadline = time.monotonic() + 600
            done = 0
            while done < expected:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{service}: {done}/{expected} after 600 s")
                for i, p in enumerate(procs):
                    if p.poll() is not None:
                        raise RuntimeError(f"{service} exited {p.returncode}; see {log.name}")
                    peak_kib[i] = max(peak_kib[i], _vm_hwm_kib(p.pid))
                offsets = committed_offsets(admin, [group]).get(group, {})
                done = sum(om.offset for tp, om in offsets.items() if om.offset > 0)
                cpu = sum(_cpu_seconds(p.pid) for p in procs)
                samples.append((time.monotonic(), done, cpu))
                time.sleep(0.1)
            # From the last sample before any commit (the group had joined and was
            # working on its first batch) to the sample where everything was committed:
            # the first batch's time counts, so big first batches cannot inflate the rate.
            idle = [s for s in samples if s[1] == 0]
            t0, _, cpu0 = idle[-1] if idle else samples[0]
            t1, c1, cpu1 = samples[-1]
            rate = c1 / (t1 - t0) if t1 > t0 else float("nan")
            return {
                "events": expected,
                "processes": processes,
                "events_per_s": round(rate),
                "seconds": round(t1 - t0, 2),
                # The service processes' own CPU per event over the same span: unlike
                # events/s, barely moved by other work on the machine.
                "cpu_us_per_event": round((cpu1 - cpu0) * 1e6 / c1, 1) if c1 else None,
                "peak_rss_mib": [round(k / 1024, 1) for k in peak_kib],
            }
        finally:
            admin.close()
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()

    def latency(self, rate: int, seconds: int, offers_processes: int = 1) -> dict[str, Any]:
        """purchase.posted -> offer.made latency at a fixed offered load, with one
        purchases process and ``offers_processes`` offers processes."""
        settings = self.settings(f"e2e-{rate}-{offers_processes}")
        ensure_topics(settings)
        n_accounts = 2000
        producer = KafkaProducer(**settings.kafka_client_config(), acks=1, linger_ms=1)
        for topic, key, value in accounts(n_accounts):
            producer.send(settings.topic(topic), key=key.encode(), value=value)
        producer.flush()
        env = {k: v for k, v in os.environ.items() if not k.startswith("INSTALLMENTS_")}
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "DATABASE_URL": settings.database_url,
                "INSTALLMENTS_TOPIC_PREFIX": settings.topic_prefix,
                "INSTALLMENTS_LOG_LEVEL": "WARNING",
                "INSTALLMENTS_POLL_TIMEOUT_MS": "20",
                "PYTHONPATH": str(REPO),
            }
        )
        log = open(self.workdir / f"e2e-{rate}.log", "ab")
        names = ["purchases"] + [
            f"offers#{i + 1}" if offers_processes > 1 else "offers" for i in range(offers_processes)
        ]
        procs = {
            name: subprocess.Popen(
                [sys.executable, "-m", f"services.{name.partition('#')[0]}"],
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=log,
            )
            for name in names
        }
        reader = KafkaConsumer(
            **settings.kafka_client_config(), group_id=None, enable_auto_commit=False
        )
        out = settings.topic("installments.offers.v1")
        tps = [TopicPartition(out, p) for p in reader.partitions_for_topic(out) or set()]
        reader.assign(tps)
        reader.seek_to_end(*tps)
        try:
            # warm-up: wait until both services answer one purchase end to end, and
            # until every offers process is a member of a stable group (a late joiner's
            # rebalance inside the measurement would show as a latency spike)
            self._wait_offers(
                reader,
                1,
                lambda: self._send_purchases(producer, settings, 1, 10**6, n_accounts),
                120,
            )
            self._wait_group_stable(settings, "offers", offers_processes, 120)
            self._wait_offers(
                reader,
                1,
                lambda: self._send_purchases(producer, settings, 1, 2 * 10**6, n_accounts),
                120,
            )
            sent_at: dict[str, float] = {}
            lat_ms: list[float] = []
            total = rate * seconds
            started = time.monotonic()
            for i in range(total):
                target = started + i / rate
                delay = target - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                acc, data = _purchase(i, n_accounts)
                value = _env("purchase.posted", acc, data, i, "card-system")
                producer.send(settings.topic("card.purchases.v1"), key=acc.encode(), value=value)
                sent_at[data["purchase_id"]] = time.time()
                if i % 200 == 0:
                    self._collect(reader, sent_at, lat_ms, timeout_ms=0)
            producer.flush()
            offered = total / (time.monotonic() - started)
            deadline = time.monotonic() + 120
            while len(lat_ms) < total and time.monotonic() < deadline:
                self._collect(reader, sent_at, lat_ms, timeout_ms=100)
            lat_ms.sort()
            peaks = {s: round(_vm_hwm_kib(p.pid) / 1024, 1) for s, p in procs.items()}

            def pct(q: float) -> float:
                return round(lat_ms[min(len(lat_ms) - 1, int(q * len(lat_ms)))], 1)

            return {
                "offers_processes": offers_processes,
                "offered_per_s": round(offered),
                "purchases": total,
                "offers_seen": len(lat_ms),
                "p50_ms": pct(0.50),
                "p95_ms": pct(0.95),
                "p99_ms": pct(0.99),
                "max_ms": round(lat_ms[-1], 1),
                "peak_rss_mib": peaks,
            }
        finally:
            reader.close()
            producer.close()
            for p in procs.values():
                p.send_signal(signal.SIGTERM)
            for p in procs.values():
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()

    @staticmethod
    def _wait_group_stable(settings: Settings, service: str, members: int, timeout: float) -> None:
        """Until the service's consumer group is Stable with ``members`` members."""
        group = registry.group_name(settings, service)
        admin = KafkaAdminClient(**settings.kafka_client_config())
        try:
            deadline = time.monotonic() + timeout
            while True:
                desc = admin.describe_groups([group]).get(group) or {}
                count = len(desc.get("members") or [])
                if count == members and str(desc.get("group_state")) == "Stable":
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{group}: {count} of {members} members after {timeout} s")
                time.sleep(0.2)
        finally:
            admin.close()

    @staticmethod
    def _send_purchases(
        producer: KafkaProducer, settings: Settings, n: int, base: int, n_accounts: int
    ) -> None:
        for i in range(base, base + n):
            acc, data = _purchase(i, n_accounts)
            producer.send(
                settings.topic("card.purchases.v1"),
                key=acc.encode(),
                value=_env("purchase.posted", acc, data, i, "card-system"),
            )
        producer.flush()

    @staticmethod
    def _wait_offers(
        reader: KafkaConsumer, n: int, send: Callable[[], None], timeout: float
    ) -> None:
        send()
        seen, deadline = 0, time.monotonic() + timeout
        while seen < n:
            if time.monotonic() > deadline:
                raise TimeoutError("no offer.made within the warm-up")
            for records in reader.poll(timeout_ms=200).values():
                seen += len(records)

    @staticmethod
    def _collect(
        reader: KafkaConsumer, sent_at: dict[str, float], out: list[float], timeout_ms: int
    ) -> None:
        """Latency of each offer seen: its record timestamp minus when its purchase was sent."""
        for records in reader.poll(timeout_ms=timeout_ms, max_records=5000).values():
            for r in records:
                body = json.loads(r.value)
                pid = body["data"].get("purchase_id")
                if pid in sent_at and body["type"] in ("offer.made", "offer.not-eligible"):
                    out.append((r.timestamp / 1000 - sent_at[pid]) * 1000)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _vm_hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
