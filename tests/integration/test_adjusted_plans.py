"""Adjusted and cancelled plans through the real broker and PostgreSQL (issue #13).

offers' events are written by hand, as offers emits them: a plan.created that redeems
1,000 points on its fee, a plan.adjusted (a partial refund halving the principal) asking
400 points back, an installment.due-soon computed before the adjustment (the old
amount), then a plan.cancelled asking 800 more points back. The points service gives
back 400 and then only the 600 still redeemed (never more than was redeemed), the
reminder asks the adjusted amount, and everything re-published under the same ids adds
nothing.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D
from typing import Any

import pytest

from tests.builders import messages as f
from tests.builders.points import plan_cancelled, plan_created, recorded
from tests.builders.services import POINTS as POINTS
from tests.builders.services import REMINDERS as REMINDERS
from tests.support import Collector, Producer, envelope, running

pytestmark = pytest.mark.integration

ACCOUNTS = "card.accounts.v1"
RECORDED = "purchases.recorded.v1"
PLANS = "installments.plans.v1"
LEDGER = "points.ledger.v1"
REMINDERS_OUT = "reminders.outbound.v1"


def plan_adjusted(plan: dict[str, Any], points_to_restore: int) -> dict[str, Any]:
    """As offers would emit it: a refund of 600.00 on the 1,200.00 plan before any
    installment fell due; 12 x 50.00 principal left, fees (4.50 each) halved to 2.25."""
    p = plan["data"]
    schedule = [
        {"seq": line["seq"], "due_date": line["due_date"], "principal": "50.00",
         "fee": "2.25", "amount": "52.25"}
        for line in p["schedule"]
    ]  # fmt: skip
    data = {
        "plan_id": p["plan_id"], "account_id": p["account_id"], "reason": "refund",
        "refund_id": f.new_id("ref"), "principal_reduced": "600.00", "fee_reduced": "27.00",
        "fee_returned": "0.00", "currency": "USD", "schedule": schedule,
        "points_to_restore": points_to_restore,
    }  # fmt: skip
    return envelope("plan.adjusted", p["account_id"], data, source="offers")


def due_soon(plan: dict[str, Any], seq: int, business_date: date, amount: str) -> dict[str, Any]:
    line = plan["data"]["schedule"][seq - 1]
    due = date.fromisoformat(line["due_date"])
    data = {
        "plan_id": plan["data"]["plan_id"], "seq": seq, "due_date": line["due_date"],
        "amount_outstanding": amount, "currency": "USD",
        "days_until_due": (due - business_date).days,
        "business_date": business_date.isoformat(),
    }  # fmt: skip
    return envelope("installment.due-soon", plan["data"]["account_id"], data, source="offers")


def test_points_restored_and_reminders_follow_the_adjusted_plan(settings):
    producer = Producer(settings)
    ledger_out, reminders_out = Collector(settings, LEDGER), Collector(settings, REMINDERS_OUT)
    acc = f.new_id("acc")
    buy = recorded(acc, "1200.00")
    plan = plan_created(acc, buy["data"]["purchase_id"], "1200.00", total_fee="54.00",
                        redeem_points=1000, tenor=12)  # fmt: skip
    plan_id = plan["data"]["plan_id"]
    first_due = date.fromisoformat(plan["data"]["schedule"][0]["due_date"])
    adjusted = plan_adjusted(plan, points_to_restore=400)
    # computed by offers before the adjustment: the old amount (100.00 + 4.50)
    early = due_soon(plan, 1, first_due - timedelta(days=7), "104.50")
    cancelled = plan_cancelled(acc, plan_id, "600.00", points_to_restore=800)
    inputs = [
        (ACCOUNTS, f.account(acc)),
        (RECORDED, buy),
        (PLANS, plan),
        (PLANS, adjusted),
        (PLANS, early),
        (PLANS, cancelled),
    ]

    def restored() -> list[Any]:
        return [e for e in ledger_out.events() if e.type == "points.restored"]

    with running(POINTS, REMINDERS, settings=settings):
        for topic, message in inputs[:2]:
            producer.send(topic, message)
        producer.flush()
        ledger_out.wait_for(lambda rs: len(ledger_out.events()) >= 1, 60, "the accrual")
        for topic, message in inputs[2:]:
            producer.send(topic, message)
        producer.flush()
        ledger_out.wait_for(lambda rs: len(restored()) >= 2, 60, "two points.restored")
        reminders_out.wait_count(1, 60)
        # everything again, same ids (a re-publication after a crash): nothing new
        for topic, message in inputs:
            producer.send(topic, message)
        producer.flush()
        ledger_out.settle(3.0)
        reminders_out.settle(1.0)

    moves = [(e.type, e.data.reason, e.data.points, e.data.balance_after)
             for e in ledger_out.events() if e.subject == acc]  # fmt: skip
    assert moves == [
        ("points.accrued", "purchase", 1200, 1200),
        ("points.redeemed", "fee_redemption", 1000, 200),
        ("points.accrued", "first_installment_bonus", 1200, 1400),
        ("points.restored", "plan_adjusted", 400, 1800),
        ("points.restored", "plan_cancelled", 600, 2400),  # 800 asked: capped at 1000 - 400
    ]
    assert all(e.data.plan_id == plan_id for e in restored())
    assert sum(e.data.points for e in restored()) <= 1000  # never more than redeemed
    [reminder] = reminders_out.events()
    assert (reminder.subject, reminder.data.plan_id, reminder.data.seq) == (acc, plan_id, 1)
    assert reminder.data.amount_due == D("52.25")  # the adjusted amount, not 104.50
    assert (reminder.data.days_before_due, reminder.data.template) == (7, "due_in_7_days")
