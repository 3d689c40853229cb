"""The offers service through the real broker and PostgreSQL."""

from __future__ import annotations

import time
from collections import Counter
from contextlib import contextmanager
from datetime import date
from decimal import Decimal as D

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2
from sqlalchemy import create_engine, text

from shared.runtime.db import make_engine
from shared.runtime.store import stored_offsets
from tests.builders import messages as f
from tests.builders.offers import (
    ACCOUNTS,
    DAYS,
    DECISIONS,
    OFFERS,
    PAYMENTS,
    PLANS,
    RECORDED,
    auto_convert,
    purchase_recorded,
    refund_recorded,
)
from tests.builders.offers_batches import (
    EXPECTED,
    check_batches_match_one_by_one,
    summarise,
)
from tests.builders.services import OFFERS as SERVICE
from tests.harness import Harness
from tests.support import Collector, Producer, ServiceThread, wait_until

pytestmark = pytest.mark.integration

#: Payments queued ahead of the one the end-of-day test watches, and the poll size that
#: makes them take many batches.
BACKLOG, POLL_RECORDS = 500, 20


@contextmanager
def _running(settings):
    """``running(SERVICE)`` that also waits until the consumer holds every partition it
    subscribes to, starting it again when a join came back without them (seen under
    load: the group is joined before the consumer has the new topics' metadata, the
    assignment is empty and stays so for longer than a test waits)."""
    wanted = settings.topic_partitions * len(SERVICE.consumes)
    for _attempt in range(3):
        thread = ServiceThread(SERVICE, settings).start()
        deadline = time.monotonic() + 15
        while len(thread.runner.assigned) < wanted and time.monotonic() < deadline:
            time.sleep(0.1)
        if len(thread.runner.assigned) >= wanted:
            break
        thread.stop()
    else:
        raise AssertionError("the offers service never got its partitions")
    try:
        yield thread
    finally:
        thread.stop()


class _Progress:
    """Compares the service's stored offsets with the broker's end offsets."""

    def __init__(self, settings, group: str) -> None:
        self.settings, self.group = settings, group
        self.consumer = KafkaConsumer(**settings.kafka_client_config(), enable_auto_commit=False)
        self.engine = make_engine(settings, "offers")

    def caught_up(self) -> bool:
        """The service has applied every record of every topic it consumes."""
        with self.engine.connect() as conn:
            for topic in SERVICE.consumes:
                physical = self.settings.topic(topic)
                parts = self.consumer.partitions_for_topic(physical) or set()
                ends = self.consumer.end_offsets([TopicPartition(physical, p) for p in parts])
                done = stored_offsets(conn, self.group, physical)
                if any(done.get(tp.partition, 0) < end for tp, end in ends.items()):
                    return False
        return True

    def close(self) -> None:
        self.consumer.close()
        self.engine.dispose()


