"""Retention on real PostgreSQL (#16): the inbox window, re-deliveries around it, and the
archive of finished plans and cases, never a second effect.

Each scenario runs the real batch path (``tests/harness.py``) and, where it compares,
the same messages through a control service that never archives: what each emits and
the money state must be the same.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from kafka import TopicPartition
from sqlalchemy import func, insert, select, text, update

from services.collections.retention import GROUPS as COLLECTIONS_GROUPS
from services.collections.tables import CASE_ARCHIVES, cases
from services.offers.retention import GROUPS as OFFERS_GROUPS
from services.offers.tables import ARCHIVES as OFFERS_ARCHIVES
from services.offers.tables import installments as offers_installments
from services.offers.tables import positions as offers_positions
from services.reminders.retention import GROUPS as REMINDERS_GROUPS
from services.reminders.tables import ARCHIVES as REMINDERS_ARCHIVES
from services.reminders.tables import business_days as reminders_days
from services.reminders.tables import plans as reminders_plans
from services.reminders.tables import reminders as reminders_rows
from shared.ops.replay import beyond_retention
from shared.runtime.db import utcnow
from shared.runtime.retention import pruned_horizon, run_retention
from shared.runtime.store import inbox
from tests.builders import messages as f
from tests.builders.collections import contact
from tests.builders.collections import plan_event as collections_plan_event
from tests.builders.offers import (
    ACCOUNTS,
    DAYS,
    DECISIONS,
    PAYMENTS,
    RECORDED,
    purchase_recorded,
    refund_recorded,
)
from tests.builders.reminders import BUSINESS_DAYS, before, due_soon
from tests.builders.services import COLLECTIONS, OFFERS, PURCHASES, REMINDERS
from tests.harness import Emitted, Harness
from tests.support import envelope

pytestmark = pytest.mark.integration


def _harness(service: Any, tmp_path: Any, url: str, **settings: Any) -> Harness:
    return Harness(service, tmp_path, database_url=url, **settings)


@pytest.fixture
def pg_pair(stack, tmp_path):
    """Two fresh PostgreSQL databases: the one that archives and a control."""
    import uuid

    from sqlalchemy import create_engine

    _, admin_url = stack
    names = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = admin_url.rpartition("/")[0]
    try:
        yield [f"{base}/{name}" for name in names]
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _summary(out: list[Emitted]) -> list[tuple[str, str, str]]:
    """What was emitted: (topic, event id or the dead letter's reason, type)."""
    return [
        (e.topic, e.event.id, e.event.type)
        if e.event is not None
        else (e.topic, e.headers["error.reason"], "dlq")
        for e in out
    ]


def _count(h: Harness, table: Any, *where: Any) -> int:
    with h.runner.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def _retention(h: Harness, name: str, groups: Any, **over: Any) -> Any:
    settings = h.settings.model_copy(update=over)
    return run_retention(h.runner.engine, name, groups, settings)


# --- the inbox window ------------------------------------------------------------------


def test_pruning_keeps_the_window_and_redeliveries_stay_harmless(pg_database, tmp_path):
    h = _harness(PURCHASES, tmp_path, pg_database)
    try:
        topic = "card.purchases.v1"
        messages = [f.purchase("acc-1") for _ in range(4)]
        old = [h.publish(topic, m) for m in messages[:3]]
        assert len(h.process(*old)) == 3
        recent = h.publish(topic, messages[3])
        assert len(h.process(recent)) == 1
        # the first three were processed 40 days ago, the last one now
        with h.runner.engine.begin() as conn:
            conn.execute(
                update(inbox)
                .where(inbox.c.offset < 3)
                .values(processed_at=utcnow() - timedelta(days=40))
            )
        report = _retention(h, "purchases", ())
        assert report.inbox_pruned == 3
        assert _count(h, inbox) == 1  # the window (35 days) kept the recent one
        with h.runner.engine.connect() as conn:
            assert pruned_horizon(conn, h.runner.group) == {(h.settings.topic(topic), 0): 2}

        # within the window: the same event again at a new offset is a duplicate
        assert h.process(h.publish(topic, messages[3])) == []
        # older than the window but below the stored offset: dropped by the offset
        assert h.process(*old) == []
        # a second run finds nothing more to prune
        assert _retention(h, "purchases", ()).inbox_pruned == 0
        # a replay to or below the pruned horizon is flagged (and refused by the CLI)
        tp = TopicPartition(h.settings.topic(topic), 0)
        assert beyond_retention(h.settings, PURCHASES, {tp: (5, 0)}) == {tp: 2}
        assert beyond_retention(h.settings, PURCHASES, {tp: (5, 2)}) == {tp: 2}
        assert beyond_retention(h.settings, PURCHASES, {tp: (5, 3)}) == {}
    finally:
        h.close()


def test_a_dry_run_counts_and_changes_nothing(pg_database, tmp_path):
    h = _harness(PURCHASES, tmp_path, pg_database)
    try:
        h.feed("card.purchases.v1", f.purchase("acc-1"), f.purchase("acc-2"))
        with h.runner.engine.begin() as conn:
            conn.execute(update(inbox).values(processed_at=utcnow() - timedelta(days=36)))
        settings = h.settings.model_copy()
        report = run_retention(h.runner.engine, "purchases", (), settings, dry_run=True)
        assert report.inbox_pruned == 2 and report.dry_run
        assert _count(h, inbox) == 2
    finally:
        h.close()


# --- offers: finished plans' schedules --------------------------------------------------


def _offers_story(h: Harness, msgs: dict[str, Any]) -> list[Emitted]:
    out = h.feed(ACCOUNTS, msgs["account"])
    out += h.feed(RECORDED, msgs["purchase"])
    out += h.feed(DECISIONS, msgs["accept"])
    out += h.feed(PAYMENTS, msgs["pay"])  # pays it off
    out += h.feed(DAYS, msgs["day"])
    return out


def _offers_messages() -> dict[str, Any]:
    purchase = purchase_recorded("acc-1", "1200.00", posted_at="2026-01-15T10:00:00Z")
    pid = purchase["data"]["purchase_id"]
    return {
        "account": f.account("acc-1"),
        "purchase": purchase,
        "accept": f.offer_accepted("acc-1", f"off-{pid}", 3),
        "pay": f.payment("acc-1", "1227.00", received_at="2026-02-15T10:00:00Z"),
        "day": f.business_day("2026-09-01"),
        "refund": refund_recorded("acc-1", pid, "100.00", refunded_at="2026-09-01T12:00:00Z"),
        "plan_id": f"plan-{pid}",
    }


def _credit(h: Harness) -> Any:
    with h.runner.engine.connect() as conn:
        return conn.execute(
            select(offers_positions.c.credit).where(offers_positions.c.account_id == "acc-1")
        ).scalar()


def test_a_refund_of_an_archived_plan_is_handled_as_before(pg_pair, tmp_path):
    msgs = _offers_messages()
    h = _harness(OFFERS, tmp_path / "a", pg_pair[0])
    control = _harness(OFFERS, tmp_path / "b", pg_pair[1])
    try:
        assert _summary(_offers_story(h, msgs)) == _summary(_offers_story(control, msgs))
        report = _retention(h, "offers", OFFERS_GROUPS)
        assert report.archived == {"finished plans' schedules": 1}
        plan_id = msgs["plan_id"]
        archive = OFFERS_ARCHIVES["installments"]
        assert _count(h, offers_installments, offers_installments.c.plan_id == plan_id) == 0
        assert _count(h, archive, archive.c.plan_id == plan_id) == 3
        # the late refund: no plan event (the plan is finished), the refund becomes credit
        out = h.feed("purchases.recorded.v1", msgs["refund"])
        assert _summary(out) == _summary(control.feed("purchases.recorded.v1", msgs["refund"]))
        assert _credit(h) == _credit(control)
        # and again (a re-delivery at a new offset): nothing more
        assert h.feed("purchases.recorded.v1", msgs["refund"]) == []
        assert _credit(h) == _credit(control)
    finally:
        h.close()
        control.close()


# --- reminders: closed plans --------------------------------------------------------------


def test_an_archived_closed_plan_is_not_loaded_and_a_late_due_soon_sends_nothing(pg_pair, tmp_path):
    h = _harness(REMINDERS, tmp_path / "a", pg_pair[0])
    control = _harness(REMINDERS, tmp_path / "b", pg_pair[1])
    plans_topic = "installments.plans.v1"
    early = due_soon("acc-1", "plan-1", 1, before(7))
    late = due_soon("acc-1", "plan-1", 1, before(3))
    other = due_soon("acc-1", "plan-2", 1, date(2026, 9, 2), due=date(2026, 9, 5))
    story: list[tuple[str, dict[str, Any]]] = [
        ("card.accounts.v1", f.account("acc-1")),
        (BUSINESS_DAYS, f.business_day(before(7).isoformat())),
        (plans_topic, early),
        (plans_topic, collections_plan_event("plan.completed", "acc-1", "plan-1")),
    ]
    try:
        for t, m in story:
            assert _summary(h.feed(t, m)) == _summary(control.feed(t, m))
        for service in (h, control):  # months later (a jump the service would hold)
            with service.runner.engine.begin() as conn:
                conn.execute(
                    insert(reminders_days).values(business_date=date(2026, 9, 1), event_id="x")
                )
        report = _retention(h, "reminders", REMINDERS_GROUPS)
        assert report.archived == {"closed plans": 1}
        archive = REMINDERS_ARCHIVES["reminders"]
        assert _count(h, reminders_rows) == 0 and _count(h, archive) == 1
        # the hot path for the account's other plan does not bring plan-1 back
        assert _summary(h.feed(plans_topic, other)) == _summary(control.feed(plans_topic, other))
        assert _count(h, reminders_plans, reminders_plans.c.plan_id == "plan-1") == 0
        # a late due-soon of the archived plan: restored, closed, no reminder (as control)
        out = h.feed(plans_topic, late)
        assert out == [] and _summary(control.feed(plans_topic, late)) == []
        assert _count(h, reminders_plans, reminders_plans.c.plan_id == "plan-1") == 1
        assert _count(h, REMINDERS_ARCHIVES["plans"]) == 0
    finally:
        h.close()
        control.close()


# --- collections: finished cases --------------------------------------------------------


def _delinquency(account_id: str, dpd: int, on: date) -> dict[str, Any]:
    data: dict[str, Any] = {
        "account_id": account_id,
        "business_date": on.isoformat(),
        "days_past_due": dpd,
        "overdue_amount": "250.00" if dpd else "0.00",
        "currency": "USD",
    }
    if dpd:
        data["oldest_unpaid_due_date"] = (on - timedelta(days=dpd)).isoformat()
    return envelope("account.delinquency", account_id, data, source="offers")


def test_a_contact_for_an_archived_case_gets_the_same_dead_letter(pg_pair, tmp_path):
    h = _harness(COLLECTIONS, tmp_path / "a", pg_pair[0])
    control = _harness(COLLECTIONS, tmp_path / "b", pg_pair[1])
    topic, outcomes = "installments.plans.v1", "collections.outcomes.v1"
    opened = date(2026, 1, 15)
    case_id = f"case:acc-1:{opened.isoformat()}"
    story = [
        _delinquency("acc-1", 5, opened),
        _delinquency("acc-1", 0, date(2026, 1, 20)),  # cured
        _delinquency("acc-2", 0, date(2026, 9, 1)),  # the clock moves on
    ]
    try:
        for m in story:
            assert _summary(h.feed(topic, m)) == _summary(control.feed(topic, m))
        with h.runner.engine.connect() as conn:
            assert conn.execute(select(cases.c.case_id, cases.c.status)).all() == [
                (case_id, "cured")
            ]
        report = _retention(h, "collections", COLLECTIONS_GROUPS)
        assert report.archived["finished cases"] == 1
        assert _count(h, cases) == 0 and _count(h, CASE_ARCHIVES["cases"]) == 1
        # a new delinquency of the account opens a new case; the archived one stays out
        again = _delinquency("acc-1", 3, date(2026, 9, 2))
        assert _summary(h.feed(topic, again)) == _summary(control.feed(topic, again))
        assert _count(h, CASE_ARCHIVES["cases"]) == 1
        # a contact for the archived (cured) case: the same dead letter as the control's
        late = contact("acc-1", case_id, "reached", date(2026, 9, 2))
        out = _summary(h.feed(outcomes, late))
        assert out == _summary(control.feed(outcomes, late))
        assert out[0][2] == "dlq" and "resolved" in out[0][1]
    finally:
        h.close()
        control.close()
