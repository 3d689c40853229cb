"""Offers service: what happens when each event arrives.

The HANDLERS table at the bottom is the index: event type -> reaction. Every handler
has the same shape: read the batch view (``ctx.repo``, an :class:`OffersRepository`
bulk-loaded once per batch by ``repository.py``), ask the domain
(:mod:`services.offers.domain`), record the change in the view, emit the resulting
events. The view is written back once per batch (``repo.save()``), so a later event of
the batch sees an earlier one's changes; handlers never run SQL per event.

Conventions:

- Ids are derived from the purchase: ``off-<purchase_id>`` and ``plan-<purchase_id>``.
- Every emitted event is keyed by its account (``subject=account_id``), also the ones
  the end of day emits; ``rule`` names the reaction plus what makes it unique for one
  cause (``paid:<plan>:<seq>``, ``due-soon:<plan>:<seq>:<date>``), so a replay emits
  the same ids.
- Dates come from the events (``posted_at``, ``received_at``, ``refunded_at``,
  ``business_date``); nothing here reads the clock. Offer expiry and delinquency are
  decided at end of day (the contract's "checked at end of day"), so an acceptance is
  rejected as ``expired`` once the end of day of ``expires_on`` has closed (an offer is
  acceptable until then: at most 30 days after the posting date). Those dates are checked
  first (``domain.check_event_date``, ``business_date_jump`` of schemas.business_days): an
  implausible one is dead-lettered (``date_out_of_range``) or held (``business_date_jump``),
  never applied.
- Money is Decimal throughout; digits come from the currency (``MINOR_UNITS``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date
from decimal import ROUND_DOWN, Decimal

from schemas import MINOR_UNITS, Envelope
from schemas.business_days import CONFIRM_BUSINESS_DATE_JUMP, CONFIRM_HEADER, business_date_jump
from schemas.encoder import SharedList
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
    PlanAdjusted,
    PlanCancelled,
    PlanCompleted,
    PlanCreated,
    PointsRedeemed,
    PurchaseRecorded,
    PurchaseReviewClosed,
    RefundRecorded,
    ScheduleLine,
)
from services.offers import domain
from services.offers.policy import OffersPolicy
from services.offers.repository import (
    Account,
    Keys,
    Offer,
    OffersRepository,
    Plan,
    Position,
    Purchase,
    Review,
    offer_id_for,
    plan_id_for,
)
from shared.runtime import Context, Handler, Reject

ZERO = Decimal(0)
PAYMENTS_TOPIC = "card.payments.v1"
ACCOUNTS_TOPIC = "card.accounts.v1"
DAYS_TOPIC = "card.business-days.v1"

# ---------------------------------------------------------------- small helpers


def _policy(ctx: Context) -> OffersPolicy:
    return ctx.policy or OffersPolicy()


def _digits(currency: str) -> int:
    return MINOR_UNITS[currency]


def _check_event_date(ctx: Context, field: str, on: date) -> None:
    """Dead-letter (``Reject``) a purchase, payment or refund date out of the plausible window
    around the last closed business date (``domain.check_event_date``). A date only too far
    *ahead* of it while business days are still unread waits for them first (``Defer``):
    after a restart with a backlog, the day closes (another topic) may be read late.
    Call it before writing anything."""
    repo: OffersRepository = ctx.repo
    problem = domain.check_event_date(field, on, repo.last_business_date(), _policy(ctx))
    if problem is None:
        return
    if problem.ahead:
        ctx.wait_for(DAYS_TOPIC, "business days")
    raise Reject(problem.reason)


def _jump_confirmed(ctx: Context) -> bool:
    """The record carries an operator's confirmation of a held business date jump."""
    value = ctx.headers.get(CONFIRM_HEADER)
    return value == CONFIRM_BUSINESS_DATE_JUMP.encode()


# ---------------------------------------------------------------- shared reactions


