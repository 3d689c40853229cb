"""reminders handlers through the runtime's batch code (SQLite, no broker)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from kafka import TopicPartition
from sqlalchemy import select

from services.reminders.tables import reminders
from tests.builders import messages as f
from tests.builders.reminders import ACCOUNTS, BUSINESS_DAYS, DUE, PLANS, before, due_soon, paid
from tests.builders.services import REMINDERS as SERVICE
from tests.harness import Harness
from tests.support import envelope


@pytest.fixture
def h(tmp_path):
    harness = Harness(SERVICE, tmp_path)
    harness.events(ACCOUNTS, f.account("acc-1"))
    yield harness
    harness.close()


def daily(h: Harness, account_id: str, plan_id: str, seq: int, days: range) -> dict[int, list]:
    """One due-soon per business day (days before due, counting down); what each sent."""
    return {d: h.events(PLANS, due_soon(account_id, plan_id, seq, before(d))) for d in days}


def test_seven_three_one_and_due_date_over_daily_due_soon(h):
    sent = daily(h, "acc-1", "plan-1", 1, range(7, -1, -1))
    assert {d: [e.data.days_before_due for e in out] for d, out in sent.items() if out} == {
        7: [7],
        3: [3],
        1: [1],
        0: [0],
    }
    r = sent[7][0]
    assert r.type == "reminder.requested" and r.subject == "acc-1"
    assert r.data.reminder_id == "rem:plan-1:1:7"
    assert (r.data.account_id, r.data.plan_id, r.data.seq, r.data.due_date) == (
        "acc-1",
        "plan-1",
        1,
        DUE,
    )
    assert str(r.data.amount_due) == "105.00" and r.data.currency == "USD"
    assert [sent[d][0].data.template for d in (7, 3, 1, 0)] == [
        "due_in_7_days",
        "due_in_3_days",
        "due_in_1_day",
        "due_today",
    ]


def test_channel_and_contact_ref_come_from_the_account(h):
    h.events(ACCOUNTS, f.account("acc-2", contact={"channel": "push", "locale": "de-DE",
                                                   "contact_ref": "cref-xyz"}))  # fmt: skip
    [r] = h.events(PLANS, due_soon("acc-2", "plan-2", 1, before(7)))
    assert (r.data.channel, r.data.contact_ref) == ("push", "cref-xyz")
    # a later account.upserted (new channel) is used from then on
    h.events(ACCOUNTS, f.account("acc-2", contact={"channel": "email", "locale": "de-DE",
                                                   "contact_ref": "cref-new"}))  # fmt: skip
    [r] = h.events(PLANS, due_soon("acc-2", "plan-2", 1, before(3)))
    assert (r.data.channel, r.data.contact_ref) == ("email", "cref-new")


def test_outage_jump_sends_only_the_most_urgent_current_one(h):
    assert h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(8))) == []
    [r] = h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(2)))
    # the real days before due, the template (and id) of the most urgent slot reached
    assert (r.data.days_before_due, r.data.template) == (2, "due_in_3_days")
    assert r.data.reminder_id == "rem:plan-1:1:3"
    assert h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(1)))[0].data.days_before_due == 1
    # the 7-day one is recorded as skipped (superseded) and never goes out
    with h.runner.engine.connect() as conn:
        rows = dict(conn.execute(select(reminders.c.offset_days, reminders.c.reason)).all())
    assert rows == {7: "superseded", 3: None, 1: None}


def close_day(h: Harness, day: date) -> None:
    assert h.events(BUSINESS_DAYS, f.business_day(day.isoformat())) == []


def test_daily_flow_with_the_day_closes(h):
    sent = {}
    for d in range(9, -1, -1):
        close_day(h, before(d))
        sent[d] = [e.data.days_before_due for e in
                   h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(d)))]  # fmt: skip
    assert {d: out for d, out in sent.items() if out} == {7: [7], 3: [3], 1: [1], 0: [0]}


def test_backlog_after_an_outage_sends_only_the_current_reminder(h):
    """This service was down for a week: the day closes and offers' due-soons of every
    missed day wait in the logs. Only the reminder current on the newest day goes out."""
    days = (7, 6, 5, 4, 3, 2, 1)
    dues = [h.publish(PLANS, due_soon("acc-1", "plan-1", 1, before(d))) for d in days]
    closes = [h.publish(BUSINESS_DAYS, f.business_day(before(d).isoformat())) for d in days]
    # the due-soons come first in the batch: deferred until the day closes are read
    assert h.process(*dues, *closes) == []
    assert TopicPartition(dues[0].topic, 0) in h.runner.deferred_until  # paused, re-sought later
    [r] = [e.event for e in h.process(*dues)]
    assert (r.data.days_before_due, r.data.template) == (1, "due_in_1_day")
    with h.runner.engine.connect() as conn:
        rows = conn.execute(select(reminders.c.offset_days, reminders.c.status,
                                   reminders.c.reason)).all()  # fmt: skip
    assert sorted(tuple(row) for row in rows) == [
        (1, "sent", None),
        (3, "skipped", "superseded"),
        (7, "skipped", "superseded"),
    ]
    assert [e.data.days_before_due for e in
            h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(0)))] == [0]  # fmt: skip


def test_due_soon_of_a_day_older_than_the_newest_day_close_is_stale(h):
    close_day(h, before(2))
    assert h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(3))) == []  # offers behind
    [r] = h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(2)))
    assert (r.data.days_before_due, r.data.template) == (2, "due_in_3_days")


def test_due_soon_ahead_of_the_clock_goes_out_once_every_day_close_is_read(h):
    close_day(h, before(5))  # and no unread day close: the clock is simply behind
    [r] = h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(3)))
    assert r.data.days_before_due == 3


def test_without_any_day_close_the_due_soons_alone_decide(h):
    """A burst with no business clock at all: each due-soon is the newest seen."""
    burst = [due_soon("acc-1", "plan-1", 1, before(d)) for d in (6, 5, 4, 3, 2, 1, 0)]
    out = h.events(PLANS, *burst)
    assert [e.data.days_before_due for e in out] == [6, 3, 1, 0]
    assert [e.data.template for e in out] == ["due_in_7_days", "due_in_3_days",
                                              "due_in_1_day", "due_today"]  # fmt: skip
    jump = [due_soon("acc-1", "plan-9", 1, before(d)) for d in (9, 0)]
    assert [e.data.days_before_due for e in h.events(PLANS, *jump)] == [0]


def test_jump_to_the_due_date_sends_only_due_today(h):
    [r] = h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(0)))
    assert (r.data.days_before_due, r.data.template) == (0, "due_today")


def test_stale_due_soon_is_ignored(h):
    assert [e.data.days_before_due for e in h.events(PLANS, due_soon("acc-1", "p", 1, before(3)))
            ] == [3]  # fmt: skip
    # offers re-publishes an older business date (e.g. a replayed end of day): never sent
    assert h.events(PLANS, due_soon("acc-1", "p", 1, before(7))) == []
    assert h.events(PLANS, due_soon("acc-1", "p", 1, before(5))) == []
    assert [e.data.days_before_due for e in h.events(PLANS, due_soon("acc-1", "p", 1, before(1)))
            ] == [1]  # fmt: skip


def test_paid_installment_gets_none(h):
    [r] = h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(7)))
    assert h.events(PLANS, paid("acc-1", "plan-1", 1, before(5))) == []
    assert daily(h, "acc-1", "plan-1", 1, range(4, -1, -1)) == {d: [] for d in range(4, -1, -1)}
    # paid before any due-soon was seen: none either
    h.events(PLANS, paid("acc-1", "plan-1", 2, before(10)))
    assert h.events(PLANS, due_soon("acc-1", "plan-1", 2, before(3))) == []
    # other installments of the plan still get theirs
    assert len(h.events(PLANS, due_soon("acc-1", "plan-1", 3, before(7)))) == 1


@pytest.mark.parametrize("event_type", ["plan.completed", "plan.cancelled"])
def test_finished_plan_gets_no_more_reminders(h, event_type):
    assert len(h.events(PLANS, due_soon("acc-1", "plan-1", 2, before(7)))) == 1
    data: dict[str, Any] = {"plan_id": "plan-1"}
    if event_type == "plan.cancelled":
        data |= {"reason": "refund", "principal_returned": "300.00", "fee_returned": "6.00",
                 "currency": "USD"}  # fmt: skip
    h.events(PLANS, envelope(event_type, "acc-1", data, source="offers"))
    assert h.events(PLANS, due_soon("acc-1", "plan-1", 2, before(3))) == []
    assert h.events(PLANS, due_soon("acc-1", "plan-1", 3, before(7))) == []


def test_each_at_most_once_duplicates_and_resent_due_soon(h):
    first = due_soon("acc-1", "plan-1", 1, before(7))
    assert len(h.events(PLANS, first)) == 1
    assert h.events(PLANS, first) == []  # the same event again (inbox)
    again_same_day = due_soon("acc-1", "plan-1", 1, before(7))  # new id, same business date
    assert h.events(PLANS, again_same_day) == []
    assert h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(6))) == []
    # the same record re-delivered (below the stored offset)
    rec = h.publish(PLANS, due_soon("acc-1", "plan-1", 1, before(3)))
    assert len(h.process(rec)) == 1
    assert h.process(rec) == []
    # both in one batch: once
    d1 = due_soon("acc-1", "plan-1", 1, before(1))
    assert len(h.events(PLANS, d1, due_soon("acc-1", "plan-1", 1, before(1)))) == 1


def test_reminder_ids_are_deterministic_and_subject_is_the_account(h, tmp_path):
    event = due_soon("acc-1", "plan-1", 1, before(7))
    [a] = h.events(PLANS, event)
    other = Harness(SERVICE, tmp_path / "other")
    try:
        other.events(ACCOUNTS, f.account("acc-1"))
        [b] = other.events(PLANS, event)
    finally:
        other.close()
    assert a.id == b.id and a.causation_id == event["id"] and a.subject == "acc-1"


def test_unknown_account_records_the_reminder_as_skipped(h):
    assert h.events(PLANS, due_soon("acc-new", "plan-5", 1, before(7))) == []
    with h.runner.engine.connect() as conn:
        rows = conn.execute(select(reminders.c.offset_days, reminders.c.status,
                                   reminders.c.reason)).all()  # fmt: skip
    assert [tuple(r) for r in rows] == [(7, "skipped", "account_unknown")]
    # once the account is known, the next reminder goes out; the skipped one never does
    assert h.events(ACCOUNTS, f.account("acc-new")) == []
    assert h.events(PLANS, due_soon("acc-new", "plan-5", 1, before(6))) == []
    [r] = h.events(PLANS, due_soon("acc-new", "plan-5", 1, before(3)))
    assert (r.data.days_before_due, r.data.contact_ref) == (3, "cref-acc-new")


def test_past_due_installment_gets_no_reminder(h):
    # due-soon is only for 0..7 days; an (erroneous) past-due business date sends nothing
    event = due_soon("acc-1", "plan-1", 1, DUE)
    event["data"]["business_date"] = (DUE + timedelta(days=2)).isoformat()
    assert h.events(PLANS, event) == []


def test_invalid_due_soon_goes_to_the_dlq(h):
    bad = due_soon("acc-1", "plan-1", 1, before(3))
    bad["data"]["amount_outstanding"] = 105.0
    [dead] = h.feed(PLANS, bad)
    assert dead.topic == PLANS + ".dlq" and dead.headers["error.service"] == "reminders"


def test_due_soon_waits_for_unread_account_records(h):
    """First start: the account's record is on another topic, not read yet -> deferred."""
    due = h.publish(PLANS, due_soon("acc-late", "plan-7", 1, before(7)))
    account = h.publish(ACCOUNTS, f.account("acc-late"))
    assert h.process(due) == []
    assert TopicPartition(due.topic, 0) in h.runner.deferred_until  # paused, re-sought later
    assert h.process(account) == []
    [r] = [e.event for e in h.process(due)]
    assert (r.data.days_before_due, r.data.contact_ref) == (7, "cref-acc-late")


