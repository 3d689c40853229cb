"""Points service: what happens when each event arrives.

The HANDLERS table at the bottom is the index: event type -> reaction.
Every handler has the same shape: read the batch view (``ctx.repo``, bulk-loaded and
locked by :mod:`services.points.repository`), ask the domain
(:mod:`services.points.domain`), record the change and book ledger entries, emit
``points.*`` events.

Decisions (documented here because they are not in the contract):

* **Tier.** The tier applied to a purchase is the account's tier known when the
  ``purchase.recorded`` is processed, stored with the purchase; a later tier change never
  touches it (refunds reverse what that purchase earned). ``card.accounts.v1`` and the
  other topics are not ordered with each other, so a purchase of an account not seen yet
  is deferred (``ctx.wait_for``, the runtime's barrier) until every record of
  ``card.accounts.v1`` published before it has been applied: a restart with a backlog no
  longer accrues a gold account's purchase at silver. Only then, the account really being
  unknown, does it earn at ``policy.unknown_account_tier`` (default ``silver``, the lowest
  tier: never over-pays); the purchase row records ``tier_assumed``. Waiting longer for an
  account that may never come would block every other account of the partition.
* **Ordering of plan.created and purchase.recorded.** They come from different topics.
  If ``plan.created`` arrives for a purchase not accrued yet, the first-plan bonus is
  computed from the plan's principal (= the purchase amount: a purchase converts whole,
  at most once) at the account's current tier, the same value the purchase will accrue
  unless the tier changes in between. No ``Defer`` for the purchase: it would stall the
  whole plans partition (every account on it) for a case that has an exact-enough answer.
  But when that bonus depends on a tier not known yet (the account's first plan, the
  account not seen on ``card.accounts.v1``), the plan waits for the accounts barrier as
  a purchase does, then falls back to the unknown-account tier. The plan row records
  ``bonus_basis`` (purchase | principal).
* **Bonus reversal follows the refunds.** A refund reverses the purchase's points and,
  when the purchase's plan earned the first-plan bonus, the refunded share of that bonus
  by the same cumulative rule: ``floor(bonus x refunded_total / purchase amount)`` in all,
  each refund booking the difference to what was already reversed (``plans.bonus_reversed``),
  so the total never exceeds the bonus and a full refund reverses all of it. Both arrival
  orders give the same total: a ``refund.recorded`` after the ``plan.created`` reverses its
  share at once (rule ``bonus-reversed:<refund_id>``); a ``plan.created`` after refunds of
  its purchase credits the bonus (rule ``bonus``) and at once reverses the share already
  refunded (rule ``bonus-reversed``). Ledger / event reason: ``refund`` (the contract's
  code for what caused it), with ``plan_id`` set, which tells it from the reversal of the
  purchase's own points (no ``plan_id``). ``plan.cancelled`` reverses nothing: the offers
  service emits it only when a refund has left no principal on the plan (the refunds have
  already reversed the bonus; reversing again would take it twice) or on an early payoff
  (the purchase stands). It still records the principal returned. ``plan_cancelled`` is
  therefore no longer emitted as a reason.
* **plan.created: redemption first, bonus second.** The redemption is checked against
  the balance before the plan's own first-plan bonus (what the customer had when they
  accepted the offer); the bonus is then credited.
* **Zero movements** (a purchase under 1.00, a refund whose proportional share rounds to
  0, a bonus factor of 0) book no ledger entry and emit nothing.
* **Redemption with nothing to waive** (``redeem_points`` > 0 on a plan without fee,
  e.g. a promotion) emits ``points.redemption-rejected`` with ``why: nothing_to_waive``
  so the customer channel learns the request was not applied; ``redeem_points`` 0 or
  absent emits nothing.
* **Per-account lock.** One account's events arrive on three topics whose partitions
  may be owned by different processes; the batch repository creates the ``accounts`` rows
  a batch touches (if missing) and locks them all once, in account id order, before it
  reads the balances, so "redemption never below zero" and ``balance_after`` hold under
  concurrency. Within a batch, the in-memory view carries each account's balance forward
  from one event to the next.
* **Points restored** (second release). ``plan.cancelled`` (any reason) and
  ``plan.adjusted`` with ``points_to_restore`` > 0 give back points spent on the waivers
  of the fees they removed: ``points.restored`` (reason ``plan_cancelled`` /
  ``plan_adjusted``), a credit in the ledger (ledger reason ``restored:<reason>``).
  No points are created: each restoration is capped by ``domain.points_to_restore`` at
  what was redeemed for the plan (``points.redeemed``, booked by this service when it
  applied the plan's ``plan.created``) less what earlier restorations of the plan gave
  back; a capped request logs a warning and the difference is never given.
  Exactly once per cause: the inbox drops a redelivery or a replay (same event id), and
  the ``restorations`` row keyed ``adjusted:<refund_id>`` / ``cancelled`` drops the same
  facts re-published under a new id.
  *Order against the redemption*: the redemption is made here, on ``plan.created``, which
  the offers service publishes before any ``plan.adjusted`` / ``plan.cancelled`` of the
  plan on the same partition of ``installments.plans.v1``; the runtime applies a
  partition in order (a deferred ``plan.created`` holds the ones after it). So when the
  plan is known its redemption is known and the cap is exact: no barrier is needed. A
  restoration for a plan never seen (its ``plan.created`` dead-lettered) is
  dead-lettered too and can be re-driven once the plan is applied (a dead-lettered event
  is not in the inbox); it never restores points against an unknown redemption.
  A ``plan.adjusted`` also adds its ``principal_reduced`` to the principal returned.
* Emitted events: subject = the account id; rules are deterministic per cause:
  ``accrued``, ``bonus``, ``bonus-reversed`` (plan.created after refunds),
  ``reversed:<refund_id>``, ``bonus-reversed:<refund_id>``, ``redeemed``,
  ``redemption-rejected``, ``restored`` (plan.cancelled, plan.adjusted).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from schemas import Envelope
from schemas.payloads import (
    AccountUpserted,
    PlanAdjusted,
    PlanCancelled,
    PlanCreated,
    PointsAccrued,
    PointsRedeemed,
    PointsRedemptionRejected,
    PointsRestored,
    PointsReversed,
    PurchaseRecorded,
    RefundRecorded,
)
from services.points import domain
from services.points.policy import PointsPolicy
from services.points.repository import Account, Keys, Plan, PointsRepository, Purchase
from shared.runtime import Context, Handler, Reject
from shared.runtime.db import utcnow

ZERO = Decimal("0")
ACCOUNTS_TOPIC = "card.accounts.v1"

# ledger reason -> (event type, payload class)
_EVENTS: dict[str, tuple[str, type[Any]]] = {
    domain.PURCHASE: ("points.accrued", PointsAccrued),
    domain.FIRST_INSTALLMENT_BONUS: ("points.accrued", PointsAccrued),
    domain.REFUND: ("points.reversed", PointsReversed),
    domain.PLAN_CANCELLED: ("points.reversed", PointsReversed),
    domain.FEE_REDEMPTION: ("points.redeemed", PointsRedeemed),
    domain.RESTORED_ON_CANCEL: ("points.restored", PointsRestored),
    domain.RESTORED_ON_ADJUST: ("points.restored", PointsRestored),
}


# --------------------------------------------------------------------------- helpers


def _book(
    ctx: Context,
    account_id: str,
    points: int,
    reason: str,
    *,
    rule: str,
    purchase_id: str | None = None,
    plan_id: str | None = None,
) -> str:
    """Append one ledger entry (signed ``points``) and emit its ``points.*`` event.

    Returns the id of that event (the batch view carries the balance to the next entry).
    """
    repo: PointsRepository = ctx.repo
    entry = domain.LedgerEntry(points, reason, plan_id or purchase_id)  # checks sign/reason
    balance_after = repo.balance(account_id) + entry.points
    event_type, payload = _EVENTS[reason]
    refs: dict[str, str] = {"plan_id": plan_id} if plan_id else {}
    if purchase_id and payload not in (PointsRedeemed, PointsRestored):
        refs["purchase_id"] = purchase_id
    out = ctx.emit(
        event_type,
        payload.model_construct(
            account_id=account_id,
            points=abs(entry.points),
            balance_after=balance_after,
            reason=domain.RESTORE_EVENT_REASON.get(reason, reason),
            **refs,
        ),
        rule=rule,
        subject=account_id,
    )
    assert ctx.event is not None
    repo.append_entry(
        {
            "account_id": account_id,
            "points": entry.points,
            "balance_after": balance_after,
            "reason": reason,
            "purchase_id": purchase_id,
            "plan_id": plan_id,
            "event_id": out.id,
            "cause_id": ctx.event.id,
            "created_at": utcnow(),
        }
    )
    return out.id


def _policy(ctx: Context) -> PointsPolicy:
    policy = ctx.policy
    return policy if isinstance(policy, PointsPolicy) else domain.DEFAULT_POLICY


def _tier_of(ctx: Context, account: Account, policy: PointsPolicy) -> str:
    """The account's tier; for an account not seen yet, first the accounts barrier.

    Raises ``Defer`` (before anything is written) while records of ``card.accounts.v1``
    published before this event are unapplied; then an account still unknown earns at
    ``policy.unknown_account_tier``.
    """
    if account.tier is None:
        ctx.wait_for(ACCOUNTS_TOPIC, "accounts")
        return account.tier or policy.unknown_account_tier
    return account.tier


def _points_for(amount: Decimal, tier: str, policy: PointsPolicy) -> int:
    try:
        return domain.points_for_purchase(amount, tier, policy)
    except domain.UnknownTier as exc:
        raise Reject(f"{exc}: the points policy has no multiplier for it") from exc


# --------------------------------------------------------------------------- handlers


def record_account_tier(ctx: Context, event: Envelope) -> None:
    """account.upserted -> remember the tier in force for the account's next purchases."""
    a: AccountUpserted = event.data
    repo: PointsRepository = ctx.repo
    repo.set_tier(a.account_id, a.tier)


