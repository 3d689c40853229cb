"""offers handlers (harness, SQLite): plausibility of business time (issue #11).

A business-day.closed that jumps more than 7 days ahead of the last closed one, or goes
back before it, is held (dead-lettered, reason ``business_date_jump``) and changes nothing
until an operator re-drives it with the header ``installments.confirm:
business_date_jump``. Purchase, payment and refund dates out of the window around the last
closed business date (or, before any, out of 2000..2199) are dead-lettered with reason
``date_out_of_range``, never overflowed.
"""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from schemas.business_days import business_date_jump
from services.offers import domain
from services.offers.policy import OffersPolicy
from services.offers.tables import business_days
from tests.builders import messages as f
from tests.builders.offers import (
    ACCOUNTS,
    DAYS,
    DECISIONS,
    OFFERS,
    PAYMENTS,
    PLANS,
    RECORDED,
    plan,
    purchase_recorded,
    refund_recorded,
)
from tests.builders.services import OFFERS as SERVICE
from tests.harness import Harness

CONFIRM = [("installments.confirm", b"business_date_jump")]


def dead_letters(out, topic):
    return [e.headers["error.reason"] for e in out if e.topic == topic + ".dlq"]


def closed_days(h):
    with h.runner.engine.connect() as conn:
        return sorted(r[0] for r in conn.execute(select(business_days.c.business_date)))


def close(h, day, headers=None):
    record = h.publish(DAYS, f.business_day(day))
    if headers is not None:
        record.headers = list(headers)
    return h.process(record)


def test_a_jump_of_more_than_seven_days_is_held_and_changes_nothing(h):
    plan(h)  # 409.00 due Feb 15, Mar 15, Apr 15
    h.events(ACCOUNTS, f.account("acc-2"))
    [offer] = h.events(RECORDED, purchase_recorded("acc-2", posted_at="2026-02-10T08:00:00Z"))
    [late] = close(h, "2026-02-16")
    assert late.event.data.days_past_due == 1

    out = close(h, "2099-01-01")
    assert [e.event for e in out] == [None]  # only the dead letter: no expiry, no delinquency
    [reason] = dead_letters(out, DAYS)
    assert reason.startswith("business_date_jump: 2099-01-01 is 26617 days after the last")
    assert closed_days(h) == [date(2026, 2, 16)]

    # the next real business day is processed normally: DPD 2, not 26,618
    [late] = close(h, "2026-02-17")
    assert (late.event.type, late.event.data.days_past_due, late.event.data.business_date) == (
        "account.delinquency",
        2,
        date(2026, 2, 17),
    )
    # the open offer was not expired by the held date: it can still be accepted
    [created] = h.events(DECISIONS, f.offer_accepted("acc-2", offer.data.offer_id, 3))
    assert created.type == "plan.created"


def test_a_jump_of_exactly_the_limit_is_closed(h):
    plan(h)
    close(h, "2026-02-16")
    out = close(h, "2026-02-23")
    assert dead_letters(out, DAYS) == []
    assert [e.event.data.days_past_due for e in out] == [8]


def test_a_date_before_the_last_closed_one_is_held(h):
    plan(h)
    close(h, "2026-02-16")
    out = close(h, "2026-02-10")
    assert dead_letters(out, DAYS) == [
        "business_date_jump: 2026-02-10 is before the last closed business date 2026-02-16"
    ]
    assert closed_days(h) == [date(2026, 2, 16)]


def test_the_same_date_again_is_an_idempotent_no_op(h):
    plan(h)
    assert len(close(h, "2026-02-16")) == 1
    assert close(h, "2026-02-16") == []  # another event, the same date: nothing, no DLQ
    assert closed_days(h) == [date(2026, 2, 16)]


def test_the_first_business_date_is_accepted_whatever_it_is(h):
    plan(h)
    out = close(h, "2026-06-30")  # nothing closed before: nothing to compare with
    assert dead_letters(out, DAYS) == []
    assert [e.event.data.days_past_due for e in out] == [135]


def test_a_confirmed_jump_is_applied_when_re_driven(h):
    plan(h)
    close(h, "2026-02-16")
    held = f.business_day("2026-03-31")
    [letter] = h.feed(DAYS, held)
    assert letter.headers["error.reason"].startswith("business_date_jump: 2026-03-31 is 43 days")
    # the operator checked it and re-drives the dead letter with a confirmation: the same
    # event (same id; it was never put in the inbox) at a new offset, with the header
    redriven = h.publish(DAYS, letter.value, key="business-day")
    redriven.headers = [("redriven.from", b"card.business-days.v1.dlq@0:0"), *CONFIRM]
    out = h.process(redriven)
    assert dead_letters(out, DAYS) == []
    [late] = [e.event for e in out if e.event.type == "account.delinquency"]
    assert (late.data.business_date, late.data.days_past_due) == (date(2026, 3, 31), 44)
    assert closed_days(h) == [date(2026, 2, 16), date(2026, 3, 31)]
    # the next day goes on from the confirmed date
    out = close(h, "2026-04-01")
    assert dead_letters(out, DAYS) == []
    # a second copy of the re-drive is a duplicate
    again = h.publish(DAYS, letter.value, key="business-day")
    again.headers = list(CONFIRM)
    assert h.process(again) == []


