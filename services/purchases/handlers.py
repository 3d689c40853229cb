"""Purchases service: what happens when each event arrives.

The HANDLERS table at the bottom is the index: event type -> reaction.
Every handler has the same shape: read the batch view (``ctx.repo``, bulk-loaded by
``repository.py``), ask the domain, record the change, emit.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from schemas import Envelope
from schemas.payloads import (
    PurchaseFlagged,
    PurchasePosted,
    PurchaseRecorded,
    PurchaseRefunded,
    RefundRecorded,
)
from services.purchases import domain
from services.purchases.policy import DEFAULT_POLICY, PurchasesPolicy
from services.purchases.repository import Keys, PurchasesRepository
from shared.runtime import Context, Handler, Reject


def _policy(ctx: Context) -> PurchasesPolicy:
    policy = ctx.policy
    return policy if isinstance(policy, PurchasesPolicy) else DEFAULT_POLICY


def record_purchase(ctx: Context, event: Envelope) -> None:
    """purchase.posted -> remember it once, screen it, emit purchase.recorded (with its
    ``risk_flags``) and, when flagged, purchase.flagged.

    Screening reads only state of recorded purchases, and a purchase enters that state
    only here, once recorded: a duplicate or a dead-lettered purchase is never screened
    or counted (every refusal comes before the first change)."""
    p: PurchasePosted = event.data
    repo: PurchasesRepository = ctx.repo
    try:
        decision = domain.decide_purchase(
            repo.purchase(p.purchase_id), p.account_id, p.amount, p.currency
        )
    except domain.Refused as exc:
        raise Reject(str(exc)) from exc
    if decision == "duplicate":
        ctx.log.info("duplicate purchase ignored", purchase_id=p.purchase_id)
        return
    try:
        domain.check_event_date("posted_at", p.posted_at.date())
    except domain.Refused as exc:
        raise Reject(str(exc)) from exc
    policy = _policy(ctx)
    card_times = repo.card_times(p.account_id, p.card_token)
    facts = domain.ScreeningFacts(
        card_times=card_times,
        history=repo.amount_history(p.account_id),
        merchant_seen=repo.merchant_seen(p.account_id, p.merchant.merchant_id),
    )
    flags = domain.screen_purchase(p.amount, p.channel, p.posted_at, facts, policy)
    keep_from = domain.card_times_kept_from((*card_times, p.posted_at), policy)
    assert keep_from is not None  # at least this purchase's time
    repo.add_purchase(
        domain.RecordedPurchase(p.purchase_id, p.account_id, p.amount, p.currency, Decimal("0")),
        {
            "purchase_id": p.purchase_id,
            "account_id": p.account_id,
            "amount": p.amount,
            "currency": p.currency,
            "merchant_id": p.merchant.merchant_id,
            "mcc": p.merchant.mcc,
            "posted_at": p.posted_at,
            "refunded_total": Decimal("0"),
            "event_id": event.id,
        },
    )
    repo.remember_screening(
        p.account_id,
        p.card_token,
        p.purchase_id,
        p.posted_at,
        p.amount,
        p.merchant.merchant_id,
        keep_times_from=keep_from,
        keep_amounts=policy.spike_history,
    )
    ctx.emit(
        "purchase.recorded",
        PurchaseRecorded.model_construct(**p.__dict__, risk_flags=flags),
        rule="recorded",
    )
    if flags:
        ctx.log.info("purchase flagged", purchase_id=p.purchase_id, flags=flags)
        ctx.emit(
            "purchase.flagged",
            PurchaseFlagged.model_construct(
                purchase_id=p.purchase_id,
                account_id=p.account_id,
                amount=p.amount,
                currency=p.currency,
                flags=flags,
                posted_at=p.posted_at,
            ),
            rule="flagged",
        )


def record_refund(ctx: Context, event: Envelope) -> None:
    """purchase.refunded -> check it against what is left, emit refund.recorded."""
    r: PurchaseRefunded = event.data
    repo: PurchasesRepository = ctx.repo
    if repo.has_refund(r.refund_id):
        ctx.log.info("duplicate refund ignored", refund_id=r.refund_id)
        return
    try:
        domain.check_event_date("refunded_at", r.refunded_at.date())
        outcome = domain.decide_refund(
            repo.purchase(r.purchase_id), r.account_id, r.amount, r.currency
        )
    except domain.Refused as exc:
        raise Reject(str(exc)) from exc
    repo.add_refund(
        r.purchase_id,
        outcome.refunded_total,
        {
            "refund_id": r.refund_id,
            "purchase_id": r.purchase_id,
            "account_id": r.account_id,
            "amount": r.amount,
            "currency": r.currency,
            "refunded_at": r.refunded_at,
            "event_id": event.id,
        },
    )
    ctx.emit(
        "refund.recorded",
        RefundRecorded.model_construct(
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

#: What each handler needs preloaded (event type -> the keys the batch repository reads
#: for it, once per batch: ``PurchasesRepository.load``).
PRELOAD: dict[str, Callable[[Envelope], Keys]] = {
    "purchase.posted": lambda e: Keys(
        purchases=(e.data.purchase_id,),
        screening=(e.data.account_id,),
        merchants=((e.data.account_id, e.data.merchant.merchant_id),),
    ),
    "purchase.refunded": lambda e: Keys(
        purchases=(e.data.purchase_id,), refunds=(e.data.refund_id,)
    ),
}
