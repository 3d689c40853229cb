"""The lag monitor on the real broker: a stopped consumer keeps its lag visible."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.structs import OffsetAndMetadata
from typer.testing import CliRunner

from shared.ops.lag import LagMonitor, Status, collect, lag_app, serve_metrics
from shared.runtime.settings import Settings
from tests.support import REPO, settings_env, wait_until

pytestmark = pytest.mark.integration

N, K = 30, 12
TOPIC = "card.purchases.v1"


def produce(settings: Settings, n: int, partition: int = 0) -> list[int]:
    """``n`` records to one partition of the test's purchases topic; their timestamps (ms)."""
    producer = KafkaProducer(**settings.kafka_client_config(), acks="all", linger_ms=2)
    try:
        futures = [
            producer.send(
                settings.topic(TOPIC), key=b"acc-1", value=f"m{i}".encode(), partition=partition
            )
            for i in range(n)
        ]
        producer.flush(timeout=30)
        return [f.get(timeout=30).timestamp for f in futures]
    finally:
        producer.close()


class GroupConsumer:
    """A real group member of ``group`` on the test topic (subscribe, so it is a member)."""

    def __init__(self, settings: Settings, group: str) -> None:
        self.tp = TopicPartition(settings.topic(TOPIC), 0)
        self.consumer = KafkaConsumer(
            settings.topic(TOPIC),
            **settings.kafka_client_config(),
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=5,
            session_timeout_ms=settings.session_timeout_ms,
        )
        self.closed = False

    def consume_and_commit(self, k: int, timeout: float = 60.0) -> None:
        """Read partition 0 up to at least offset ``k``, then commit offset ``k``."""
        last = -1
        deadline = time.monotonic() + timeout
        while last + 1 < k:
            assert time.monotonic() < deadline, f"read up to offset {last}, wanted {k}"
            for record in self.consumer.poll(timeout_ms=200).get(self.tp, []):
                last = max(last, record.offset)
        self.consumer.commit({self.tp: OffsetAndMetadata(k, "", -1)})

    def close(self) -> None:
        if not self.closed:
            self.consumer.close()  # leaves the group: no active members
            self.closed = True


def by_group(snapshots, group):
    found = [s for s in snapshots if s.group == group]
    assert found, f"{group} not reported; got {[s.group for s in snapshots]}"
    return found[0]


class Groups:
    """Fresh group names and the consumers a test opened in them."""

    def __init__(self, settings: Settings) -> None:
        tag = uuid.uuid4().hex[:8]
        self.settings = settings
        self.stopped = f"installments-lagtest-{tag}-stopped"
        self.done = f"installments-lagtest-{tag}-done"
        self.consumers: list[GroupConsumer] = []

    def consume(self, group: str, k: int) -> GroupConsumer:
        """A member of ``group`` that reads up to offset ``k`` and commits it (still open)."""
        consumer = GroupConsumer(self.settings, group)
        self.consumers.append(consumer)
        consumer.consume_and_commit(k)
        return consumer

    def run(self, group: str, k: int) -> None:
        """A consumer that commits offset ``k`` and stops (leaves the group)."""
        self.consume(group, k).close()


@pytest.fixture
def groups(settings: Settings):
    """Fresh group names; their consumers closed and the groups deleted afterwards."""
    g = Groups(settings)
    yield g
    for consumer in g.consumers:
        consumer.close()
    admin = KafkaAdminClient(**settings.kafka_client_config())
    try:
        admin.delete_groups([g.stopped, g.done])
    except Exception:  # best effort: the names are unique anyway
        pass
    finally:
        admin.close()


