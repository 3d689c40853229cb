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

Contact outcomes (second release, ``contact.recorded`` on collections.outcomes.v1):

- **Refused (DLQ, ``Reject``)**: a case id collections never opened, or one of another
  account; a case no longer open (cured, charged off, closed); a promise whose
  ``promised_date`` is before ``contacted_on`` or more than 30 days after it; a promise
  in another currency than the case's; a ``dispute_resolved`` with no dispute open on
  the case. A ``contact_id`` already recorded is ignored (logged), as is a repeat.
- **A close** is the account's end-of-day ``account.delinquency`` report: collections
  does not read ``card.business-days.v1``; offers reports every overdue account at every
  end of day, so every close that matters to an open case arrives. At each report of an
  open case that does not cure it: first the open promises it breaks
  (``promise.broken``, business date ``promised_date + 3`` or later), then, unless a
  promise or a dispute still holds the ladder, the levels due (every crossed one, in
  order), then a charge-off. A hold never stops a cure or a charge-off. A cure or a
  charge-off voids the case's promises still open (``void``, no event).
- **Payments** (what keeps a promise): collections learns payments from
  ``installment.paid`` on installments.plans.v1 (what it consumes already): each one is
  kept in ``payments`` with its full ``amount``, ``currency`` and ``paid_on`` (the
  payment's received date), and the paid amounts dated from the promise's
  ``contacted_on`` on are added up. ``account.delinquency`` with DPD 0 tells only that
  the overdue is cleared, not how much was paid, so it is not used. Limitation: a
  partial payment that completes no installment is not seen until it does (offers
  emits ``installment.paid`` per installment paid in full).
- **promise.kept** is emitted when the sum reaches the promised amount: by the
  ``installment.paid`` that makes it, or at once by the ``contact.recorded`` when the
  payments already made since ``contacted_on`` cover it. Its ``business_date`` is the
  last business date closed as collections knows it: that of the account's latest
  ``account.delinquency`` applied. Every promise event is caused by the event that
  decided it (``ctx.emit``: ``causation_id``), its id derived from the contact id.
- A kept promise still holds the ladder until the close of ``promised_date + 3``
  (CONTRACT 5.1: no level is raised at the close of a business date before it).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from schemas import Envelope
from schemas.payloads import (
    AccountDelinquency,
    ContactRecorded,
    EscalationRaised,
    EscalationResolved,
    InstallmentPaid,
    PlanAdjusted,
    PlanCancelled,
    PlanCompleted,
    PlanCreated,
    PromiseBroken,
    PromiseKept,
)
from services.collections import domain
from services.collections.repository import (
    Case,
    CollectionsRepository,
    Keys,
    Position,
    account_of_case,
)
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


def _case_state(ctx: Context, case: Case) -> domain.CaseState:
    repo: CollectionsRepository = ctx.repo
    contacts = [contacted_on for outcome, contacted_on in repo.contact_outcomes(case.case_id)
                if domain.counts_as_contact(outcome, ctx.policy)]  # fmt: skip
    return domain.CaseState(
        repo.levels_raised(case.case_id),
        case.opened_on,
        charged_off=case.status == CHARGED_OFF,
        contacts=contacts,
    )


def _promise(row: dict[str, Any]) -> domain.Promise:
    return domain.Promise(
        contact_id=row["contact_id"],
        contacted_on=row["contacted_on"],
        promised_date=row["promised_date"],
        promised_amount=row["promised_amount"],
        currency=row["currency"],
        status=row["status"],
    )


def _dispute(row: dict[str, Any]) -> domain.Dispute:
    return domain.Dispute(row["contacted_on"], resolved=row["resolved_by"] is not None)


def _payments(repo: CollectionsRepository, account_id: str) -> list[domain.Payment]:
    return [domain.Payment(p["paid_on"], p["amount"], p["currency"])
            for p in repo.payments(account_id)]  # fmt: skip


def _decide_promise(
    ctx: Context, row: dict[str, Any], status: str, paid: Decimal, business_date: Any
) -> None:
    """Emit ``promise.kept`` / ``promise.broken`` for the promise row and record it."""
    repo: CollectionsRepository = ctx.repo
    kept = status == domain.PROMISE_KEPT
    event_type = "promise.kept" if kept else "promise.broken"
    model = PromiseKept if kept else PromiseBroken
    out = ctx.emit(
        event_type,
        model.model_construct(
            case_id=row["case_id"],
            account_id=row["account_id"],
            contact_id=row["contact_id"],
            promised_amount=row["promised_amount"],
            paid_amount=paid,
            currency=row["currency"],
            business_date=business_date,
        ),
        rule=f"{event_type}:{row['contact_id']}",
        subject=row["account_id"],
    )
    repo.update_promise(
        row["contact_id"], status=status, paid_amount=paid, decided_on=business_date,
        event_id=out.id,
    )  # fmt: skip


def _last_closed(repo: CollectionsRepository, account_id: str, case: Case) -> Any:
    """The last business date closed as collections knows it (the account's latest
    end-of-day report applied)."""
    position = repo.position(account_id)
    return position.business_date if position is not None else case.business_date


def _close_promises(ctx: Context, case: Case, r: AccountDelinquency) -> bool:
    """At an end-of-day report of an open case that does not cure it: break the open
    promises it decides; True when a promise or a dispute still holds the ladder."""
    repo: CollectionsRepository = ctx.repo
    rows = repo.promises(case.case_id)
    if any(row["status"] == domain.PROMISE_OPEN for row in rows):
        paid_so_far = _payments(repo, case.account_id)
        broken = domain.promises_broken(
            [_promise(row) for row in rows], paid_so_far, r.business_date, ctx.policy
        )
        by_id = {row["contact_id"]: row for row in rows}
        for promise, paid in broken:
            _decide_promise(ctx, by_id[promise.contact_id], domain.PROMISE_BROKEN, paid,
                            r.business_date)  # fmt: skip
        rows = repo.promises(case.case_id)
    return domain.ladder_held(
        [_promise(row) for row in rows],
        [_dispute(row) for row in repo.disputes(case.case_id)],
        r.business_date,
        ctx.policy,
    )


def _void_promises(repo: CollectionsRepository, case_id: str) -> None:
    """The case is resolved: its promises still open are void (no event)."""
    for row in repo.promises(case_id):
        if row["status"] == domain.PROMISE_OPEN:
            repo.update_promise(row["contact_id"], status=domain.PROMISE_VOID)


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
    case = _case_state(ctx, row) if row is not None else None
    held = False
    if row is not None and row.status == OPEN and not domain.is_cured(r.days_past_due):
        held = _close_promises(ctx, row, r)
    not_yet_due: Decimal | None = None
    written_off_plans: list[str] = []
    if domain.charges_off(case, r.days_past_due, ctx.policy):
        not_yet_due, written_off_plans = _principal_not_yet_due(ctx, r)
    decision = domain.assess_delinquency(
        r.account_id, case, r.days_past_due, r.overdue_amount, r.business_date, ctx.policy,
        principal_not_yet_due=not_yet_due, held=held,
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
            EscalationRaised.model_construct(
                case_id=decision.case_id,
                account_id=r.account_id,
                level=escalation.level,
                action=escalation.action,  # type: ignore[arg-type]  # a domain str, checked in tests
                bucket=decision.bucket,  # type: ignore[arg-type]  # a domain str, checked in tests
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
            EscalationResolved.model_construct(
                case_id=decision.case_id,
                account_id=r.account_id,
                resolution=decision.resolution,  # type: ignore[arg-type]  # a domain str, checked in tests
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
        if not decision.opened:
            _void_promises(repo, decision.case_id)
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
    """installment.paid -> its principal is no longer outstanding; the payment may keep
    the account's open promises (``promise.kept``)."""
    p: InstallmentPaid = event.data
    repo: CollectionsRepository = ctx.repo
    already_paid = repo.is_paid(p.plan_id, p.seq)
    if not repo.mark_paid(p.plan_id, p.seq, p.paid_on):
        ctx.log.warning("installment of an unknown plan paid", plan_id=p.plan_id, seq=p.seq)
        return
    account_id = repo.plan_account(p.plan_id)
    if already_paid or account_id is None:
        return  # a repeat: the payment is known already
    repo.add_payment({
        "plan_id": p.plan_id, "seq": p.seq, "account_id": account_id, "amount": p.amount,
        "currency": p.currency, "paid_on": p.paid_on, "event_id": event.id,
    })  # fmt: skip
    _keep_promises(ctx, account_id)


def _keep_promises(ctx: Context, account_id: str) -> None:
    """Emit ``promise.kept`` for each open promise of the account its payments now cover."""
    repo: CollectionsRepository = ctx.repo
    rows = repo.open_promises(account_id)
    if not rows:
        return
    kept = domain.promises_kept([_promise(row) for row in rows], _payments(repo, account_id))
    by_id = {row["contact_id"]: row for row in rows}
    for promise, paid in kept:
        row = by_id[promise.contact_id]
        case = repo.case(row["case_id"])
        assert case is not None
        _decide_promise(ctx, row, domain.PROMISE_KEPT, paid, _last_closed(repo, account_id, case))


# --------------------------------------------------------------------------- contacts


def record_contact(ctx: Context, event: Envelope) -> None:
    """contact.recorded -> a contact for the legal guard, a promise to pay or a dispute
    (hold the ladder), or the end of a dispute."""
    c: ContactRecorded = event.data
    repo: CollectionsRepository = ctx.repo
    if repo.contact_exists(c.contact_id):
        ctx.log.info("contact already recorded ignored", contact_id=c.contact_id)
        return
    case = repo.case(c.case_id) if c.case_id.startswith("case:") else None
    if case is None or case.account_id != c.account_id:
        raise Reject(f"contact {c.contact_id}: unknown case for account {c.account_id}")
    if case.status != OPEN:
        raise Reject(f"contact {c.contact_id}: the case is resolved ({case.status})")
    open_disputes = [d for d in repo.disputes(case.case_id) if d["resolved_by"] is None]
    if c.outcome == domain.PROMISE_TO_PAY:
        assert c.promised_date is not None and c.promised_amount is not None
        reason = domain.promise_refusal(c.contacted_on, c.promised_date, ctx.policy)
        if reason is not None:
            raise Reject(f"contact {c.contact_id}: {reason}")
        if c.currency != case.currency:
            raise Reject(f"contact {c.contact_id}: promise currency differs from the case's")
    elif c.outcome == domain.DISPUTE_RESOLVED and not open_disputes:
        raise Reject(f"contact {c.contact_id}: no dispute open on the case")

    repo.add_contact({
        "contact_id": c.contact_id, "case_id": case.case_id, "account_id": c.account_id,
        "outcome": c.outcome, "contacted_on": c.contacted_on, "agent_ref": c.agent_ref,
        "event_id": event.id,
    })  # fmt: skip
    if c.outcome == domain.PROMISE_TO_PAY:
        assert c.promised_date is not None and c.promised_amount is not None
        promise = domain.Promise(c.contact_id, c.contacted_on, c.promised_date,
                                 c.promised_amount, case.currency)  # fmt: skip
        repo.add_promise({
            "contact_id": c.contact_id, "case_id": case.case_id, "account_id": c.account_id,
            "contacted_on": c.contacted_on, "promised_date": c.promised_date,
            "promised_amount": c.promised_amount, "currency": case.currency,
            "hold_until": promise.decided_on(ctx.policy), "status": domain.PROMISE_OPEN,
            "paid_amount": None, "decided_on": None, "event_id": None,
        })  # fmt: skip
        _keep_promises(ctx, c.account_id)  # paid already since contacted_on?
    elif c.outcome == domain.DISPUTE:
        dispute = domain.Dispute(c.contacted_on)
        repo.add_dispute({
            "contact_id": c.contact_id, "case_id": case.case_id, "account_id": c.account_id,
            "contacted_on": c.contacted_on, "hold_through": dispute.holds_through(ctx.policy),
            "resolved_by": None, "resolved_on": None,
        })  # fmt: skip
    elif c.outcome == domain.DISPUTE_RESOLVED:
        for d in open_disputes:
            repo.resolve_dispute(d["contact_id"], c.contact_id, c.contacted_on)


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
    "contact.recorded": record_contact,
}

#: What each handler needs preloaded (event type -> the keys the batch repository reads
#: for it, once per batch: ``CollectionsRepository.load``). A charge-off also reads the
#: account's plans when it needs them (``repo.open_installments``).
PRELOAD: dict[str, Callable[[Envelope], Keys]] = {
    "account.delinquency": lambda e: Keys(accounts=(e.data.account_id,)),
    # the account too: a payment of the plan in the same batch may keep its promises
    "plan.created": lambda e: Keys(plans=(e.data.plan_id,), accounts=(e.data.account_id,)),
    "installment.paid": lambda e: Keys(
        plans=(e.data.plan_id,),
        installments=((e.data.plan_id, e.data.seq),),
        payer_plans=(e.data.plan_id,),
    ),
    "plan.completed": lambda e: Keys(plans=(e.data.plan_id,)),
    "plan.cancelled": lambda e: Keys(plans=(e.data.plan_id,)),
    "plan.adjusted": lambda e: Keys(plans=(e.data.plan_id,), schedules=(e.data.plan_id,)),
    "contact.recorded": lambda e: Keys(
        accounts=tuple({e.data.account_id, account_of_case(e.data.case_id)}),
        contacts=(e.data.contact_id,),
        payments=(e.data.account_id,),
    ),
}
