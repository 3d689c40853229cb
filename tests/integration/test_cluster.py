"""Replication and failover on a real three-node Kafka cluster (shared/localstack/cluster.py).

One throwaway cluster (three combined broker+controller JVMs, replication 3,
``min.insync.replicas=2``) runs for this module; the dev broker on 9092 is not touched.
Nodes are SIGKILLed or stopped under producers, consumers and the purchases service,
and what was acknowledged is read back from the topics.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    NotEnoughReplicasAfterAppendError,
    NotEnoughReplicasError,
    RequestTimedOutError,
)
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import OffsetAndMetadata

from shared.localstack.cluster import LocalCluster
from shared.ops.invariants import check
from shared.runtime.topics import ensure_topics
from tests.builders import messages as f
from tests.builders.services import PURCHASES as SERVICE
from tests.support import Collector, Producer, running, wait_until

pytestmark = pytest.mark.integration

IN = "card.purchases.v1"
OUT = "purchases.recorded.v1"
# what an acks=all write may get from a leader alone in sync (below min.insync.replicas)
REFUSALS = (
    NotEnoughReplicasError,
    NotEnoughReplicasAfterAppendError,
    KafkaTimeoutError,
    RequestTimedOutError,
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    started = time.monotonic()
    local = LocalCluster(tmp_path_factory.mktemp("kafka-cluster"))
    try:
        local.start()
        print(f"\n[cluster] 3 nodes up in {time.monotonic() - started:.1f}s")
        yield local
    finally:
        local.stop()


@pytest.fixture
def healthy(cluster: LocalCluster) -> LocalCluster:
    """The cluster with all three nodes running and registered (a test may leave one down)."""
    for node_id, node in cluster.nodes.items():
        if not node.running():
            cluster.restart(node_id, wait=False)
    for node_id in cluster.nodes:
        cluster.wait_ready(node_id)
    return cluster


def _topic(cluster: LocalCluster, partitions: int = 1) -> str:
    """A new topic with three replicas, all of them in sync."""
    name = f"c{uuid.uuid4().hex[:10]}"
    admin = cluster.admin()
    try:
        admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 3}})
    finally:
        admin.close()
    cluster.wait_in_sync(name, replicas=3)
    return name


def _producer(cluster: LocalCluster, **config) -> KafkaProducer:
    options = {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "request_timeout_ms": 5000,
        "delivery_timeout_ms": 90000,
        "retry_backoff_ms": 100,
        "reconnect_backoff_max_ms": 1000,
        **config,
    }
    return KafkaProducer(bootstrap_servers=cluster.bootstrap.split(","), **options)


def _read_all(cluster: LocalCluster, topic: str, timeout_s: float = 60.0) -> list[int]:
    """Every value of ``topic`` (decimal sequence numbers), up to its end offsets."""
    consumer = KafkaConsumer(
        bootstrap_servers=cluster.bootstrap.split(","), group_id=None, enable_auto_commit=False
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        values: list[int] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"{topic}: not read to {ends} in {timeout_s}s"
            for records in consumer.poll(timeout_ms=200).values():
                values.extend(int(r.value) for r in records)
        return values
    finally:
        consumer.close()


def _report(what: str, **figures: object) -> None:
    print(f"\n[cluster] {what}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


# --------------------------------------------------------------------------- a


@pytest.mark.parametrize("idempotent", [True, False], ids=["idempotent", "plain"])
def test_acknowledged_writes_survive_a_leader_sigkill(healthy: LocalCluster, idempotent: bool):
    """acks=all into RF 3 / min ISR 2; the partition leader is SIGKILLed mid-stream, then
    restarted. Every acknowledged number is in the topic; with idempotence exactly once."""
    cluster, topic, total = healthy, _topic(healthy), 3000
    producer = _producer(cluster, enable_idempotence=idempotent)
    futures: dict[int, FutureRecordMetadata] = {}

    def send(numbers: range) -> None:
        for n in numbers:
            futures[n] = producer.send(topic, key=str(n % 17).encode(), value=str(n).encode())
            if n % 100 == 0:
                time.sleep(0.01)  # pacing: batches keep leaving while the leader dies

    started = time.monotonic()
    send(range(total // 2))
    futures[total // 4].get(timeout=30)  # the stream flows before the kill
    leader = cluster.leader_of(topic, 0)
    cluster.kill(leader)
    killed_at = time.monotonic()
    send(range(total // 2, total))
    producer.flush(timeout=120)
    new_leader = cluster.wait_leader_change(topic, 0, leader)
    failover_s = time.monotonic() - killed_at
    producer.close()

    acked = {n for n, fut in futures.items() if fut.succeeded()}
    failed = {n: repr(fut.exception) for n, fut in futures.items() if fut.failed()}
    cluster.restart(leader)
    cluster.wait_in_sync(topic, replicas=3)
    values = _read_all(cluster, topic)
    counts = Counter(values)
    missing = sorted(acked - counts.keys())
    duplicates = {n: c for n, c in counts.items() if c > 1}
    _report(
        f"leader SIGKILL ({'idempotent' if idempotent else 'plain'} producer)",
        killed=leader,
        new_leader=new_leader,
        acked=len(acked),
        failed=len(failed),
        read=len(values),
        missing=len(missing),
        duplicates=len(duplicates),
        failover_plus_drain_s=f"{failover_s:.1f}",
        total_s=f"{time.monotonic() - started:.1f}",
    )
    assert not missing, f"acknowledged but lost: {missing[:20]}"
    # two of three replicas stay in sync: the cluster accepts acks=all writes throughout
    assert not failed, f"sends failed with one node down: {list(failed.items())[:5]}"
    assert len(acked) == total
    assert set(counts) <= set(range(total)), "values nobody sent"
    if idempotent:
        assert not duplicates, f"duplicates despite idempotence: {list(duplicates.items())[:20]}"


# --------------------------------------------------------------------------- b


def test_consumer_group_keeps_consuming_across_leader_failover(healthy: LocalCluster):
    """A group consumer is mid-topic when the leader dies; more is produced during the
    failover. It reaches the end, sees every number, and commits the end offset."""
    cluster, topic, total = healthy, _topic(healthy), 2000
    producer = _producer(cluster)
    for n in range(total // 2):
        producer.send(topic, value=str(n).encode())
    producer.flush(timeout=30)
    group = f"g{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=cluster.bootstrap.split(","),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=50,
        session_timeout_ms=10000,
        request_timeout_ms=15000,
        reconnect_backoff_max_ms=1000,
    )
    tp = TopicPartition(topic, 0)
    seen: list[int] = []
    commit_errors: list[str] = []

    def poll_once() -> None:
        for records in consumer.poll(timeout_ms=200).values():
            seen.extend(int(r.value) for r in records)
        try:
            consumer.commit()
        except KafkaError as exc:  # retriable during the failover; the next poll commits again
            commit_errors.append(type(exc).__name__)

    try:
        deadline = time.monotonic() + 30
        while len(seen) < total // 4:
            assert time.monotonic() < deadline, (
                f"group consumer stuck at {len(seen)} before the kill"
            )
            poll_once()
        leader = cluster.leader_of(topic, 0)
        cluster.kill(leader)
        killed_at = time.monotonic()

        def produce_rest() -> None:  # while the consumer runs into the dead leader
            for n in range(total // 2, total):
                producer.send(topic, value=str(n).encode())
            producer.flush(timeout=90)

        writer = threading.Thread(target=produce_rest, name="writer")
        writer.start()
        deadline = time.monotonic() + 90
        while set(seen) != set(range(total)):
            assert time.monotonic() < deadline, (
                f"group consumer stopped after the failover: {len(set(seen))}/{total} seen"
            )
            poll_once()
        caught_up_s = time.monotonic() - killed_at
        writer.join(30)
        assert not writer.is_alive()
        deadline = time.monotonic() + 30
        while True:  # the final commit must land (the coordinator may have moved)
            try:
                consumer.commit({tp: OffsetAndMetadata(total, "", -1)})
                break
            except KafkaError as exc:
                commit_errors.append(type(exc).__name__)
                assert time.monotonic() < deadline, f"final commit keeps failing: {exc!r}"
                time.sleep(0.2)
        committed = consumer.committed(tp)
    finally:
        consumer.close()
        producer.close()

    counts = Counter(seen)
    duplicates = sum(c - 1 for c in counts.values())
    _report(
        "group consumer across leader SIGKILL",
        killed=leader,
        new_leader=cluster.leader_of(topic, 0),
        seen=len(seen),
        redelivered=duplicates,
        commit_errors=dict(Counter(commit_errors)),
        caught_up_after_kill_s=f"{caught_up_s:.1f}",
    )
    assert committed == total
    # one member, no rebalance expected: each record is delivered once, in order
    assert seen == list(range(total)), f"out of order or repeated ({duplicates} repeats)"


# --------------------------------------------------------------------------- c


def test_two_nodes_down_refuses_acks_all_then_blocked_sends_complete(healthy: LocalCluster):
    """With two of three nodes stopped the survivor alone is below min.insync.replicas:
    an acks=all write is not acknowledged. When the nodes return, the pending sends
    complete and nothing acknowledged is lost."""
    cluster, topic = healthy, _topic(healthy)
    producer = _producer(cluster, delivery_timeout_ms=120000)
    for n in range(100):
        producer.send(topic, value=str(n).encode())
    producer.flush(timeout=30)
    leader = cluster.leader_of(topic, 0)
    others = [n for n in cluster.nodes if n != leader]
    started = time.monotonic()
    for node_id in others:
        cluster.stop_node(node_id)
    stopped_s = time.monotonic() - started

    blocked = [producer.send(topic, value=str(n).encode()) for n in range(100, 200)]
    with pytest.raises(KafkaTimeoutError):
        blocked[0].get(timeout=8)
    assert not any(fut.is_done for fut in blocked), "acknowledged with one replica in sync"
    # a producer that gives up early is refused, not acknowledged (not idempotent: with the
    # controller quorum gone no new producer id could be handed out)
    quick = _producer(
        cluster,
        enable_idempotence=False,
        retries=0,  # the broker's first answer, not a retry loop's final timeout
        request_timeout_ms=3000,
        delivery_timeout_ms=6000,
        linger_ms=0,
    )
    try:
        with pytest.raises(KafkaError) as refused:
            quick.send(topic, value=b"999999").get(timeout=30)
    finally:
        quick.close(timeout=5)
    assert isinstance(refused.value, REFUSALS), f"unexpected error: {refused.value!r}"
    assert not any(fut.is_done for fut in blocked)
    isr_while_down = cluster.describe(topic)[0]["isr"]

    restarted = time.monotonic()
    for node_id in others:
        cluster.restart(node_id, wait=False)
    for node_id in others:
        cluster.wait_ready(node_id)
    for fut in blocked:
        fut.get(timeout=90)
    completed_s = time.monotonic() - restarted
    producer.close()

    values = _read_all(cluster, topic)
    counts = Counter(values)
    _report(
        "two of three nodes stopped",
        leader=leader,
        stopped=others,
        stop_s=f"{stopped_s:.1f}",
        isr_while_down=isr_while_down,
        refused_with=type(refused.value).__name__,
        blocked_completed_after_restart_s=f"{completed_s:.1f}",
        read=len(values),
        quick_write_present=999999 in counts,
    )
    assert set(range(200)) <= counts.keys(), f"lost: {sorted(set(range(200)) - counts.keys())}"
    assert all(counts[n] == 1 for n in range(200)), "duplicates from the idempotent producer"


# --------------------------------------------------------------------------- d


def test_purchases_service_survives_input_leader_sigkill(healthy: LocalCluster, pg_database):
    """The purchases service works through a SIGKILL of its input partition's leader;
    each purchase is recorded exactly once and the invariant checker finds nothing."""
    cluster = healthy
    settings = cluster.settings(
        database_url=pg_database,
        topic_prefix=f"c{uuid.uuid4().hex[:8]}.",
        topic_partitions=1,
        poll_timeout_ms=100,
        session_timeout_ms=10000,
        environment="test",
        log_format="json",
    )
    ensure_topics(settings, timeout_s=60)
    cluster.wait_in_sync(settings.topic(IN), replicas=3)
    producer, out = Producer(settings), Collector(settings, OUT)
    accounts = [f.new_id("acc") for _ in range(20)]
    purchases = [f.purchase(accounts[i % 20], f"{10 + i}.{i % 100:02d}") for i in range(400)]
    want = {p["data"]["purchase_id"] for p in purchases}
    producer.send_all(IN, purchases[:200])
    started = time.monotonic()
    with running(SERVICE, settings=settings):
        out.wait_count(50, timeout=60)
        leader = cluster.leader_of(settings.topic(IN), 0)
        cluster.kill(leader)
        killed_at = time.monotonic()
        producer.send_all(IN, purchases[200:])  # through the new leader
        out.wait_for(
            lambda rs: {e.data.purchase_id for e in out.events()} >= want,
            timeout=90,
            what="every purchase recorded",
        )
        done_s = time.monotonic() - killed_at
        out.settle()
    producer.close()
    cluster.restart(leader)

    events = out.events()
    by_id = Counter(e.id for e in events)
    per_purchase = Counter(e.data.purchase_id for e in events)
    republished = sum(c - 1 for c in by_id.values())
    wait_until(lambda: cluster.leader_of(settings.topic(OUT), 0) >= 0, 30, "an output leader")
    report = check(settings)
    _report(
        "purchases service, input leader SIGKILL",
        killed=leader,
        purchases=len(want),
        output_records=len(events),
        republished_same_id=republished,
        all_recorded_after_kill_s=f"{done_s:.1f}",
        service_s=f"{time.monotonic() - started:.1f}",
        invariant_checks=sum(report.checked.values()),
        violations=len(report.violations),
    )
    # one recorded event per purchase (a re-publish of the same event id is allowed)
    distinct = {e.id: e.data.purchase_id for e in events}
    assert Counter(distinct.values()) == Counter({pid: 1 for pid in want})
    assert set(per_purchase) == want
    assert report.ok, report.violations[:10]
    out.close()
