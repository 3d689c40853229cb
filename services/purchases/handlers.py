"""Purchases service: what happens when each event arrives.

The HANDLERS table at the bottom is the index: event type -> reaction.
Every handler has the same shape: load, ask the domain, write, emit.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import insert, select, update

from schemas import Envelope
from schemas.payloads import PurchasePosted, PurchaseRecorded, PurchaseRefunded, RefundRecorded
from services.purchases import domain
from services.purchases.tables import purchases, refunds
from shared.runtime import Context, Handler, Reject


def _load_purchase(ctx: Context, purchase_id: str) -> domain.RecordedPurchase | None:
    row = ctx.session.execute(
        select(
            purchases.c.purchase_id,
            purchases.c.account_id,
            purchases.c.amount,
            purchases.c.currency,
            purchases.c.refunded_total,
        ).where(purchases.c.purchase_id == purchase_id)
    ).first()
    return domain.RecordedPurchase(*row) if row else None


def record_purchase(ctx: Context, event: Envelope) -> None:
    """purchase.posted -> remember it once, emit purchase.recorded."""
    p: PurchasePosted = event.data
    try:
        decision = domain.decide_purchase(
            _load_purchase(ctx, p.purchase_id), p.account_id, p.amount, p.currency
        )
    except domain.Refused as exc:
        raise Reject(str(exc)) from exc
    if decision == "duplicate":
        ctx.log.info("duplicate purchase ignored", purchase_id=p.purchase_id)
        return
    ctx.session.execute(
        insert(purchases).values(
            purchase_id=p.purchase_id,
            account_id=p.account_id,
            amount=p.amount,
            currency=p.currency,
            merchant_id=p.merchant.merchant_id,
            mcc=p.merchant.mcc,
            posted_at=p.posted_at,
            refunded_total=Decimal("0"),
            event_id=event.id,
        )
    )
    ctx.emit("purchase.recorded", PurchaseRecorded(**p.model_dump()), rule="recorded")


def record_refund(ctx: Context, event: Envelope) -> None:
    """purchase.refunded -> check it against what is left, emit refund.recorded."""
    r: PurchaseRefunded = event.data
    if ctx.session.execute(
        select(refunds.c.refund_id).where(refunds.c.refund_id == r.refund_id)
    ).first():
        ctx.log.info("duplicate refund ignored", refund_id=r.refund_id)
        return
    try:
        outcome = domain.decide_refund(
            _load_purchase(ctx, r.purchase_id), r.account_id, r.amount, r.currency
        )
    except domain.Refused as exc:
        raise Reject(str(exc)) from exc
    ctx.session.execute(
        update(purchases)
        .where(purchases.c.purchase_id == r.purchase_id)
        .values(refunded_total=outcome.refunded_total)
    )
    ctx.session.execute(
        insert(refunds).values(
            refund_id=r.refund_id,
            purchase_id=r.purchase_id,
            account_id=r.account_id,
            amount=r.amount,
            currency=r.currency,
            refunded_at=r.refunded_at,
            event_id=event.id,
        )
    )
    ctx.emit(
        "refund.recorded",
        RefundRecorded(
            **r.model_dump(),
            refunded_total=outcome.refunded_total,
            fully_refunded=outcome.fully_refunded,
        ),
        rule="recorded",
    )


HANDLERS: dict[str, Handler] = {
    "purchase.posted": record_purchase,
    "purchase.refunded": record_refund,
}
