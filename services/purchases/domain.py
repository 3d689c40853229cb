"""Purchases: the rules for recording card purchases and refunds.

Plain Python: no Kafka, no SQL. The handler loads the facts, asks these
functions what to do, and writes what they decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal

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