def test_a_confirmed_date_before_the_last_is_ignored_as_stale(h):
    plan(h)
    close(h, "2026-02-16")
    out = close(h, "2026-02-10", CONFIRM)
    assert out == []
    assert closed_days(h) == [date(2026, 2, 16)]


def test_another_header_value_does_not_confirm(h):
    plan(h)
    close(h, "2026-02-16")
    out = close(h, "2099-01-01", [("installments.confirm", b"something_else")])
    assert dead_letters(out, DAYS)[0].startswith("business_date_jump")


def test_the_jump_limit_is_policy(tmp_path):
    service = dataclasses.replace(SERVICE, policy=OffersPolicy(max_business_day_jump_days=60))
    h = Harness(service, tmp_path)
    try:
        close(h, "2026-02-16")
        assert dead_letters(close(h, "2026-04-17"), DAYS) == []  # 60 days
        assert dead_letters(close(h, "2026-06-17"), DAYS)[0].startswith(
            "business_date_jump: 2026-06-17 is 61 days after"
        )
    finally:
        h.close()


# ------------------------------------------------------------ purchase, payment, refund dates


@pytest.mark.parametrize("posted", ["9999-12-31", "0001-01-01", "1999-12-31", "2200-01-01"])
def test_a_purchase_posted_outside_the_calendar_window_is_dead_lettered(h, posted):
    h.events(ACCOUNTS, f.account("acc-1"))
    out = h.feed(RECORDED, purchase_recorded("acc-1", posted_at=f"{posted}T10:00:00Z"))
    assert [e.event for e in out] == [None]
    [reason] = dead_letters(out, RECORDED)
    edge = ("before the earliest accepted date 2000-01-01" if posted < "2000"
            else "after the latest accepted date 2199-12-31")  # fmt: skip
    assert reason == f"date_out_of_range: posted_at {posted} is {edge}"


def test_a_purchase_far_from_the_business_date_is_dead_lettered(h):
    h.events(ACCOUNTS, f.account("acc-1"))
    close(h, "2026-02-16")
    ahead = h.feed(RECORDED, purchase_recorded("acc-1", posted_at="2026-03-20T10:00:00Z"))
    assert dead_letters(ahead, RECORDED) == [
        "date_out_of_range: posted_at 2026-03-20 is 32 days after the last closed business"
        " date 2026-02-16 (more than 31)"
    ]
    behind = h.feed(RECORDED, purchase_recorded("acc-1", posted_at="2025-01-11T10:00:00Z"))
    assert dead_letters(behind, RECORDED) == [
        "date_out_of_range: posted_at 2025-01-11 is 401 days before the last closed business"
        " date 2026-02-16 (more than 400)"
    ]
    # the edges of the window are accepted
    for posted in ("2026-03-19", "2025-01-12"):
        [made] = h.events(RECORDED, purchase_recorded("acc-1", posted_at=f"{posted}T10:00:00Z"))
        assert made.type == "offer.made"


def test_a_purchase_ahead_waits_for_unread_business_days(h):
    h.events(ACCOUNTS, f.account("acc-1"))
    close(h, "2026-02-16")
    purchase = h.publish(RECORDED, purchase_recorded("acc-1", posted_at="2026-04-01T10:00:00Z"))
    weekly = ("2026-02-23", "2026-03-02", "2026-03-09", "2026-03-16", "2026-03-23")
    days = [h.publish(DAYS, f.business_day(d)) for d in weekly]
    assert h.process(purchase) == []  # deferred: the day closes published before are unread
    h.process(*days)
    [made] = [e.event for e in h.process(purchase)]
    assert made.type == "offer.made"


def test_a_payment_out_of_the_window_is_dead_lettered_and_applies_nothing(h):
    plan(h)
    out = h.feed(PAYMENTS, f.payment("acc-1", "409.00", received_at="9999-12-31T23:59:59Z"))
    assert dead_letters(out, PAYMENTS) == [
        "date_out_of_range: received_at 9999-12-31 is after the latest accepted date 2199-12-31"
    ]
    close(h, "2026-02-16")
    out = h.feed(PAYMENTS, f.payment("acc-1", "409.00", received_at="2026-06-01T10:00:00Z"))
    assert [e.event for e in out] == [None]
    assert dead_letters(out, PAYMENTS)[0].startswith("date_out_of_range: received_at 2026-06-01")
    # nothing was paid: the next day still finds installment 1 overdue
    [late] = close(h, "2026-02-17")
    assert (late.event.data.days_past_due, late.event.data.overdue_amount) == (2, D("409.00"))


