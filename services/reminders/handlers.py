"""Reminders service: what happens when each event arrives.

The HANDLERS table at the bottom is the index: event type -> reaction.
Every handler has the same shape: read the batch view (``ctx.repo``, bulk-loaded by
:mod:`services.reminders.repository`), ask the domain, record the change, emit.

Decisions (beyond the domain rules in ``domain.py``):

- **Current vs stale.** offers emits ``installment.due-soon`` at each end of day for
  unpaid installments due within 7 days. A due-soon is *stale*, and ignored (logged,
  nothing sent or recorded), when its ``business_date`` is older than

  * the newest due-soon already seen for that installment (out of order, re-published),
  * or the service's business clock: the newest ``business-day.closed`` it has read
    from ``card.business-days.v1``. This is what keeps a backlog from sending a burst:
    after an outage of offers or of this service, the due-soons of the missed days come
    in one after another, but only the ones of the newest closed day are current, so
    the customer gets only the most urgent reminder still due (the domain records the
    ones it supersedes as skipped).

  A due-soon for a business date *newer* than the clock while this service still has
  unread ``business-day.closed`` records (a restart with a backlog: the day closes are
  on another topic and may be read after the due-soons) is deferred until they are
  read (``Defer``: the offers barrier pattern, ``stored_offsets`` vs ``end_offsets``).
  When every day close is read, it is processed (the clock is then simply behind).
  A due-soon for the same business date again (a re-run end of day) is harmless: the
  offset is already handled.
- **Unknown account.** A reminder needs the account's channel and contact reference
  (``account.upserted`` on ``card.accounts.v1``, another topic: no order between them).
  When a due-soon finds the account unknown while this service has unread records on
  ``card.accounts.v1`` (a first start, a restart with a backlog), it is deferred until
  they are read, like the day closes above. When every account record is read and the
  account is still unknown, the reminder that was due is recorded as ``skipped`` with
  reason ``account_unknown`` and a warning is logged: waiting longer for an account
  that may never come would block every other account of the partition. The next,
  more urgent offset goes out normally once the account is known; a skipped one is
  never sent late.
- **Plans.** ``plan.completed`` / ``plan.cancelled`` stop every further reminder of the
  plan; ``installment.paid`` stops the installment's. The account id is the event's
  subject (the Kafka key).
- **Adjusted plans** (second release). ``plan.adjusted`` (a partial refund) replaces the
  plan's unpaid installments by its schedule (``schedule_lines``; a later adjustment
  replaces it again). A reminder requested after it asks the adjusted amount
  (``domain.amount_due``: at most the schedule's ``amount``, less when the due-soon
  reports less, e.g. after a partial payment); an installment the schedule leaves out
  gets no reminder (nothing is recorded for it: a later adjustment listing it again
  would bring it back). offers publishes the adjustment and its due-soons on the same
  partition, in order, so a due-soon read after the adjustment was computed after it
  or before it (then capped).
- **Late reminders** (contract 5.1, "Clarified"). After an outage the reminder carries the
  real ``days_before_due`` (due date - the due-soon's business date) and the template
  of the most urgent slot reached; its id stays the slot's (``rem:<plan>:<seq>:<slot>``).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from schemas import Envelope
from schemas.business_days import CONFIRM_BUSINESS_DATE_JUMP, CONFIRM_HEADER, business_date_jump
from schemas.payloads import (
    AccountUpserted,
    BusinessDayClosed,
    InstallmentDueSoon,
    InstallmentPaid,
    PlanAdjusted,
    PlanCancelled,
    PlanCompleted,
    ReminderRequested,
)
from services.reminders import domain
from services.reminders.policy import DEFAULT_POLICY, RemindersPolicy
from services.reminders.repository import Account, Installment, Keys, RemindersRepository
from services.reminders.tables import (
    ACCOUNT_UNKNOWN,
    ACTIVE,
    CANCELLED,
    COMPLETED,
    SENT,
    SKIPPED,
    SUPERSEDED,
)
from shared.runtime import Context, Defer, Handler, Reject

BUSINESS_DAYS = "card.business-days.v1"
ACCOUNTS = "card.accounts.v1"


def advance_business_day(ctx: Context, event: Envelope) -> None:
    """business-day.closed -> the business clock (due-soons of older days are stale).

    The same date again changes nothing. An implausible date (``business_date_jump``:
    before the clock, or more than ``policy.max_business_day_jump_days`` after it) is held:
    dead-lettered with reason ``business_date_jump: ...``, the clock unchanged, until an
    operator re-drives it with the header ``installments.confirm: business_date_jump``
    (``installments dlq redrive --confirm business_date_jump``); then it is recorded (a
    confirmed older date leaves the clock, the newest date, where it is). The first
    business date (no clock yet) is accepted as it comes.
    """
    b: BusinessDayClosed = event.data
    repo: RemindersRepository = ctx.repo
    if repo.has_business_day(b.business_date):
        return
    policy: RemindersPolicy = ctx.policy or DEFAULT_POLICY
    clock = repo.business_clock()
    jump = business_date_jump(b.business_date, clock, policy.max_business_day_jump_days)
    if jump is not None:
        confirmed = ctx.headers.get(CONFIRM_HEADER)
        if confirmed != CONFIRM_BUSINESS_DATE_JUMP.encode():
            raise Reject(jump)
        ctx.log.warning("business date jump confirmed by an operator",
                        business_date=b.business_date.isoformat(),
                        clock=clock.isoformat() if clock else None)  # fmt: skip
    repo.add_business_day(b.business_date, event.id)


def remember_account(ctx: Context, event: Envelope) -> None:
    """account.upserted -> keep the account's channel and contact reference (latest wins)."""
    a: AccountUpserted = event.data
    repo: RemindersRepository = ctx.repo
    repo.put_account(Account(
        account_id=a.account_id,
        channel=a.contact.channel,
        locale=a.contact.locale,
        contact_ref=a.contact.contact_ref,
        status=a.status,
        event_id=event.id,
    ))  # fmt: skip


