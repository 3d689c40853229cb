"""reminders (harness, SQLite): an implausible business date is held (issue #11).

The business clock is the newest ``business-day.closed``. One more than 7 days after it
(policy ``max_business_day_jump_days``), or before it, is dead-lettered with reason
``business_date_jump`` and leaves the clock where it was, until an operator re-drives it
with the header ``installments.confirm: business_date_jump``.
"""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest
from sqlalchemy import select

from schemas.business_days import business_date_jump
from services.reminders.policy import RemindersPolicy
from services.reminders.tables import business_days
from tests.builders import messages as f
from tests.builders.reminders import ACCOUNTS, BUSINESS_DAYS, PLANS, before, due_soon
from tests.builders.services import REMINDERS as SERVICE
from tests.harness import Harness

CONFIRM = [("installments.confirm", b"business_date_jump")]


@pytest.fixture
def h(tmp_path):
    harness = Harness(SERVICE, tmp_path)
    harness.events(ACCOUNTS, f.account("acc-1"))
    yield harness
    harness.close()


def close(h, day, headers=None):
    record = h.publish(BUSINESS_DAYS, f.business_day(day.isoformat()))
    if headers is not None:
        record.headers = list(headers)
    return h.process(record)


def reasons(out):
    return [e.headers["error.reason"] for e in out if e.topic == BUSINESS_DAYS + ".dlq"]


def days(h):
    with h.runner.engine.connect() as conn:
        return sorted(r[0] for r in conn.execute(select(business_days.c.business_date)))


def test_a_far_future_day_is_held_and_the_clock_stays(h):
    assert close(h, before(8)) == []
    out = close(h, date(2099, 1, 1))
    assert reasons(out) == [
        "business_date_jump: 2099-01-01 is 26598 days after the last closed business date"
        " 2026-03-07 (more than 7)"
    ]
    assert days(h) == [before(8)]
    # the next real day and its due-soon go on as usual: the 7-day reminder goes out
    assert close(h, before(7)) == []
    [r] = h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(7)))
    assert r.data.days_before_due == 7


def test_a_held_jump_in_a_batch_leaves_the_rest_of_the_batch_alone(h):
    records = [h.publish(BUSINESS_DAYS, f.business_day(d.isoformat()))
               for d in (before(9), date(2099, 1, 1), before(8))]  # fmt: skip
    out = h.process(*records)
    assert [r.split(":")[0] for r in reasons(out)] == ["business_date_jump"]
    assert days(h) == [before(9), before(8)]


def test_a_day_before_the_clock_is_held(h):
    close(h, before(3))
    out = close(h, before(5))
    assert reasons(out) == [
        "business_date_jump: 2026-03-10 is before the last closed business date 2026-03-12"
    ]
    assert days(h) == [before(3)]


def test_the_same_day_again_is_a_no_op(h):
    close(h, before(3))
    assert close(h, before(3)) == []
    assert days(h) == [before(3)]


def test_the_first_day_is_accepted(h):
    assert close(h, date(2150, 6, 1)) == []
    assert days(h) == [date(2150, 6, 1)]


def test_a_confirmed_jump_moves_the_clock(h):
    close(h, before(30))
    [letter] = close(h, before(3))
    assert letter.headers["error.reason"].startswith("business_date_jump")
    redriven = h.publish(BUSINESS_DAYS, letter.value, key="business-day")
    redriven.headers = list(CONFIRM)
    assert h.process(redriven) == []
    assert days(h) == [before(30), before(3)]
    # the clock is the confirmed day: a due-soon of an older day is stale
    assert h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(5))) == []
    [r] = h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(3)))
    assert r.data.days_before_due == 3


def test_a_confirmed_older_day_is_recorded_without_moving_the_clock(h):
    close(h, before(3))
    assert close(h, before(5), CONFIRM) == []
    assert days(h) == [before(5), before(3)]
    assert h.events(PLANS, due_soon("acc-1", "plan-1", 1, before(5))) == []  # still stale


def test_the_jump_limit_is_policy(tmp_path):
    service = dataclasses.replace(SERVICE, policy=RemindersPolicy(max_business_day_jump_days=30))
    h = Harness(service, tmp_path)
    try:
        close(h, before(40))
        assert close(h, before(10)) == []  # 30 days
        assert reasons(close(h, before(-21)))[0].startswith(
            "business_date_jump: 2026-04-05 is 31 days after"
        )
    finally:
        h.close()


def test_the_rule():
    assert business_date_jump(date(2026, 1, 8), date(2026, 1, 1), 7) is None
    assert business_date_jump(date(2026, 1, 9), date(2026, 1, 1), 7) is not None
    assert business_date_jump(date(2025, 12, 31), date(2026, 1, 1), 7) is not None
    assert business_date_jump(date(2026, 1, 1), None, 7) is None
