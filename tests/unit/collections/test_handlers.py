"""collections handlers through the runtime's batch code (SQLite, no broker)."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from services.collections.policy import CollectionsPolicy
from services.collections.queries import case_history
from services.collections.tables import cases
from tests.builders.collections import paid, plan_created, plan_event
from tests.builders.services import COLLECTIONS as SERVICE
from tests.harness import Harness
from tests.support import envelope

PLANS = "installments.plans.v1"
OLDEST = date(2026, 1, 10)  # the oldest unpaid due date of the scenarios


def delinquency(account_id: str, dpd: int, overdue: str = "250.00", *,
                on: date | None = None, oldest: date = OLDEST) -> dict[str, Any]:  # fmt: skip
    """account.delinquency as offers emits it (DPD 0: a payment cleared every overdue one)."""
    business_date = on or oldest + timedelta(days=dpd)
    data: dict[str, Any] = {
        "account_id": account_id,
        "business_date": business_date.isoformat(),
        "days_past_due": dpd,
        "overdue_amount": overdue if dpd else "0.00",
        "currency": "USD",
    }
    if dpd:
        data["oldest_unpaid_due_date"] = (business_date - timedelta(days=dpd)).isoformat()
    return envelope("account.delinquency", account_id, data, source="offers")


def raised(events: list) -> list[tuple[int, str, str, int]]:
    return [(e.data.level, e.data.action, e.data.bucket, e.data.days_past_due)
            for e in events if e.type == "escalation.raised"]  # fmt: skip


@pytest.fixture
def h(tmp_path):
    harness = Harness(SERVICE, tmp_path)
    yield harness
    harness.close()


def test_dpd_sequence_climbs_the_ladder_one_level_at_a_time(h):
    out = {dpd: h.events(PLANS, delinquency("acc-1", dpd)) for dpd in (1, 2, 8, 9, 15, 31, 32)}
    assert {dpd: raised(events) for dpd, events in out.items() if events} == {
        1: [(1, "sms", "M1", 1)],
        8: [(2, "sms_push", "M1", 8)],
        15: [(3, "call", "M1", 15)],
        31: [(4, "letter", "M2", 31)],
    }
    first = out[1][0]
    case_id = "case:acc-1:2026-01-11"
    assert first.subject == "acc-1" and first.data.case_id == case_id
    assert (
        first.data.business_date == date(2026, 1, 11) and str(first.data.overdue_amount) == "250.00"
    )
    assert {e.data.case_id for events in out.values() for e in events} == {case_id}


def test_catch_up_jump_emits_every_crossed_level_oldest_first(h):
    events = h.events(PLANS, delinquency("acc-1", 40))
    assert raised(events) == [(1, "sms", "M2", 40), (2, "sms_push", "M2", 40),
                              (3, "call", "M2", 40), (4, "letter", "M2", 40)]  # fmt: skip
    assert len({e.data.case_id for e in events}) == 1
    assert len({e.id for e in events}) == 4
    assert raised(h.events(PLANS, delinquency("acc-1", 61))) == [(5, "agency", "M3", 61)]


def test_a_burst_of_daily_reports_raises_each_level_once_in_order(h):
    """A backlog after an outage: a month of daily reports in one batch."""
    events = h.events(PLANS, *(delinquency("acc-1", dpd) for dpd in range(1, 32)))
    assert [(lv, dpd) for lv, _a, _b, dpd in raised(events)] == [(1, 1), (2, 8), (3, 15), (4, 31)]


def test_legal_level_only_with_the_guard(h):
    big = "60000.00"
    h.events(PLANS, delinquency("acc-1", 1, big))
    h.events(PLANS, delinquency("acc-1", 31, big))  # a second contact 30 days later
    assert raised(h.events(PLANS, delinquency("acc-1", 91, big))) == [
        (5, "agency", "M4+", 91),
        (6, "legal", "M4+", 91),
    ]


def test_legal_level_withheld_below_the_minimum_overdue(h):
    h.events(PLANS, delinquency("acc-1", 1, "40000.00"))
    h.events(PLANS, delinquency("acc-1", 31, "40000.00"))
    assert raised(h.events(PLANS, delinquency("acc-1", 91, "40000.00"))) == [
        (5, "agency", "M4+", 91)
    ]
    # stays with the agency; once the overdue amount reaches the minimum it goes legal
    assert h.events(PLANS, delinquency("acc-1", 92, "49999.99")) == []
    assert raised(h.events(PLANS, delinquency("acc-1", 93, "50000.00"))) == [
        (6, "legal", "M4+", 93)
    ]


def test_legal_level_withheld_without_two_contacts_30_days_apart(h):
    """First seen at DPD 70: levels 1-5 raised in one catch-up are one contact date, and
    no later level adds a contact, so the guard never holds: it stays with the agency."""
    big = "80000.00"
    assert [lv for lv, *_ in raised(h.events(PLANS, delinquency("acc-1", 70, big)))] == [
        1,
        2,
        3,
        4,
        5,
    ]
    assert h.events(PLANS, *(delinquency("acc-1", dpd, big) for dpd in range(91, 180))) == []


def test_legal_guard_is_policy(h, tmp_path):
    policy = CollectionsPolicy(legal_min_overdue="100.00", legal_min_contacts=1)
    service = dataclasses.replace(SERVICE, policy=policy)
    other = Harness(service, tmp_path / "other")
    try:
        assert [lv for lv, *_ in raised(other.events(PLANS, delinquency("acc-1", 95)))] == [
            1,
            2,
            3,
            4,
            5,
            6,
        ]
    finally:
        other.close()


def test_cure_resolves_the_case_and_a_new_delinquency_opens_a_new_case(h):
    [l1] = h.events(PLANS, delinquency("acc-1", 1))
    h.events(PLANS, delinquency("acc-1", 8))
    [cured] = h.events(PLANS, delinquency("acc-1", 0, on=date(2026, 1, 20)))
    assert cured.type == "escalation.resolved"
    assert (cured.data.case_id, cured.data.resolution, cured.data.business_date) == (
        l1.data.case_id,
        "cured",
        date(2026, 1, 20),
    )
    assert cured.data.amount is None
    # current again: nothing more
    assert h.events(PLANS, delinquency("acc-1", 0, on=date(2026, 1, 21))) == []
    # a later delinquency is a new case, from level 1 again
    [again] = h.events(PLANS, delinquency("acc-1", 1, oldest=date(2026, 2, 10)))
    assert again.data.case_id == "case:acc-1:2026-02-11" != l1.data.case_id
    assert (again.data.level, again.data.action) == (1, "sms")


def test_dpd_180_charges_off_with_the_overdue_amount_when_no_plan_is_known(h):
    # no plan.created seen for acc-1: only the overdue amount (test_charge_off.py: with plans)
    h.events(PLANS, delinquency("acc-1", 100, "1500.00"))
    events = h.events(PLANS, delinquency("acc-1", 180, "2700.00"))
    [resolved] = [e for e in events if e.type == "escalation.resolved"]
    assert (resolved.data.resolution, str(resolved.data.amount)) == ("charged_off", "2700.00")
    assert resolved.data.business_date == OLDEST + timedelta(days=180)
    # a charged-off case takes nothing more, and opens no new case while still past due
    assert h.events(PLANS, delinquency("acc-1", 181, "2700.00")) == []
    # current again: closed silently; a later delinquency opens a new case
    assert h.events(PLANS, delinquency("acc-1", 0, on=OLDEST + timedelta(days=200))) == []
    [new] = h.events(PLANS, delinquency("acc-1", 1, oldest=OLDEST + timedelta(days=220)))
    assert new.data.case_id == f"case:acc-1:{(OLDEST + timedelta(days=221)).isoformat()}"
    with h.runner.engine.connect() as conn:
        statuses = dict(conn.execute(select(cases.c.case_id, cases.c.status)).all())
    assert sorted(statuses.values()) == ["closed", "open"]


def test_first_report_past_the_charge_off_dpd_raises_then_charges_off(h):
    events = h.events(PLANS, delinquency("acc-1", 200, "900.00"))
    assert [e.type for e in events] == ["escalation.raised"] * 5 + ["escalation.resolved"]
    assert events[-1].data.resolution == "charged_off"


def test_duplicates_and_stale_reports_emit_nothing_twice(h):
    report = delinquency("acc-1", 8)
    assert [lv for lv, *_ in raised(h.events(PLANS, report))] == [1, 2]
    assert h.events(PLANS, report) == []  # the same event again (inbox)
    assert h.events(PLANS, delinquency("acc-1", 8)) == []  # re-sent report, new id
    rec = h.publish(PLANS, delinquency("acc-1", 15))
    assert len(h.process(rec)) == 1
    assert h.process(rec) == []  # re-delivered record (below the stored offset)
    assert h.events(PLANS, delinquency("acc-1", 31), delinquency("acc-1", 31)) != []
    assert h.events(PLANS, delinquency("acc-1", 3)) == []  # stale: older business date
    cure = delinquency("acc-1", 0, on=OLDEST + timedelta(days=40))
    assert len(h.events(PLANS, cure)) == 1
    assert h.events(PLANS, cure) == []
    assert h.events(PLANS, delinquency("acc-1", 0, on=OLDEST + timedelta(days=40))) == []


def test_a_partial_payment_lowers_nothing(h):
    h.events(PLANS, delinquency("acc-1", 20, "500.00"))
    # a partial payment: same oldest due date still unpaid, less overdue
    assert h.events(PLANS, delinquency("acc-1", 21, "100.00")) == []
    assert raised(h.events(PLANS, delinquency("acc-1", 31, "100.00"))) == [(4, "letter", "M2", 31)]


def test_case_history_is_append_only(h):
    h.events(PLANS, delinquency("acc-1", 8))
    h.events(PLANS, delinquency("acc-1", 15))
    h.events(PLANS, delinquency("acc-1", 0, on=OLDEST + timedelta(days=16)))
    history = case_history(h.runner.engine, "case:acc-1:2026-01-18")
    assert [(r["kind"], r["level"], r["resolution"]) for r in history] == [
        ("opened", None, None), ("raised", 1, None), ("raised", 2, None),
        ("raised", 3, None), ("resolved", None, "cured"),
    ]  # fmt: skip
    assert all(r["cause_event_id"] for r in history)
    assert all(r["event_id"] for r in history if r["kind"] in ("raised", "resolved"))


def test_emitted_ids_are_deterministic(h, tmp_path):
    report = delinquency("acc-1", 20)
    first = h.events(PLANS, report)
    other = Harness(SERVICE, tmp_path / "other")
    try:
        second = other.events(PLANS, report)
    finally:
        other.close()
    assert [e.id for e in first] == [e.id for e in second]
    assert all(e.causation_id == report["id"] and e.subject == "acc-1" for e in first)


def test_invalid_report_goes_to_the_dlq(h):
    bad = delinquency("acc-1", 5)
    del bad["data"]["oldest_unpaid_due_date"]
    [dead] = h.feed(PLANS, bad)
    assert dead.topic == PLANS + ".dlq" and dead.headers["error.service"] == "collections"


def _state(h: Harness) -> dict[str, list]:
    from services.collections.tables import metadata

    with h.runner.engine.connect() as conn:
        return {
            name: [tuple(str(v) for v in row)
                   for row in conn.execute(select(table).order_by(*table.primary_key))]
            for name, table in metadata.tables.items()
        }  # fmt: skip


def test_a_mixed_batch_behaves_as_one_by_one(h, tmp_path):
    """One batch (the batch repository's in-memory view) == the same records one by one."""
    repeated = delinquency("acc-1", 8)
    messages = [
        plan_created("acc-1", "plan-1", "1200.00", 3),
        plan_created("acc-1", "plan-1", "1200.00", 3),  # duplicate plan (new id)
        paid("acc-1", "plan-1", 1, "400.00"),
        paid("acc-1", "plan-9", 1, "400.00"),  # unknown plan
        plan_created("acc-2", "plan-2", "600.00", 2),
        plan_event("plan.completed", "acc-2", "plan-2"),
        *(delinquency("acc-1", dpd) for dpd in (1, 2, 8)),
        repeated,
        repeated,  # the same event again
        delinquency("acc-1", 3),  # stale
        delinquency("acc-1", 0, on=OLDEST + timedelta(days=20)),  # cured
        delinquency("acc-1", 1, oldest=OLDEST + timedelta(days=30)),  # a new case
        delinquency("acc-2", 200, "900.00"),  # raised to the agency, then charged off
        delinquency("acc-2", 201, "900.00"),  # charged off: nothing more
        delinquency("acc-2", 0, on=OLDEST + timedelta(days=230)),  # closed silently
        delinquency("acc-3", 1, "60000.00"),  # sms: a contact
        delinquency("acc-3", 31, "60000.00"),  # levels 2-4 (letter): 30 days later
        delinquency("acc-3", 70, "60000.00"),  # the agency (not a contact)
        delinquency("acc-3", 95, "60000.00"),  # the legal guard holds now
    ]
    one = Harness(SERVICE, tmp_path / "one")
    try:
        singly = [e for m in messages for e in one.feed(PLANS, m)]
        calls = []
        transaction = h.runner._transaction
        h.runner._transaction = lambda *a, **k: calls.append(k) or transaction(*a, **k)
        batch = h.process(*(h.publish(PLANS, m) for m in messages))
        assert calls == [{"isolated": False}]  # the fast path, no replay
        assert [(e.topic, e.value) for e in batch] == [(e.topic, e.value) for e in singly]
        assert len(raised(e.event for e in batch)) == 2 + 1 + 5 + 6
        assert _state(h) == _state(one)
    finally:
        one.close()
