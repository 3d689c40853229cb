"""Reminders and collections through the real broker and PostgreSQL, end to end.

The card system's inputs go through the real purchases and offers services (accounts,
purchases auto-converted into plans, payments, one ``business-day.closed`` per
business day); offers emits the ``installments.plans.v1`` events the two services
under test consume. Over a simulated month:

- A pays on time (on each due date): reminders only;
- B pays 18 days late: reminders, then escalation levels 1, 2, 3, then cured;
- C (an old plan, first seen already 150 days past due) never pays: every crossed
  level in one catch-up, then charged off at 180 days past due, writing off the
  overdue amount and the principal not yet due (then nothing of C is reserved).

Then everything is replayed (the plans topic re-published as is, payments and day
closes re-sent): no new output.

A second test writes offers' events directly: a backlog after an outage of the two
services (only the current reminder, every crossed level), then a restart with
everything re-published (nothing new), then the next day live.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal as D
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from sqlalchemy import select

from services.collections.queries import open_cases, risk_reserve
from services.reminders.tables import reminders
from shared.runtime.db import make_engine
from tests.builders import messages as f
from tests.builders.services import COLLECTIONS as COLLECTIONS
from tests.builders.services import OFFERS as OFFERS
from tests.builders.services import PURCHASES as PURCHASES
from tests.builders.services import REMINDERS as REMINDERS
from tests.support import Collector, Producer, ServiceThread, envelope, running

pytestmark = pytest.mark.integration

ACCOUNTS = "card.accounts.v1"
PURCHASES_IN = "card.purchases.v1"
PAYMENTS = "card.payments.v1"
DAYS = "card.business-days.v1"
PLANS = "installments.plans.v1"
REMINDERS_OUT = "reminders.outbound.v1"
ESCALATIONS = "collections.escalations.v1"

FIRST_DAY, LAST_DAY = date(2026, 2, 8), date(2026, 3, 10)


class Idle:
    """Waits until every service has committed (after publishing) up to each log end."""

    def __init__(self, settings: Any, threads: list[ServiceThread]) -> None:
        self.settings = settings
        self.threads = threads
        self.groups = {
            t.runner.group: [settings.topic(topic) for topic in t.runner.service.consumes]
            for t in threads
        }
        self.admin = KafkaAdminClient(**settings.kafka_client_config(), client_id="idle")
        self.consumer = KafkaConsumer(**settings.kafka_client_config(), group_id=None)
        topics = {topic for topics in self.groups.values() for topic in topics}
        self.tps = [
            TopicPartition(topic, p)
            for topic in topics
            for p in self.consumer.partitions_for_topic(topic) or ()
        ]

    def wait(self, timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while True:
            committed = self.admin.list_group_offsets(list(self.groups))
            ends = self.consumer.end_offsets(self.tps)
            behind: dict[tuple[str, str, int], int] = {}
            for group, topics in self.groups.items():
                for tp, end in ends.items():
                    if tp.topic in topics:
                        om = committed.get(group, {}).get(tp)
                        lag = end - (om.offset if om is not None and om.offset >= 0 else 0)
                        if lag:
                            behind[(group, tp.topic, tp.partition)] = lag
            if not behind:
                return
            if time.monotonic() > deadline:
                assigned = {t.runner.service.name: len(t.runner.assigned) for t in self.threads}
                raise AssertionError(
                    f"pipeline behind ({what}): {behind}; partitions assigned: {assigned}"
                )
            time.sleep(0.05)

    def close(self) -> None:
        self.admin.close()
        self.consumer.close()


def days() -> list[date]:
    return [FIRST_DAY + timedelta(days=n) for n in range((LAST_DAY - FIRST_DAY).days + 1)]


def by_account(events: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    for e in events:
        out[e.subject].append(e)
    return out


def test_a_month_of_reminders_and_collections_through_offers(settings):
    producer = Producer(settings)
    plans_out = Collector(settings, PLANS)
    reminders_out = Collector(settings, REMINDERS_OUT)
    escalations_out = Collector(settings, ESCALATIONS)
    a, b, c = f.new_id("acc-a"), f.new_id("acc-b"), f.new_id("acc-c")
    auto3 = {"enabled": True, "threshold": "100.00", "tenor_months": 3}
    auto12 = {"enabled": True, "threshold": "100.00", "tenor_months": 12}
    accounts = [
        f.account(a, auto_convert=auto3),
        f.account(b, auto_convert=auto3,
                  contact={"channel": "email", "locale": "en-GB", "contact_ref": "cref-b"}),
        f.account(c, auto_convert=auto12, credit_limit="200000.00"),
    ]  # fmt: skip
    purchases = [
        f.purchase(a, "1200.00", posted_at="2026-01-15T10:00:00Z"),
        f.purchase(b, "1200.00", posted_at="2026-01-15T11:00:00Z"),
        f.purchase(c, "120000.00", posted_at="2025-08-11T10:00:00Z"),
    ]
    sent_inputs: list[tuple[str, dict[str, Any]]] = []

    def send(topic: str, message: dict[str, Any]) -> None:
        producer.send(topic, message)
        sent_inputs.append((topic, message))

    with running(PURCHASES, OFFERS, REMINDERS, COLLECTIONS, settings=settings) as threads:
        idle = Idle(settings, threads)
        try:
            for m in accounts:
                send(ACCOUNTS, m)
            producer.flush()
            idle.wait(what="accounts")
            for m in purchases:
                send(PURCHASES_IN, m)
            producer.flush()
            plans_out.wait_for(lambda rs: len(rs) >= 3, 30, "three plans (auto-converted)")
            plan = {e.subject: e.data for e in plans_out.events() if e.type == "plan.created"}
            assert set(plan) == {a, b, c}

            def due(account: str, seq: int) -> Any:
                return plan[account].schedule[seq - 1]

            # A pays on the due date, B pays the first installment 18 days late.
            payments = {
                due(a, 1).due_date: [(a, due(a, 1).amount)],
                date(2026, 3, 5): [(b, due(b, 1).amount)],
            }
            engine = make_engine(settings, "collections")
            for day in days():
                for account, amount in payments.get(day, []):
                    send(PAYMENTS, f.payment(account, str(amount),
                                             received_at=f"{day}T15:00:00Z"))  # fmt: skip
                send(DAYS, f.business_day(day.isoformat()))
                producer.flush()
                idle.wait(what=f"close of {day}")
                if day == date(2026, 3, 2):
                    mid_month = open_cases(engine)
            month_reminders = reminders_out.settle(0.5)[:]
            month_escalations = escalations_out.settle(0.5)[:]
            reserve = {line.bucket: line for line in risk_reserve(engine, COLLECTIONS.policy)}

            # Replays: the whole plans topic re-published as is (same ids), and the card
            # system re-sending its payments and a day close.
            plans_out.settle(0.5)
            for record in plans_out.records[:]:
                producer.send(PLANS, record.value, key=record.key)
            for topic, message in sent_inputs:
                if topic in (PAYMENTS, DAYS):
                    producer.send(topic, message)
            producer.flush()
            idle.wait(what="replay")
            assert len(reminders_out.settle(1.0)) == len(month_reminders)
            assert len(escalations_out.settle(0.5)) == len(month_escalations)
            assert open_cases(engine) == []
            engine.dispose()
        finally:
            idle.close()

    sent = by_account(reminders_out.events())
    escalations = by_account(escalations_out.events())

    # --- reminders: 7/3/1/0 days before due, the most urgent current one, none once paid
    def offsets(account: str) -> list[tuple[int, int]]:
        return [(e.data.seq, e.data.days_before_due) for e in sent[account]]

    assert offsets(a) == [(1, 7), (1, 3), (1, 1), (2, 7)]  # paid on the due date: no due-today
    assert offsets(b) == [(1, 7), (1, 3), (1, 1), (1, 0), (2, 7)]
    c_feb = next(line.seq for line in plan[c].schedule if line.due_date == date(2026, 2, 11))
    # first seen 3 days before a due date: only the 3-day one (the 7-day one is stale)
    assert offsets(c) == [(c_feb, 3), (c_feb, 1), (c_feb, 0),
                          (c_feb + 1, 7), (c_feb + 1, 3), (c_feb + 1, 1)]  # fmt: skip
    first_b = sent[b][0]
    assert (first_b.data.channel, first_b.data.contact_ref, first_b.data.template) == (
        "email",
        "cref-b",
        "due_in_7_days",
    )
    assert first_b.data.amount_due == due(b, 1).amount
    assert {(e.data.channel, e.data.contact_ref) for e in sent[a]} == {("sms", f"cref-{a}")}
    all_reminders = reminders_out.events()
    assert len({e.id for e in all_reminders}) == len(all_reminders)
    assert len({e.data.reminder_id for e in all_reminders}) == len(all_reminders)
    assert all(r.key.decode() == e.subject for r, e in zip(reminders_out.records, all_reminders,
                                                          strict=True))  # fmt: skip

    # --- collections
    assert a not in escalations

    def steps(account: str) -> list[tuple[Any, ...]]:
        return [
            (e.type, e.data.level, e.data.bucket, e.data.days_past_due, str(e.data.business_date))
            if e.type == "escalation.raised"
            else (e.type, e.data.resolution, str(e.data.business_date), e.data.amount)
            for e in escalations[account]
        ]

    b_case = f"case:{b}:2026-02-16"
    assert steps(b) == [
        ("escalation.raised", 1, "M1", 1, "2026-02-16"),
        ("escalation.raised", 2, "M1", 8, "2026-02-23"),
        ("escalation.raised", 3, "M1", 15, "2026-03-02"),
        ("escalation.resolved", "cured", "2026-03-05", None),
    ]
    assert {e.data.case_id for e in escalations[b]} == {b_case}
    assert [e.data.action for e in escalations[b][:3]] == ["sms", "sms_push", "call"]

    overdue_then = sum(
        (line.amount for line in plan[c].schedule if line.due_date < FIRST_DAY), D(0)
    )
    overdue_at_charge_off = sum(
        (line.amount for line in plan[c].schedule if line.due_date < LAST_DAY), D(0)
    )
    not_yet_due_at_charge_off = sum(
        (line.principal for line in plan[c].schedule if line.due_date >= LAST_DAY), D(0)
    )
    assert not_yet_due_at_charge_off == D("60000.00")  # Mar-Aug: 6 x 10,000.00
    written_off = overdue_at_charge_off + not_yet_due_at_charge_off
    assert written_off == D("120000.00") + sum(  # all the principal + the overdue fees
        (line.fee for line in plan[c].schedule if line.due_date < LAST_DAY), D(0)
    )
    assert overdue_then >= D("50000.00")
    assert steps(c) == [
        ("escalation.raised", level, "M4+", 150, "2026-02-08") for level in (1, 2, 3, 4, 5)
    ] + [("escalation.resolved", "charged_off", "2026-03-10", written_off)]
    assert {e.data.overdue_amount for e in escalations[c][:5]} == {overdue_then}
    assert len({e.id for e in escalations_out.events()}) == len(month_escalations)

    # --- read models
    assert [(row.account_id, row.level) for row in mid_month] == [(c, 5), (b, 3)]
    principal_a_b = sum(
        (line.principal for p in (plan[a], plan[b]) for line in p.schedule[1:]), D(0)
    )
    assert (reserve["current"].principal, reserve["current"].accounts) == (principal_a_b, 2)
    assert reserve["current"].reserve == (principal_a_b / 100).quantize(D("0.01"))
    # C's principal was written off at the charge-off: no longer outstanding, not reserved
    assert (reserve["M4+"].accounts, reserve["M4+"].principal, reserve["M4+"].reserve) == (
        0,
        D(0),
        D(0),
    )
    assert all(reserve[bucket].principal == 0 for bucket in ("M1", "M2", "M3"))


# --------------------------------------------------------------------------- direct events


def due_soon(account_id: str, plan_id: str, due: date, business_date: date) -> dict[str, Any]:
    data = {
        "plan_id": plan_id, "seq": 1, "due_date": due.isoformat(),
        "amount_outstanding": "409.00", "currency": "USD",
        "days_until_due": (due - business_date).days, "business_date": business_date.isoformat(),
    }  # fmt: skip
    return envelope("installment.due-soon", account_id, data, source="offers")


def delinquency(account_id: str, dpd: int, business_date: date) -> dict[str, Any]:
    data = {
        "account_id": account_id, "business_date": business_date.isoformat(),
        "days_past_due": dpd, "overdue_amount": "409.00", "currency": "USD",
        "oldest_unpaid_due_date": (business_date - timedelta(days=dpd)).isoformat(),
    }  # fmt: skip
    return envelope("account.delinquency", account_id, data, source="offers")


def test_backlog_after_an_outage_then_a_restart_with_replay(settings):
    """The services were down while days closed: offers' events of every missed day wait
    in the logs (written here directly, as offers writes them). On start, only the
    reminder current on the newest closed day goes out; every crossed escalation level
    goes out, oldest first. A restart with everything re-published adds nothing."""
    producer = Producer(settings)
    reminders_out = Collector(settings, REMINDERS_OUT)
    escalations_out = Collector(settings, ESCALATIONS)
    x, y, nobody = f.new_id("acc-x"), f.new_id("acc-y"), f.new_id("acc-z")  # z: no account
    due_x = date(2026, 4, 20)
    last_closed = due_x - timedelta(days=2)
    oldest_y = last_closed - timedelta(days=40)  # y's oldest unpaid due date
    backlog: list[tuple[str, dict[str, Any]]] = [(ACCOUNTS, f.account(x))]
    for n in range(1, 41):  # 40 days closed while the services were down
        day = oldest_y + timedelta(days=n)
        backlog.append((DAYS, f.business_day(day.isoformat())))
        if (due_x - day).days <= 7:
            backlog.append((PLANS, due_soon(x, "plan-x", due_x, day)))
            backlog.append((PLANS, due_soon(nobody, "plan-z", due_x, day)))
        backlog.append((PLANS, delinquency(y, n, day)))
    for topic, message in backlog:
        producer.send(topic, message)
    producer.flush()

    with running(REMINDERS, COLLECTIONS, settings=settings) as threads:
        idle = Idle(settings, threads)
        try:
            idle.wait(what="backlog")
            reminders_out.settle(0.5)
            escalations_out.settle(0.5)
        finally:
            idle.close()
    [only] = reminders_out.events()
    # the real days before due (2), the template of the most urgent slot reached (3 days)
    assert (only.subject, only.data.days_before_due, only.data.template) == (x, 2, "due_in_3_days")
    assert [(e.data.level, e.data.days_past_due) for e in escalations_out.events()] == [
        (1, 1), (2, 8), (3, 15), (4, 31)
    ]  # fmt: skip
    reminders_db = make_engine(settings, "reminders")
    try:
        with reminders_db.connect() as conn:
            handled = conn.execute(
                select(reminders.c.account_id, reminders.c.offset_days, reminders.c.reason)
            ).all()
    finally:
        reminders_db.dispose()
    assert sorted((acc == x, off, why) for acc, off, why in handled) == [
        (False, 3, "account_unknown"), (False, 7, "superseded"),
        (True, 3, None), (True, 7, "superseded"),
    ]  # fmt: skip

    # Restart: everything re-published (same ids), then the next day goes on live.
    with running(REMINDERS, COLLECTIONS, settings=settings) as threads:
        idle = Idle(settings, threads)
        try:
            for topic, message in backlog:
                producer.send(topic, message)
            producer.flush()
            idle.wait(what="replay")
            assert len(reminders_out.settle(1.0)) == 1
            assert len(escalations_out.settle(0.5)) == 4
            day = due_x - timedelta(days=1)
            producer.send(DAYS, f.business_day(day.isoformat()))
            producer.send(PLANS, due_soon(x, "plan-x", due_x, day))
            producer.flush()
            reminders_out.wait_count(2, 30)
            idle.wait(what="next day")
            reminders_out.settle(0.5)
        finally:
            idle.close()
    assert [e.data.days_before_due for e in reminders_out.events()] == [2, 1]