def _create_plan(
    ctx: Context,
    *,
    purchase_id: str,
    account_id: str,
    currency: str,
    terms: domain.PlanTerms,
    offer_id: str | None,
    auto_converted: bool,
    redeem_points: int,
) -> None:
    """Write a plan and its schedule (``terms.schedule()``); emit plan.created."""
    plan_id = plan_id_for(purchase_id)
    option = terms.option
    schedule = terms.schedule()
    assert ctx.event is not None
    repo: OffersRepository = ctx.repo
    repo.add_plan(
        Plan(
            plan_id=plan_id,
            purchase_id=purchase_id,
            offer_id=offer_id,
            account_id=account_id,
            principal=terms.principal,
            currency=currency,
            tenor_months=option.tenor_months,
            total_fee=option.total_fee,
            apr=str(option.apr),
            auto_converted=auto_converted,
            redeem_points=redeem_points,
            posted_on=terms.posted_on,
            plan_order=repo.plan_count(account_id) + 1,
            status="active",
            principal_returned=ZERO,
            fee_returned=ZERO,
            event_id=ctx.event.id,
        ),
        schedule,
    )
    ctx.emit(
        "plan.created",
        PlanCreated.model_construct(
            plan_id=plan_id,
            offer_id=offer_id,
            purchase_id=purchase_id,
            account_id=account_id,
            principal=terms.principal,
            currency=currency,
            tenor_months=option.tenor_months,
            total_fee=option.total_fee,
            apr=option.apr,
            auto_converted=auto_converted,
            redeem_points=redeem_points,
            schedule=[
                ScheduleLine.model_construct(
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
    repo: OffersRepository = ctx.repo
    position = repo.position(account_id)
    before = repo.open_installments(account_id)
    result = domain.allocate_payment(
        before, amount, position.credit, paid_on, policy.early_payoff_waives_fees
    )
    repo.save_installments(before, result.installments)
    repo.set_position(account_id, Position(result.credit, position.overdue_as_of))

    state = {(i.plan_id, i.seq): i for i in result.installments}
    for plan_id, seq in result.paid:
        item = state[(plan_id, seq)]
        total = item.principal_paid + item.fee_paid
        if total > 0:
            ctx.emit(
                "installment.paid",
                InstallmentPaid.model_construct(
                    plan_id=plan_id, seq=seq, amount=total, currency=currency, paid_on=paid_on
                ),
                rule=f"{rule}paid:{plan_id}:{seq}",
                subject=account_id,
            )
    for payoff in result.paid_off_plans:
        paid_off = repo.plan(payoff.plan_id)
        if paid_off is None or paid_off.status != "active":
            continue
        # the fees the payoff removes (its unpaid installments, all not yet due) include
        # those waived with points: give the points back (CONTRACT 5.1)
        waived = sum(
            (
                i.fee_waived
                for i in before
                if i.plan_id == payoff.plan_id and not i.is_paid and i.due_date > paid_on
            ),
            ZERO,
        )
        points = domain.points_to_restore(
            waived,
            policy.points_per_currency_unit,
            paid_off.points_redeemed,
            paid_off.points_restored,
        )
        repo.update_plan(
            payoff.plan_id,
            status="paid_off",
            points_restored=paid_off.points_restored + points,
        )
        ctx.emit(
            "plan.cancelled",
            PlanCancelled.model_construct(
                plan_id=payoff.plan_id,
                reason="early_payoff",
                principal_returned=ZERO,
                fee_returned=payoff.fee_waived,
                currency=currency,
                points_to_restore=points,
            ),
            rule=f"{rule}payoff:{payoff.plan_id}",
            subject=account_id,
        )
    for plan_id in result.completed_plans:
        completed = repo.plan(plan_id)
        if completed is None or completed.status != "active":
            continue
        repo.update_plan(plan_id, status="completed")
        ctx.emit(
            "plan.completed",
            PlanCompleted.model_construct(plan_id=plan_id),
            rule=f"{rule}completed:{plan_id}",
            subject=account_id,
        )


def _emit_cure_if_cured(
    ctx: Context, account_id: str, on_date: date, currency: str, rule: str
) -> None:
    """An account the last end of day found overdue with nothing overdue any more: clear
    the flag, emit account.delinquency with days_past_due 0 at once. The event's
    ``business_date`` is the later of ``on_date`` and the flagging business date, and
    "nothing overdue" is checked as of that same date: an installment that fell due
    since the flagging end of day and is still unpaid keeps the account overdue (no
    event; the next end of day reports it)."""
    repo: OffersRepository = ctx.repo
    position = repo.position(account_id)
    if position.overdue_as_of is None:
        return
    as_of = max(on_date, position.overdue_as_of)
    if domain.delinquency(repo.open_installments(account_id), as_of):
        return
    repo.set_position(account_id, Position(position.credit, None))
    ctx.emit(
        "account.delinquency",
        AccountDelinquency.model_construct(
            account_id=account_id,
            business_date=as_of,
            days_past_due=0,
            overdue_amount=ZERO,
            currency=currency,
        ),
        rule=rule,
        subject=account_id,
    )


def _reject_decision(
    ctx: Context, offer_id: str, account_id: str, rejected: domain.Rejected
) -> None:
    ctx.emit(
        "offer.rejected",
        OfferRejected.model_construct(
            offer_id=offer_id,
            account_id=account_id,
            purchase_id=rejected.purchase_id,
            reason=rejected.reason,  # type: ignore[arg-type]  # a domain str, checked in tests
        ),
        rule="rejected",
        subject=account_id,
    )


# ---------------------------------------------------------------- handlers


def record_account(ctx: Context, event: Envelope) -> None:
    """account.upserted -> keep the local view of the account (last one wins), its
    ``pre_approval`` included (absent: not pre-approved)."""
    a: AccountUpserted = event.data
    auto, line = a.auto_convert, a.pre_approval
    ctx.repo.put_account(
        Account(
            account_id=a.account_id,
            status=a.status,
            segment=a.segment,
            tier=a.tier,
            credit_limit=a.credit_limit,
            installment_limit=a.installment_limit,
            risk_score=a.risk_score,
            currency=a.currency,
            auto_convert_enabled=bool(auto and auto.enabled),
            auto_convert_threshold=auto.threshold if auto else None,
            auto_convert_tenor=auto.tenor_months if auto else None,
            event_id=event.id,
            pre_approval_limit=line.limit if line else None,
            pre_approval_valid_to=line.valid_to if line else None,
            pre_approval_fee_discount=str(line.fee_discount) if line else None,
        )
    )


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

    Pre-approval (CONTRACT 5.1): within the account's pre-approval the purchase is eligible
    whatever its risk score and installment limit, at discounted rates, and the offer says
    ``pre_approved: true`` (``domain.decide_offer``).

    Fraud screening (CONTRACT 5.1): a purchase with ``risk_flags`` is held for the fraud
    team: offer.not-eligible with ``fraud_review`` (after any other failing reason), never
    auto-converted, outcome ``fraud_review``, until its ``purchase.review-closed``
    (:func:`close_fraud_review`). **Either order works without a barrier**: a review that
    arrived first is kept (``fraud_reviews``) and applied here, at once: ``cleared`` ->
    the purchase is considered as of ``closed_on``; ``confirmed_fraud`` -> offer.not-eligible
    ``fraud_review``, never offered.
    """
    p: PurchaseRecorded = event.data
    repo: OffersRepository = ctx.repo
    if repo.purchase(p.purchase_id) is not None:
        ctx.log.info("purchase already considered", purchase_id=p.purchase_id)
        return
    policy = _policy(ctx)
    _check_event_date(ctx, "posted_at", p.posted_at.date())
    overflow = domain.check_purchase_dates(p.posted_at.date(), policy)
    if overflow is not None:
        raise Reject(overflow)
    review = repo.review(p.purchase_id) if p.risk_flags else None
    if review is not None and review.account_id != p.account_id:
        raise Reject("the fraud review names another account than the purchase")
    as_of = review.closed_on if review is not None and review.outcome == "cleared" else None
    if as_of is not None:
        overflow = domain.check_purchase_dates(as_of, policy)
        if overflow is not None:
            raise Reject(overflow)
    row = repo.account(p.account_id)
    if row is None:  # not known yet, or not at all: first apply the accounts published
        ctx.wait_for(ACCOUNTS_TOPIC, "accounts")
    purchase = Purchase(
        purchase_id=p.purchase_id,
        account_id=p.account_id,
        amount=p.amount,
        currency=p.currency,
        mcc=p.merchant.mcc,
        merchant_id=p.merchant.merchant_id,
        category=p.merchant.category,
        posted_on=p.posted_at.date(),
        refunded_total=ZERO,
        outcome="",
        event_id=event.id,
        considered_on=as_of,
    )
    if review is not None and review.outcome == "confirmed_fraud":
        repo.add_purchase(replace(purchase, outcome="fraud_confirmed"))
        _emit_not_eligible(ctx, purchase, ("fraud_review",))
        return
    _consider(ctx, purchase, under_review=bool(p.risk_flags) and review is None, new=True)


#: Menu (the domain's cached tuple, by identity) -> its ``offer.made`` options, built once
#: and written to JSON once (``SharedList``). Each entry holds its menu, so an id is not
#: reused while it is here; bounded (cleared when full).
_OPTION_MODELS: dict[int, tuple[tuple[domain.OfferOption, ...], SharedList]] = {}
OPTION_MODELS_MAX = 4096


def _option_models(options: tuple[domain.OfferOption, ...]) -> SharedList:
    """The ``offer.made`` options of a menu: the same models for the same menu (the domain
    computes a menu once per shape: ``domain.offer_menu``)."""
    cached = _OPTION_MODELS.get(id(options))
    if cached is not None and cached[0] is options:
        return cached[1]
    models = SharedList(
        OfferOption.model_construct(
            tenor_months=o.tenor_months,
            fee_model=o.fee_model,  # type: ignore[arg-type]  # a domain str, checked in tests
            monthly_fee_rate=o.monthly_fee_rate,
            total_fee=o.total_fee,
            first_installment=o.first_installment,
            regular_installment=o.regular_installment,
            apr=o.apr,
        )
        for o in options
    )
    if len(_OPTION_MODELS) >= OPTION_MODELS_MAX:
        _OPTION_MODELS.clear()
    _OPTION_MODELS[id(options)] = (options, models)
    return models


def _emit_not_eligible(ctx: Context, purchase: Purchase, reasons: tuple[str, ...]) -> None:
    ctx.emit(
        "offer.not-eligible",
        OfferNotEligible.model_construct(
            purchase_id=purchase.purchase_id,
            account_id=purchase.account_id,
            reasons=list(reasons),  # type: ignore[arg-type]  # a domain str, checked in tests
        ),
        rule="not-eligible",
        subject=purchase.account_id,
    )


def _consider(ctx: Context, purchase: Purchase, *, under_review: bool, new: bool) -> None:
    """Decide what ``purchase`` becomes as of ``purchase.facts().posted_on`` (its posting
    date, or the closed_on of the review that cleared it): record it (``new``: add it,
    else set its outcome) and emit offer.made, plan.created or offer.not-eligible."""
    repo: OffersRepository = ctx.repo
    policy = _policy(ctx)
    row = repo.account(purchase.account_id)
    facts = purchase.facts()
    decision = domain.decide_offer(
        row.view() if row is not None else None,
        row.currency if row is not None else None,
        row.auto_convert() if row is not None else domain.AutoConvertSettings(),
        facts,
        purchase.currency,
        repo.open_installments(purchase.account_id),
        repo.position(purchase.account_id).overdue_as_of is not None,
        policy,
        _digits(purchase.currency),
        under_review=under_review,
    )
    if isinstance(decision, domain.MakeOffer) and decision.auto_convert_tenor_not_offered:
        ctx.log.warning(
            "auto-convert tenor not offered to this account; making an offer",
            tenor=row.auto_convert_tenor if row is not None else None,
        )
    outcome = (
        ("fraud_review" if under_review else "not_eligible")
        if isinstance(decision, domain.NotEligible)
        else "auto_converted"
        if isinstance(decision, domain.ConvertNow)
        else "offered"
    )
    if new:
        repo.add_purchase(replace(purchase, outcome=outcome))
    else:
        repo.set_purchase_outcome(purchase.purchase_id, outcome, purchase.considered_on)
    if isinstance(decision, domain.NotEligible):
        _emit_not_eligible(ctx, purchase, decision.reasons)
        return
    if isinstance(decision, domain.ConvertNow):
        _create_plan(
            ctx,
            purchase_id=purchase.purchase_id,
            account_id=purchase.account_id,
            currency=purchase.currency,
            terms=decision.terms,
            offer_id=None,
            auto_converted=True,
            redeem_points=0,
        )
        return

    offer_id = offer_id_for(purchase.purchase_id)
    repo.add_offer(
        Offer(
            offer_id=offer_id,
            purchase_id=purchase.purchase_id,
            account_id=purchase.account_id,
            principal=purchase.amount,
            currency=purchase.currency,
            expires_on=decision.expires_on,
            promotion=decision.promotion,
            status="open",
            open=True,
            event_id=ctx.event.id if ctx.event is not None else purchase.event_id,
        ),
        list(decision.options),
    )
    ctx.emit(
        "offer.made",
        OfferMade.model_construct(
            offer_id=offer_id,
            purchase_id=purchase.purchase_id,
            account_id=purchase.account_id,
            principal=purchase.amount,
            currency=purchase.currency,
            expires_on=decision.expires_on,
            promotion=decision.promotion,
            pre_approved=decision.pre_approved,
            options=_option_models(decision.options),
        ),
        rule="offer",
        subject=purchase.account_id,
    )


def close_fraud_review(ctx: Context, event: Envelope) -> None:
    """purchase.review-closed (fraud.reviews.v1) -> a held purchase is offered afresh or
    never (CONTRACT 5.1).

    The review is kept (one per purchase; a second one, re-delivered or not, is ignored:
    idempotent). Then, when the purchase is recorded and held (outcome ``fraud_review``):

    - ``cleared``: the purchase is considered afresh as of ``closed_on`` (eligibility,
      pre-approval and promotions on that date, offer expiry closed_on + 30 days, an
      auto-conversion's and an accepted plan's due dates from closed_on): offer.made,
      plan.created or offer.not-eligible. A purchase refunded meanwhile is not converted:
      offer.not-eligible ``purchase_refunded``.
    - ``confirmed_fraud``: outcome ``fraud_confirmed``; nothing is emitted (its
      offer.not-eligible ``fraud_review`` was emitted when it was recorded); never offered.

    A review of a purchase not recorded yet is only kept: :func:`offer_purchase` applies it
    when the purchase arrives (no barrier, no Defer). A review of a purchase that was not
    flagged changes nothing (logged). The date is checked like a purchase's.
    """
    r: PurchaseReviewClosed = event.data
    repo: OffersRepository = ctx.repo
    if repo.review(r.purchase_id) is not None:
        ctx.log.info("fraud review already closed", purchase_id=r.purchase_id)
        return
    purchase = repo.purchase(r.purchase_id)
    if purchase is not None and purchase.account_id != r.account_id:
        raise Reject("the fraud review names another account than the purchase")
    if r.outcome == "cleared":
        _check_event_date(ctx, "closed_on", r.closed_on)
        overflow = domain.check_purchase_dates(r.closed_on, _policy(ctx))
        if overflow is not None:
            raise Reject(overflow)
    repo.add_review(
        Review(
            purchase_id=r.purchase_id,
            account_id=r.account_id,
            outcome=r.outcome,
            closed_on=r.closed_on,
            event_id=event.id,
        )
    )
    if purchase is None:
        ctx.log.info("fraud review kept until its purchase arrives", purchase_id=r.purchase_id)
        return
    if purchase.outcome != "fraud_review":
        ctx.log.info("fraud review of a purchase not held", purchase_id=r.purchase_id,
                     outcome=purchase.outcome)  # fmt: skip
        return
    if r.outcome == "confirmed_fraud":
        repo.set_purchase_outcome(r.purchase_id, "fraud_confirmed")
        return
    if purchase.refunded_total > 0:
        repo.set_purchase_outcome(r.purchase_id, "not_eligible", r.closed_on)
        _emit_not_eligible(ctx, purchase, ("purchase_refunded",))
        return
    _consider(ctx, replace(purchase, considered_on=r.closed_on), under_review=False, new=False)


def accept_offer(ctx: Context, event: Envelope) -> None:
    """offer.accepted -> plan.created at the chosen tenor, or offer.rejected with a reason
    (``domain.decide_acceptance``: ``unknown_offer``, ``already_converted`` /
    ``declined`` / ``expired`` / ``refunded``, ``invalid_tenor``, ``not_eligible``).
    ``redeem_points`` (default 0) is copied onto plan.created for the points service.
    """
    a: OfferAccepted = event.data
    repo: OffersRepository = ctx.repo
    offer = repo.offer(a.offer_id)
    purchase = repo.purchase(offer.purchase_id) if offer is not None else None
    account = repo.account(a.account_id)
    decision = domain.decide_acceptance(
        a.account_id,
        a.tenor_months,
        a.redeem_points,
        offer.view() if offer is not None else None,
        offer is not None and repo.plan(plan_id_for(offer.purchase_id)) is not None,
        repo.offer_option(a.offer_id, a.tenor_months),
        account.view() if account is not None else None,
        purchase.facts() if purchase is not None else None,
        repo.open_installments(a.account_id),
        repo.position(a.account_id).overdue_as_of is not None,
        _policy(ctx),
        _digits(offer.currency) if offer is not None else 2,
    )
    if isinstance(decision, domain.Rejected):
        if decision.not_eligible:
            ctx.log.info("acceptance no longer eligible", reasons=list(decision.not_eligible))
        _reject_decision(ctx, a.offer_id, a.account_id, decision)
        return
    assert offer is not None
    repo.close_offer(a.offer_id, "accepted")
    _create_plan(
        ctx,
        purchase_id=offer.purchase_id,
        account_id=offer.account_id,
        currency=offer.currency,
        terms=decision.terms,
        offer_id=offer.offer_id,
        auto_converted=False,
        redeem_points=decision.redeem_points,
    )


def decline_offer(ctx: Context, event: Envelope) -> None:
    """offer.declined -> the open offer is closed (nothing emitted).

    A decline that cannot apply gets offer.rejected (``unknown_offer``,
    ``already_converted``, ``expired``, ``refunded``); declining twice is harmless and
    ignored (``domain.decide_decline``).
    """
    d: OfferDeclined = event.data
    repo: OffersRepository = ctx.repo
    offer = repo.offer(d.offer_id)
    decision = domain.decide_decline(d.account_id, offer.view() if offer is not None else None)
    if isinstance(decision, domain.Rejected):
        _reject_decision(ctx, d.offer_id, d.account_id, decision)
    elif decision == "already_declined":
        ctx.log.info("offer already declined", offer_id=d.offer_id)
    else:
        repo.close_offer(d.offer_id, "declined")


def refund_purchase(ctx: Context, event: Envelope) -> None:
    """refund.recorded -> adjust or cancel the purchase's plan; close its open offer.

    - Un-converted purchase with an open offer: any refund (partial or full) makes the
      offer unusable (a later acceptance gets offer.rejected ``refunded``); nothing is
      emitted. A purchase held for fraud review and refunded is not converted when
      cleared.
    - Converted purchase, refund < the plan's unpaid principal (CONTRACT 5.1,
      ``domain.apply_refund`` as of the refund date): the plan is adjusted and
      ``plan.adjusted`` (reason ``refund``) says how: ``principal_reduced`` (the refund),
      ``fee_reduced`` (all fee removed), ``fee_returned`` (the part of it paid early: that
      money goes back to the card account outside the pipeline, it is not account credit
      here), ``points_to_restore`` and ``schedule``: every installment that was unpaid
      before the refund, with its new principal and fee (as in plan.created: a line's
      principal and fee include what was already paid or waived on it; ``amount`` =
      principal + fee).
    - Converted purchase, refund >= the unpaid principal: ``plan.cancelled`` (reason
      ``refund``) with what THIS refund took off (earlier partial refunds were announced
      by their plan.adjusted): ``principal_returned`` (the unpaid principal),
      ``fee_returned`` (every fee not yet due, those paid early included, which become
      account credit with the principal already paid that the plan cannot absorb) and
      ``points_to_restore``.
    - ``points_to_restore`` = the waived part of the fees removed × points per currency
      unit (100), never more than the points redeemed for the plan's waivers less those
      already restored (``domain.points_to_restore``).
    - A plan already completed, paid off or cancelled: the whole refund is credit.
    Dedupe on refund_id.
    """
    r: RefundRecorded = event.data
    repo: OffersRepository = ctx.repo
    if repo.has_refund(r.refund_id):
        ctx.log.info("refund already applied", refund_id=r.refund_id)
        return
    refunded_on = r.refunded_at.date()
    _check_event_date(ctx, "refunded_at", refunded_on)
    repo.add_refund(
        {
            "refund_id": r.refund_id,
            "purchase_id": r.purchase_id,
            "account_id": r.account_id,
            "amount": r.amount,
            "refunded_on": refunded_on,
            "event_id": event.id,
        }
    )
    repo.set_refunded_total(r.purchase_id, r.refunded_total)
    offer = repo.offer(offer_id_for(r.purchase_id))
    if offer is not None and offer.status == "open":
        repo.close_offer(offer.offer_id, "refunded")
    plan = repo.plan(plan_id_for(r.purchase_id))
    if plan is None:
        return
    if plan.account_id != r.account_id:
        raise Reject("refund account differs from the plan's account")
    policy = _policy(ctx)
    before = repo.plan_installments(plan.plan_id)
    active = plan.status == "active"
    outcome = (
        domain.apply_refund(
            before, r.amount, refunded_on, policy.remainder_placement, _digits(plan.currency)
        )
        if active
        else domain.RefundOutcome(True, ZERO, ZERO, r.amount, before)
    )
    repo.save_installments(before, outcome.installments)
    credited = outcome.excess + (outcome.fee_paid_back if outcome.cancelled else ZERO)
    if credited > 0:
        position = repo.position(r.account_id)
        repo.set_position(
            r.account_id, Position(position.credit + credited, position.overdue_as_of)
        )
    if not active:
        _emit_cure_if_cured(ctx, r.account_id, refunded_on, plan.currency, "cured")
        return
    points = domain.points_to_restore(
        outcome.fee_waived_removed,
        policy.points_per_currency_unit,
        plan.points_redeemed,
        plan.points_restored,
    )
    repo.update_plan(
        plan.plan_id,
        principal_returned=plan.principal_returned + outcome.principal_returned,
        fee_returned=plan.fee_returned + outcome.fee_returned,
        status="cancelled" if outcome.cancelled else plan.status,
        points_restored=plan.points_restored + points,
    )
    if outcome.cancelled:
        ctx.emit(
            "plan.cancelled",
            PlanCancelled.model_construct(
                plan_id=plan.plan_id,
                reason="refund",
                principal_returned=outcome.principal_returned,
                fee_returned=outcome.fee_returned,
                currency=plan.currency,
                points_to_restore=points,
            ),
            rule="cancelled",
            subject=r.account_id,
        )
    else:
        unpaid_before = {i.seq for i in before if not i.is_paid}
        ctx.emit(
            "plan.adjusted",
            PlanAdjusted.model_construct(
                plan_id=plan.plan_id,
                account_id=r.account_id,
                reason="refund",
                refund_id=r.refund_id,
                principal_reduced=outcome.principal_returned,
                fee_reduced=outcome.fee_reduced,
                fee_returned=outcome.fee_returned,
                currency=plan.currency,
                points_to_restore=points,
                schedule=[
                    ScheduleLine.model_construct(
                        seq=i.seq,
                        due_date=i.due_date,
                        principal=i.principal,
                        fee=i.fee,
                        amount=i.principal + i.fee,
                    )
                    for i in outcome.installments
                    if i.seq in unpaid_before
                ],
            ),
            rule="adjusted",
            subject=r.account_id,
        )
    _emit_cure_if_cured(ctx, r.account_id, refunded_on, plan.currency, "cured")


def apply_payment(ctx: Context, event: Envelope) -> None:
    """payment.received -> pay the account's installments (``domain.allocate_payment``).

    Oldest due first across plans, fee before principal; early payoff of a plan whose
    whole remaining principal is covered by what is left once every older installment of
    the account is paid (remaining fees waived by default:
    plan.cancelled ``early_payoff`` with ``principal_returned`` 0 and ``fee_returned`` =
    the fees waived); what is left is account credit. Emits installment.paid per
    installment fully paid (``amount`` = everything paid on it, ``paid_on`` = the
    received date), plan.completed per plan fully paid, and account.delinquency with
    ``days_past_due: 0`` at once when the payment clears every overdue installment of an
    account the last end of day found overdue. Dedupe on payment_id.
    """
    p: PaymentReceived = event.data
    repo: OffersRepository = ctx.repo
    if repo.has_payment(p.payment_id):
        ctx.log.info("payment already applied", payment_id=p.payment_id)
        return
    _check_event_date(ctx, "received_at", p.received_at.date())
    account = repo.account(p.account_id)
    if account is not None and account.currency != p.currency:
        raise Reject("payment currency differs from the account's currency")
    received_on = p.received_at.date()
    repo.add_payment(
        {
            "payment_id": p.payment_id,
            "account_id": p.account_id,
            "amount": p.amount,
            "currency": p.currency,
            "received_on": received_on,
            "event_id": event.id,
        }
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
    repo: OffersRepository = ctx.repo
    plan = repo.plan(r.plan_id)
    if plan is None or plan.account_id != r.account_id:
        raise Reject("points.redeemed names a plan this service does not know for the account")
    policy = _policy(ctx)
    unit = domain.minor_unit(_digits(plan.currency))
    worth = (Decimal(r.points) / policy.points_per_currency_unit).quantize(unit, ROUND_DOWN)
    before = [i for i in repo.plan_installments(plan.plan_id) if not i.is_paid]
    result = domain.waive_fees(before, worth, repo.last_business_date())
    repo.save_installments(before, result.installments)
    repo.add_waiver(
        {"event_id": event.id, "plan_id": plan.plan_id, "points": r.points, "amount": result.waived}
    )
    repo.update_plan(plan.plan_id, points_redeemed=plan.points_redeemed + r.points)
    if result.waived <= 0:
        ctx.log.warning("points redeemed but no fee left to waive", plan_id=plan.plan_id)
        return
    ctx.emit(
        "fee.waived",
        FeeWaived.model_construct(
            plan_id=plan.plan_id, amount=result.waived, currency=plan.currency, points=r.points
        ),
        rule="fee-waived",
        subject=r.account_id,
    )


# ---------------------------------------------------------------- end of day


def close_business_day(ctx: Context, event: Envelope) -> None:
    """business-day.closed for D -> expiries, credit, due-soon and delinquency, once per D.

    1. Barrier: deferred until every payment published before it has been applied
       (stored offsets of card.payments.v1 >= the end offsets seen for it).
    2. ``offer.expired`` for each open offer with ``expires_on`` <= D.
    3. Per account with something owed: its credit (overpayments) pays what it can, like
       a payment of 0 on D; then ``installment.due-soon`` for unpaid installments due
       within ``policy.due_soon_days``; then ``account.delinquency`` when it is overdue
       (and the account is flagged overdue as of D), or ``days_past_due: 0`` when it was
       flagged and is no longer overdue (cured by a refund or by its credit).
    A date already closed is ignored (idempotent). An implausible date is held
    (``schemas.business_days.business_date_jump``): one before the latest closed date, or more than
    ``policy.max_business_day_jump_days`` (7) after it, is dead-lettered with reason
    ``business_date_jump: ...`` and changes nothing. An operator who confirms it re-drives
    it with the header ``installments.confirm: business_date_jump``
    (``installments dlq redrive --confirm business_date_jump``): a confirmed jump ahead is
    closed as usual; a confirmed date before the latest one is ignored (stale: a day
    already overtaken cannot be closed after a later one). The very first business date
    (none closed yet) is accepted as it comes.
    """
    closed: BusinessDayClosed = event.data
    day = closed.business_date
    repo: OffersRepository = ctx.repo
    if repo.business_day_closed(day):
        ctx.log.info("business date already closed", business_date=str(day))
        return
    policy = _policy(ctx)
    last = repo.last_business_date()
    jump = business_date_jump(day, last, policy.max_business_day_jump_days)
    if jump is not None:
        if not _jump_confirmed(ctx):
            raise Reject(jump)
        ctx.log.warning("business date jump confirmed by an operator", business_date=str(day),
                        last=str(last))  # fmt: skip
    if last is not None and day < last:
        ctx.log.warning("stale business date ignored", business_date=str(day), last=str(last))
        return
    ctx.wait_for(PAYMENTS_TOPIC, "payments")

    # 2. offers past expiry (the SQL filter is domain.is_expired's rule: expires_on <= D)
    for offer in repo.open_offers_expiring_by(day):
        if not domain.is_expired(offer.expires_on, day):
            continue
        repo.close_offer(offer.offer_id, "expired")
        ctx.emit(
            "offer.expired",
            OfferExpired.model_construct(
                offer_id=offer.offer_id,
                purchase_id=offer.purchase_id,
                account_id=offer.account_id,
                business_date=day,
            ),
            rule=f"expired:{offer.offer_id}",
            subject=offer.account_id,
        )

    # 3. accounts with something owed, or flagged overdue
    for account_id in repo.load_owing_accounts():
        position = repo.position(account_id)
        items = repo.open_installments(account_id)
        currency = repo.account_currency(account_id)
        if items and position.credit > 0:
            _apply_funds(ctx, account_id, ZERO, day, currency, rule=f"credit:{day}:")
            items = repo.open_installments(account_id)
            position = repo.position(account_id)
        for soon in domain.due_soon(items, day, policy.due_soon_days):
            ctx.emit(
                "installment.due-soon",
                InstallmentDueSoon.model_construct(
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
            repo.set_position(account_id, Position(position.credit, day))
            ctx.emit(
                "account.delinquency",
                AccountDelinquency.model_construct(
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

    repo.close_business_day(day, event.id)


HANDLERS: dict[str, Handler] = {
    "account.upserted": record_account,
    "purchase.recorded": offer_purchase,
    "refund.recorded": refund_purchase,
    "offer.accepted": accept_offer,
    "offer.declined": decline_offer,
    "payment.received": apply_payment,
    "business-day.closed": close_business_day,
    "points.redeemed": waive_fees_for_points,
    "purchase.review-closed": close_fraud_review,
}

#: What each handler needs preloaded (event type -> the keys the batch repository reads
#: for it, once per batch: ``OffersRepository.load``). An account named is read with its
#: position, every plan and the open installments; an offer with its purchase and account.
PRELOAD: dict[str, Callable[[Envelope], Keys]] = {
    "account.upserted": lambda e: Keys(accounts=(e.data.account_id,)),
    "purchase.recorded": lambda e: Keys(
        accounts=(e.data.account_id,),
        purchases=(e.data.purchase_id,),
        reviews=(e.data.purchase_id,),
    ),
    "purchase.review-closed": lambda e: Keys(
        accounts=(e.data.account_id,),
        purchases=(e.data.purchase_id,),
        reviews=(e.data.purchase_id,),
    ),
    "refund.recorded": lambda e: Keys(
        accounts=(e.data.account_id,),
        purchases=(e.data.purchase_id,),
        offers=(offer_id_for(e.data.purchase_id),),
        plans=(plan_id_for(e.data.purchase_id),),
        refunds=(e.data.refund_id,),
    ),
    "offer.accepted": lambda e: Keys(
        accounts=(e.data.account_id,), offers=(e.data.offer_id,), options=(e.data.offer_id,)
    ),
    "offer.declined": lambda e: Keys(accounts=(e.data.account_id,), offers=(e.data.offer_id,)),
    "payment.received": lambda e: Keys(
        accounts=(e.data.account_id,), payments=(e.data.payment_id,)
    ),
    # the end of day pulls in the accounts owing and the offers expiring itself
    "business-day.closed": lambda e: Keys(days=(e.data.business_date,)),
    "points.redeemed": lambda e: Keys(accounts=(e.data.account_id,), plans=(e.data.plan_id,)),
}