def request_reminder(ctx: Context, event: Envelope) -> None:
    """installment.due-soon -> the one most urgent reminder still current, at most once."""
    d: InstallmentDueSoon = event.data
    account_id = event.subject
    repo: RemindersRepository = ctx.repo
    known = repo.installment(d.plan_id, d.seq)
    clock = repo.business_clock()
    newest = max(
        (x for x in (clock, known.last_business_date if known else None) if x is not None),
        default=None,
    )
    if newest is not None and d.business_date < newest:
        ctx.log.info(
            "stale due-soon ignored",
            plan_id=d.plan_id,
            seq=d.seq,
            business_date=d.business_date.isoformat(),
            newest=newest.isoformat(),
        )
        return
    if (clock is None or d.business_date > clock) and ctx.unread(BUSINESS_DAYS):
        raise Defer(f"business day {d.business_date.isoformat()} not read yet")
    handled = repo.handled_offsets(d.plan_id, d.seq)
    # What is due after the plan's adjustments; None: left out of the adjusted schedule.
    amount = domain.amount_due(d.seq, d.amount_outstanding, repo.adjusted_schedule(d.plan_id))
    # A paid installment, a finished plan or one the adjusted schedule left out gets none.
    settled = (
        bool(known is not None and known.paid)
        or repo.plan_closed(d.plan_id, ACTIVE)
        or amount is None
    )
    decision = domain.decide_reminder(d.due_date, d.business_date, handled, settled, ctx.policy)
    contact = repo.account(account_id) if decision.offset is not None else None
    if decision.offset is not None and contact is None and ctx.unread(ACCOUNTS):
        raise Defer(f"account {account_id} not read yet")

    _record_due_soon(repo, d, account_id, known)
    if decision.offset is None:
        return
    assert amount is not None  # settled otherwise
    for offset in sorted(decision.skipped, reverse=True):
        _record_reminder(ctx, d, account_id, offset, SKIPPED, SUPERSEDED)
    if contact is None:
        ctx.log.warning(
            "reminder skipped: account unknown (no channel or contact reference)",
            account_id=account_id,
            plan_id=d.plan_id,
            seq=d.seq,
            days_before_due=decision.offset,
        )
        _record_reminder(ctx, d, account_id, decision.offset, SKIPPED, ACCOUNT_UNKNOWN)
        return

    assert decision.template is not None
    out = ctx.emit(
        "reminder.requested",
        ReminderRequested.model_construct(
            reminder_id=domain.reminder_id(d.plan_id, d.seq, decision.offset),
            account_id=account_id,
            plan_id=d.plan_id,
            seq=d.seq,
            due_date=d.due_date,
            amount_due=amount,
            currency=d.currency,
            days_before_due=decision.days_before_due,
            channel=contact.channel,  # type: ignore[arg-type]  # a domain str, checked in tests
            template=decision.template,
            contact_ref=contact.contact_ref,
        ),
        rule=f"reminder:{d.plan_id}:{d.seq}:{decision.offset}",
        subject=account_id,
    )
    _record_reminder(
        ctx,
        d,
        account_id,
        decision.offset,
        SENT,
        None,
        channel=contact.channel,
        template=decision.template,
        event_id=out.id,
        amount_due=amount,
    )