def accrue_purchase_points(ctx: Context, event: Envelope) -> None:
    """purchase.recorded -> points at the tier in force, once per purchase_id.

    An account not seen yet: deferred until card.accounts.v1 has caught up (see Tier).
    """
    p: PurchaseRecorded = event.data
    policy = _policy(ctx)
    repo: PointsRepository = ctx.repo
    account = repo.account(p.account_id)
    if repo.purchase(p.purchase_id) is not None:
        ctx.log.info("duplicate purchase ignored", purchase_id=p.purchase_id)
        return
    tier = _tier_of(ctx, account, policy)
    points = _points_for(p.amount, tier, policy)
    repo.add_purchase(
        Purchase(
            purchase_id=p.purchase_id,
            account_id=p.account_id,
            amount=p.amount,
            currency=p.currency,
            tier=tier,
            tier_assumed=account.tier is None,
            points_earned=points,
            points_reversed=0,
            refunded_total=ZERO,
            event_id=event.id,
        )
    )
    if points > 0:
        _book(ctx, p.account_id, points, domain.PURCHASE, rule="accrued", purchase_id=p.purchase_id)


def reverse_refunded_points(ctx: Context, event: Envelope) -> None:
    """refund.recorded -> take back the refunded share of the purchase's points, and of
    the first-plan bonus when the purchase's plan earned it.

    Cumulative (``refunded_total`` comes with the event): a repeat reverses nothing and
    the total reversed never exceeds what the purchase (the bonus) earned.
    """
    r: RefundRecorded = event.data
    repo: PointsRepository = ctx.repo
    purchase = repo.purchase(r.purchase_id)
    if purchase is None:
        # purchase.recorded precedes it on the same partition: this is not an ordering race.
        raise Reject("refund.recorded names a purchase the points service never recorded")
    if purchase.account_id != r.account_id:
        raise Reject("refund.recorded account differs from the purchase's account")
    try:
        points = domain.points_to_reverse(
            purchase.points_earned,
            purchase.points_reversed,
            purchase.amount,
            r.amount,
            r.refunded_total - r.amount,
        )
    except ValueError as exc:
        raise Reject(f"refund cannot be applied to the purchase's points: {exc}") from exc
    refunded_total = max(purchase.refunded_total, r.refunded_total)
    repo.record_refund(
        r.purchase_id,
        points_reversed=purchase.points_reversed + points,
        refunded_total=refunded_total,
    )
    if points > 0:
        _book(
            ctx,
            r.account_id,
            -points,
            domain.REFUND,
            rule=f"reversed:{r.refund_id}",
            purchase_id=r.purchase_id,
        )
    plan = repo.bonus_plan(r.purchase_id)
    if plan is not None:  # plan.created came first: reverse the bonus's refunded share
        _reverse_refunded_bonus(
            ctx, plan, purchase, refunded_total, rule=f"bonus-reversed:{r.refund_id}"
        )