def _partition(key: str, partitions: int) -> int:
    """The partition the producer's default partitioner picks for ``key``."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def _same_partition_account(acc: str, partitions: int) -> str:
    while True:
        other = f.new_id("acc")
        if _partition(other, partitions) == _partition(acc, partitions):
            return other


def _of(events, event_type, account_id):
    return [e for e in events if e.type == event_type and e.subject == account_id]


def test_offers_plans_refunds_payments_and_replays(settings):
    producer = Producer(settings)
    offers_out, plans_out = Collector(settings, OFFERS), Collector(settings, PLANS)
    a, b, c = f.new_id("acc"), f.new_id("acc"), f.new_id("acc")
    sent: list[tuple[str, dict]] = []

    def send(topic, *messages):
        producer.send_all(topic, messages)
        sent.extend((topic, m) for m in messages)

    with _running(settings):
        # accounts first; purchases of accounts not yet applied wait for them
        send(
            ACCOUNTS,
            f.account(a),
            f.account(b, auto_convert=auto_convert("1000.00", 6)),
            f.account(c, status="blocked", risk_score=500),
        )
        pa = purchase_recorded(a, "1200.00")
        pb = purchase_recorded(b, "1500.00")
        send(RECORDED, pa, pb, purchase_recorded(c, "100.00", mcc="7995"))

        # purchase -> offer; ineligible -> every reason; auto-convert -> plan at once
        offers_out.wait_count(2)
        plans_out.wait_count(1)
        [made] = _of(offers_out.events(), "offer.made", a)
        assert str({o.tenor_months: o for o in made.data.options}[12].apr) == "13.03"
        [ne] = _of(offers_out.events(), "offer.not-eligible", c)
        assert ne.data.reasons == [
            "account_not_active",
            "amount_below_minimum",
            "mcc_excluded",
            "risk_score_too_low",
        ]
        [auto] = _of(plans_out.events(), "plan.created", b)
        assert auto.data.auto_converted and auto.data.offer_id is None
        assert auto.data.tenor_months == 6

        # acceptance -> plan with its schedule (3 x 400.00 + 9.00, due the 15th)
        send(DECISIONS, f.offer_accepted(a, made.data.offer_id, 3))
        plans_out.wait_for(
            lambda rs: len(_of(plans_out.events(), "plan.created", a)) == 1,
            30,
            "plan for the accepted offer",
        )
        [plan] = _of(plans_out.events(), "plan.created", a)
        assert [(s.due_date, s.amount) for s in plan.data.schedule] == [
            (date(2026, 2, 15), D("409.00")),
            (date(2026, 3, 15), D("409.00")),
            (date(2026, 4, 15), D("409.00")),
        ]
        assert sum(s.principal for s in plan.data.schedule) == D("1200.00")

        # refund of the auto-converted purchase -> plan.cancelled
        send(
            RECORDED, refund_recorded(b, pb["data"]["purchase_id"], "1500.00", fully_refunded=True)
        )
        # payments over the plan's life -> installment.paid x 3, plan.completed
        pay = [f.payment(a, "409.00", received_at=f"2026-0{m}-15T10:00:00Z") for m in (2, 3, 4)]
        send(PAYMENTS, *pay)
        plans_out.wait_for(
            lambda rs: _of(plans_out.events(), "plan.completed", a), 30, "plan.completed"
        )
        # duplicates: the same events again, and the same payment under a new event id
        again = f.payment(a, "409.00", payment_id=pay[0]["data"]["payment_id"])
        send(PAYMENTS, pay[0], again)
        send(DECISIONS, f.offer_accepted(a, made.data.offer_id, 3))  # a second acceptance
        offers_out.wait_for(
            lambda rs: _of(offers_out.events(), "offer.rejected", a),
            30,
            "second acceptance rejected",
        )
        plans_out.settle()
        offers_out.settle()

    plan_events = plans_out.events()
    [cancelled] = _of(plan_events, "plan.cancelled", b)
    assert cancelled.data.reason == "refund"
    assert (cancelled.data.principal_returned, cancelled.data.fee_returned) == (
        D("1500.00"),
        D("63.00"),  # 1500 x 0.70 % x 6: no fee was due yet
    )
    paid = _of(plan_events, "installment.paid", a)
    assert [(e.data.seq, e.data.paid_on.isoformat()) for e in paid] == [
        (1, "2026-02-15"),
        (2, "2026-03-15"),
        (3, "2026-04-15"),
    ]
    assert len(_of(plan_events, "plan.completed", a)) == 1
    [rejected] = _of(offers_out.events(), "offer.rejected", a)
    assert rejected.data.reason == "already_converted"
    assert all(
        r.key.decode() == e.subject for r, e in zip(plans_out.records, plan_events, strict=True)
    )

    # replay: every input again (same event ids) to a restarted service -> nothing new
    before = Counter(e.id for e in [*plans_out.events(), *offers_out.events()])
    assert max(before.values()) == 1
    for topic, message in sent:
        producer.send(topic, message)
    producer.flush()
    with _running(settings) as service:
        progress = _Progress(settings, service.runner.group)
        try:
            wait_until(progress.caught_up, 30, "the replay applied")
        finally:
            progress.close()
        plans_out.settle()
        offers_out.settle()
    after = Counter(e.id for e in [*plans_out.events(), *offers_out.events()])
    assert after == before


def test_end_of_day_right_after_a_payment_never_reports_it_overdue(settings):
    """The payment sits behind a backlog on its partition; the end of day, on its own
    topic, reaches the service first. It must wait for the payment all the same."""
    producer = Producer(settings)
    plans_out = Collector(settings, PLANS)
    acc = f.new_id("acc")
    busy = _same_partition_account(acc, settings.topic_partitions)
    small_batches = settings.model_copy(update={"poll_max_records": POLL_RECORDS})
    with _running(small_batches):
        producer.send_all(ACCOUNTS, [f.account(acc, auto_convert=auto_convert("100.00", 3))])
        producer.send_all(RECORDED, [purchase_recorded(acc, "1200.00")])
        plans_out.wait_count(1)
        for _ in range(BACKLOG):
            producer.send(PAYMENTS, f.payment(busy, "1.00"))
        # the payment, acknowledged by the broker, then the end of day at once
        producer.send(PAYMENTS, f.payment(acc, "409.00", received_at="2026-02-15T10:00:00Z"))
        producer.flush()
        producer.send(DAYS, f.business_day("2026-03-08"))
        producer.flush()
        plans_out.wait_for(
            lambda rs: _of(plans_out.events(), "installment.due-soon", acc), 60, "due-soon"
        )
        plans_out.settle()
    events = plans_out.events()
    assert _of(events, "account.delinquency", acc) == []
    [paid] = _of(events, "installment.paid", acc)
    [soon] = _of(events, "installment.due-soon", acc)
    assert (paid.data.seq, soon.data.seq, soon.data.days_until_due) == (1, 2, 7)


def test_a_mixed_batch_on_postgresql_gives_what_its_records_give_one_by_one(pg_database, tmp_path):
    """The batch repository's COPY and executemany writes, on PostgreSQL: the mixed
    batches of the unit test give the same events in one batch as one by one."""
    base, _, name = pg_database.rpartition("/")
    admin = create_engine(pg_database, isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def make(which: str) -> Harness:  # a database per harness: separate state
        made.append(f"{name}_{which}")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{made[-1]}"'))
        return Harness(SERVICE, tmp_path, database_url=f"{base}/{made[-1]}")

    try:
        outs = check_batches_match_one_by_one(make)
        assert [summarise(out) for out in outs] == EXPECTED
    finally:
        with admin.connect() as conn:
            for db in made:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()