def _record_due_soon(
    repo: RemindersRepository, d: InstallmentDueSoon, account_id: str, known: Installment | None
) -> None:
    if known is None:
        repo.add_installment(Installment(
            plan_id=d.plan_id, seq=d.seq, account_id=account_id, paid=False,
            due_date=d.due_date, amount_outstanding=d.amount_outstanding,
            currency=d.currency, last_business_date=d.business_date,
        ))  # fmt: skip
        return
    known.due_date, known.amount_outstanding = d.due_date, d.amount_outstanding
    known.currency, known.last_business_date = d.currency, d.business_date
    repo.installment_changed(known)


def _record_reminder(
    ctx: Context,
    d: InstallmentDueSoon,
    account_id: str,
    offset: int,
    status: str,
    reason: str | None,
    *,
    channel: str | None = None,
    template: str | None = None,
    event_id: str | None = None,
    amount_due: Decimal | None = None,
) -> None:
    assert ctx.event is not None
    repo: RemindersRepository = ctx.repo
    repo.add_reminder({
        "plan_id": d.plan_id,
        "seq": d.seq,
        "offset_days": offset,
        "account_id": account_id,
        "status": status,
        "reason": reason,
        "reminder_id": domain.reminder_id(d.plan_id, d.seq, offset),
        "business_date": d.business_date,
        "due_date": d.due_date,
        "channel": channel,
        "template": template,
        "amount_due": amount_due if status == SENT else None,
        "currency": d.currency,
        "cause_event_id": ctx.event.id,
        "event_id": event_id,
    })  # fmt: skip


def mark_installment_paid(ctx: Context, event: Envelope) -> None:
    """installment.paid -> that installment gets no more reminders."""
    p: InstallmentPaid = event.data
    repo: RemindersRepository = ctx.repo
    known = repo.installment(p.plan_id, p.seq)
    if known is None:
        repo.add_installment(Installment(
            plan_id=p.plan_id, seq=p.seq, account_id=event.subject, paid=True,
            paid_on=p.paid_on, currency=p.currency,
        ))  # fmt: skip
        return
    known.paid, known.paid_on = True, p.paid_on
    repo.installment_changed(known)


def stop_completed_plan(ctx: Context, event: Envelope) -> None:
    """plan.completed -> no more reminders for the plan."""
    c: PlanCompleted = event.data
    repo: RemindersRepository = ctx.repo
    repo.set_plan_status(c.plan_id, event.subject, COMPLETED, event.id)


def stop_cancelled_plan(ctx: Context, event: Envelope) -> None:
    """plan.cancelled (refund or early payoff) -> no more reminders for the plan."""
    c: PlanCancelled = event.data
    repo: RemindersRepository = ctx.repo
    repo.set_plan_status(c.plan_id, event.subject, CANCELLED, event.id)


def follow_adjusted_plan(ctx: Context, event: Envelope) -> None:
    """plan.adjusted -> the plan's unpaid installments and their amounts are its schedule."""
    a: PlanAdjusted = event.data
    repo: RemindersRepository = ctx.repo
    repo.replace_schedule(a.plan_id, [
        {"seq": line.seq, "account_id": a.account_id, "due_date": line.due_date,
         "amount": line.amount, "currency": a.currency, "event_id": event.id}
        for line in a.schedule
    ])  # fmt: skip


HANDLERS: dict[str, Handler] = {
    "business-day.closed": advance_business_day,
    "account.upserted": remember_account,
    "installment.due-soon": request_reminder,
    "installment.paid": mark_installment_paid,
    "plan.completed": stop_completed_plan,
    "plan.cancelled": stop_cancelled_plan,
    "plan.adjusted": follow_adjusted_plan,
}

#: What each handler needs preloaded (event type -> the keys the batch repository reads
#: for it, once per batch: ``RemindersRepository.load``). The account of a due-soon is
#: its subject; a day close is checked against the business clock (a jump is held).
PRELOAD: dict[str, Callable[[Envelope], Keys]] = {
    "business-day.closed": lambda e: Keys(days=(e.data.business_date,), clock=True),
    "account.upserted": lambda e: Keys(accounts=(e.data.account_id,)),
    "installment.due-soon": lambda e: Keys(
        accounts=(e.subject,),
        installments=((e.data.plan_id, e.data.seq),),
        plans=(e.data.plan_id,),
        schedules=(e.data.plan_id,),
        clock=True,
    ),
    "installment.paid": lambda e: Keys(installments=((e.data.plan_id, e.data.seq),)),
    "plan.completed": lambda e: Keys(plans=(e.data.plan_id,)),
    "plan.cancelled": lambda e: Keys(plans=(e.data.plan_id,)),
    "plan.adjusted": lambda e: Keys(schedules=(e.data.plan_id,)),
}
