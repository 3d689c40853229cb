"""Collections service: what happens when each event arrives.

The HANDLERS table at the bottom is the index: event type -> reaction.
Every handler has the same shape: read the batch view (``ctx.repo``, bulk-loaded by
:mod:`services.collections.repository`), ask the domain, record the change, emit.

Decisions (beyond the domain rules in ``domain.py``):

- **Stale reports.** offers emits ``account.delinquency`` at each end of day while an
  account is overdue (and at once with DPD 0 when a payment clears it). A report whose
  business date is older than the newest one applied for the account is stale:
  ignored (logged). One for the same business date is applied (the domain makes a
  repeat harmless: no level is raised twice).
- **Charge-off amount.** ``escalation.resolved charged_off`` carries what is written
  off (the domain's ``written_off``): the overdue amount of the report that crossed
  the charge-off DPD + the principal not yet due (due on or after its business date)
  of the account's active plans in the report's currency, from the tracked schedule.
  Those plans are then set ``charged_off``: their principal is no longer outstanding
  (not reserved, and not written off again by a later case). If the tracked schedule
  has no overdue installment (the account's plan events were not seen), only the
  overdue amount is written off, no plan is touched, and a warning is logged; a
  schedule whose oldest unpaid due date differs from the report's is used, with a
  warning.
- **Case history.** ``case_events`` is append-only (opened, each level raised,
  resolved, closed); the ``cases`` row holds the current state for queries.
- **Outstanding principal** per account (for the risk reserve) = principal of the
  unpaid installments of the account's active plans, from ``plan.created``'s schedule;
  ``installment.paid`` takes an installment out, ``plan.completed`` / ``plan.cancelled``
  take the whole plan out (offers cancels a plan only when no principal is left on it:
  a full refund or an early payoff), and so does a charge-off. A partial refund arrives
  as ``plan.adjusted`` (second release): its schedule (the unpaid installments after the
  change) replaces the tracked unpaid installments (``domain.follow_adjusted_schedule``):
  new principal per listed installment, the unpaid ones it leaves out removed. So the
  reserve and the not-yet-due part of a charge-off follow the adjusted schedule. An
  adjustment of a plan never seen is logged and ignored, as the other plan events.
- **Charge-off amount = outstanding principal + overdue fees** (contract 5.1,
  "Clarified"): the report's overdue amount is the overdue installments' principal and
  fees less what was paid on them (fee first), and the installments due on or after its
  business date add only their principal: together the outstanding principal plus the
  fees overdue, as long as the tracked schedule is the plan's (hence plan.adjusted).
- **Catch-up buckets** (contract 5.1, "Clarified"): every level raised by one report
  carries the bucket of that report's DPD (the current one), the lower levels of a
  catch-up included.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from schemas import Envelope
from schemas.payloads import (
    AccountDelinquency,
    EscalationRaised,
    EscalationResolved,
    InstallmentPaid,
    PlanAdjusted,
    PlanCancelled,
    PlanCompleted,
    PlanCreated,
)
from services.collections import domain
from services.collections.repository import Case, CollectionsRepository, Keys, Position
from services.collections.tables import (
    ACTIVE,
    CANCELLED,
    CHARGED_OFF,
    CLOSED,
    COMPLETED,
    CURED,
    OPEN,
    OPENED,
    RAISED,
    RESOLVED,
)
from shared.runtime import Context, Handler, Reject

# --------------------------------------------------------------------------- delinquency


def _case_state(repo: CollectionsRepository, case: Case) -> domain.CaseState:
    return domain.CaseState(
        repo.levels_raised(case.case_id),
        case.opened_on,
        charged_off=case.status == CHARGED_OFF,
    )


def escalate_delinquency(ctx: Context, event: Envelope) -> None:
    """account.delinquency -> open / escalate / cure / charge off the account's case."""
    r: AccountDelinquency = event.data
    repo: CollectionsRepository = ctx.repo
    position = repo.position(r.account_id)
    if position is not None and r.business_date < position.business_date:
        ctx.log.info(
            "stale delinquency report ignored",
            account_id=r.account_id,
            business_date=r.business_date.isoformat(),
            newest=position.business_date.isoformat(),
        )
        return
    if r.days_past_due > 0 and r.overdue_amount <= 0:
        raise Reject("delinquency report with days_past_due > 0 but no overdue amount")
    repo.put_position(Position(
        account_id=r.account_id,
        business_date=r.business_date,
        days_past_due=r.days_past_due,
        overdue_amount=r.overdue_amount,
        currency=r.currency,
        oldest_unpaid_due_date=r.oldest_unpaid_due_date,
        event_id=event.id,
    ))  # fmt: skip

    row = repo.current_case(r.account_id)
    case = _case_state(repo, row) if row is not None else None
    not_yet_due: Decimal | None = None
    written_off_plans: list[str] = []
    if domain.charges_off(case, r.days_past_due, ctx.policy):
        not_yet_due, written_off_plans = _principal_not_yet_due(ctx, r)
    decision = domain.assess_delinquency(
        r.account_id, case, r.days_past_due, r.overdue_amount, r.business_date, ctx.policy,
        principal_not_yet_due=not_yet_due,
    )  # fmt: skip
    if decision.case_id is None:
        return  # current, and no case: nothing to do

    if decision.opened:
        if repo.case_exists(decision.case_id):
            # A case opened on this business date was already resolved: a re-run of the
            # same day's report, not a new delinquency.
            ctx.log.warning("report for a case already resolved ignored", case_id=decision.case_id)
            return
        repo.add_case(Case(
            case_id=decision.case_id,
            account_id=r.account_id,
            status=OPEN,
            opened_on=r.business_date,
            level=0,
            days_past_due=r.days_past_due,
            overdue_amount=r.overdue_amount,
            currency=r.currency,
            business_date=r.business_date,
        ))  # fmt: skip
        _append(ctx, decision.case_id, r, OPENED)
    for escalation in decision.escalations:
        assert decision.bucket is not None
        out = ctx.emit(
            "escalation.raised",
            EscalationRaised(
                case_id=decision.case_id,
                account_id=r.account_id,
                level=escalation.level,
                action=escalation.action,
                bucket=decision.bucket,
                days_past_due=r.days_past_due,
                overdue_amount=r.overdue_amount,
                currency=r.currency,
                business_date=r.business_date,
            ),
            rule=f"raised:{decision.case_id}:{escalation.level}",
            subject=r.account_id,
        )
        _append(
            ctx, decision.case_id, r, RAISED,
            level=escalation.level, action=escalation.action, bucket=decision.bucket,
            event_id=out.id,
        )  # fmt: skip

    current: dict[str, Any] = {
        "days_past_due": r.days_past_due,
        "overdue_amount": r.overdue_amount,
        "currency": r.currency,
        "business_date": r.business_date,
        "bucket": decision.bucket,
    }
    if decision.escalations:
        top = decision.escalations[-1]
        current.update(level=top.level, action=top.action)

    if decision.resolution is not None:
        out = ctx.emit(
            "escalation.resolved",
            EscalationResolved(
                case_id=decision.case_id,
                account_id=r.account_id,
                resolution=decision.resolution,
                business_date=r.business_date,
                amount=decision.written_off,
                currency=r.currency,
            ),
            rule=f"resolved:{decision.case_id}",
            subject=r.account_id,
        )
        _append(
            ctx, decision.case_id, r, RESOLVED,
            resolution=decision.resolution, amount=decision.written_off, event_id=out.id,
        )  # fmt: skip
        status = CURED if decision.resolution == domain.CURED else CHARGED_OFF
        if status == CHARGED_OFF:
            for plan_id in written_off_plans:  # written off: no longer outstanding
                repo.set_plan_status(plan_id, CHARGED_OFF)
        current.update(
            status=status,
            resolution=decision.resolution,
            resolved_on=r.business_date,
            written_off=decision.written_off,
        )
    elif decision.case is None:
        # A charged-off case whose account is current again: closed, silently.
        _append(ctx, decision.case_id, r, CLOSED)
        current.update(status=CLOSED)

    repo.update_case(decision.case_id, **current)