def test_stopped_consumer_keeps_its_lag_and_is_not_ok(settings: Settings, groups):
    stopped, done = groups.stopped, groups.done
    stamps = produce(settings, N)
    topic = settings.topic(TOPIC)

    a = groups.consume(stopped, K)
    # while the member is alive the group has one member
    wait_until(
        lambda: by_group(collect(settings, [stopped]), stopped).members == 1,
        timeout=30,
        what="one active member",
    )
    a.close()
    groups.run(done, N)

    with LagMonitor(settings, [stopped, done], window_s=60, stop_window_s=300) as monitor:
        first = {r.group: r for r in monitor.poll()}
        second = {r.group: r for r in monitor.poll()}

    # auto-discovery (prefix installments-) found both; only this test's topics are shown
    for report in second.values():
        assert all(p.topic.startswith(settings.topic_prefix) for p in report.snapshot.partitions)

    snap = second[stopped].snapshot
    assert snap.members == 0
    parts = {p.partition: p for p in snap.partitions if p.topic == topic}
    assert set(parts) == {0, 1, 2}
    p0 = parts[0]
    assert (p0.log_end, p0.committed, p0.lag) == (N, K, N - K)
    assert p0.lag_seconds is not None
    # the oldest unconsumed message is record K: its age, measured at the snapshot
    assert p0.lag_seconds == pytest.approx(snap.at - stamps[K] / 1000, abs=0.01)
    assert 0 < p0.lag_seconds < 120
    # partitions 1 and 2: never committed, empty -> "no commit yet", lag 0
    for p in (parts[1], parts[2]):
        assert p.committed is None and p.no_commit and p.lag == 0 and p.lag_seconds == 0.0
    assert snap.total_lag == N - K
    assert first[stopped].status is Status.STOPPED  # no members, lag > 0: one snapshot says so
    assert second[stopped].status in (Status.STALLED, Status.STOPPED)
    assert second[stopped].status is not Status.OK

    ok = second[done].snapshot
    assert ok.members == 0 and ok.total_lag == 0
    assert {p.partition: p.lag for p in ok.partitions if p.topic == topic} == {0: 0, 1: 0, 2: 0}
    assert second[done].status is Status.OK

    # Prometheus exposition: render directly, and over HTTP
    text = monitor.render().decode()
    lines = set(text.splitlines())
    label = f'consumergroup="{stopped}",partition="0",topic="{topic}"'
    assert f"kafka_consumergroup_lag{{{label}}} {float(N - K)}" in lines
    assert f"kafka_consumergroup_current_offset{{{label}}} {float(K)}" in lines
    group_topic = f'consumergroup="{stopped}",topic="{topic}"'
    assert f"kafka_consumergroup_lag_sum{{{group_topic}}} {float(N - K)}" in lines
    # partitions 1 and 2 have no commit: -1 in kafka_exporter's families, 0 in the extra
    for n in (1, 2):
        no_commit = f'consumergroup="{stopped}",partition="{n}",topic="{topic}"'
        assert f"kafka_consumergroup_lag{{{no_commit}}} -1.0" in lines
        assert f"kafka_consumergroup_current_offset{{{no_commit}}} -1.0" in lines
        assert f"kafka_consumergroup_unconsumed_messages{{{no_commit}}} 0.0" in lines
    log_end = f'kafka_topic_partition_current_offset{{partition="0",topic="{topic}"}}'
    assert f"{log_end} {float(N)}" in lines
    assert f'kafka_consumergroup_members{{consumergroup="{stopped}"}} 0.0' in lines
    assert f"kafka_consumergroup_lag_seconds{{{label}}}" in text
    status_line = f'kafka_consumergroup_status{{consumergroup="{stopped}"}}'
    assert f"{status_line} {float(second[stopped].status)}" in lines
    done_label = f'consumergroup="{done}",partition="0",topic="{topic}"'
    assert f"kafka_consumergroup_lag{{{done_label}}} 0.0" in lines
    assert f'kafka_consumergroup_status{{consumergroup="{done}"}} 0.0' in lines

    server = serve_metrics(monitor, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            served = resp.read().decode()
        assert f"kafka_consumergroup_lag{{{label}}} {float(N - K)}" in served.splitlines()
    finally:
        server.shutdown()
        server.server_close()


def test_lag_seconds_follow_the_committed_offset(settings: Settings, groups):
    group = groups.stopped
    stamps = produce(settings, 5)
    groups.run(group, 2)
    with LagMonitor(settings, [group], discover=False) as monitor:
        s1 = by_group(monitor.collect(), group)
        p = next(p for p in s1.partitions if p.partition == 0)
        assert p.lag == 3
        assert p.lag_seconds == pytest.approx(s1.at - stamps[2] / 1000, abs=0.01)
        assert p.last_commit is None and p.committed_since == s1.at  # not seen changing yet

        # the group advances: the monitor notices the commit, and lag becomes 0
        groups.run(group, 5)
        s2 = by_group(monitor.collect(), group)
        p = next(p for p in s2.partitions if p.partition == 0)
        assert (p.committed, p.lag, p.lag_seconds) == (5, 0, 0.0)
        assert p.last_commit == s2.at


def test_unknown_group_is_reported_when_asked_for(settings: Settings):
    ghost = f"installments-lagtest-{uuid.uuid4().hex[:8]}-ghost"
    topic = settings.topic(TOPIC)
    produce(settings, 4, partition=1)
    snaps = collect(settings, [ghost], expected={ghost: [topic]}, discover=False)
    snap = by_group(snaps, ghost)
    assert snap.members == 0
    parts = {p.partition: p for p in snap.partitions}
    assert all(p.committed is None for p in parts.values())
    assert (parts[1].lag, parts[0].lag) == (4, 0)
    assert parts[1].lag_seconds is not None and parts[1].lag_seconds >= 0


def test_cli_json_and_table(settings: Settings, groups):
    stopped = groups.stopped
    produce(settings, N)
    groups.run(stopped, K)
    runner = CliRunner()
    env = settings_env(settings)

    result = runner.invoke(lag_app, ["--json", "--no-pipeline", "-g", stopped], env=env)
    assert result.exit_code == 0, result.output
    doc = {g["group"]: g for g in json.loads(result.stdout)}
    g = doc[stopped]
    assert (g["status"], g["members"], g["lag"]) == ("STOPPED", 0, N - K)
    p = {(x["topic"], x["partition"]): x for x in g["partitions"]}
    assert p[(settings.topic(TOPIC), 0)]["committed"] == K
    assert p[(settings.topic(TOPIC), 1)]["no_commit_yet"] is True

    result = runner.invoke(lag_app, ["show", "--no-pipeline", "-g", stopped], env=env)
    assert result.exit_code == 0, result.output
    assert stopped in result.output and "STOPPED" in result.output
    assert "no commit yet" in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_exporter_process_serves_metrics_and_stops_on_sigterm(settings: Settings, groups, tmp_path):
    stopped = groups.stopped
    produce(settings, N)
    groups.run(stopped, K)

    port = _free_port()
    log = open(tmp_path / "exporter.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from shared.ops.lag import lag_app; lag_app()",
            "exporter",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--interval",
            "0.5",
            "--no-pipeline",
            "-g",
            stopped,
        ],
        env=settings_env(settings),
        cwd=REPO,
        stdout=log,
        stderr=log,
    )
    label = f'consumergroup="{stopped}",partition="0",topic="{settings.topic(TOPIC)}"'
    expected = f"kafka_consumergroup_lag{{{label}}} {float(N - K)}"

    def scraped() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                return expected in r.read().decode().splitlines()
        except OSError:
            return False

    try:
        try:
            wait_until(scraped, timeout=60, what="the exporter to serve the group's lag")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        except (AssertionError, subprocess.TimeoutExpired) as exc:
            raise AssertionError(f"{exc}\n{(tmp_path / 'exporter.log').read_text()}") from exc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
