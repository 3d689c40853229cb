"""Purchases: the rules for recording card purchases and refunds.

Plain Python: no Kafka, no SQL. The handler loads the facts, asks these
functions what to do, and writes what they decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Literal

from services.purchases.policy import DEFAULT_POLICY, PurchasesPolicy

#: The dates a purchase or a refund may carry (``posted_at`` / ``refunded_at``, taken in
#: UTC), whatever the business date. The schema accepts any date from year 1 to 9999, but
#: the services downstream compute with them (offers: due dates = posting date + up to 36
#: months, offer expiry = + 30 days) and would overflow near the ends of the calendar; a
#: purchase outside this window is dead-lettered here, never recorded. The offers service
#: applies the same window by default (its policy's ``earliest_event_date`` /
#: ``latest_event_date``) and a narrower one around its last closed business date.
EARLIEST_EVENT_DATE = date(2000, 1, 1)
LATEST_EVENT_DATE = date(2199, 12, 31)


@dataclass(frozen=True)
class RecordedPurchase:
    """What the service remembers of a purchase."""

    purchase_id: str
    account_id: str
    amount: Decimal
    currency: str
    refunded_total: Decimal = Decimal("0")

    @property
    def refundable(self) -> Decimal:
        return self.amount - self.refunded_total


PurchaseDecision = Literal["record", "duplicate"]


def decide_purchase(
    existing: RecordedPurchase | None, account_id: str, amount: Decimal, currency: str
) -> PurchaseDecision:
    """Record a new purchase; ignore a repeat of one already recorded (dedupe on purchase_id).

    A repeat that disagrees with the recorded facts is not a harmless duplicate:
    it is rejected so that a human looks at it.
    """
    if existing is None:
        return "record"
    if (existing.account_id, existing.amount, existing.currency) != (account_id, amount, currency):
        raise Refused("purchase_id already recorded with a different account, amount or currency")
    return "duplicate"


class Refused(ValueError):
    """The refund (or a conflicting purchase) cannot be recorded; the reason says why."""


@dataclass(frozen=True)
class RefundOutcome:
    refunded_total: Decimal
    fully_refunded: bool


def decide_refund(
    purchase: RecordedPurchase | None, account_id: str, amount: Decimal, currency: str
) -> RefundOutcome:
    """A refund must name a recorded purchase and may not exceed what is left to refund."""
    if purchase is None:
        raise Refused("refund names a purchase that was never recorded")
    if purchase.account_id != account_id:
        raise Refused("refund account differs from the purchase's account")
    if purchase.currency != currency:
        raise Refused("refund currency differs from the purchase's currency")
    if amount > purchase.refundable:
        raise Refused(
            f"refund of {amount} {currency} exceeds the {purchase.refundable} {currency}"
            " left to refund"
        )
    total = purchase.refunded_total + amount
    return RefundOutcome(refunded_total=total, fully_refunded=total == purchase.amount)


def check_event_date(field: str, on: date) -> None:
    """Raise :class:`Refused` (reason ``date_out_of_range: ...``, naming only the field and
    the dates) when `on` is outside [EARLIEST_EVENT_DATE, LATEST_EVENT_DATE]."""
    # (each date stands between words: two dates joined by separators could look like a
    # card number to the PAN redaction of the error.reason header)
    if on < EARLIEST_EVENT_DATE:
        raise Refused(
            f"date_out_of_range: {field} {on.isoformat()} is before the earliest accepted"
            f" date {EARLIEST_EVENT_DATE.isoformat()}"
        )
    if on > LATEST_EVENT_DATE:
        raise Refused(
            f"date_out_of_range: {field} {on.isoformat()} is after the latest accepted"
            f" date {LATEST_EVENT_DATE.isoformat()}"
        )


# --- fraud and velocity screening (CONTRACT §5.1) -----------------------------------

#: The flags, in the order the contract lists them (and events carry them).
Flag = Literal["velocity", "amount_spike", "cnp_new_merchant"]
VELOCITY: Flag = "velocity"
AMOUNT_SPIKE: Flag = "amount_spike"
CNP_NEW_MERCHANT: Flag = "cnp_new_merchant"
FLAG_ORDER: tuple[Flag, ...] = (VELOCITY, AMOUNT_SPIKE, CNP_NEW_MERCHANT)


@dataclass(frozen=True)
class ScreeningFacts:
    """What the service knows of an account before screening one of its purchases.

    Only the account's *recorded* purchases appear here (flagged or not; a dead-lettered
    one never): ``card_times`` the posting times kept for the purchase's card (at least
    every one within the velocity window of the card's latest purchase: see
    :func:`card_times_kept_from`), ``history`` the account's last amounts, oldest first
    (only the last ``policy.spike_history`` count), ``merchant_seen`` whether the account
    bought from the purchase's merchant before.
    """

    card_times: tuple[datetime, ...] = ()
    history: tuple[Decimal, ...] = ()
    merchant_seen: bool = False


def median(values: Sequence[Decimal]) -> Decimal:
    """The median; of an even count, the mean of the two middle values (exact)."""
    if not values:
        raise ValueError("the median of nothing")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def is_velocity(
    card_times: Iterable[datetime], posted_at: datetime, policy: PurchasesPolicy = DEFAULT_POLICY
) -> bool:
    """The purchase is the ``velocity_count``-th or later on its card within the window:
    earlier-recorded purchases posted in [posted_at - window, posted_at] (both ends
    included), plus this one, reach the count. A purchase recorded before but posted
    after this one is not "before" it and does not count."""
    start = posted_at - timedelta(minutes=policy.velocity_window_minutes)
    within = sum(1 for t in card_times if start <= t <= posted_at)
    return within + 1 >= policy.velocity_count


def is_amount_spike(
    history: Sequence[Decimal], amount: Decimal, policy: PurchasesPolicy = DEFAULT_POLICY
) -> bool:
    """amount >= spike_min_amount and >= spike_factor x the median of the account's last
    ``spike_history`` recorded amounts, when there are at least ``spike_min_history``."""
    recent = list(history)[-policy.spike_history :]
    if len(recent) < policy.spike_min_history or amount < policy.spike_min_amount:
        return False
    return amount >= policy.spike_factor * median(recent)


def is_cnp_new_merchant(
    channel: str, amount: Decimal, merchant_seen: bool, policy: PurchasesPolicy = DEFAULT_POLICY
) -> bool:
    """A card-not-present channel, amount >= cnp_min_amount, a merchant never bought from."""
    return channel in policy.cnp_channels and amount >= policy.cnp_min_amount and not merchant_seen


def screen_purchase(
    amount: Decimal,
    channel: str,
    posted_at: datetime,
    facts: ScreeningFacts,
    policy: PurchasesPolicy = DEFAULT_POLICY,
) -> list[Flag]:
    """The purchase's risk flags, in contract order (empty: clean). Never a refusal."""
    flags: list[Flag] = []
    if is_velocity(facts.card_times, posted_at, policy):
        flags.append(VELOCITY)
    if is_amount_spike(facts.history, amount, policy):
        flags.append(AMOUNT_SPIKE)
    if is_cnp_new_merchant(channel, amount, facts.merchant_seen, policy):
        flags.append(CNP_NEW_MERCHANT)
    return flags


def card_times_kept_from(
    card_times: Iterable[datetime], policy: PurchasesPolicy = DEFAULT_POLICY
) -> datetime | None:
    """The earliest posting time worth keeping for a card (None: no time at all): its
    latest one minus the window. A purchase posted at or after the latest one (the card
    system publishes a card's purchases in order) only ever looks back that far, so
    pruning older times changes no flag; a purchase arriving later than that (posted
    more than a window before the card's latest) is screened against the times kept,
    which may miss a velocity but never invents one."""
    latest = max(card_times, default=None)
    if latest is None:
        return None
    return latest - timedelta(minutes=policy.velocity_window_minutes)


def history_after(
    history: Sequence[Decimal], amount: Decimal, policy: PurchasesPolicy = DEFAULT_POLICY
) -> tuple[Decimal, ...]:
    """The account's amount history once ``amount`` is recorded: its last
    ``spike_history`` amounts, oldest first."""
    return (*history, amount)[-policy.spike_history :]
