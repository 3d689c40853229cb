"""What the collections tests build: plan.created, installment.paid and the other plan
events as the offers service emits them. Shared by the collections handler and read-model
tests.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from tests.support import envelope

D = Decimal


def plan_created(account_id: str, plan_id: str, principal: str, tenor: int,
                 first_due: date = date(2026, 2, 15)) -> dict[str, Any]:  # fmt: skip
    total = D(principal)
    part = (total / tenor).quantize(D("0.01"), rounding="ROUND_DOWN")
    parts = [total - part * (tenor - 1)] + [part] * (tenor - 1)
    schedule = [
        {"seq": i + 1, "due_date": (first_due + timedelta(days=30 * i)).isoformat(),
         "principal": str(p), "fee": "0.00", "amount": str(p)}
        for i, p in enumerate(parts)
    ]  # fmt: skip
    data = {
        "plan_id": plan_id, "offer_id": f"off-{plan_id}", "purchase_id": f"pur-{plan_id}",
        "account_id": account_id, "principal": principal, "currency": "USD",
        "tenor_months": tenor, "total_fee": "0.00", "apr": "0.00", "auto_converted": False,
        "redeem_points": 0, "schedule": schedule,
    }  # fmt: skip
    return envelope("plan.created", account_id, data, source="offers")


def paid(account_id: str, plan_id: str, seq: int, amount: str,
         paid_on: date = date(2026, 2, 15)) -> dict[str, Any]:  # fmt: skip
    data = {"plan_id": plan_id, "seq": seq, "amount": amount, "currency": "USD",
            "paid_on": paid_on.isoformat()}  # fmt: skip
    return envelope("installment.paid", account_id, data, source="offers")


def plan_event(event_type: str, account_id: str, plan_id: str) -> dict[str, Any]:
    data: dict[str, Any] = {"plan_id": plan_id}
    if event_type == "plan.cancelled":
        data |= {"reason": "refund", "principal_returned": "800.00", "fee_returned": "0.00",
                 "currency": "USD"}  # fmt: skip
    return envelope(event_type, account_id, data, source="offers")


def plan_adjusted(account_id: str, plan_id: str, lines: dict[int, tuple[date, str, str]],
                  principal_reduced: str, refund_id: str = "ref-1") -> dict[str, Any]:  # fmt: skip
    """A ``plan.adjusted``: ``lines`` is seq -> (due date, principal, fee) of the unpaid
    installments after the partial refund."""
    schedule = [
        {"seq": seq, "due_date": due.isoformat(), "principal": p, "fee": fee,
         "amount": str(D(p) + D(fee))}
        for seq, (due, p, fee) in sorted(lines.items())
    ]  # fmt: skip
    data = {
        "plan_id": plan_id, "account_id": account_id, "reason": "refund",
        "refund_id": refund_id, "principal_reduced": principal_reduced, "fee_reduced": "0.00",
        "fee_returned": "0.00", "currency": "USD", "schedule": schedule,
        "points_to_restore": 0,
    }  # fmt: skip
    return envelope("plan.adjusted", account_id, data, source="offers")


def contact(account_id: str, case_id: str, outcome: str, contacted_on: date, *,
            contact_id: str | None = None, promised_amount: str | None = None,
            promised_date: date | None = None,
            currency: str = "USD") -> dict[str, Any]:  # fmt: skip
    """A ``contact.recorded`` as the collections team's tools publish it (the promise
    fields only with ``promise_to_pay``)."""
    data: dict[str, Any] = {
        "contact_id": contact_id or f"ct-{outcome}-{contacted_on.isoformat()}",
        "case_id": case_id, "account_id": account_id, "outcome": outcome,
        "contacted_on": contacted_on.isoformat(), "agent_ref": "agent-7",
    }  # fmt: skip
    if outcome == "promise_to_pay":
        assert promised_amount is not None and promised_date is not None
        data |= {"promised_amount": promised_amount, "currency": currency,
                 "promised_date": promised_date.isoformat()}  # fmt: skip
    return envelope("contact.recorded", account_id, data, source="collections-team")
