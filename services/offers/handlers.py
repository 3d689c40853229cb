"""Offers service: what happens when each event arrives.

The HANDLERS table at the bottom is the index: event type -> reaction. Every handler
has the same shape: load state with ``ctx.session``, ask the domain
(:mod:`services.offers.domain`), write the new state, emit the resulting events.

Conventions:

- Ids are derived from the purchase: ``off-<purchase_id>`` and ``plan-<purchase_id>``.
- Every emitted event is keyed by its account (``subject=account_id``), also the ones
  the end of day emits; ``rule`` names the reaction plus what makes it unique for one
  cause (``paid:<plan>:<seq>``, ``due-soon:<plan>:<seq>:<date>``), so a replay emits
  the same ids.
- Dates come from the events (``posted_at``, ``received_at``, ``refunded_at``,
  ``business_date``); nothing here reads the clock. Offer expiry and delinquency are
  decided at end of day (the contract's "checked at end of day"), so an acceptance is
  rejected as ``expired`` once the end of day after ``expires_on`` has closed.
- Money is Decimal throughout; digits come from the currency (``MINOR_UNITS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_DOWN, Decimal
from typing import Any

from sqlalchemy import func, insert, or_, select, update

from schemas import MINOR_UNITS, Envelope
from schemas.payloads import (
    AccountDelinquency,
    AccountUpserted,
    BusinessDayClosed,
    FeeWaived,
    InstallmentDueSoon,
    InstallmentPaid,
    OfferAccepted,
    OfferDeclined,
    OfferExpired,
    OfferMade,
    OfferNotEligible,
    OfferOption,
    OfferRejected,
    PaymentReceived,
    PlanCancelled,
    PlanCompleted,
    PlanCreated,
    PointsRedeemed,
    PurchaseRecorded,
    RefundRecorded,
    ScheduleLine,
)
from services.offers import domain
from services.offers.policy import OffersPolicy
from services.offers.tables import (
    accounts,
    business_days,
    installments,
    offer_options,
    offers,
    payments,
    plans,
    positions,
    purchases,
    refunds,
    waivers,
)
from shared.runtime import Context, Defer, Handler, Reject

ZERO = Decimal(0)
PAYMENTS_TOPIC = "card.payments.v1"
ACCOUNTS_TOPIC = "card.accounts.v1"

#: offer status -> the offer.rejected reason for a decision that finds it in that status.
REJECTED_BECAUSE = {
    "accepted": "already_converted",
    "declined": "declined",
    "expired": "expired",
    "refunded": "refunded",
}


def offer_id_for(purchase_id: str) -> str:
    return f"off-{purchase_id}"


def plan_id_for(purchase_id: str) -> str:
    return f"plan-{purchase_id}"


# ---------------------------------------------------------------- loading and saving


def _policy(ctx: Context) -> OffersPolicy:
    return ctx.policy or OffersPolicy()


def _digits(currency: str) -> int:
    return MINOR_UNITS[currency]


def _account_row(ctx: Context, account_id: str) -> Any:
    return ctx.session.execute(select(accounts).where(accounts.c.account_id == account_id)).first()


def _account_view(row: Any) -> domain.AccountView | None:
    if row is None:
        return None
    return domain.AccountView(
        account_id=row.account_id,
        status=row.status,
        segment=row.segment,
        tier=row.tier,
        credit_limit=row.credit_limit,
        risk_score=row.risk_score,
        installment_limit=row.installment_limit,
    )


@dataclass(frozen=True)
class Position:
    credit: Decimal = ZERO
    overdue_as_of: date | None = None


def _position(ctx: Context, account_id: str) -> Position:
    row = ctx.session.execute(
        select(positions.c.credit, positions.c.overdue_as_of).where(
            positions.c.account_id == account_id
        )
    ).first()
    return Position(row.credit, row.overdue_as_of) if row else Position()


def _save_position(ctx: Context, account_id: str, position: Position) -> None:
    values = {"credit": position.credit, "overdue_as_of": position.overdue_as_of}
    result = ctx.session.execute(
        update(positions).where(positions.c.account_id == account_id).values(**values)
    )
    if result.rowcount == 0:
        ctx.session.execute(insert(positions).values(account_id=account_id, **values))


def _state(row: Any) -> domain.InstallmentState:
    return domain.InstallmentState(
        plan_id=row.plan_id,
        seq=row.seq,
        due_date=row.due_date,
        principal=row.principal,
        fee=row.fee,
        principal_paid=row.principal_paid,
        fee_paid=row.fee_paid,
        fee_waived=row.fee_waived,
        plan_order=row.plan_order,
    )


def _installment_query() -> Any:
    return select(
        installments,
        plans.c.plan_order,
        plans.c.currency,
    ).join(plans, plans.c.plan_id == installments.c.plan_id)


def _open_installments(ctx: Context, account_id: str) -> list[domain.InstallmentState]:
    """Every installment of the account with something left to pay (all its plans)."""
    rows = ctx.session.execute(
        _installment_query().where(
            installments.c.account_id == account_id, installments.c.open.is_(True)
        )
    )
    return [_state(r) for r in rows]


def _plan_installments(ctx: Context, plan_id: str) -> list[domain.InstallmentState]:
    rows = ctx.session.execute(
        _installment_query()
        .where(installments.c.plan_id == plan_id)
        .order_by(installments.c.seq)
    )
    return [_state(r) for r in rows]


def _save_installments(
    ctx: Context, before: list[domain.InstallmentState], after: list[domain.InstallmentState]
) -> None:
    """Write the installments the domain changed."""
    old = {(i.plan_id, i.seq): i for i in before}
    for item in after:
        if old.get((item.plan_id, item.seq)) == item:
            continue
        ctx.session.execute(
            update(installments)
            .where(installments.c.plan_id == item.plan_id, installments.c.seq == item.seq)
            .values(
                principal=item.principal,
                fee=item.fee,
                principal_paid=item.principal_paid,
                fee_paid=item.fee_paid,
                fee_waived=item.fee_waived,
                open=not item.is_paid,
            )
        )


def _plan_row(ctx: Context, plan_id: str) -> Any:
    return ctx.session.execute(select(plans).where(plans.c.plan_id == plan_id)).first()


def _set_plan_status(ctx: Context, plan_id: str, status: str, **values: Any) -> None:
    ctx.session.execute(
        update(plans).where(plans.c.plan_id == plan_id).values(status=status, **values)
    )


def _last_business_date(ctx: Context) -> date | None:
    return ctx.session.execute(select(func.max(business_days.c.business_date))).scalar()


# ---------------------------------------------------------------- shared reactions


def _create_plan(
    ctx: Context,
    *,
    purchase_id: str,
    account_id: str,
    principal: Decimal,
    currency: str,
    posted_on: date,
    option: domain.OfferOption,
    offer_id: str | None,
    auto_converted: bool,
    redeem_points: int,
) -> None:
    """Write a plan and its schedule; emit plan.created."""
    policy = _policy(ctx)
    plan_id = plan_id_for(purchase_id)
    schedule = domain.build_schedule(
        principal,
        option.total_fee,
        option.tenor_months,
        posted_on,
        policy.remainder_placement,
        _digits(currency),
    )
    order = ctx.session.execute(
        select(func.count()).select_from(plans).where(plans.c.account_id == account_id)
    ).scalar_one()
    ctx.session.execute(
        insert(plans).values(
            plan_id=plan_id,
            purchase_id=purchase_id,
            offer_id=offer_id,
            account_id=account_id,
            principal=principal,
            currency=currency,
            tenor_months=option.tenor_months,
            total_fee=option.total_fee,
            apr=str(option.apr),
            auto_converted=auto_converted,
            redeem_points=redeem_points,
            posted_on=posted_on,
            plan_order=order + 1,
            status="active",
            principal_returned=ZERO,
            fee_returned=ZERO,
            event_id=ctx.event.id,
        )
    )
    ctx.session.execute(
        insert(installments),
        [
            {
                "plan_id": plan_id,
                "seq": line.seq,
                "account_id": account_id,
                "due_date": line.due_date,
                "principal": line.principal,
                "fee": line.fee,
                "principal_paid": ZERO,
                "fee_paid": ZERO,
                "fee_waived": ZERO,
                "open": line.amount > 0,
            }
            for line in schedule
        ],
    )
    ctx.emit(
        "plan.created",
        PlanCreated(
            plan_id=plan_id,
            offer_id=offer_id,
            purchase_id=purchase_id,
            account_id=account_id,
            principal=principal,
            currency=currency,
            tenor_months=option.tenor_months,
            total_fee=option.total_fee,
            apr=option.apr,
            auto_converted=auto_converted,
            redeem_points=redeem_points,
            schedule=[
                ScheduleLine(
                    seq=line.seq,
                    due_date=line.due_date,
                    principal=line.principal,
                    fee=line.fee,
                    amount=line.amount,
                )
                for line in schedule
            ],
        ),
        rule="plan",
        subject=account_id,
    )


def _apply_funds(
    ctx: Context, account_id: str, amount: Decimal, paid_on: date, currency: str, rule: str
) -> None:
    """Apply money (a payment, or only the account's credit when ``amount`` is 0) to the
    account's installments; write the result; emit installment.paid per installment now
    fully paid, plan.completed per plan now fully paid, plan.cancelled (early_payoff) per
    plan paid off early. Plans cancelled by a refund whose owed fees get paid stay
    cancelled (no plan.completed)."""
    policy = _policy(ctx)
    position = _position(ctx, account_id)
    before = _open_installments(ctx, account_id)
    result = domain.allocate_payment(
        before, amount, position.credit, paid_on, policy.early_payoff_waives_fees
    )
    _save_installments(ctx, before, result.installments)
    _save_position(ctx, account_id, Position(result.credit, position.overdue_as_of))

    state = {(i.plan_id, i.seq): i for i in result.installments}
    for plan_id, seq in result.paid:
        item = state[(plan_id, seq)]
        total = item.principal_paid + item.fee_paid
        if total > 0:
            ctx.emit(
                "installment.paid",
                InstallmentPaid(
                    plan_id=plan_id, seq=seq, amount=total, currency=currency, paid_on=paid_on
                ),
                rule=f"{rule}paid:{plan_id}:{seq}",
                subject=account_id,
            )
    for payoff in result.paid_off_plans:
        plan = _plan_row(ctx, payoff.plan_id)
        if plan.status != "active":
            continue
        _set_plan_status(ctx, payoff.plan_id, "paid_off")
        ctx.emit(
            "plan.cancelled",
            PlanCancelled(
                plan_id=payoff.plan_id,
                reason="early_payoff",
                principal_returned=ZERO,
                fee_returned=payoff.fee_waived,
                currency=currency,
            ),
            rule=f"{rule}payoff:{payoff.plan_id}",
            subject=account_id,
        )
    for plan_id in result.completed_plans:
        plan = _plan_row(ctx, plan_id)
        if plan.status != "active":
            continue
        _set_plan_status(ctx, plan_id, "completed")
        ctx.emit(
            "plan.completed",
            PlanCompleted(plan_id=plan_id),
            rule=f"{rule}completed:{plan_id}",
            subject=account_id,
        )


def _emit_cure_if_cured(
    ctx: Context, account_id: str, on_date: date, currency: str, rule: str
) -> None:
    """An account the last end of day found overdue with nothing overdue any more (as of
    that business date): clear the flag, emit account.delinquency with days_past_due 0 at
    once. ``business_date`` is the later of ``on_date`` and the flagging business date."""
    position = _position(ctx, account_id)
    if position.overdue_as_of is None:
        return
    if domain.delinquency(_open_installments(ctx, account_id), position.overdue_as_of):
        return
    _save_position(ctx, account_id, Position(position.credit, None))
    ctx.emit(
        "account.delinquency",
        AccountDelinquency(
            account_id=account_id,
            business_date=max(on_date, position.overdue_as_of),
            days_past_due=0,
            overdue_amount=ZERO,
            currency=currency,
        ),
        rule=rule,
        subject=account_id,
    )


def _reject_decision(
    ctx: Context, offer_id: str, account_id: str, purchase_id: str | None, reason: str
) -> None:
    ctx.emit(
        "offer.rejected",
        OfferRejected(
            offer_id=offer_id, account_id=account_id, purchase_id=purchase_id, reason=reason
        ),
        rule="rejected",
        subject=account_id,
    )


def _purchase_facts(row: Any) -> domain.PurchaseFacts:
    return domain.PurchaseFacts(
        amount=row.amount,
        mcc=row.mcc,
        posted_on=row.posted_on,
        merchant_id=row.merchant_id,
        category=row.category,
    )


# ---------------------------------------------------------------- handlers


def record_account(ctx: Context, event: Envelope) -> None:
    """account.upserted -> keep the local view of the account (last one wins)."""
    a: AccountUpserted = event.data
    auto = a.auto_convert
    values = {
        "status": a.status,
        "segment": a.segment,
        "tier": a.tier,
        "credit_limit": a.credit_limit,
        "installment_limit": a.installment_limit,
        "risk_score": a.risk_score,
        "currency": a.currency,
        "auto_convert_enabled": bool(auto and auto.enabled),
        "auto_convert_threshold": auto.threshold if auto else None,
        "auto_convert_tenor": auto.tenor_months if auto else None,
        "event_id": event.id,
    }
    result = ctx.session.execute(
        update(accounts).where(accounts.c.account_id == a.account_id).values(**values)
    )
    if result.rowcount == 0:
        ctx.session.execute(insert(accounts).values(account_id=a.account_id, **values))


def offer_purchase(ctx: Context, event: Envelope) -> None:
    """purchase.recorded -> offer.made, or a plan at once (auto-convert), or offer.not-eligible.

    Eligibility (every failing reason): the domain's rules plus ``currency_mismatch``;
    "overdue" means the last end of day found the account overdue and no payment has
    cured it since, or an installment due before the posting date is unpaid.
    An account not known yet defers the purchase until every account.upserted published
    before it has been applied (accounts and purchases are different topics, so their
    order is not guaranteed); only then is it ``account_unknown``.
    Auto-convert: an opted-in account's purchase >= its threshold becomes a plan at the
    account's tenor with ``auto_converted: true`` and no offer; when that tenor is not
    on the account's menu an ordinary offer is made instead. A purchase_id seen before is
    ignored (a purchase is considered once).
    """
    p: PurchaseRecorded = event.data
    if ctx.session.execute(
        select(purchases.c.purchase_id).where(purchases.c.purchase_id == p.purchase_id)
    ).first():
        ctx.log.info("purchase already considered", purchase_id=p.purchase_id)
        return
    policy = _policy(ctx)
    row = _account_row(ctx, p.account_id)
    if row is None:  # not known yet, or not at all: first apply the accounts published
        _wait_for(ctx, ACCOUNTS_TOPIC, event, "accounts")
    account = _account_view(row)
    facts = domain.PurchaseFacts(
        amount=p.amount,
        mcc=p.merchant.mcc,
        posted_on=p.posted_at.date(),
        merchant_id=p.merchant.merchant_id,
        category=p.merchant.category,
    )
    owed = _open_installments(ctx, p.account_id)
    outstanding = sum((i.principal_due for i in owed), ZERO)
    has_overdue = (
        _position(ctx, p.account_id).overdue_as_of is not None
        or domain.delinquency(owed, facts.posted_on) is not None
    )
    reasons = domain.eligibility_reasons(account, facts, outstanding, has_overdue, policy)
    if row is not None and row.currency != p.currency:
        reasons.append("currency_mismatch")

    options: list[domain.OfferOption] = []
    promotion: str | None = None
    auto_option: domain.OfferOption | None = None
    if not reasons:
        assert account is not None and row is not None
        options, promotion = domain.offer_options(
            p.amount, account, facts, policy, _digits(p.currency)
        )
        if row.auto_convert_enabled and p.amount >= row.auto_convert_threshold:
            by_tenor = {o.tenor_months: o for o in options}
            auto_option = by_tenor.get(row.auto_convert_tenor)
            if auto_option is None:
                ctx.log.warning(
                    "auto-convert tenor not offered to this account; making an offer",
                    tenor=row.auto_convert_tenor,
                )
    outcome = "not_eligible" if reasons else "auto_converted" if auto_option else "offered"
    ctx.session.execute(
        insert(purchases).values(
            purchase_id=p.purchase_id,
            account_id=p.account_id,
            amount=p.amount,
            currency=p.currency,
            mcc=p.merchant.mcc,
            merchant_id=p.merchant.merchant_id,
            category=p.merchant.category,
            posted_on=facts.posted_on,
            refunded_total=ZERO,
            outcome=outcome,
            event_id=event.id,
        )
    )
    if reasons:
        ctx.emit(
            "offer.not-eligible",
            OfferNotEligible(purchase_id=p.purchase_id, account_id=p.account_id, reasons=reasons),
            rule="not-eligible",
            subject=p.account_id,
        )
        return
    if auto_option is not None:
        _create_plan(
            ctx,
            purchase_id=p.purchase_id,
            account_id=p.account_id,
            principal=p.amount,
            currency=p.currency,
            posted_on=facts.posted_on,
            option=auto_option,
            offer_id=None,
            auto_converted=True,
            redeem_points=0,
        )
        return

    offer_id = offer_id_for(p.purchase_id)
    expires_on = domain.offer_expires_on(facts.posted_on, policy)
    ctx.session.execute(
        insert(offers).values(
            offer_id=offer_id,
            purchase_id=p.purchase_id,
            account_id=p.account_id,
            principal=p.amount,
            currency=p.currency,
            expires_on=expires_on,
            promotion=promotion,
            status="open",
            open=True,
            event_id=event.id,
        )
    )
    ctx.session.execute(
        insert(offer_options),
        [
            {
                "offer_id": offer_id,
                "tenor_months": o.tenor_months,
                "fee_model": o.fee_model,
                "monthly_fee_rate": str(o.monthly_fee_rate),
                "total_fee": o.total_fee,
                "first_installment": o.first_installment,
                "regular_installment": o.regular_installment,
                "apr": str(o.apr),
            }
            for o in options
        ],
    )
    ctx.emit(
        "offer.made",
        OfferMade(
            offer_id=offer_id,
            purchase_id=p.purchase_id,
            account_id=p.account_id,
            principal=p.amount,
            currency=p.currency,
            expires_on=expires_on,
            promotion=promotion,
            options=[
                OfferOption(
                    tenor_months=o.tenor_months,
                    fee_model=o.fee_model,
                    monthly_fee_rate=o.monthly_fee_rate,
                    total_fee=o.total_fee,
                    first_installment=o.first_installment,
                    regular_installment=o.regular_installment,
                    apr=o.apr,
                )
                for o in options
            ],
        ),
        rule="offer",
        subject=p.account_id,
    )


def accept_offer(ctx: Context, event: Envelope) -> None:
    """offer.accepted -> plan.created at the chosen tenor, or offer.rejected with a reason.

    Rejected, in this order: ``unknown_offer`` (no such offer for this account);
    ``already_converted`` / ``declined`` / ``expired`` / ``refunded`` (the offer is no
    longer open: accepted before, declined, expired by an end of day, or its purchase was
    refunded); ``invalid_tenor`` (not one of the offer's options); ``not_eligible`` (the
    account stopped being eligible since the offer: not active, found overdue, risk
    score, or the installment limit no longer has room for this principal).
    ``redeem_points`` (default 0) is copied onto plan.created for the points service.
    """
    a: OfferAccepted = event.data
    offer = ctx.session.execute(select(offers).where(offers.c.offer_id == a.offer_id)).first()
    if offer is None or offer.account_id != a.account_id:
        _reject_decision(ctx, a.offer_id, a.account_id, None, "unknown_offer")
        return
    if offer.status != "open":
        _reject_decision(
            ctx, a.offer_id, a.account_id, offer.purchase_id, REJECTED_BECAUSE[offer.status]
        )
        return
    if _plan_row(ctx, plan_id_for(offer.purchase_id)) is not None:
        _reject_decision(ctx, a.offer_id, a.account_id, offer.purchase_id, "already_converted")
        return
    option_row = ctx.session.execute(
        select(offer_options).where(
            offer_options.c.offer_id == a.offer_id,
            offer_options.c.tenor_months == a.tenor_months,
        )
    ).first()
    if option_row is None:
        _reject_decision(ctx, a.offer_id, a.account_id, offer.purchase_id, "invalid_tenor")
        return
    purchase = ctx.session.execute(
        select(purchases).where(purchases.c.purchase_id == offer.purchase_id)
    ).first()
    owed = _open_installments(ctx, a.account_id)
    reasons = domain.eligibility_reasons(
        _account_view(_account_row(ctx, a.account_id)),
        _purchase_facts(purchase),
        sum((i.principal_due for i in owed), ZERO),
        _position(ctx, a.account_id).overdue_as_of is not None,
        _policy(ctx),
    )
    if reasons:
        ctx.log.info("acceptance no longer eligible", reasons=reasons)
        _reject_decision(ctx, a.offer_id, a.account_id, offer.purchase_id, "not_eligible")
        return

    ctx.session.execute(
        update(offers).where(offers.c.offer_id == a.offer_id).values(status="accepted", open=False)
    )
    option = domain.OfferOption(
        tenor_months=option_row.tenor_months,
        fee_model=option_row.fee_model,
        monthly_fee_rate=Decimal(option_row.monthly_fee_rate),
        total_fee=option_row.total_fee,
        first_installment=option_row.first_installment,
        regular_installment=option_row.regular_installment,
        apr=Decimal(option_row.apr),
    )
    _create_plan(
        ctx,
        purchase_id=offer.purchase_id,
        account_id=offer.account_id,
        principal=offer.principal,
        currency=offer.currency,
        posted_on=purchase.posted_on,
        option=option,
        offer_id=offer.offer_id,
        auto_converted=False,
        redeem_points=a.redeem_points or 0,
    )


def decline_offer(ctx: Context, event: Envelope) -> None:
    """offer.declined -> the open offer is closed (nothing emitted).

    A decline that cannot apply gets offer.rejected (``unknown_offer``,
    ``already_converted``, ``expired``, ``refunded``); declining twice is harmless and
    ignored.
    """
    d: OfferDeclined = event.data
    offer = ctx.session.execute(select(offers).where(offers.c.offer_id == d.offer_id)).first()
    if offer is None or offer.account_id != d.account_id:
        _reject_decision(ctx, d.offer_id, d.account_id, None, "unknown_offer")
        return
    if offer.status == "declined":
        ctx.log.info("offer already declined", offer_id=d.offer_id)
        return
    if offer.status != "open":
        _reject_decision(
            ctx, d.offer_id, d.account_id, offer.purchase_id, REJECTED_BECAUSE[offer.status]
        )
        return
    ctx.session.execute(
        update(offers).where(offers.c.offer_id == d.offer_id).values(status="declined", open=False)
    )


def refund_purchase(ctx: Context, event: Envelope) -> None:
    """refund.recorded -> shrink or cancel the purchase's plan; close its open offer.

    - Un-converted purchase with an open offer: any refund (partial or full) makes the
      offer unusable (a later acceptance gets offer.rejected ``refunded``); nothing is
      emitted.
    - Converted purchase (``domain.apply_refund`` as of the refund date): the refunded
      principal comes off the unpaid principal, re-split over the remaining
      installments; not-yet-due fees shrink in proportion (all of them on a full
      refund); principal already paid that the plan cannot absorb becomes account credit.

      **Decision on partial refunds**: ``plan.cancelled`` means "this plan is over", and
      its consumers (points, reminders, collections) treat it so. So it is emitted only
      when the refund leaves no principal on the plan (reason ``refund``), and then with
      the *cumulative* ``principal_returned`` / ``fee_returned`` of every refund applied
      to the plan. A partial refund that leaves principal emits nothing on
      installments.plans.v1: the plan goes on with the shrunk installments (later
      ``installment.due-soon`` / ``installment.paid`` carry the new amounts), and the
      refund itself is already public as ``refund.recorded``. ``plan.created`` is never
      re-emitted.
    - A plan already completed, paid off or cancelled: the whole refund is credit.
    Dedupe on refund_id.
    """
    r: RefundRecorded = event.data
    if ctx.session.execute(
        select(refunds.c.refund_id).where(refunds.c.refund_id == r.refund_id)
    ).first():
        ctx.log.info("refund already applied", refund_id=r.refund_id)
        return
    refunded_on = r.refunded_at.date()
    ctx.session.execute(
        insert(refunds).values(
            refund_id=r.refund_id,
            purchase_id=r.purchase_id,
            account_id=r.account_id,
            amount=r.amount,
            refunded_on=refunded_on,
            event_id=event.id,
        )
    )
    ctx.session.execute(
        update(purchases)
        .where(purchases.c.purchase_id == r.purchase_id)
        .values(refunded_total=r.refunded_total)
    )
    ctx.session.execute(
        update(offers)
        .where(offers.c.purchase_id == r.purchase_id, offers.c.status == "open")
        .values(status="refunded", open=False)
    )
    plan = _plan_row(ctx, plan_id_for(r.purchase_id))
    if plan is None:
        return
    if plan.account_id != r.account_id:
        raise Reject("refund account differs from the plan's account")
    policy = _policy(ctx)
    before = _plan_installments(ctx, plan.plan_id)
    outcome = domain.apply_refund(
        before, r.amount, refunded_on, policy.remainder_placement, _digits(plan.currency)
    )
    _save_installments(ctx, before, outcome.installments)
    if outcome.excess > 0:
        position = _position(ctx, r.account_id)
        _save_position(
            ctx, r.account_id, Position(position.credit + outcome.excess, position.overdue_as_of)
        )
    principal_returned = plan.principal_returned + outcome.principal_returned
    fee_returned = plan.fee_returned + outcome.fee_returned
    cancelled = plan.status == "active" and outcome.cancelled
    ctx.session.execute(
        update(plans)
        .where(plans.c.plan_id == plan.plan_id)
        .values(
            principal_returned=principal_returned,
            fee_returned=fee_returned,
            status="cancelled" if cancelled else plan.status,
        )
    )
    if cancelled:
        ctx.emit(
            "plan.cancelled",
            PlanCancelled(
                plan_id=plan.plan_id,
                reason="refund",
                principal_returned=principal_returned,
                fee_returned=fee_returned,
                currency=plan.currency,
            ),
            rule="cancelled",
            subject=r.account_id,
        )
    _emit_cure_if_cured(ctx, r.account_id, refunded_on, plan.currency, "cured")


def apply_payment(ctx: Context, event: Envelope) -> None:
    """payment.received -> pay the account's installments (``domain.allocate_payment``).

    Oldest due first across plans, fee before principal; early payoff of a plan whose
    whole remaining principal is covered (remaining fees waived by default:
    plan.cancelled ``early_payoff`` with ``principal_returned`` 0 and ``fee_returned`` =
    the fees waived); what is left is account credit. Emits installment.paid per
    installment fully paid (``amount`` = everything paid on it, ``paid_on`` = the
    received date), plan.completed per plan fully paid, and account.delinquency with
    ``days_past_due: 0`` at once when the payment clears every overdue installment of an
    account the last end of day found overdue. Dedupe on payment_id.
    """
    p: PaymentReceived = event.data
    if ctx.session.execute(
        select(payments.c.payment_id).where(payments.c.payment_id == p.payment_id)
    ).first():
        ctx.log.info("payment already applied", payment_id=p.payment_id)
        return
    account = _account_row(ctx, p.account_id)
    if account is not None and account.currency != p.currency:
        raise Reject("payment currency differs from the account's currency")
    received_on = p.received_at.date()
    ctx.session.execute(
        insert(payments).values(
            payment_id=p.payment_id,
            account_id=p.account_id,
            amount=p.amount,
            currency=p.currency,
            received_on=received_on,
            event_id=event.id,
        )
    )
    _apply_funds(ctx, p.account_id, p.amount, received_on, p.currency, rule="")
    _emit_cure_if_cured(ctx, p.account_id, received_on, p.currency, "cured")


def waive_fees_for_points(ctx: Context, event: Envelope) -> None:
    """points.redeemed (fee_redemption) -> lower the plan's unpaid fees; emit fee.waived.

    ``points / policy.points_per_currency_unit`` (rounded down to the minor unit) comes
    off fees not yet paid, oldest first, and only on installments not yet due at the last
    closed business date: a waiver is not a payment and never cures delinquency. The
    event's ``amount`` is what was actually waived (it can be less than the points bought
    when fees were paid meanwhile); nothing left to waive emits nothing.
    """
    r: PointsRedeemed = event.data
    plan = _plan_row(ctx, r.plan_id)
    if plan is None or plan.account_id != r.account_id:
        raise Reject("points.redeemed names a plan this service does not know for the account")
    policy = _policy(ctx)
    unit = domain.minor_unit(_digits(plan.currency))
    worth = (Decimal(r.points) / policy.points_per_currency_unit).quantize(unit, ROUND_DOWN)
    before = [i for i in _plan_installments(ctx, plan.plan_id) if not i.is_paid]
    result = domain.waive_fees(before, worth, _last_business_date(ctx))
    _save_installments(ctx, before, result.installments)
    ctx.session.execute(
        insert(waivers).values(
            event_id=event.id, plan_id=plan.plan_id, points=r.points, amount=result.waived
        )
    )
    if result.waived <= 0:
        ctx.log.warning("points redeemed but no fee left to waive", plan_id=plan.plan_id)
        return
    ctx.emit(
        "fee.waived",
        FeeWaived(plan_id=plan.plan_id, amount=result.waived, currency=plan.currency,
                  points=r.points),
        rule="fee-waived",
        subject=r.account_id,
    )


# ---------------------------------------------------------------- end of day

#: End offsets of a topic noted when a waiting event was first seen, per (consumer group,
#: topic, event id). A barrier waits for the records published before the event, not for
#: every record published since (which, under steady traffic, would keep it waiting).
#: Lost on restart: the next look takes a new (later, so stricter) snapshot, still correct.
_BARRIER: dict[tuple[str, str, str], dict[int, int]] = {}


def _wait_for(ctx: Context, topic: str, event: Envelope, what: str) -> None:
    """Raise Defer until every record of ``topic`` published before ``event`` is applied
    (this group's stored offsets >= the end offsets seen when the event was first seen)."""
    key = (ctx.runner.group, topic, event.id)
    ends = _BARRIER.get(key)
    if ends is None:
        ends = _BARRIER[key] = ctx.end_offsets(topic)
    stored = ctx.stored_offsets(topic)
    behind = sum(max(0, end - stored.get(p, 0)) for p, end in ends.items())
    if behind:
        # the further behind, the longer the wait: each retry costs the runtime a replay
        # of its batch record by record
        raise Defer(
            f"waiting for {what} to catch up ({behind} not yet applied)",
            retry_after_s=min(5.0, 0.5 + behind / 1000),
        )
    _BARRIER.pop(key, None)


def close_business_day(ctx: Context, event: Envelope) -> None:
    """business-day.closed for D -> expiries, credit, due-soon and delinquency, once per D.

    1. Barrier: deferred until every payment published before it has been applied
       (stored offsets of card.payments.v1 >= the end offsets seen for it).
    2. ``offer.expired`` for each open offer with ``expires_on`` < D.
    3. Per account with something owed: its credit (overpayments) pays what it can, like
       a payment of 0 on D; then ``installment.due-soon`` for unpaid installments due
       within ``policy.due_soon_days``; then ``account.delinquency`` when it is overdue
       (and the account is flagged overdue as of D), or ``days_past_due: 0`` when it was
       flagged and is no longer overdue (cured by a refund or by its credit).
    A date already closed is ignored; so is a date before the latest closed one (stale).
    """
    closed: BusinessDayClosed = event.data
    day = closed.business_date
    if ctx.session.execute(
        select(business_days.c.business_date).where(business_days.c.business_date == day)
    ).first():
        ctx.log.info("business date already closed", business_date=str(day))
        return
    last = _last_business_date(ctx)
    if last is not None and day < last:
        ctx.log.warning("stale business date ignored", business_date=str(day), last=str(last))
        return
    _wait_for(ctx, PAYMENTS_TOPIC, event, "payments")
    policy = _policy(ctx)

    # 2. offers past expiry (the SQL filter is domain.is_expired's rule: expires_on < D)
    candidates = ctx.session.execute(
        select(offers.c.offer_id, offers.c.purchase_id, offers.c.account_id, offers.c.expires_on)
        .where(offers.c.open.is_(True), offers.c.expires_on < day)
        .order_by(offers.c.account_id, offers.c.offer_id)
    ).all()
    for offer in (o for o in candidates if domain.is_expired(o.expires_on, day)):
        ctx.session.execute(
            update(offers)
            .where(offers.c.offer_id == offer.offer_id)
            .values(status="expired", open=False)
        )
        ctx.emit(
            "offer.expired",
            OfferExpired(
                offer_id=offer.offer_id,
                purchase_id=offer.purchase_id,
                account_id=offer.account_id,
                business_date=day,
            ),
            rule=f"expired:{offer.offer_id}",
            subject=offer.account_id,
        )

    # 3. accounts with something owed, or flagged overdue
    currency_of: dict[str, str] = {}
    owed: dict[str, list[domain.InstallmentState]] = {}
    for row in ctx.session.execute(_installment_query().where(installments.c.open.is_(True))):
        owed.setdefault(row.account_id, []).append(_state(row))
        currency_of[row.account_id] = row.currency
    owing = select(installments.c.account_id).where(installments.c.open.is_(True))
    position_of = {
        p.account_id: Position(p.credit, p.overdue_as_of)
        for p in ctx.session.execute(
            select(positions).where(
                or_(positions.c.overdue_as_of.is_not(None), positions.c.account_id.in_(owing))
            )
        )
    }
    flagged = {a for a, p in position_of.items() if p.overdue_as_of is not None}

    for account_id in sorted(set(owed) | flagged):
        position = position_of.get(account_id, Position())
        items = owed.get(account_id, [])
        currency = currency_of.get(account_id) or _plan_currency(ctx, account_id)
        if items and position.credit > 0:
            _apply_funds(ctx, account_id, ZERO, day, currency, rule=f"credit:{day}:")
            items = _open_installments(ctx, account_id)
            position = _position(ctx, account_id)
        for soon in domain.due_soon(items, day, policy.due_soon_days):
            ctx.emit(
                "installment.due-soon",
                InstallmentDueSoon(
                    plan_id=soon.plan_id,
                    seq=soon.seq,
                    due_date=soon.due_date,
                    amount_outstanding=soon.amount_outstanding,
                    currency=currency,
                    days_until_due=soon.days_until_due,
                    business_date=day,
                ),
                rule=f"due-soon:{soon.plan_id}:{soon.seq}:{day}",
                subject=account_id,
            )
        late = domain.delinquency(items, day)
        if late is not None:
            _save_position(ctx, account_id, Position(position.credit, day))
            ctx.emit(
                "account.delinquency",
                AccountDelinquency(
                    account_id=account_id,
                    business_date=day,
                    days_past_due=late.days_past_due,
                    overdue_amount=late.overdue_amount,
                    currency=currency,
                    oldest_unpaid_due_date=late.oldest_unpaid_due_date,
                ),
                rule=f"delinquency:{account_id}:{day}",
                subject=account_id,
            )
        elif position.overdue_as_of is not None:
            _emit_cure_if_cured(ctx, account_id, day, currency, f"cured:{account_id}:{day}")

    ctx.session.execute(insert(business_days).values(business_date=day, event_id=event.id))


def _plan_currency(ctx: Context, account_id: str) -> str:
    """The currency of the account's plans (a flagged account always has one)."""
    return ctx.session.execute(
        select(plans.c.currency).where(plans.c.account_id == account_id).limit(1)
    ).scalar_one()


HANDLERS: dict[str, Handler] = {
    "account.upserted": record_account,
    "purchase.recorded": offer_purchase,
    "refund.recorded": refund_purchase,
    "offer.accepted": accept_offer,
    "offer.declined": decline_offer,
    "payment.received": apply_payment,
    "business-day.closed": close_business_day,
    "points.redeemed": waive_fees_for_points,
}