def _principal_not_yet_due(ctx: Context, r: AccountDelinquency) -> tuple[Decimal | None, list[str]]:
    """For a charge-off: the principal not yet due of the account's active plans and
    those plans' ids; ``(None, [])`` when the tracked schedule cannot explain the report."""
    repo: CollectionsRepository = ctx.repo
    unpaid = [
        domain.ScheduledPrincipal(line["due_date"], line["principal"])
        for line in repo.open_installments(r.account_id, r.currency)
    ]
    if not domain.schedule_explains_report(unpaid, r.business_date):
        ctx.log.warning(
            "charge-off without the account's plans: only the overdue amount is written off",
            account_id=r.account_id,
            business_date=r.business_date.isoformat(),
            tracked_installments=len(unpaid),
        )
        return None, []
    oldest = min(line.due_date for line in unpaid)
    if r.oldest_unpaid_due_date is not None and oldest != r.oldest_unpaid_due_date:
        ctx.log.warning(
            "charge-off: the tracked plans' oldest unpaid due date differs from the report's",
            account_id=r.account_id,
            tracked=oldest.isoformat(),
            reported=r.oldest_unpaid_due_date.isoformat(),
        )
    plan_ids = repo.active_plans(r.account_id, r.currency)
    return domain.principal_not_yet_due(unpaid, r.business_date), plan_ids


