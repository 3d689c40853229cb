"""Reminder rules (CONTRACT §5 "Reminders"): plain Python, no Kafka, no SQL, no wall clock.

For each unpaid installment a reminder goes out ``offset`` days before its due date
for each configured offset (default 7, 3, 1 and 0 = the due date), each at most once,
on the account's channel. Dates are business dates from events.

The rule, precisely. With ``d = (due_date - business_date).days``:

* nothing when the installment is paid, or when ``d < 0`` (past due: collections' job);
* the offsets whose moment has come are those ``o >= d``; only the **most urgent**
  of them, ``min(o >= d)``, may be sent. The larger ones are stale: never sent, now or
  later (``superseded_offsets`` names them, so the caller records them as skipped);
* it is sent only if it has not been handled (sent or skipped) yet, and no more
  urgent offset has been handled either (a reminder never goes out after a more
  urgent one, even if business dates were replayed out of order).

After an outage that jumps from 8 days before due to 2, only the 3-day reminder goes;
a jump straight to the due date sends only the due-today one. A reminder carries the
real ``days_before_due`` (2 there) and the template of the most urgent slot reached (the
3-day one): contract 5.1, "Clarified".

**Adjusted plans** (second release). ``plan.adjusted`` replaces the plan's unpaid
installments by its schedule: an installment not in the latest adjusted schedule gets no
reminder, and one in it is due at most its adjusted ``amount`` (``amount_due``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from services.reminders.policy import DEFAULT_POLICY, RemindersPolicy


def days_before_due(due_date: date, business_date: date) -> int:
    """Days from the business date to the due date (negative once past due)."""
    return (due_date - business_date).days


def reminder_to_send(
    due_date: date,
    business_date: date,
    already_sent_offsets: Iterable[int],
    paid: bool,
    policy: RemindersPolicy = DEFAULT_POLICY,
) -> int | None:
    """The offset of the one reminder to send on ``business_date``, or None.

    ``already_sent_offsets``: the offsets already handled for this installment, i.e.
    sent **or** recorded as skipped (superseded).
    """
    if paid:
        return None
    days_before = days_before_due(due_date, business_date)
    if days_before < 0:
        return None
    come = [offset for offset in policy.offsets if offset >= days_before]
    if not come:
        return None  # too early: the first reminder's moment has not come
    most_urgent = min(come)
    handled = set(already_sent_offsets)
    if most_urgent in handled:
        return None
    if any(offset < most_urgent for offset in handled):
        return None  # a more urgent one already went out: this one is stale
    return most_urgent


def superseded_offsets(
    sent_offset: int,
    already_sent_offsets: Iterable[int],
    policy: RemindersPolicy = DEFAULT_POLICY,
) -> frozenset[int]:
    """The offsets larger than ``sent_offset`` not yet handled: they will never be sent
    and the caller records them as skipped."""
    handled = set(already_sent_offsets)
    return frozenset(o for o in policy.offsets if o > sent_offset and o not in handled)


def reminder_id(plan_id: str, seq: int, offset: int) -> str:
    """Deterministic reminder id: one per (plan, installment, offset), the same on replay."""
    return f"rem:{plan_id}:{seq}:{offset}"


def template_for(offset: int, policy: RemindersPolicy = DEFAULT_POLICY) -> str:
    """The notification template of the reminder ``offset`` days before due."""
    return policy.template_for(offset)


@dataclass(frozen=True)
class ReminderDecision:
    """What to do for one installment on one business date.

    ``offset`` None: send nothing. Otherwise send the reminder ``offset`` days before due
    with ``template``, and record ``offset`` as sent and ``skipped`` as skipped.
    """

    offset: int | None
    template: str | None
    days_before_due: int
    skipped: frozenset[int]


def decide_reminder(
    due_date: date,
    business_date: date,
    already_sent_offsets: Iterable[int],
    paid: bool,
    policy: RemindersPolicy = DEFAULT_POLICY,
) -> ReminderDecision:
    """``reminder_to_send`` plus the template and the offsets it supersedes."""
    handled = frozenset(already_sent_offsets)
    offset = reminder_to_send(due_date, business_date, handled, paid, policy)
    days_before = days_before_due(due_date, business_date)
    if offset is None:
        return ReminderDecision(None, None, days_before, frozenset())
    return ReminderDecision(
        offset,
        policy.template_for(offset),
        days_before,
        superseded_offsets(offset, handled, policy),
    )


# ------------------------------------------------------------------ adjusted plans


def amount_due(
    seq: int, reported: Decimal, adjusted: Mapping[int, Decimal] | None
) -> Decimal | None:
    """What a reminder for installment ``seq`` asks, or None when it gets no reminder.

    ``reported``: the due-soon's ``amount_outstanding``. ``adjusted``: the plan's latest
    adjusted schedule (seq -> amount; None when the plan was never adjusted). An
    installment left out of the adjusted schedule gets none; one in it is due at most
    its adjusted amount (a due-soon computed before the adjustment is capped; one after
    it, lowered further by a partial payment, is kept). Nothing due (0): no reminder.
    """
    amount = reported
    if adjusted is not None:
        if seq not in adjusted:
            return None
        amount = min(reported, adjusted[seq])
    return amount if amount > 0 else None


# ------------------------------------------------------------------ plausibility of business time

# The rule and its confirmation header are the contract's, written once in
# schemas.business_days (offers, reminders and the re-drive tool share them).