def _reverse_refunded_bonus(
    ctx: Context, plan: Plan, purchase: Purchase, refunded_total: Decimal, *, rule: str
) -> None:
    """Book the first-plan bonus's refunded share not reversed yet (see the module doc)."""
    repo: PointsRepository = ctx.repo
    try:
        points = domain.bonus_to_reverse(
            plan.bonus_points, plan.bonus_reversed, purchase.amount, refunded_total
        )
    except ValueError as exc:
        raise Reject(f"refund cannot be applied to the first-plan bonus: {exc}") from exc
    if points <= 0:
        return
    repo.record_bonus_reversal(plan.plan_id, plan.bonus_reversed + points)
    _book(
        ctx,
        plan.account_id,
        -points,
        domain.REFUND,
        rule=rule,
        purchase_id=plan.purchase_id,
        plan_id=plan.plan_id,
    )


def apply_new_plan(ctx: Context, event: Envelope) -> None:
    """plan.created -> redeem the requested points on its fee, then the first-plan bonus
    (less the share of it its purchase's refunds already took back)."""
    plan: PlanCreated = event.data
    policy = _policy(ctx)
    repo: PointsRepository = ctx.repo
    account = repo.account(plan.account_id)
    if repo.plan(plan.plan_id) is not None:
        ctx.log.info("duplicate plan ignored", plan_id=plan.plan_id)
        return
    bonus, basis = _first_plan_bonus(ctx, plan, account, policy)  # may Defer: nothing written
    spent, fee = _redeem_for_fee(ctx, plan, policy)
    if bonus > 0:
        _book(
            ctx,
            plan.account_id,
            bonus,
            domain.FIRST_INSTALLMENT_BONUS,
            rule="bonus",
            purchase_id=plan.purchase_id,
            plan_id=plan.plan_id,
        )
    row = Plan(
        plan_id=plan.plan_id,
        account_id=plan.account_id,
        purchase_id=plan.purchase_id,
        principal=plan.principal,
        total_fee=plan.total_fee,
        currency=plan.currency,
        bonus_points=bonus,
        bonus_basis=basis,
        bonus_reversed=0,
        principal_returned=ZERO,
        redeem_requested=plan.redeem_points,
        points_redeemed=spent,
        fee_redeemed=fee,
        event_id=event.id,
    )
    repo.add_plan(row)
    if not account.had_plan:
        repo.mark_first_plan(plan.account_id, plan.plan_id)
    purchase = repo.purchase(plan.purchase_id)
    if bonus > 0 and purchase is not None and purchase.refunded_total > 0:
        # refunds of the purchase came first (another topic): their share of the bonus now
        _reverse_refunded_bonus(ctx, row, purchase, purchase.refunded_total, rule="bonus-reversed")


