"""What the checker tests build: fabricated histories of card and offers events (card
events, plan.created, payment.received, installment.paid, fee.waived, all on account
acc-1 in EUR) and the money report the checker makes of them. Shared by the checker's own
tests and the offers tests of refunded fees.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from schemas import new_event
from shared.ops.invariants import Report, check_money_paid

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
D = Decimal


def card_event(event_type: str, rule: str, **data):
    return new_event(event_type, data=data, source="card-system", cause=None, rule=rule, time=T0)


def plan_created(plan_id: str, purchase_id: str, lines: list[tuple[str, str]]):
    """A plan whose schedule is ``lines`` of (principal, fee)."""
    schedule = [
        {
            "seq": n,
            "due_date": date(2026, 3 + n, 2),
            "principal": D(p),
            "fee": D(f),
            "amount": D(p) + D(f),
        }
        for n, (p, f) in enumerate(lines, start=1)
    ]
    return card_event(
        "plan.created",
        f"plan-{plan_id}",
        plan_id=plan_id,
        offer_id=f"offer-{purchase_id}",
        purchase_id=purchase_id,
        account_id="acc-1",
        principal=sum((line["principal"] for line in schedule), D(0)),
        currency="EUR",
        tenor_months=len(lines),
        total_fee=sum((line["fee"] for line in schedule), D(0)),
        apr=D("0.1"),
        auto_converted=False,
        schedule=schedule,
    )


def payment(payment_id: str, amount: str):
    return card_event(
        "payment.received",
        payment_id,
        payment_id=payment_id,
        account_id="acc-1",
        amount=D(amount),
        currency="EUR",
        received_at=T0,
    )


def paid(cause, plan_id: str, seq: int, amount: str):
    """installment.paid as the offers service emits it: caused by ``cause``."""
    return new_event(
        "installment.paid",
        subject="acc-1",
        data={
            "plan_id": plan_id,
            "seq": seq,
            "amount": D(amount),
            "currency": "EUR",
            "paid_on": date(2026, 4, 2),
        },
        source="offers",
        cause=cause,
        rule=f"paid:{plan_id}:{seq}",
    )


def fee_waived(cause, plan_id: str, amount: str):
    return new_event(
        "fee.waived",
        subject="acc-1",
        data={"plan_id": plan_id, "amount": D(amount), "currency": "EUR", "points": 100},
        source="offers",
        cause=cause,
        rule="fee-waived",
    )


def money_report(payments, plans) -> Report:
    rep = Report()
    check_money_paid(rep, {"card.payments.v1": payments, "installments.plans.v1": plans})
    return rep