def _append(
    ctx: Context,
    case_id: str,
    r: AccountDelinquency,
    kind: str,
    *,
    level: int | None = None,
    action: str | None = None,
    bucket: str | None = None,
    resolution: str | None = None,
    amount: Decimal | None = None,
    event_id: str | None = None,
) -> None:
    """One row of the append-only case history."""
    assert ctx.event is not None
    repo: CollectionsRepository = ctx.repo
    repo.append_case_event({
        "case_id": case_id,
        "account_id": r.account_id,
        "kind": kind,
        "business_date": r.business_date,
        "level": level,
        "action": action,
        "bucket": bucket,
        "resolution": resolution,
        "days_past_due": r.days_past_due,
        "overdue_amount": r.overdue_amount,
        "amount": amount,
        "currency": r.currency,
        "cause_event_id": ctx.event.id,
        "event_id": event_id,
    })  # fmt: skip


# --------------------------------------------------------------------------- plans


def record_plan(ctx: Context, event: Envelope) -> None:
    """plan.created -> keep each installment's principal (outstanding principal)."""
    p: PlanCreated = event.data
    repo: CollectionsRepository = ctx.repo
    if repo.has_plan(p.plan_id):
        ctx.log.info("duplicate plan ignored", plan_id=p.plan_id)
        return
    repo.add_plan(
        {
            "plan_id": p.plan_id,
            "account_id": p.account_id,
            "currency": p.currency,
            "principal": p.principal,
            "status": ACTIVE,
            "event_id": event.id,
        },
        [
            {
                "plan_id": p.plan_id,
                "seq": line.seq,
                "account_id": p.account_id,
                "due_date": line.due_date,
                "principal": line.principal,
                "paid": False,
                "paid_on": None,
                "removed": False,
            }
            for line in p.schedule
        ],
    )


def follow_adjusted_plan(ctx: Context, event: Envelope) -> None:
    """plan.adjusted -> the plan's outstanding principal is its schedule's unpaid principal."""
    a: PlanAdjusted = event.data
    repo: CollectionsRepository = ctx.repo
    if not repo.has_plan(a.plan_id):
        ctx.log.warning("adjustment of an unknown plan", plan_id=a.plan_id)
        return
    adjusted = domain.follow_adjusted_schedule(
        repo.unpaid_seqs(a.plan_id), [(line.seq, line.principal) for line in a.schedule]
    )
    repo.adjust_installments(
        a.plan_id,
        [{"seq": line.seq, "due_date": line.due_date, "principal": line.principal}
         for line in a.schedule],
        adjusted.removed,
    )  # fmt: skip


def mark_installment_paid(ctx: Context, event: Envelope) -> None:
    """installment.paid -> its principal is no longer outstanding."""
    p: InstallmentPaid = event.data
    repo: CollectionsRepository = ctx.repo
    if not repo.mark_paid(p.plan_id, p.seq, p.paid_on):
        ctx.log.warning("installment of an unknown plan paid", plan_id=p.plan_id, seq=p.seq)


def _close_plan(ctx: Context, plan_id: str, status: str) -> None:
    repo: CollectionsRepository = ctx.repo
    if not repo.set_plan_status(plan_id, status):
        ctx.log.warning("unknown plan closed", plan_id=plan_id, status=status)


def close_completed_plan(ctx: Context, event: Envelope) -> None:
    """plan.completed -> nothing outstanding on the plan."""
    c: PlanCompleted = event.data
    _close_plan(ctx, c.plan_id, COMPLETED)


def close_cancelled_plan(ctx: Context, event: Envelope) -> None:
    """plan.cancelled (full refund or early payoff) -> nothing outstanding on the plan."""
    c: PlanCancelled = event.data
    _close_plan(ctx, c.plan_id, CANCELLED)


HANDLERS: dict[str, Handler] = {
    "account.delinquency": escalate_delinquency,
    "plan.created": record_plan,
    "installment.paid": mark_installment_paid,
    "plan.completed": close_completed_plan,
    "plan.cancelled": close_cancelled_plan,
    "plan.adjusted": follow_adjusted_plan,
}

#: What each handler needs preloaded (event type -> the keys the batch repository reads
#: for it, once per batch: ``CollectionsRepository.load``). A charge-off also reads the
#: account's plans when it needs them (``repo.open_installments``).
PRELOAD: dict[str, Callable[[Envelope], Keys]] = {
    "account.delinquency": lambda e: Keys(accounts=(e.data.account_id,)),
    "plan.created": lambda e: Keys(plans=(e.data.plan_id,)),
    "installment.paid": lambda e: Keys(installments=((e.data.plan_id, e.data.seq),)),
    "plan.completed": lambda e: Keys(plans=(e.data.plan_id,)),
    "plan.cancelled": lambda e: Keys(plans=(e.data.plan_id,)),
    "plan.adjusted": lambda e: Keys(plans=(e.data.plan_id,), schedules=(e.data.plan_id,)),
}
