"""Collections contact outcomes through the real broker and PostgreSQL (issue #14).

offers' events are written directly on installments.plans.v1 (as offers writes them),
the collections team's ``contact.recorded`` on collections.outcomes.v1:

- account A: a case, a ``promise_to_pay``, the ladder held at the next close, then a
  payment (``installment.paid``) covering it -> ``promise.kept`` on
  collections.escalations.v1, caused by the payment;
- account B: a case, a promise never kept -> at the close of promised_date + 3,
  ``promise.broken`` and, in the same close, the held level (call) raised.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from decimal import Decimal as D
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from tests.builders import messages as f
from tests.builders.collections import contact, paid, plan_created
from tests.builders.services import COLLECTIONS
from tests.support import Collector, Producer, envelope, running

pytestmark = pytest.mark.integration

PLANS = "installments.plans.v1"
OUTCOMES = "collections.outcomes.v1"
ESCALATIONS = "collections.escalations.v1"
OLDEST = date(2026, 1, 10)


def day(dpd: int) -> date:
    return OLDEST + timedelta(days=dpd)


def delinquency(account_id: str, dpd: int) -> dict[str, Any]:
    data = {
        "account_id": account_id, "business_date": day(dpd).isoformat(),
        "days_past_due": dpd, "overdue_amount": "400.00", "currency": "USD",
        "oldest_unpaid_due_date": OLDEST.isoformat(),
    }  # fmt: skip
    return envelope("account.delinquency", account_id, data, source="offers")


class Idle:
    """Waits until the collections group has committed up to each log end."""

    def __init__(self, settings: Any, threads: list[Any]) -> None:
        self.groups = {t.runner.group: [settings.topic(x) for x in t.runner.service.consumes]
                       for t in threads}  # fmt: skip
        self.admin = KafkaAdminClient(**settings.kafka_client_config(), client_id="idle")
        self.consumer = KafkaConsumer(**settings.kafka_client_config(), group_id=None)
        topics = {x for xs in self.groups.values() for x in xs}
        self.tps = [TopicPartition(x, p) for x in topics
                    for p in self.consumer.partitions_for_topic(x) or ()]  # fmt: skip

    def wait(self, timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while True:
            committed = self.admin.list_group_offsets(list(self.groups))
            ends = self.consumer.end_offsets(self.tps)
            behind = [
                tp for group, topics in self.groups.items() for tp, end in ends.items()
                if tp.topic in topics
                and end > max(getattr(committed.get(group, {}).get(tp), "offset", 0) or 0, 0)
            ]  # fmt: skip
            if not behind:
                return
            assert time.monotonic() < deadline, f"collections behind ({what}): {behind}"
            time.sleep(0.05)

    def close(self) -> None:
        self.admin.close()
        self.consumer.close()


def test_a_promise_kept_by_a_payment_and_a_promise_broken_that_resumes_the_ladder(settings):
    producer = Producer(settings)
    out = Collector(settings, ESCALATIONS)
    a, b = f.new_id("acc-a"), f.new_id("acc-b")
    case_a, case_b = f"case:{a}:{day(1).isoformat()}", f"case:{b}:{day(1).isoformat()}"

    def send(*messages: tuple[str, dict[str, Any]]) -> None:
        for topic, message in messages:
            producer.send(topic, message)
        producer.flush()

    with running(COLLECTIONS, settings=settings) as threads:
        idle = Idle(settings, threads)
        try:
            send(*((PLANS, plan_created(acc, f"plan-{acc}", "1200.00", 3)) for acc in (a, b)),
                 *((PLANS, delinquency(acc, dpd)) for dpd in (1, 8) for acc in (a, b)))  # fmt: skip
            out.wait_count(4, 30)  # sms, sms_push for each
            send(*((OUTCOMES, contact(acc, case, "promise_to_pay", day(9), contact_id=f"ct-{acc}",
                                      promised_amount="250.00", promised_date=day(15)))
                   for acc, case in ((a, case_a), (b, case_b))))  # fmt: skip
            idle.wait(what="promises")
            send((PLANS, delinquency(a, 15)), (PLANS, delinquency(b, 15)))  # both held
            idle.wait(what="held close")
            payment = paid(a, f"plan-{a}", 1, "400.00", paid_on=day(16))
            send((PLANS, payment))
            out.wait_count(5, 30)
            send((PLANS, delinquency(b, 16)), (PLANS, delinquency(b, 17)))  # still held
            idle.wait(what="held closes")
            decider = delinquency(b, 18)  # promised_date + 3
            send((PLANS, decider))
            out.wait_count(7, 30)
            idle.wait(what="decided")
            out.settle(0.5)
            events = out.events()
        finally:
            idle.close()

    by = {acc: [e for e in events if e.subject == acc] for acc in (a, b)}
    assert [(e.type, getattr(e.data, "level", None)) for e in by[a]] == [
        ("escalation.raised", 1), ("escalation.raised", 2), ("promise.kept", None)]  # fmt: skip
    kept = by[a][-1]
    assert kept.causation_id == payment["id"] and kept.data.contact_id == f"ct-{a}"
    assert (kept.data.paid_amount, kept.data.business_date) == (D("400.00"), day(15))
    assert [(e.type, getattr(e.data, "level", None)) for e in by[b]] == [
        ("escalation.raised", 1), ("escalation.raised", 2),
        ("promise.broken", None), ("escalation.raised", 3)]  # fmt: skip
    broken = by[b][2]
    assert broken.causation_id == decider["id"] and broken.data.paid_amount == D("0")
    assert broken.data.business_date == day(18) and by[b][3].data.days_past_due == 18
