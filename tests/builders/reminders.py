"""What the reminders tests build: installment.due-soon and installment.paid as the
offers service emits them, for an installment due on ``DUE``. Shared by the reminders
handler and business-time tests.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from tests.support import envelope

PLANS = "installments.plans.v1"
ACCOUNTS = "card.accounts.v1"
BUSINESS_DAYS = "card.business-days.v1"
DUE = date(2026, 3, 15)


def due_soon(account_id: str, plan_id: str, seq: int, business_date: date, *,
             due: date = DUE, amount: str = "105.00") -> dict[str, Any]:  # fmt: skip
    return envelope(
        "installment.due-soon",
        account_id,
        {
            "plan_id": plan_id,
            "seq": seq,
            "due_date": due.isoformat(),
            "amount_outstanding": amount,
            "currency": "USD",
            "days_until_due": (due - business_date).days,
            "business_date": business_date.isoformat(),
        },
        source="offers",
    )


def paid(account_id: str, plan_id: str, seq: int, on: date) -> dict[str, Any]:
    data = {"plan_id": plan_id, "seq": seq, "amount": "105.00", "currency": "USD",
            "paid_on": on.isoformat()}  # fmt: skip
    return envelope("installment.paid", account_id, data, source="offers")


def before(days: int, due: date = DUE) -> date:
    return due - timedelta(days=days)


def plan_adjusted(account_id: str, plan_id: str, lines: dict[int, str], *,
                  due: date = DUE, refund_id: str = "ref-1") -> dict[str, Any]:  # fmt: skip
    """A ``plan.adjusted`` whose unpaid schedule is ``lines`` (seq -> amount, no fee),
    installment ``seq`` due ``seq - 1`` months after ``due`` (roughly: 30 days)."""
    schedule = [
        {"seq": seq, "due_date": (due + timedelta(days=30 * (seq - 1))).isoformat(),
         "principal": amount, "fee": "0.00", "amount": amount}
        for seq, amount in sorted(lines.items())
    ]  # fmt: skip
    data = {
        "plan_id": plan_id, "account_id": account_id, "reason": "refund",
        "refund_id": refund_id, "principal_reduced": "50.00", "fee_reduced": "0.00",
        "fee_returned": "0.00", "currency": "USD", "schedule": schedule,
        "points_to_restore": 0,
    }  # fmt: skip
    return envelope("plan.adjusted", account_id, data, source="offers")