def _redeem_for_fee(ctx: Context, plan: PlanCreated, policy: PointsPolicy) -> tuple[int, Decimal]:
    """``redeem_points`` -> points.redeemed, or points.redemption-rejected (balance kept)."""
    repo: PointsRepository = ctx.repo
    balance = repo.balance(plan.account_id)
    outcome = domain.redeem(balance, plan.redeem_points, plan.total_fee, policy)
    if outcome.accepted:
        _book(
            ctx,
            plan.account_id,
            -outcome.points,
            domain.FEE_REDEMPTION,
            rule="redeemed",
            plan_id=plan.plan_id,
        )
        return outcome.points, outcome.fee_amount
    if outcome.reason in (domain.INSUFFICIENT_POINTS, domain.NOTHING_TO_WAIVE):
        ctx.emit(
            "points.redemption-rejected",
            PointsRedemptionRejected.model_construct(
                account_id=plan.account_id,
                points=outcome.points or plan.redeem_points,
                balance_after=balance,
                reason=domain.FEE_REDEMPTION,  # type: ignore[arg-type]  # a domain str, checked in tests
                plan_id=plan.plan_id,
                why=outcome.reason,  # type: ignore[arg-type]  # a domain str, checked in tests
            ),
            rule="redemption-rejected",
            subject=plan.account_id,
        )
    return 0, outcome.fee_amount


