"""What the checker tests build: fabricated histories of card and offers events (card
events, plan.created, payment.received, installment.paid, fee.waived, all on account
acc-1 in EUR) and the money report the checker makes of them. Shared by the checker's own
tests and the offers tests of refunded fees.

Second release: recorded / flagged purchases, fraud reviews, refunds, offers, plan
adjustments and cancellations, points redeemed and restored, and ``history_report``,
which runs one of the checker's history checks over events by topic.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from schemas import new_event
from shared.ops.invariants import Report, check_money_paid

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
D = Decimal


def card_event(event_type: str, rule: str, **data):
    return new_event(
        event_type, data=data, source="card-system", cause=None, rule=rule, time=T0, subject="acc-1"
    )


def months_after(start: date, months: int) -> date:
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def plan_created(
    plan_id: str,
    purchase_id: str,
    lines: list[tuple[str, str]],
    *,
    start: date = date(2026, 3, 2),
    auto_converted: bool = False,
):
    """A plan whose schedule is ``lines`` of (principal, fee), due monthly from ``start``."""
    schedule = [
        {
            "seq": n,
            "due_date": months_after(start, n),
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
        auto_converted=auto_converted,
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


# --- second release ---------------------------------------------------------------


def recorded(purchase_id: str, amount: str = "1000.00", flags: tuple[str, ...] = ()):
    return card_event(
        "purchase.recorded",
        f"recorded-{purchase_id}",
        purchase_id=purchase_id,
        account_id="acc-1",
        card_token="tok-acc-1",
        card_last4="0042",
        amount=D(amount),
        currency="EUR",
        merchant={"merchant_id": "m-1", "name": "Shop", "mcc": "5732"},
        channel="ecommerce",
        posted_at=T0,
        risk_flags=list(flags),
    )


def flagged(purchase_id: str, flags: tuple[str, ...], amount: str = "1000.00"):
    return card_event(
        "purchase.flagged",
        f"flagged-{purchase_id}",
        purchase_id=purchase_id,
        account_id="acc-1",
        amount=D(amount),
        currency="EUR",
        flags=list(flags),
        posted_at=T0,
    )


def review_closed(purchase_id: str, outcome: str, closed_on: date):
    return card_event(
        "purchase.review-closed",
        f"review-{purchase_id}",
        purchase_id=purchase_id,
        account_id="acc-1",
        outcome=outcome,
        closed_on=closed_on,
    )


def offer_made(purchase_id: str):
    return card_event(
        "offer.made",
        f"offer-{purchase_id}",
        offer_id=f"offer-{purchase_id}",
        purchase_id=purchase_id,
        account_id="acc-1",
        principal=D("1000.00"),
        currency="EUR",
        expires_on=date(2026, 4, 1),
        options=[
            {
                "tenor_months": 3,
                "fee_model": "flat_monthly",
                "monthly_fee_rate": D("0.0075"),
                "total_fee": D("22.50"),
                "first_installment": D("340.84"),
                "regular_installment": D("340.83"),
                "apr": D("13.45"),
            }
        ],
    )


def refund_recorded(refund_id: str, purchase_id: str, amount: str):
    return card_event(
        "refund.recorded",
        refund_id,
        refund_id=refund_id,
        purchase_id=purchase_id,
        account_id="acc-1",
        amount=D(amount),
        currency="EUR",
        refunded_at=T0,
        refunded_total=D(amount),
        fully_refunded=False,
    )


def plan_adjusted(
    plan_id: str,
    refund_id: str,
    principal_reduced: str,
    lines: list[tuple[int, str, str]],
    *,
    points_to_restore: int = 0,
    amounts: dict[int, str] | None = None,
):
    """plan.adjusted whose schedule is ``lines`` of (seq, principal, fee), each line's
    amount principal + fee; ``amounts`` then overrides a line's amount past the schema
    (which refuses it), as a producer that skipped validation would write it."""
    schedule = [
        {
            "seq": seq,
            "due_date": months_after(date(2026, 3, 2), seq),
            "principal": D(p),
            "fee": D(f),
            "amount": D(p) + D(f),
        }
        for seq, p, f in lines
    ]
    event = card_event(
        "plan.adjusted",
        f"adjusted-{plan_id}-{refund_id}",
        plan_id=plan_id,
        account_id="acc-1",
        reason="refund",
        refund_id=refund_id,
        principal_reduced=D(principal_reduced),
        fee_reduced=D("0"),
        fee_returned=D("0"),
        currency="EUR",
        schedule=schedule,
        points_to_restore=points_to_restore,
    )
    if not amounts:
        return event
    wrong = [
        line.model_copy(update={"amount": D(amounts[line.seq])}) if line.seq in amounts else line
        for line in event.data.schedule
    ]
    return event.model_copy(update={"data": event.data.model_copy(update={"schedule": wrong})})


def plan_cancelled(plan_id: str, points_to_restore: int = 0):
    return card_event(
        "plan.cancelled",
        f"cancelled-{plan_id}",
        plan_id=plan_id,
        reason="refund",
        principal_returned=D("0"),
        fee_returned=D("0"),
        currency="EUR",
        points_to_restore=points_to_restore,
    )


def points_event(event_type: str, plan_id: str, points: int, balance_after: int):
    """points.redeemed (reason fee_redemption) or points.restored (reason plan_adjusted)."""
    reason = "fee_redemption" if event_type == "points.redeemed" else "plan_adjusted"
    return card_event(
        event_type,
        f"{event_type}-{plan_id}-{balance_after}",
        account_id="acc-1",
        plan_id=plan_id,
        points=points,
        balance_after=balance_after,
        reason=reason,
    )


def history_report(check: Callable[[Report, dict[str, list[Any]]], None], **topics) -> Report:
    """Run one history check over events by topic (keyword: topic name with ``_`` for ``.``
    and ``-``, e.g. ``installments_plans_v1``)."""
    names = {
        "purchases_recorded_v1": "purchases.recorded.v1",
        "fraud_reviews_v1": "fraud.reviews.v1",
        "installments_offers_v1": "installments.offers.v1",
        "installments_plans_v1": "installments.plans.v1",
        "points_ledger_v1": "points.ledger.v1",
    }
    rep = Report()
    check(rep, {names[k]: v for k, v in topics.items()})
    return rep
