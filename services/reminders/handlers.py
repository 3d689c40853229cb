"""Reminders service: what happens when each event arrives.

The HANDLERS table at the bottom is the index: event type -> reaction.
Every handler has the same shape: load, ask the domain, write, emit.

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
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import func, insert, select, update

from schemas import Envelope
from schemas.payloads import (
    AccountUpserted,
    BusinessDayClosed,
    InstallmentDueSoon,
    InstallmentPaid,
    PlanCancelled,
    PlanCompleted,
    ReminderRequested,
)
from services.reminders import domain
from services.reminders.tables import (
    ACCOUNT_UNKNOWN,
    ACTIVE,
    CANCELLED,
    COMPLETED,
    SENT,
    SKIPPED,
    SUPERSEDED,
    accounts,
    business_days,
    installments,
    plans,
    reminders,
)
from shared.runtime import Context, Defer, Handler

BUSINESS_DAYS = "card.business-days.v1"
ACCOUNTS = "card.accounts.v1"


def _account(ctx: Context, account_id: str) -> Any:
    return ctx.session.execute(
        select(accounts.c.channel, accounts.c.contact_ref).where(
            accounts.c.account_id == account_id
        )
    ).first()


def _installment(ctx: Context, plan_id: str, seq: int) -> Any:
    return ctx.session.execute(
        select(installments.c.paid, installments.c.last_business_date).where(
            installments.c.plan_id == plan_id, installments.c.seq == seq
        )
    ).first()


def _plan_closed(ctx: Context, plan_id: str) -> bool:
    status = ctx.session.execute(
        select(plans.c.status).where(plans.c.plan_id == plan_id)
    ).scalar_one_or_none()
    return status is not None and status != ACTIVE


def _handled_offsets(ctx: Context, plan_id: str, seq: int) -> set[int]:
    rows = ctx.session.execute(
        select(reminders.c.offset_days).where(
            reminders.c.plan_id == plan_id, reminders.c.seq == seq
        )
    )
    return {row[0] for row in rows}


def _business_clock(ctx: Context) -> date | None:
    """The newest business date closed (None before the first ``business-day.closed``)."""
    return ctx.session.execute(select(func.max(business_days.c.business_date))).scalar()


#: Log-end offsets of a topic noted when an event first had to wait for it, per (group,
#: topic, event id): the wait is for the records published before, not for every one
#: published since (steady traffic on the topic would keep it waiting). Lost on restart:
#: the next look takes a new, later snapshot, which is still correct.
_WAITING_FOR: dict[tuple[str, str, str], dict[int, int]] = {}


def _unread(ctx: Context, topic: str) -> bool:
    """Records of ``topic`` published before this event was first looked at are unread."""
    assert ctx.event is not None
    key = (ctx.runner.group, ctx.settings.topic(topic), ctx.event.id)
    ends = _WAITING_FOR.get(key)
    if ends is None:
        ends = _WAITING_FOR[key] = ctx.end_offsets(topic)
    stored = ctx.stored_offsets(topic)
    if any(stored.get(p, 0) < end for p, end in ends.items()):
        return True
    del _WAITING_FOR[key]
    return False


def advance_business_day(ctx: Context, event: Envelope) -> None:
    """business-day.closed -> the business clock (due-soons of older days are stale)."""
    b: BusinessDayClosed = event.data
    if ctx.session.execute(
        select(business_days.c.business_date).where(
            business_days.c.business_date == b.business_date
        )
    ).first():
        return
    ctx.session.execute(
        insert(business_days).values(business_date=b.business_date, event_id=event.id)
    )


def remember_account(ctx: Context, event: Envelope) -> None:
    """account.upserted -> keep the account's channel and contact reference (latest wins)."""
    a: AccountUpserted = event.data
    values = {
        "channel": a.contact.channel,
        "locale": a.contact.locale,
        "contact_ref": a.contact.contact_ref,
        "status": a.status,
        "event_id": event.id,
    }
    if _account(ctx, a.account_id) is None:
        ctx.session.execute(insert(accounts).values(account_id=a.account_id, **values))
    else:
        ctx.session.execute(
            update(accounts).where(accounts.c.account_id == a.account_id).values(**values)
        )