def _first_plan_bonus(
    ctx: Context, plan: PlanCreated, account: Account, policy: PointsPolicy
) -> tuple[int, str]:
    """The account's first plan earns its purchase's points again. Returns (bonus, basis).

    Nothing is written: when the bonus needs the tier of an account not seen yet, this
    may raise ``Defer`` (the accounts barrier, see Tier).
    """
    repo: PointsRepository = ctx.repo
    purchase = repo.purchase(plan.purchase_id)
    if purchase is not None:
        basis, purchase_points = "purchase", purchase.points_earned
    elif account.had_plan:  # no bonus whatever the tier: no need to wait for it
        basis, purchase_points = "principal", 0
    else:  # plan.created overtook purchase.recorded (another topic): see the module doc
        basis = "principal"
        purchase_points = _points_for(plan.principal, _tier_of(ctx, account, policy), policy)
    return domain.first_plan_bonus(purchase_points, account.had_plan, policy), basis


def record_plan_cancellation(ctx: Context, event: Envelope) -> None:
    """plan.cancelled -> give back the points of the removed waived fees
    (``points_to_restore``, capped: see Points restored); for a refund, record the
    principal returned.

    The first-plan bonus is reversed by the refunds of the plan's purchase
    (refund.recorded), in proportion, never here (see the module doc): reversing it on
    the cancellation too would take it twice.
    """
    c: PlanCancelled = event.data
    repo: PointsRepository = ctx.repo
    plan = _plan_of(ctx, c.plan_id, event, "plan.cancelled")
    if c.reason == domain.CANCELLED_BY_REFUND:
        returned = plan.principal_returned + c.principal_returned
        if returned > plan.principal:
            raise Reject(
                f"plan.cancelled returns {returned} in all, more than the principal"
                f" {plan.principal}"
            )
        repo.record_cancellation(c.plan_id, principal_returned=returned)
    if c.points_to_restore > 0:
        _restore(ctx, plan, c.points_to_restore, domain.RESTORED_ON_CANCEL, "cancelled")


def record_plan_adjustment(ctx: Context, event: Envelope) -> None:
    """plan.adjusted (a partial refund) -> record the principal it took off the plan and
    give back the points of the removed waived fees (capped: see Points restored).

    Once per refund: the same adjustment re-published under a new id changes nothing.
    """
    a: PlanAdjusted = event.data
    repo: PointsRepository = ctx.repo
    plan = _plan_of(ctx, a.plan_id, event, "plan.adjusted")  # subject = data.account_id
    cause_key = f"adjusted:{a.refund_id}"
    if repo.restoration(a.plan_id, cause_key) is not None:
        ctx.log.info("adjustment already applied", plan_id=a.plan_id, refund_id=a.refund_id)
        return
    returned = plan.principal_returned + a.principal_reduced
    if returned >= plan.principal:  # a refund of all that is left cancels the plan instead
        raise Reject(
            f"plan.adjusted reduces the principal by {returned} in all, not less than the"
            f" principal {plan.principal}"
        )
    repo.record_cancellation(a.plan_id, principal_returned=returned)
    _restore(ctx, plan, a.points_to_restore, domain.RESTORED_ON_ADJUST, cause_key)


