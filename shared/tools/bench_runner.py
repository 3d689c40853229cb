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
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.partitioner.default import murmur2
from sqlalchemy import create_engine, text

from shared import registry
from shared.localstack.stack import ensure_stack
from shared.runtime.settings import Settings
from shared.runtime.topics import committed_offsets, delete_namespace, ensure_topics
from shared.tools.bench_grow import GrowSize, ensure_template, grown_prefix
from shared.tools.bench_workloads import WORKLOADS, _env, _purchase, accounts, service_of

REPO = Path(__file__).resolve().parents[2]


class Bench:
    def __init__(self, events: int, log: Callable[[str], None]) -> None:
        self.events = events
        self.log = log
        bootstrap, admin_url = ensure_stack(need_postgres=True)
        assert admin_url, "the benchmark needs PostgreSQL"
        self.bootstrap, self.admin_url = bootstrap, admin_url
        # "T" between the date and the time: 14 digits in a row in a topic or database
        # name pass the card-number check of the logs now and then (Luhn, 1 in 10).
        self.run = datetime.now().strftime("%Y%m%dT%H%M%S")
        self.workdir = REPO / ".data" / f"bench-{self.run}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_urls: dict[str, str] = {}
        #: workload -> the file of its input records (written by ``load``)
        self.inputs: dict[str, Path] = {}
        #: namespace -> a fixed topic prefix (grown runs), instead of the run's own
        self.prefixes: dict[str, str] = {}

    def _database(self, name: str, template: str | None = None) -> str:
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            if template is None:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        admin.dispose()
        return f"{self.admin_url.rpartition('/')[0]}/{name}"

    def cleanup(self, namespace: str | None = None) -> None:
        """Delete a namespace's (default: every one's) topics and database. Each run's are
        deleted once it is measured: the broker would otherwise carry hundreds of idle
        benchmark partitions into the next runs (and the latency runs come last), and a
        broker that keeps thousands of them takes minutes to start."""
        namespaces = [
            name
            for name in ([namespace] if namespace is not None else list(self.db_urls))
            if name in self.db_urls
        ]
        for name in namespaces:
            if name in self.prefixes:
                self._forget_namespace(self.settings(name))
            else:
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
            topic_prefix=self.prefixes.get(namespace, f"bench-{self.run}-{namespace}."),
            topic_partitions=6,
        )

    def grown_settings(self, service: str, size: GrowSize) -> tuple[Settings, float]:
        """A namespace whose database is a clone of the service's grown template (built
        the first time: :mod:`.bench_grow`), on the fixed topic prefix its inbox rows name;
        that prefix's topics and consumer groups are deleted first. Returns the settings
        and the seconds spent building the template (0 when cached)."""
        prefix = grown_prefix(service)
        template, built_s = ensure_template(self.admin_url, service, size, prefix, self.log)
        namespace = f"grown-{service}"
        self.prefixes[namespace] = prefix
        name = f"bench_{self.run}_grown_{service.replace('-', '_')}"
        self.db_urls[namespace] = self._database(name, template)
        settings = self.settings(namespace)
        self._forget_namespace(settings)
        return settings, built_s

    def _forget_namespace(self, settings: Settings) -> None:
        """Delete a fixed prefix's topics and consumer groups (an earlier grown run's)."""
        delete_namespace(settings)
        admin = KafkaAdminClient(**settings.kafka_client_config())
        try:
            deadline = time.monotonic() + 60
            while any(t.startswith(settings.topic_prefix) for t in admin.list_topics()):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"topics of {settings.topic_prefix} still there")
                time.sleep(0.5)
            groups = [g["group_id"] for g in admin.list_groups()]
            doomed = [g for g in groups if g.startswith(settings.topic_prefix)]
            if doomed:
                admin.delete_groups(doomed)
        finally:
            admin.close()

    def load(self, settings: Settings, service: str) -> tuple[int, list[str]]:
        """Write the service's input to its namespace; returns (input count, topics)."""
        ensure_topics(settings)
        producer = KafkaProducer(
            **settings.kafka_client_config(),
            acks=1,
            linger_ms=20,
            batch_size=262144,
            compression_type=None,
        )
        topics: set[str] = set()
        count = 0
        # The same records go to a file: the in-process ceiling's input (``ceiling``).
        self.inputs[service] = self.workdir / f"{service}.input"
        with open(self.inputs[service], "wb") as fh:
            for topic, key, value in workload_records(settings, service, self.events):
                producer.send(settings.topic(topic), key=key.encode(), value=value)
                fh.write(topic.encode() + b"\t" + key.encode() + b"\t" + value + b"\n")
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
        self,
        settings: Settings,
        service: str,
        topics: list[str],
        expected: int,
        processes: int,
        tree: Path = REPO,
        label: str = "",
    ) -> dict[str, Any]:
        """Start the service as ``processes`` OS processes; measure until its lag is 0.

        ``tree``: the source tree the processes run (``PYTHONPATH`` and working
        directory; same interpreter and packages), e.g. a worktree of an older commit
        measured in the same run (``--baseline-tree``)."""
        workload, service = service, service_of(service)
        command = [sys.executable, "-m", f"services.{service}"]
        group = registry.group_name(settings, service)
        name = f"{workload}{label}-{processes}"
        return self._measure(settings, [command] * processes, group, expected, name, tree)

    def floor_rate(
        self, settings: Settings, topics: list[str], expected: int, processes: int = 1
    ) -> dict[str, Any]:
        """The kafka-python pass-through floor over the same input (:mod:`.bench_floor`)."""
        group = f"{settings.topic_prefix}bench-floor-{processes}"
        out = settings.topic("bench.floor.v1")
        admin = KafkaAdminClient(**settings.kafka_client_config())
        try:
            from kafka.admin import NewTopic

            admin.create_topics([NewTopic(out, settings.topic_partitions, 1)])
        except Exception as exc:  # already there (a second floor run on the namespace)
            if "TopicAlreadyExists" not in type(exc).__name__:
                raise
        finally:
            admin.close()
        command = [
            sys.executable,
            "-P",
            str(Path(__file__).with_name("bench_floor.py")),
            "--bootstrap",
            self.bootstrap,
            "--group",
            group,
            "--out-topic",
            out,
            "--max-records",
            str(settings.poll_max_records),
            *(settings.topic(t) for t in topics),
        ]
        return self._measure(settings, [command] * processes, group, expected, f"floor-{processes}")

    def ceiling(self, service: str, input_path: Path, tree: Path = REPO) -> dict[str, Any]:
        """The in-process domain ceiling (:mod:`.bench_ceiling`) of ``service`` over the
        input file, run in its own process with ``tree``'s code."""
        env = self._env(tree)
        done = subprocess.run(
            [
                sys.executable,
                "-P",
                str(Path(__file__).with_name("bench_ceiling.py")),
                service_of(service),
                str(input_path),
            ],
            env=env,
            cwd=tree,
            capture_output=True,
            timeout=1800,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ceiling of {service} failed: {done.stderr.decode()[-2000:]}")
        result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
        return result

    def _env(self, tree: Path, settings: Settings | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INSTALLMENTS_")}
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "INSTALLMENTS_LOG_LEVEL": "WARNING",
                "INSTALLMENTS_LOG_FORMAT": "json",
                "PYTHONPATH": str(tree),
            }
        )
        if settings is not None:
            env["DATABASE_URL"] = settings.database_url
            env["INSTALLMENTS_TOPIC_PREFIX"] = settings.topic_prefix
        env.update(_service_env())
        return env

    def _measure(
        self,
        settings: Settings,
        commands: list[list[str]],
        group: str,
        expected: int,
        name: str,
        tree: Path = REPO,
    ) -> dict[str, Any]:
        """Run ``commands`` (one process each) until ``group`` has committed ``expected``
        records; the rate, the processes' CPU and PostgreSQL's per event, peak RSS."""
        env = self._env(tree, settings)
        log = open(self.workdir / f"{name}.log", "ab")
        procs = [
            subprocess.Popen(command, env=env, cwd=tree, stdout=log, stderr=log)
            for command in commands
        ]
        processes = len(procs)
        admin = KafkaAdminClient(**settings.kafka_client_config())
        pg = PgCpu(self.admin_url, settings.database_url.rpartition("/")[2])
        peak_kib = [0] * processes
        try:
            samples: list[tuple[float, int, float, float, float]] = []
            deadline = time.monotonic() + 600
            done = 0
            while done < expected:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}: {done}/{expected} after 600 s")
                for i, p in enumerate(procs):
                    if p.poll() is not None:
                        raise RuntimeError(f"{name} exited {p.returncode}; see {log.name}")
                    peak_kib[i] = max(peak_kib[i], _vm_hwm_kib(p.pid))
                offsets = committed_offsets(admin, [group]).get(group, {})
                done = sum(om.offset for tp, om in offsets.items() if om.offset > 0)
                cpu = sum(_cpu_seconds(p.pid) for p in procs)
                loop = sum(_cpu_seconds(p.pid, thread=p.pid) for p in procs)
                samples.append((time.monotonic(), done, cpu, pg.seconds(), loop))
                time.sleep(0.1)
            # From the last sample before any commit (the group had joined and was
            # working on its first batch) to the sample where everything was committed:
            # the first batch's time counts, so big first batches cannot inflate the rate.
            idle = [s for s in samples if s[1] == 0]
            t0, _, cpu0, pg0, loop0 = idle[-1] if idle else samples[0]
            t1, c1, cpu1, pg1, loop1 = samples[-1]
            rate = c1 / (t1 - t0) if t1 > t0 else float("nan")
            return {
                "events": expected,
                "processes": processes,
                "events_per_s": round(rate),
                "seconds": round(t1 - t0, 2),
                # The service processes' own CPU per event over the same span: unlike
                # events/s, barely moved by other work on the machine.
                "cpu_us_per_event": round((cpu1 - cpu0) * 1e6 / c1, 1) if c1 else None,
                # The PostgreSQL backends serving this run's database, same span.
                "pg_cpu_us_per_event": round((pg1 - pg0) * 1e6 / c1, 1) if c1 else None,
                # The share of the span each process's main thread (the consumer loop)
                # was on a core: the rest it waited (PostgreSQL, the broker's acks, the
                # GIL). The other threads (the client's I/O) are in cpu_us_per_event.
                "loop_busy": round((loop1 - loop0) / ((t1 - t0) * processes), 3)
                if t1 > t0
                else None,
                "peak_rss_mib": [round(k / 1024, 1) for k in peak_kib],
            }
        finally:
            admin.close()
            pg.close()
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()

    def latency(
        self,
        rate: int,
        seconds: int,
        offers_processes: int = 1,
        tree: Path = REPO,
        label: str = "",
    ) -> dict[str, Any]:
        """purchase.posted -> offer.made latency at a fixed offered load, with one
        purchases process and ``offers_processes`` offers processes (of ``tree``)."""
        settings = self.settings(f"e2e-{rate}-{offers_processes}{label}")
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
                "PYTHONPATH": str(tree),
            }
        )
        env.update(_service_env())
        log = open(self.workdir / f"e2e-{rate}{label}.log", "ab")
        names = ["purchases"] + [
            f"offers#{i + 1}" if offers_processes > 1 else "offers" for i in range(offers_processes)
        ]
        procs = {
            name: subprocess.Popen(
                [sys.executable, "-m", f"services.{name.partition('#')[0]}"],
                env=env,
                cwd=tree,
                stdout=log,
                stderr=log,
            )
            for name in names
        }
        reader = _reader_at_end(settings, "installments.offers.v1")
        # purchases' output too: its record timestamps split a latency into two hops
        middle = _reader_at_end(settings, "purchases.recorded.v1")
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
            offered_at: dict[str, float] = {}
            total = rate * seconds
            # The load generator shares the machine with what it measures, so it does in
            # the measured window only what the card system would: send. Before the clock
            # starts it builds every purchase and picks its partition (the producer's
            # default partitioner, murmur2 of the key, as the Java client); it sends them
            # in bursts of 5 ms of load (one wake-up per burst, not per purchase). The
            # offers are read after the last purchase is sent: a latency is the offer's
            # record timestamp (set by the offers service's producer) minus when its
            # purchase was sent, so reading later changes no figure. Built in the loop and
            # paced one by one, it took about a quarter of the 2 cores at 2,000/s; what
            # it takes now is reported (generator_cores; docs/benchmarks, "The latency
            # run's load generator").
            purchases_topic = settings.topic("card.purchases.v1")
            partitions = sorted(producer.partitions_for(purchases_topic) or ())
            prepared: list[tuple[int, bytes, bytes, str]] = []
            for i in range(total):
                acc, data = _purchase(i, n_accounts)
                key_bytes = acc.encode()
                body = _env("purchase.posted", acc, data, i, "card-system")
                partition = partitions[(murmur2(key_bytes) & 0x7FFFFFFF) % len(partitions)]
                prepared.append((partition, key_bytes, body, data["purchase_id"]))
            burst = max(1, rate // 200)
            started, cpu_started = time.monotonic(), time.process_time()
            for first in range(0, total, burst):
                delay = started + first / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                for partition, key_bytes, body, purchase_id in prepared[first : first + burst]:
                    producer.send(purchases_topic, key=key_bytes, value=body, partition=partition)
                    sent_at[purchase_id] = time.time()
            producer.flush()
            sending = time.monotonic() - started
            # this process's CPU (the producer's I/O thread included) per second of load
            generator_cores = (time.process_time() - cpu_started) / sending
            offered = total / sending
            deadline = time.monotonic() + 120
            # a latency: the offer's record timestamp minus when its purchase was sent
            answers = ("offer.made", "offer.not-eligible")
            while len(offered_at) < total and time.monotonic() < deadline:
                _stamps(reader, answers, sent_at, offered_at, timeout_ms=100)
            recorded_at: dict[str, float] = {}
            while len(recorded_at) < len(offered_at) and time.monotonic() < deadline:
                _stamps(middle, ("purchase.recorded",), sent_at, recorded_at, timeout_ms=100)
            hops = {
                "purchases": [
                    (recorded_at[pid] - sent_at[pid]) * 1000
                    for pid in offered_at
                    if pid in recorded_at
                ],
                "offers": [
                    (offered_at[pid] - recorded_at[pid]) * 1000
                    for pid in offered_at
                    if pid in recorded_at
                ],
            }
            lat_ms = sorted((at - sent_at[pid]) * 1000 for pid, at in offered_at.items())
            peaks = {s: round(_vm_hwm_kib(p.pid) / 1024, 1) for s, p in procs.items()}

            def pct(q: float, values: list[float] = lat_ms) -> float:
                return round(values[min(len(values) - 1, int(q * len(values)))], 1)

            for values in hops.values():
                values.sort()

            return {
                "offers_processes": offers_processes,
                "offered_per_s": round(offered),
                "generator_cores": round(generator_cores, 3),
                "purchases": total,
                "offers_seen": len(lat_ms),
                "p50_ms": pct(0.50),
                "p95_ms": pct(0.95),
                "p99_ms": pct(0.99),
                "max_ms": round(lat_ms[-1], 1),
                # each hop: purchase.posted sent -> purchase.recorded (purchases' producer
                # timestamp), then -> the offer's; both timestamps are set after the
                # service's database commit, when it publishes
                "hops": {
                    name: {"p50_ms": pct(0.50, values), "p99_ms": pct(0.99, values)}
                    for name, values in hops.items()
                    if values
                },
                "peak_rss_mib": peaks,
            }
        finally:
            reader.close()
            middle.close()
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


def _reader_at_end(settings: Settings, topic: str) -> KafkaConsumer:
    """A consumer of every partition of ``topic`` (no group), at its end."""
    reader = KafkaConsumer(
        **settings.kafka_client_config(), group_id=None, enable_auto_commit=False
    )
    name = settings.topic(topic)
    tps = [TopicPartition(name, p) for p in reader.partitions_for_topic(name) or set()]
    reader.assign(tps)
    reader.seek_to_end(*tps)
    for tp in tps:  # resolve the end now (seek_to_end is lazy: resolved at a later poll,
        reader.position(tp)  # it would skip what was published meanwhile)
    return reader


def _stamps(
    reader: KafkaConsumer,
    types: tuple[str, ...],
    sent_at: dict[str, float],
    out: dict[str, float],
    timeout_ms: int,
) -> None:
    """The record timestamp (seconds) of each event of ``types`` about a purchase sent in
    the measurement, by purchase id."""
    for records in reader.poll(timeout_ms=timeout_ms, max_records=5000).values():
        for r in records:
            body = json.loads(r.value)
            pid = body["data"].get("purchase_id")
            if pid in sent_at and body["type"] in types:
                out[pid] = r.timestamp / 1000


def _service_env() -> dict[str, str]:
    """``BENCH_SERVICE_ENV="INSTALLMENTS_X=1 INSTALLMENTS_Y=2"``: settings given to every
    service process the benchmark starts (throughput and latency runs), to compare a
    setting's effect (the benchmark otherwise drops the caller's ``INSTALLMENTS_*``)."""
    pairs = os.environ.get("BENCH_SERVICE_ENV", "").split()
    bad = [p for p in pairs if "=" not in p]
    if bad:
        raise ValueError(f"BENCH_SERVICE_ENV: expected KEY=VALUE, got {bad[0]!r}")
    return dict(p.split("=", 1) for p in pairs)


class PgCpu:
    """CPU time of the PostgreSQL backends connected to one database (the server runs on
    this machine: ``/proc/<pid>/stat``). A backend that exits keeps its last reading."""

    def __init__(self, admin_url: str, database: str) -> None:
        self.database = database
        self.engine = create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_size=1)
        self.cpu: dict[int, float] = {}
        self.local = True

    def seconds(self) -> float:
        if self.local:
            try:
                with self.engine.connect() as conn:
                    pids = conn.execute(
                        text("SELECT pid FROM pg_stat_activity WHERE datname = :db"),
                        {"db": self.database},
                    ).scalars()
                    for pid in pids:
                        cpu = _cpu_seconds(int(pid))
                        if cpu:
                            self.cpu[int(pid)] = cpu
                if self.cpu == {} and not Path("/proc/self/stat").exists():
                    self.local = False
            except Exception:
                self.local = False
        return sum(self.cpu.values())

    def close(self) -> None:
        self.engine.dispose()


def workload_records(
    settings: Settings, workload: str, events: int
) -> Iterator[tuple[str, str, bytes]]:
    """A workload's input records (contract topic, key, value), accounts first."""
    n_accounts, stream = WORKLOADS[workload](events)
    # Accounts only for a service that reads them: what it does not consume would
    # never be committed, and the run would wait for it until its timeout.
    consumes = registry.consumed_topics(settings, service_of(workload))
    if "card.accounts.v1" in consumes:
        yield from accounts(n_accounts)
    yield from stream


def _cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU time of a process (or of one of its threads) so far (0 once it
    is gone)."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    try:
        with open(path) as fh:
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