def request_reminder(ctx: Context, event: Envelope) -> None:
    """installment.due-soon -> the one most urgent reminder still current, at most once."""
    d: InstallmentDueSoon = event.data
    account_id = event.subject
    known = _installment(ctx, d.plan_id, d.seq)
    clock = _business_clock(ctx)
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
    if (clock is None or d.business_date > clock) and _unread(ctx, BUSINESS_DAYS):
        raise Defer(f"business day {d.business_date.isoformat()} not read yet")
    handled = _handled_offsets(ctx, d.plan_id, d.seq)
    # A paid installment or a finished plan gets no reminder.
    settled = bool(known is not None and known.paid) or _plan_closed(ctx, d.plan_id)
    decision = domain.decide_reminder(d.due_date, d.business_date, handled, settled, ctx.policy)
    contact = _account(ctx, account_id) if decision.offset is not None else None
    if decision.offset is not None and contact is None and _unread(ctx, ACCOUNTS):
        raise Defer(f"account {account_id} not read yet")

    _record_due_soon(ctx, d, account_id, exists=known is not None)
    if decision.offset is None:
        return
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
        ReminderRequested(
            reminder_id=domain.reminder_id(d.plan_id, d.seq, decision.offset),
            account_id=account_id,
            plan_id=d.plan_id,
            seq=d.seq,
            due_date=d.due_date,
            amount_due=d.amount_outstanding,
            currency=d.currency,
            days_before_due=decision.offset,
            channel=contact.channel,
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
    )


def _record_due_soon(ctx: Context, d: InstallmentDueSoon, account_id: str, exists: bool) -> None:
    values = {
        "due_date": d.due_date,
        "amount_outstanding": d.amount_outstanding,
        "currency": d.currency,
        "last_business_date": d.business_date,
    }
    if exists:
        ctx.session.execute(
            update(installments)
            .where(installments.c.plan_id == d.plan_id, installments.c.seq == d.seq)
            .values(**values)
        )
    else:
        ctx.session.execute(
            insert(installments).values(
                plan_id=d.plan_id, seq=d.seq, account_id=account_id, paid=False, **values
            )
        )


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
) -> None:
    assert ctx.event is not None
    ctx.session.execute(
        insert(reminders).values(
            plan_id=d.plan_id,
            seq=d.seq,
            offset_days=offset,
            account_id=account_id,
            status=status,
            reason=reason,
            reminder_id=domain.reminder_id(d.plan_id, d.seq, offset),
            business_date=d.business_date,
            due_date=d.due_date,
            channel=channel,
            template=template,
            amount_due=d.amount_outstanding if status == SENT else None,
            currency=d.currency,
            cause_event_id=ctx.event.id,
            event_id=event_id,
        )
    )


def mark_installment_paid(ctx: Context, event: Envelope) -> None:
    """installment.paid -> that installment gets no more reminders."""
    p: InstallmentPaid = event.data
    if _installment(ctx, p.plan_id, p.seq) is None:
        ctx.session.execute(
            insert(installments).values(
                plan_id=p.plan_id,
                seq=p.seq,
                account_id=event.subject,
                paid=True,
                paid_on=p.paid_on,
                currency=p.currency,
            )
        )
    else:
        ctx.session.execute(
            update(installments)
            .where(installments.c.plan_id == p.plan_id, installments.c.seq == p.seq)
            .values(paid=True, paid_on=p.paid_on)
        )


def _close_plan(ctx: Context, event: Envelope, plan_id: str, status: str) -> None:
    exists = ctx.session.execute(select(plans.c.plan_id).where(plans.c.plan_id == plan_id)).first()
    if exists:
        ctx.session.execute(
            update(plans).where(plans.c.plan_id == plan_id).values(status=status, event_id=event.id)
        )
    else:
        ctx.session.execute(
            insert(plans).values(
                plan_id=plan_id, account_id=event.subject, status=status, event_id=event.id
            )
        )


def stop_completed_plan(ctx: Context, event: Envelope) -> None:
    """plan.completed -> no more reminders for the plan."""
    c: PlanCompleted = event.data
    _close_plan(ctx, event, c.plan_id, COMPLETED)


def stop_cancelled_plan(ctx: Context, event: Envelope) -> None:
    """plan.cancelled (refund or early payoff) -> no more reminders for the plan."""
    c: PlanCancelled = event.data
    _close_plan(ctx, event, c.plan_id, CANCELLED)


HANDLERS: dict[str, Handler] = {
    "business-day.closed": advance_business_day,
    "account.upserted": remember_account,
    "installment.due-soon": request_reminder,
    "installment.paid": mark_installment_paid,
    "plan.completed": stop_completed_plan,
    "plan.cancelled": stop_cancelled_plan,
}