def test_a_refund_out_of_the_window_is_dead_lettered_and_changes_nothing(h):
    a = plan(h)
    close(h, "2026-02-16")
    out = h.feed(RECORDED, refund_recorded("acc-1", a.purchase_id, "1200.00",
                                           fully_refunded=True,
                                           refunded_at="0001-01-01T00:00:00Z"))  # fmt: skip
    assert dead_letters(out, RECORDED) == [
        "date_out_of_range: refunded_at 0001-01-01 is before the earliest accepted date 2000-01-01"
    ]
    out = h.feed(RECORDED, refund_recorded("acc-1", a.purchase_id, "1200.00",
                                           fully_refunded=True,
                                           refunded_at="2027-12-01T00:00:00Z"))  # fmt: skip
    assert dead_letters(out, RECORDED)[0].startswith("date_out_of_range: refunded_at 2027-12-01")
    # the plan is untouched: a good refund still cancels it
    out = h.feed(RECORDED, refund_recorded("acc-1", a.purchase_id, "1200.00",
                                           fully_refunded=True,
                                           refunded_at="2026-02-17T00:00:00Z"))  # fmt: skip
    assert "plan.cancelled" in [e.event.type for e in out if e.event is not None]


def test_a_policy_whose_schedule_would_overflow_rejects_instead(tmp_path):
    policy = OffersPolicy(
        latest_event_date=date(9999, 12, 31),
        tenors=[3, 120_000],
        monthly_fee_rates={3: D("0.0075"), 120_000: D("0.0060"), 36: D("0.0060")},
    )
    h = Harness(dataclasses.replace(SERVICE, policy=policy), tmp_path)
    try:
        h.events(ACCOUNTS, f.account("acc-1"))
        out = h.feed(RECORDED, purchase_recorded("acc-1", posted_at="2026-01-15T10:00:00Z"))
        assert dead_letters(out, RECORDED) == [
            "date_out_of_range: posted_at 2026-01-15 + 120000 months is beyond the calendar"
        ]
    finally:
        h.close()


def test_the_domain_rules():
    p = OffersPolicy()
    assert business_date_jump(date(2026, 1, 8), date(2026, 1, 1), 7) is None
    assert business_date_jump(date(2026, 1, 9), date(2026, 1, 1), 7) is not None
    assert business_date_jump(date(2026, 1, 1), None, 7) is None
    assert business_date_jump(date(2026, 1, 1), date(2026, 1, 1), 7) is None
    assert domain.check_event_date("posted_at", date(2150, 1, 1), None, p) is None
    problem = domain.check_event_date("posted_at", date(2026, 3, 1), date(2026, 1, 1), p)
    assert problem is not None and problem.ahead
    problem = domain.check_event_date("posted_at", date(2024, 3, 1), date(2026, 1, 1), p)
    assert problem is not None and not problem.ahead
    assert domain.check_purchase_dates(date(9999, 12, 31), p) is not None
    assert domain.check_purchase_dates(date(2199, 12, 31), p) is None


# ------------------------------------------------------------ property: never anything but Reject

EDGES = [date(1, 1, 1), date(1999, 12, 31), date(2199, 12, 31), date(2200, 1, 1),
         date(9999, 1, 1), date(9999, 12, 1), date(9999, 12, 31)]  # fmt: skip
ANY_DATE = st.one_of(
    st.sampled_from(EDGES), st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31))
)
ALLOWED = ("business_date_jump", "date_out_of_range")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["purchase", "auto", "payment", "refund", "day", "confirmed"]),
            ANY_DATE,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_no_schema_valid_date_makes_a_handler_fail(tmp_path_factory, steps):
    """Whatever dates arrive (year 1 to 9999, business dates confirmed or not), every dead
    letter is a business refusal (Reject) with a date reason, never a handler error."""
    h = Harness(SERVICE, tmp_path_factory.mktemp("offers"))
    try:
        a = plan(h)
        h.events(ACCOUNTS, f.account("acc-2"),
                 f.account("acc-3", auto_convert={"enabled": True, "threshold": "100.00",
                                                  "tenor_months": 24}))  # fmt: skip
        for kind, on in steps:
            stamp = f"{on.isoformat()}T12:00:00Z"
            if kind in ("purchase", "auto"):  # an offer (acc-2) or a plan at once (acc-3)
                account = "acc-2" if kind == "purchase" else "acc-3"
                out = h.feed(RECORDED, purchase_recorded(account, "600.00", posted_at=stamp))
            elif kind == "payment":
                out = h.feed(PAYMENTS, f.payment("acc-1", "409.00", received_at=stamp))
            elif kind == "refund":
                out = h.feed(RECORDED, refund_recorded("acc-1", a.purchase_id, "100.00",
                                                       refunded_at=stamp))  # fmt: skip
            else:
                out = close(h, on.isoformat(), CONFIRM if kind == "confirmed" else None)
                if kind == "confirmed":
                    # the day after a confirmed far date: offers' own arithmetic near the end
                    nxt = on + timedelta(days=1) if on < date(9999, 12, 31) else on
                    out += close(h, nxt.isoformat())
            reasons = [e.headers["error.reason"] for e in out if e.topic.endswith(".dlq")]
            assert all(r.startswith(ALLOWED) for r in reasons), reasons
            assert all(e.topic in (OFFERS, PLANS) for e in out if e.event is not None)
    finally:
        h.close()
