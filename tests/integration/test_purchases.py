"""The purchases service through the real broker and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter

import pytest
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import func, select

from services.purchases.tables import purchases
from shared.runtime.db import make_engine
from tests.builders import messages as f
from tests.builders.services import PURCHASES as SERVICE
from tests.support import Collector, Producer, running, start_process, wait_until

pytestmark = pytest.mark.integration

IN = "card.purchases.v1"
OUT = "purchases.recorded.v1"


def _recorded_count(settings) -> int:
    engine = make_engine(settings, "purchases")
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(purchases)).scalar_one()
    finally:
        engine.dispose()


def test_purchase_is_recorded_and_duplicates_have_one_effect(settings):
    producer, out = Producer(settings), Collector(settings, OUT)
    acc = f.new_id("acc")
    first = f.purchase(acc, "1200.00")
    same_event_again = first
    same_purchase_new_event = f.purchase(acc, "1200.00", purchase_id=first["data"]["purchase_id"])
    second = f.purchase(acc, "80.10")
    producer.send_all(IN, [first, same_event_again, same_purchase_new_event, second])
    with running(SERVICE, settings=settings):
        out.wait_count(2)
        records = out.settle()
    events = out.events()
    assert [e.type for e in events] == ["purchase.recorded", "purchase.recorded"]
    assert [e.data.purchase_id for e in events] == [
        first["data"]["purchase_id"],
        second["data"]["purchase_id"],
    ]
    assert all(e.causation_id in (first["id"], second["id"]) for e in events)
    assert all(r.key == acc.encode() for r in records)
    assert str(events[0].data.amount) == "1200.00"
    assert _recorded_count(settings) == 2


def test_poison_messages_go_to_the_dlq_and_good_ones_flow(settings):
    producer = Producer(settings)
    out, dlq = Collector(settings, OUT), Collector(settings, IN + ".dlq")
    acc = f.new_id("acc")
    good1, good2 = f.purchase(acc, "10.00"), f.purchase(acc, "20.00")
    float_money = f.purchase(acc)
    float_money["data"]["amount"] = 12.5
    pan_in_name = f.purchase(acc)
    pan_in_name["data"]["merchant"]["name"] = "shop 4111111111111111"
    producer.send(IN, good1)
    producer.send(IN, b"{not json", key=acc)
    producer.send(IN, float_money)
    producer.send(IN, pan_in_name)
    producer.send(IN, f.refund(acc, "pur-never-seen", "5.00"))
    producer.send(IN, good2)
    producer.flush()
    with running(SERVICE, settings=settings):
        out.wait_count(2)
        dlq.wait_count(4)
        dlq.settle()
    assert {e.data.purchase_id for e in out.events()} == {
        good1["data"]["purchase_id"],
        good2["data"]["purchase_id"],
    }
    assert len(dlq.records) == 4
    for rec in dlq.records:
        headers = {k: v.decode() for k, v in rec.headers}
        assert headers["error.service"] == "purchases"
        assert headers["original.topic"] == IN
        assert int(headers["original.offset"]) >= 0 and headers["original.partition"].isdigit()
        assert headers["error.reason"]
        assert "4111111111111111" not in headers["error.reason"]
    reasons = " | ".join(dict(r.headers)["error.reason"].decode() for r in dlq.records)
    assert "never recorded" in reasons
    # the DLQ keeps the original bytes
    assert b"{not json" in [r.value for r in dlq.records]


def test_refunds_are_checked_against_what_is_left(settings):
    producer = Producer(settings)
    out, dlq = Collector(settings, OUT), Collector(settings, IN + ".dlq")
    acc = f.new_id("acc")
    p = f.purchase(acc, "100.00")
    pid = p["data"]["purchase_id"]
    r1 = f.refund(acc, pid, "60.00")
    too_much = f.refund(acc, pid, "40.01")
    r2 = f.refund(acc, pid, "40.00")
    producer.send_all(IN, [p, r1, r1, too_much, r2])
    with running(SERVICE, settings=settings):
        out.wait_count(3)
        dlq.wait_count(1)
        out.settle()
    refunds = [e for e in out.events() if e.type == "refund.recorded"]
    assert [str(e.data.refunded_total) for e in refunds] == ["60.00", "100.00"]
    assert [e.data.fully_refunded for e in refunds] == [False, True]
    assert "exceeds" in dict(dlq.records[0].headers)["error.reason"].decode()


@pytest.mark.parametrize("fault_point", ["after_db_commit", "after_publish"])
def test_sigkill_between_commits_leaves_no_duplicate_effect(settings, tmp_path, fault_point):
    """The process dies (SIGKILL) at a fail point; the restarted one finishes the work."""
    producer, out = Producer(settings), Collector(settings, OUT)
    acc = f.new_id("acc")
    inputs = [f.purchase(acc, f"{i}.00") for i in range(1, 41)]
    producer.send_all(IN, inputs)
    marker = str(tmp_path / "fault-fired")
    env = {"INSTALLMENTS_FAULT_POINT": fault_point, "INSTALLMENTS_FAULT_MARKER": marker}
    proc = start_process("purchases", settings, env, log_path=str(tmp_path / "svc.log"))
    try:
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, open(tmp_path / "svc.log").read()[-3000:]
    assert os.path.exists(marker)
    restarted = start_process("purchases", settings, env, log_path=str(tmp_path / "svc.log"))
    try:
        out.wait_for(
            lambda rs: len({r.value for r in rs}) >= len(inputs), 90, "every purchase recorded"
        )
        out.settle()
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=60)
    events = out.events()
    ids = Counter(e.id for e in events)
    assert set(e.data.purchase_id for e in events) == {i["data"]["purchase_id"] for i in inputs}
    assert len(ids) == len(inputs)  # one deterministic id per effect
    if fault_point == "after_db_commit":
        assert max(ids.values()) == 1  # nothing was published before the crash
    assert _recorded_count(settings) == len(inputs)


@pytest.mark.parametrize(
    ("fault_point", "loop_step"),
    [("while_writing", "next_batch_decoded"), ("after_db_commit", "next_batch_handling")],
)
def test_sigkill_while_batch_n_is_written_and_the_next_is_handled(
    settings, tmp_path, fault_point, loop_step
):
    """#16, the loop's overlap: the writer thread dies on batch N (its state, inbox,
    outbox and offsets written and not committed; or committed and not published) while
    the loop holds batch N+1 (decoded; its handlers running). The restarted process
    applies every record once and publishes every effect once."""
    producer, out = Producer(settings), Collector(settings, OUT)
    acc = f.new_id("acc")
    inputs = [f.purchase(acc, f"{i}.00") for i in range(1, 41)]
    producer.send_all(IN, inputs)
    marker = str(tmp_path / "fault-fired")
    env = {
        "INSTALLMENTS_FAULT_POINT": fault_point,
        "INSTALLMENTS_FAULT_MARKER": marker,
        "INSTALLMENTS_POLL_MAX_RECORDS": "5",  # several batches: N and N+1
        "INSTALLMENTS_WRITE_OVERLAP": "true",
    }
    log_path = str(tmp_path / "svc.log")
    proc = start_process("purchases", settings, env, log_path=log_path)
    try:
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, open(log_path).read()[-3000:]
    # the crash met the loop at the next batch (not the rendezvous' timeout)
    assert open(marker).read() == f"{fault_point} {loop_step}"
    restarted = start_process("purchases", settings, env, log_path=log_path)
    try:
        out.wait_for(
            lambda rs: len({r.value for r in rs}) >= len(inputs), 90, "every purchase recorded"
        )
        out.settle()
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=60)
    events = out.events()
    ids = Counter(e.id for e in events)
    assert set(e.data.purchase_id for e in events) == {i["data"]["purchase_id"] for i in inputs}
    assert len(ids) == len(inputs)  # one deterministic id per effect
    assert max(ids.values()) == 1  # nothing of batch N was published before the crash
    assert _recorded_count(settings) == len(inputs)
    # in partition order: the account's purchases went out in the order they came in
    amounts = [str(e.data.amount) for e in events]
    assert amounts == [i["data"]["amount"] for i in inputs]


def test_sigterm_exits_cleanly_with_offsets_committed(settings, tmp_path):
    producer, out = Producer(settings), Collector(settings, OUT)
    acc = f.new_id("acc")
    producer.send_all(IN, [f.purchase(acc, "15.00") for _ in range(10)])
    proc = start_process("purchases", settings, log_path=str(tmp_path / "svc.log"))
    out.wait_count(10, timeout=90)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    logs = [json.loads(line) for line in open(tmp_path / "svc.log") if line.startswith("{")]
    assert any(entry.get("event") == "service stopping" for entry in logs)
    consumer = KafkaConsumer(
        **settings.kafka_client_config(),
        group_id=settings.consumer_group(SERVICE.name),
        enable_auto_commit=False,
    )
    topic = settings.topic(IN)
    committed = sum(
        consumer.committed(TopicPartition(topic, p)) or 0
        for p in consumer.partitions_for_topic(topic)
    )
    consumer.close()
    assert committed == 10
    wait_until(lambda: _recorded_count(settings) == 10, 5, "10 rows")
