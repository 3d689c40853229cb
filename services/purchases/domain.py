"""Purchases: the rules for recording card purchases and refunds.

Plain Python: no Kafka, no SQL. The handler loads the facts, asks these
functions what to do, and writes what they decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal


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