def _state(h: Harness) -> dict[str, list]:
    from services.reminders.tables import metadata

    with h.runner.engine.connect() as conn:
        return {
            name: sorted(tuple(str(v) for v in row) for row in conn.execute(select(table)))
            for name, table in metadata.tables.items()
        }


def test_a_mixed_batch_behaves_as_one_by_one(h, tmp_path):
    """One batch (the batch repository's in-memory view) == the same records one by one."""
    completed = envelope("plan.completed", "acc-1", {"plan_id": "plan-3"}, source="offers")
    twice = due_soon("acc-1", "plan-1", 1, before(7))
    messages = [
        (ACCOUNTS, f.account("acc-2")),
        (
            ACCOUNTS,
            f.account(
                "acc-2", contact={"channel": "push", "locale": "de-DE", "contact_ref": "cref-new"}
            ),
        ),  # fmt: skip
        (
            ACCOUNTS,
            f.account(
                "acc-1", contact={"channel": "email", "locale": "en-US", "contact_ref": "cref-1b"}
            ),
        ),  # fmt: skip
        (BUSINESS_DAYS, f.business_day(before(8).isoformat())),
        (BUSINESS_DAYS, f.business_day(before(7).isoformat())),
        (BUSINESS_DAYS, f.business_day(before(7).isoformat())),
        (PLANS, twice),
        (PLANS, twice),  # the same event again
        (PLANS, due_soon("acc-1", "plan-1", 1, before(7))),  # same day, new id: nothing
        (PLANS, due_soon("acc-2", "plan-2", 1, before(7))),
        (PLANS, paid("acc-1", "plan-1", 2, before(8))),
        (PLANS, due_soon("acc-1", "plan-1", 2, before(7))),  # paid: nothing
        (PLANS, completed),
        (PLANS, due_soon("acc-1", "plan-3", 1, before(7))),  # plan completed: nothing
        (PLANS, due_soon("acc-x", "plan-4", 1, before(7))),  # unknown account: skipped
        (PLANS, due_soon("acc-1", "plan-1", 1, before(2))),  # ahead of the clock: slot 3
        (PLANS, due_soon("acc-1", "plan-1", 1, before(5))),  # stale
        (PLANS, paid("acc-1", "plan-1", 1, before(2))),
        (PLANS, due_soon("acc-1", "plan-1", 1, before(1))),  # paid now: nothing
    ]
    one = Harness(SERVICE, tmp_path / "one")
    try:
        one.events(ACCOUNTS, f.account("acc-1"))
        singly = [e for t, m in messages for e in one.feed(t, m)]
        calls = []
        transaction = h.runner._transaction
        h.runner._transaction = lambda *a, **k: calls.append(k) or transaction(*a, **k)
        batch = h.process(*(h.publish(t, m) for t, m in messages))
        assert calls == [{"isolated": False}]  # the fast path, no replay
        assert [(e.topic, e.value) for e in batch] == [(e.topic, e.value) for e in singly]
        assert [(e.event.data.plan_id, e.event.data.days_before_due, e.event.data.contact_ref)
                for e in batch] == [("plan-1", 7, "cref-1b"), ("plan-2", 7, "cref-new"),
                                    ("plan-1", 2, "cref-1b")]  # fmt: skip
        assert _state(h) == _state(one)
    finally:
        one.close()