def _plan_of(ctx: Context, plan_id: str, event: Envelope, what: str) -> Plan:
    """The plan a cancellation / adjustment names (DLQ when unknown or another account's)."""
    repo: PointsRepository = ctx.repo
    plan = repo.plan(plan_id)
    if plan is None:
        # plan.created precedes it on the same partition: this is not an ordering race.
        raise Reject(f"{what} names a plan the points service never saw")
    if plan.account_id != event.subject:  # the subject is the account id (contract §2)
        raise Reject(f"{what} subject differs from the plan's account")
    return plan


def _restore(ctx: Context, plan: Plan, requested: int, reason: str, cause_key: str) -> None:
    """Give back up to ``requested`` points for ``plan``, once per ``cause_key``, never
    more in all than was redeemed for the plan (``domain.points_to_restore``)."""
    repo: PointsRepository = ctx.repo
    assert ctx.event is not None
    if repo.restoration(plan.plan_id, cause_key) is not None:
        ctx.log.info("restoration already applied", plan_id=plan.plan_id, cause=cause_key)
        return
    already = repo.restored_total(plan.plan_id)
    points = domain.points_to_restore(requested, plan.points_redeemed, already)
    if points < requested:
        ctx.log.warning(
            "points to restore capped at what was redeemed for the plan",
            plan_id=plan.plan_id,
            requested=requested,
            redeemed=plan.points_redeemed,
            already_restored=already,
            restored=points,
        )
    event_id = None
    if points > 0:
        event_id = _book(
            ctx, plan.account_id, points, reason, rule="restored", plan_id=plan.plan_id
        )
    repo.add_restoration(
        {
            "plan_id": plan.plan_id,
            "cause_key": cause_key,
            "account_id": plan.account_id,
            "reason": domain.RESTORE_EVENT_REASON[reason],
            "requested": requested,
            "restored": points,
            "cause_id": ctx.event.id,
            "event_id": event_id,
        }
    )


HANDLERS: dict[str, Handler] = {
    "account.upserted": record_account_tier,
    "purchase.recorded": accrue_purchase_points,
    "refund.recorded": reverse_refunded_points,
    "plan.created": apply_new_plan,  # redemption (redeem_points), then first-plan bonus
    "plan.cancelled": record_plan_cancellation,  # points_to_restore; refunds move the rest
    "plan.adjusted": record_plan_adjustment,  # points_to_restore
}

#: What each handler needs preloaded (event type -> the keys the batch repository reads
#: for it, once per batch: ``PointsRepository.load``). Every account named is created if
#: missing and locked for the batch; plan.cancelled names its account as the subject.
PRELOAD: dict[str, Callable[[Envelope], Keys]] = {
    "account.upserted": lambda e: Keys(accounts=(e.data.account_id,)),
    "purchase.recorded": lambda e: Keys(
        accounts=(e.data.account_id,),
        balances=(e.data.account_id,),
        purchases=(e.data.purchase_id,),
    ),
    "refund.recorded": lambda e: Keys(
        accounts=(e.data.account_id,),
        balances=(e.data.account_id,),
        purchases=(e.data.purchase_id,),
        bonus_plans=(e.data.purchase_id,),
    ),
    "plan.created": lambda e: Keys(
        accounts=(e.data.account_id,),
        balances=(e.data.account_id,),
        purchases=(e.data.purchase_id,),
        plans=(e.data.plan_id,),
    ),
    "plan.cancelled": lambda e: Keys(
        accounts=(e.subject,),
        balances=(e.subject,),
        plans=(e.data.plan_id,),
        restorations=(e.data.plan_id,),
    ),
    "plan.adjusted": lambda e: Keys(
        accounts=(e.subject,),
        balances=(e.subject,),
        plans=(e.data.plan_id,),
        restorations=(e.data.plan_id,),
    ),
}
