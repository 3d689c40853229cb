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
