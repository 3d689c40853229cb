"""Benchmarks: each service's sustained throughput against the client's own limit.

Figures, not timed tests. On the local stack with PostgreSQL, in one run:

1. For each service, its input messages are written to a fresh namespace; the raw
   kafka-python consume rate of those same messages (no processing, no commits) is
   measured: the client's limit on this machine.
2. The service is started as a real process (1, then 2 processes on 6 partitions,
   each on its own namespace and database schema) and its sustained rate is taken
   from the consumer group's committed offsets until the lag is 0. Peak memory is
   the process's VmHWM.
3. End-to-end latency purchase.posted -> offer.made at a fixed offered load, from
   the records' own timestamps (both producers run on this machine's clock).

Results go to ``docs/benchmarks/latest.json`` and ``latest.md``.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from shared import registry
from shared.runtime.settings import Settings
from shared.runtime.topics import committed_offsets

REPO = Path(__file__).resolve().parents[2]
NS = uuid.UUID("3b0b1a9e-4c55-4f0e-9d4e-0b7a2f6c1d11")
DAY0 = date(2026, 3, 2)


def _env(kind: str, subject: str, data: dict[str, Any], n: int, source: str) -> bytes:
    return json.dumps(
        {
            "id": str(uuid.uuid5(NS, f"{kind}:{subject}:{n}")),
            "type": kind,
            "source": source,
            "time": "2026-03-02T10:00:00Z",
            "subject": subject,
            "schema_version": 1,
            "data": data,
        },
        separators=(",", ":"),
    ).encode()


def _letters(n: int) -> str:
    """An id of letters only (never mistaken for a card number)."""
    out = ""
    while True:
        out = "abcdefghijklmnopqrstuvwxyz"[n % 26] + out
        n //= 26
        if n == 0:
            return out


def accounts(count: int) -> Iterator[tuple[str, str, bytes]]:
    for i in range(count):
        acc = f"acc-{_letters(i)}"
        yield (
            "card.accounts.v1",
            acc,
            _env(
                "account.upserted",
                acc,
                {
                    "account_id": acc,
                    "status": "active",
                    "segment": "standard",
                    "tier": ["silver", "gold", "platinum", "diamond"][i % 4],
                    "credit_limit": "1000000.00",
                    "risk_score": 750,
                    "currency": "USD",
                    "contact": {"channel": "sms", "locale": "en-US", "contact_ref": f"cref-{acc}"},
                },
                0,
                "card-system",
            ),
        )


def _purchase(i: int, n_accounts: int) -> tuple[str, dict[str, Any]]:
    acc = f"acc-{_letters(i % n_accounts)}"
    return acc, {
        "purchase_id": f"pur-{_letters(i)}",
        "account_id": acc,
        "card_token": f"tok-{acc}",
        "card_last4": "4242",
        "amount": f"{500 + i % 3000}.{i % 100:02d}",
        "currency": "USD",
        "merchant": {
            "merchant_id": "m-electro",
            "name": "Electro World",
            "mcc": "5732",
            "category": "electronics",
        },
        "channel": "pos",
        "posted_at": "2026-03-02T10:00:00Z",
    }


def purchases_posted(n: int, n_accounts: int) -> Iterator[tuple[str, str, bytes]]:
    for i in range(n):
        acc, data = _purchase(i, n_accounts)
        yield "card.purchases.v1", acc, _env("purchase.posted", acc, data, i, "card-system")


def purchases_with_rejects(
    n: int, n_accounts: int, share: float = 0.01
) -> Iterator[tuple[str, str, bytes]]:
    """``purchases_posted`` with ``share`` of the records replaced by refunds of purchases
    never recorded: each is rejected by the handler (dead-lettered), one in a hundred."""
    every = max(1, round(1 / share))
    for i, (topic, acc, value) in enumerate(purchases_posted(n, n_accounts)):
        if i % every == every - 1:
            data = {
                "refund_id": f"ref-{_letters(i)}",
                "purchase_id": f"pur-never-{_letters(i)}",
                "account_id": acc,
                "amount": "10.00",
                "currency": "USD",
                "refunded_at": "2026-03-02T11:00:00Z",
            }
            value = _env("purchase.refunded", acc, data, i, "card-system")
        yield topic, acc, value


def purchases_recorded(n: int, n_accounts: int) -> Iterator[tuple[str, str, bytes]]:
    for i in range(n):
        acc, data = _purchase(i, n_accounts)
        yield "purchases.recorded.v1", acc, _env("purchase.recorded", acc, data, i, "purchases")


def due_soon(n: int, n_accounts: int) -> Iterator[tuple[str, str, bytes]]:
    for i in range(n):
        acc = f"acc-{_letters(i % n_accounts)}"
        due = DAY0 + timedelta(days=7)
        days_left = (7, 3, 1, 0)[(i // n_accounts) % 4]
        yield (
            "installments.plans.v1",
            acc,
            _env(
                "installment.due-soon",
                acc,
                {
                    "plan_id": f"plan-{_letters(i % n_accounts)}",
                    "seq": 1 + (i // (4 * n_accounts)),
                    "due_date": due.isoformat(),
                    "amount_outstanding": "125.50",
                    "currency": "USD",
                    "days_until_due": days_left,
                    "business_date": (due - timedelta(days=days_left)).isoformat(),
                },
                i,
                "offers",
            ),
        )


def delinquencies(n: int, n_accounts: int) -> Iterator[tuple[str, str, bytes]]:
    for i in range(n):
        acc = f"acc-{_letters(i % n_accounts)}"
        dpd = 1 + i // n_accounts
        oldest = DAY0
        yield (
            "installments.plans.v1",
            acc,
            _env(
                "account.delinquency",
                acc,
                {
                    "account_id": acc,
                    "business_date": (oldest + timedelta(days=dpd)).isoformat(),
                    "days_past_due": dpd,
                    "overdue_amount": "250.00",
                    "currency": "USD",
                    "oldest_unpaid_due_date": oldest.isoformat(),
                },
                i,
                "offers",
            ),
        )


#: service -> (number of accounts to preload, generator of its input events)
WORKLOADS: dict[str, Callable[[int], tuple[int, Iterator[tuple[str, str, bytes]]]]] = {
    "purchases": lambda n: (0, purchases_posted(n, max(1, n // 10))),
    # the same input with 1 % of it rejected by the handler (split, not replayed)
    "purchases-rejects": lambda n: (0, purchases_with_rejects(n, max(1, n // 10))),
    "offers": lambda n: (n // 10, purchases_recorded(n, max(1, n // 10))),
    "points": lambda n: (n // 10, purchases_recorded(n, max(1, n // 10))),
    "reminders": lambda n: (n // 8, due_soon(n, max(1, n // 8))),
    "collections": lambda n: (n // 100, delinquencies(n, max(1, n // 100))),
}


#: Workloads that measure a service on another input than its default.
WORKLOAD_SERVICE = {"purchases-rejects": "purchases"}


def service_of(workload: str) -> str:
    return WORKLOAD_SERVICE.get(workload, workload)


def with_reject_workloads(services: list[str]) -> list[str]:
    """The workloads to run for ``services``: each variant right after its service's own
    (purchases-rejects after purchases), so it is measured against it in the same run."""
    out: list[str] = []
    for name in services:
        if name not in out:
            out.append(name)
        out += [w for w, s in WORKLOAD_SERVICE.items() if s == name and w not in services]
    return out


class Bench:
    def __init__(self, events: int, log: Callable[[str], None]) -> None:
        from shared.localstack.stack import ensure_stack

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
        from sqlalchemy import create_engine, text

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
        from sqlalchemy import create_engine, text

        from shared.runtime.topics import delete_namespace

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
        from shared.runtime.topics import ensure_topics

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
        from shared.runtime.topics import ensure_topics

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


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(
                line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    from shared.localstack.jars import kafka_version

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "kafka": kafka_version(),
        "os": platform.platform(),
        "database": "PostgreSQL (local, fsync off)",
    }


def run_bench(
    events: int,
    services: list[str],
    e2e_rates: list[int],
    e2e_seconds: int,
    out_dir: Path,
    log: Callable[[str], None],
    e2e_offers_processes: tuple[int, ...] = (1,),
) -> dict[str, Any]:
    bench = Bench(events, log)
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "events_per_service": events,
        "services": {},
    }
    try:
        for service in services:
            entry: dict[str, Any] = {}
            for processes in (1, 2):
                settings = bench.settings(f"{service}-{processes}")
                count, topics = bench.load(settings, service)
                raw = bench.raw_rate(settings, topics, count)
                log(f"{service}: raw kafka-python consume {raw:,.0f} msg/s ({count} messages)")
                measured = bench.service_rate(settings, service, topics, count, processes)
                measured["raw_consume_per_s"] = round(raw)
                measured["ratio_to_raw"] = round(measured["events_per_s"] / raw, 3)
                log(
                    f"{service} x{processes}: {measured['events_per_s']:,} events/s"
                    f" = {measured['ratio_to_raw']:.0%} of raw;"
                    f" peak RSS {measured['peak_rss_mib']} MiB"
                )
                clean = results["services"].get(service_of(service), {})
                if service != service_of(service) and f"processes_{processes}" in clean:
                    base = clean[f"processes_{processes}"]
                    measured["ratio_to_clean"] = round(
                        measured["events_per_s"] / base["events_per_s"], 3
                    )
                    if measured["cpu_us_per_event"] and base["cpu_us_per_event"]:
                        measured["cpu_ratio_to_clean"] = round(
                            measured["cpu_us_per_event"] / base["cpu_us_per_event"], 3
                        )
                    log(
                        f"{service} x{processes}:"
                        f" {measured['ratio_to_clean']:.0%} of the clean rate"
                    )
                entry[f"processes_{processes}"] = measured
                bench.cleanup(f"{service}-{processes}")
            results["services"][service] = entry
        if e2e_rates:
            results["latency"] = []
            for processes in e2e_offers_processes:
                for rate in e2e_rates:
                    lat = bench.latency(rate, e2e_seconds, processes)
                    bench.cleanup(f"e2e-{rate}-{processes}")
                    results["latency"].append(lat)
                    log(
                        f"end-to-end at {lat['offered_per_s']:,}/s, {processes} offers"
                        f" process(es): p50 {lat['p50_ms']} ms,"
                        f" p95 {lat['p95_ms']} ms, p99 {lat['p99_ms']} ms"
                    )
    finally:
        bench.cleanup()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps(results, indent=2))
    (out_dir / "latest.md").write_text(markdown(results))
    return results


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Run {r['when']} on {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Python "
        f"{m['python']}, Kafka {m['kafka']}, {m['database']}. {r['events_per_service']:,} input"
        " events per service; topics with 6 partitions. `installments bench` writes this file.",
        "",
        "| service | processes | events/s | CPU µs/event | raw kafka-python msg/s | ratio |"
        " peak RSS MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for service, entry in r["services"].items():
        for key in sorted(entry):
            e = entry[key]
            clean = f" ({e['ratio_to_clean']:.0%} of clean)" if "ratio_to_clean" in e else ""
            cpu = e.get("cpu_us_per_event")
            cpu_text = "-" if cpu is None else f"{cpu:,}"
            if "cpu_ratio_to_clean" in e:
                cpu_text += f" ({e['cpu_ratio_to_clean']:.0%} of clean)"
            lines.append(
                f"| {service} | {e['processes']} | {e['events_per_s']:,}{clean} | {cpu_text} | "
                f"{e['raw_consume_per_s']:,} | {e['ratio_to_raw']:.0%} | "
                f"{', '.join(map(str, e['peak_rss_mib']))} |"
            )
    if any(service in WORKLOAD_SERVICE for service in r["services"]):
        lines += [
            "",
            "`purchases-rejects`: the purchases input with 1 % of its records refunds of"
            " purchases never recorded, each rejected by the handler and dead-lettered (the"
            " runtime dead-letters a rejection that changed nothing inside the batch's"
            " transaction; before issue #11 each one replayed the batch record by record).",
        ]
    if r.get("latency"):
        lines += [
            "",
            "End-to-end latency, purchase.posted → offer.made (one purchases process and one or"
            " two offers processes, the load generator on the same machine):",
            "",
            "| offered purchases/s | offers processes | p50 ms | p95 ms | p99 ms | max ms |"
            " offers seen | peak RSS MiB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for lat in r["latency"]:
            lines.append(
                f"| {lat['offered_per_s']:,} | {lat.get('offers_processes', 1)} |"
                f" {lat['p50_ms']} | {lat['p95_ms']} |"
                f" {lat['p99_ms']} | {lat['max_ms']} | {lat['offers_seen']:,} of"
                f" {lat['purchases']:,} | {lat['peak_rss_mib']} |"
            )
    return "\n".join(lines) + "\n"
