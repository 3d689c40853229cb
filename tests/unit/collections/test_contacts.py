"""collections: contact outcomes (contact.recorded), promises to pay and disputes
through the runtime's batch code (SQLite, no broker). CONTRACT 4.1 and 5.1."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from services.collections.tables import contacts, disputes, payments, promises
from tests.builders.collections import contact, paid, plan_created
from tests.builders.services import COLLECTIONS as SERVICE
from tests.harness import Harness
from tests.support import envelope

PLANS = "installments.plans.v1"
OUTCOMES = "collections.outcomes.v1"
CASE = "case:acc-1:2026-01-11"  # opened by the report at DPD 1
OLDEST = date(2026, 1, 10)  # the oldest unpaid due date of the scenarios


def delinquency(account_id: str, dpd: int, overdue: str = "250.00", *,
                on: date | None = None) -> dict:  # fmt: skip
    """account.delinquency as offers emits it (DPD 0: a payment cleared every overdue one)."""
    business_date = on or OLDEST + timedelta(days=dpd)
    data = {"account_id": account_id, "business_date": business_date.isoformat(),
            "days_past_due": dpd, "overdue_amount": overdue if dpd else "0.00",
            "currency": "USD"}  # fmt: skip
    if dpd:
        data["oldest_unpaid_due_date"] = (business_date - timedelta(days=dpd)).isoformat()
    return envelope("account.delinquency", account_id, data, source="offers")


def raised(events) -> list[tuple[int, str, str, int]]:
    return [(e.data.level, e.data.action, e.data.bucket, e.data.days_past_due)
            for e in events if e.type == "escalation.raised"]  # fmt: skip


def day(dpd: int) -> date:
    return OLDEST + timedelta(days=dpd)


@pytest.fixture
def h(tmp_path):
    harness = Harness(SERVICE, tmp_path)
    harness.events(PLANS, plan_created("acc-1", "plan-1", "1200.00", 3))
    for dpd in (1, 8):  # sms, sms_push
        harness.events(PLANS, delinquency("acc-1", dpd))
    yield harness
    harness.close()


def promise(amount: str = "250.00", on: int = 9, promised: int = 15, cid: str = "ct-p1"):
    return contact("acc-1", CASE, "promise_to_pay", day(on), contact_id=cid,
                   promised_amount=amount, promised_date=day(promised))  # fmt: skip


def rows(h: Harness, table) -> list[dict]:
    with h.runner.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table))]


def dead(h: Harness, message) -> str:
    [out] = h.feed(OUTCOMES, message)
    assert out.topic == OUTCOMES + ".dlq" and out.headers["error.service"] == "collections"
    return out.headers["error.reason"]


def types(events) -> list[str]:
    return [e.type for e in events]


# --------------------------------------------------------------------------- promises


def test_a_promise_holds_the_ladder_and_a_payment_keeps_it(h):
    assert h.events(OUTCOMES, promise()) == []  # promised for DPD 15: held until DPD 18
    assert h.events(PLANS, delinquency("acc-1", 15)) == []  # call held
    payment = paid("acc-1", "plan-1", 1, "400.00", paid_on=day(16))
    [kept] = h.events(PLANS, payment)
    assert kept.type == "promise.kept" and kept.subject == "acc-1"
    assert kept.causation_id == payment["id"]
    assert (kept.data.case_id, kept.data.contact_id) == (CASE, "ct-p1")
    assert kept.data.promised_amount == Decimal("250.00")
    assert kept.data.paid_amount == Decimal("400.00")
    assert kept.data.business_date == day(15)  # the last business date closed
    # a kept promise still holds through the close of promised_date + 2, and is not
    # broken afterwards; the ladder resumes at promised_date + 3
    assert h.events(PLANS, delinquency("acc-1", 17)) == []
    assert raised(h.events(PLANS, delinquency("acc-1", 18))) == [(3, "call", "M1", 18)]
    [row] = rows(h, promises)
    assert (row["status"], row["decided_on"], row["event_id"]) == ("kept", day(15), kept.id)


def test_a_promise_not_kept_is_broken_at_promised_date_plus_3_and_the_ladder_resumes(h):
    h.events(OUTCOMES, promise())
    assert h.events(PLANS, *(delinquency("acc-1", d) for d in (15, 16, 17))) == []
    report = delinquency("acc-1", 18)
    events = h.events(PLANS, report)
    assert types(events) == ["promise.broken", "escalation.raised"]
    broken = events[0]
    assert broken.causation_id == report["id"]
    assert broken.data.paid_amount == Decimal("0") and broken.data.business_date == day(18)
    assert raised(events) == [(3, "call", "M1", 18)]
    assert h.events(PLANS, delinquency("acc-1", 19)) == []  # decided once


def test_after_an_outage_the_close_that_decides_resumes_every_crossed_level_in_order(h):
    h.events(OUTCOMES, promise())
    events = h.events(PLANS, delinquency("acc-1", 40))  # first close seen: promised + 25
    assert types(events) == ["promise.broken"] + ["escalation.raised"] * 2
    assert raised(events) == [(3, "call", "M2", 40), (4, "letter", "M2", 40)]


def test_payments_only_count_from_contacted_on_and_in_the_promise_currency(h):
    h.events(PLANS, paid("acc-1", "plan-1", 1, "400.00", paid_on=day(8)))  # before contact
    assert h.events(OUTCOMES, promise()) == []
    events = h.events(PLANS, delinquency("acc-1", 18))
    assert types(events)[0] == "promise.broken"


def test_a_promise_already_paid_for_is_kept_at_once(h):
    h.events(PLANS, paid("acc-1", "plan-1", 1, "400.00", paid_on=day(9)))
    message = promise()
    [kept] = h.events(OUTCOMES, message)
    assert kept.type == "promise.kept" and kept.causation_id == message["id"]
    assert kept.data.business_date == day(8)


def test_payments_add_up_and_a_repeated_payment_counts_once(h):
    h.events(OUTCOMES, promise("700.00"))
    assert h.events(PLANS, paid("acc-1", "plan-1", 1, "400.00", paid_on=day(10))) == []
    assert h.events(PLANS, paid("acc-1", "plan-1", 1, "400.00", paid_on=day(10))) == []
    [kept] = h.events(PLANS, paid("acc-1", "plan-1", 2, "400.00", paid_on=day(11)))
    assert kept.data.paid_amount == Decimal("800.00")
    assert len(rows(h, payments)) == 2


def test_a_hold_never_delays_a_cure(h):
    h.events(OUTCOMES, promise())
    [cured] = h.events(PLANS, delinquency("acc-1", 0, on=day(12)))
    assert cured.type == "escalation.resolved" and cured.data.resolution == "cured"
    assert [r["status"] for r in rows(h, promises)] == ["void"]
    assert "resolved" in dead(h, contact("acc-1", CASE, "reached", day(13)))


def test_a_hold_never_delays_a_charge_off(h):
    h.events(PLANS, delinquency("acc-1", 170))
    h.events(OUTCOMES, contact("acc-1", CASE, "dispute", day(171)))
    h.events(OUTCOMES, promise(on=171, promised=190, cid="ct-p2"))
    events = h.events(PLANS, delinquency("acc-1", 180))
    assert types(events) == ["escalation.resolved"]
    assert events[0].data.resolution == "charged_off"
    assert [r["status"] for r in rows(h, promises)] == ["void"]


# --------------------------------------------------------------------------- disputes


def test_a_dispute_holds_the_ladder_until_resolved(h):
    h.events(OUTCOMES, contact("acc-1", CASE, "dispute", day(9)))
    assert h.events(PLANS, delinquency("acc-1", 15)) == []
    h.events(OUTCOMES, contact("acc-1", CASE, "dispute_resolved", day(16)))
    assert raised(h.events(PLANS, delinquency("acc-1", 17))) == [(3, "call", "M1", 17)]
    [row] = rows(h, disputes)
    assert row["resolved_by"] == "ct-dispute_resolved-" + day(16).isoformat()


def test_a_dispute_holds_through_the_close_of_contacted_on_plus_30_at_most(h):
    h.events(OUTCOMES, contact("acc-1", CASE, "dispute", day(9)))
    assert h.events(PLANS, delinquency("acc-1", 39)) == []  # contacted_on + 30
    assert raised(h.events(PLANS, delinquency("acc-1", 40))) == [
        (3, "call", "M2", 40), (4, "letter", "M2", 40)]  # fmt: skip


# --------------------------------------------------------------------------- legal guard


def test_recorded_contacts_count_for_the_legal_guard_rechecked_every_day(tmp_path):
    big = "80000.00"
    h = Harness(SERVICE, tmp_path)
    try:
        # first seen at DPD 70: levels 1-5 in one catch-up, one contact date
        assert len(raised(h.events(PLANS, delinquency("acc-1", 70, big)))) == 5
        case = "case:acc-1:" + day(70).isoformat()
        assert h.events(PLANS, delinquency("acc-1", 95, big)) == []
        # a promise and a dispute are not contacts for the guard; agency is not either
        h.events(OUTCOMES, contact("acc-1", case, "dispute", day(96)))
        h.events(OUTCOMES, contact("acc-1", case, "dispute_resolved", day(97)))
        assert h.events(PLANS, delinquency("acc-1", 100, big)) == []
        h.events(OUTCOMES, contact("acc-1", case, "no_answer", day(100)))  # 30 days later
        assert raised(h.events(PLANS, delinquency("acc-1", 101, big))) == [
            (6, "legal", "M4+", 101)
        ]
        assert [r["outcome"] for r in rows(h, contacts)] == [
            "dispute", "dispute_resolved", "no_answer"]  # fmt: skip
    finally:
        h.close()


# --------------------------------------------------------------------------- refusals


def test_refused_outcomes_go_to_the_dlq_with_a_reason(h):
    assert "unknown case" in dead(h, contact("acc-1", "case:acc-1:2026-05-05", "reached",
                                             day(9)))  # fmt: skip
    assert "unknown case" in dead(h, contact("acc-2", CASE, "reached", day(9)))
    assert "more than 30 days" in dead(h, promise(promised=9 + 31))
    assert "before contacted_on" in dead(h, promise(promised=8))
    assert "currency" in dead(h, contact("acc-1", CASE, "promise_to_pay", day(9),
                                         promised_amount="5.00", promised_date=day(10),
                                         currency="EUR"))  # fmt: skip
    assert "no dispute open" in dead(h, contact("acc-1", CASE, "dispute_resolved", day(9)))
    assert rows(h, contacts) == [] and rows(h, promises) == []
    assert h.events(OUTCOMES, promise(promised=9 + 30)) == []  # the limit itself is fine


def test_a_repeated_contact_id_is_ignored(h):
    h.events(OUTCOMES, promise())
    assert h.feed(OUTCOMES, promise()) == []
    assert len(rows(h, promises)) == 1


def test_one_batch_behaves_as_one_by_one(h, tmp_path):
    messages = [
        (OUTCOMES, promise("300.00")),
        (PLANS, delinquency("acc-1", 15)),
        (PLANS, paid("acc-1", "plan-1", 1, "400.00", paid_on=day(15))),
        (OUTCOMES, promise("900.00", on=15, promised=20, cid="ct-p2")),
        (OUTCOMES, contact("acc-1", CASE, "reached", day(15))),
        (PLANS, delinquency("acc-1", 22)),
        (PLANS, delinquency("acc-1", 23)),
        (PLANS, delinquency("acc-1", 40)),
    ]
    one = Harness(SERVICE, tmp_path / "one")
    try:
        for m in (plan_created("acc-1", "plan-1", "1200.00", 3),
                  delinquency("acc-1", 1), delinquency("acc-1", 8)):  # fmt: skip
            one.events(PLANS, m)
        singly = [e for topic, m in messages for e in one.feed(topic, m)]
        batch = h.process(*(h.publish(topic, m) for topic, m in messages))
        assert [(e.topic, e.value) for e in batch] == [(e.topic, e.value) for e in singly]
        assert types(e.event for e in batch) == [
            "promise.kept", "promise.broken", "escalation.raised", "escalation.raised"]  # fmt: skip
    finally:
        one.close()
