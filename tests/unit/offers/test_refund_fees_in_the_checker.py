"""The invariant checker (shared/ops/invariants.py) and a refund that gives back fees
paid early: the money checks must not call that a violation (offers' fix: a refund
cancelling a plan returns the fees already paid on installments not yet due)."""

from __future__ import annotations

from typing import Any

from schemas import new_event
from shared.ops.invariants import Report, check_money_paid
from tests.builders.invariants import (
    T0,
    D,
    card_event,
    money_report,
    paid,
    payment,
    plan_created,
)


def refund_cancelled(cause, plan_id: str, principal_returned: str, fee_returned: str):
    return new_event(
        "plan.cancelled",
        subject="acc-1",
        data={
            "plan_id": plan_id,
            "reason": "refund",
            "principal_returned": D(principal_returned),
            "fee_returned": D(fee_returned),
            "currency": "EUR",
        },
        source="offers",
        cause=cause,
        rule="cancelled",
    )


def full_refund(purchase_id: str, amount: str) -> Any:
    """refund.recorded of the whole purchase (acc-1, EUR)."""
    return card_event(
        "refund.recorded",
        "ref-1",
        refund_id="ref-1",
        purchase_id=purchase_id,
        account_id="acc-1",
        amount=D(amount),
        currency="EUR",
        refunded_at=T0,
        refunded_total=D(amount),
        fully_refunded=True,
    )


def refund_then_spend_credit(
    lines: list[tuple[str, str]],
    received: str,
    paid_early: str,
    purchase: str,
    returned: tuple[str, str],
) -> Report:
    """A payment of ``received`` pays ``paid_early`` on plan p1's (``lines``) installment 1
    before it is due; a full refund of its ``purchase`` amount cancels it, returning
    ``returned`` (principal, fees); the credit then pays ``paid_early`` on plan p2's
    installment 1 (same lines)."""
    first = plan_created("p1", "pur-1", lines)
    second = plan_created("p2", "pur-2", lines)
    pay = payment("pay-1", received)
    refund = full_refund("pur-1", purchase)
    rep = Report()
    check_money_paid(
        rep,
        {
            "card.payments.v1": [pay],
            "purchases.recorded.v1": [refund],
            "installments.plans.v1": [
                first,
                paid(pay, "p1", 1, paid_early),
                refund_cancelled(refund, "p1", *returned),
                second,
                paid(second, "p2", 1, paid_early),  # the end of day spends the credit
            ],
        },
    )
    return rep


def test_fees_paid_early_and_returned_by_a_refund_are_no_violation():
    # 1000.00 over 3 months, 7.50 a month; 341.84 pays #1 (340.84) and 1.00 of #2's fee
    # early; a full refund returns 666.66 of principal and all 22.50 of fees (8.50 paid);
    # the 341.84 of credit (333.34 + 8.50) then pays a second plan's first installment
    rep = refund_then_spend_credit(
        [("333.34", "7.50"), ("333.33", "7.50"), ("333.33", "7.50")],
        "341.84",
        "340.84",
        "1000.00",
        ("666.66", "22.50"),
    )
    assert rep.violations == []
    assert rep.checked["plan paid at most what it was due"] == 2


def test_a_plan_paid_more_than_its_principal_left_after_a_refund_is_still_flagged():
    plan = plan_created("p1", "pur-1", [("100.00", "1.50"), ("100.00", "1.50")])
    pay = payment("pay-1", "500.00")
    rep = money_report(
        [pay],
        [
            plan,
            refund_cancelled(plan, "p1", "200.00", "3.00"),
            paid(pay, "p1", 1, "3.01"),  # at most the 3.00 of fees may still be paid
        ],
    )
    assert any(v.startswith("plan paid at most what it was due") for v in rep.violations)


def test_returned_fees_spent_again_are_within_what_the_account_received():
    # fees larger than the principal left (a long plan prepaid but for its last
    # installment gives the same): 250.00 pays #1 early; the full refund returns 100.00
    # of principal, 100.00 paid (credit) and 300.00 of fees, 150.00 of them paid (credit);
    # the 250.00 of credit then pays a second plan
    rep = refund_then_spend_credit(
        [("100.00", "150.00"), ("100.00", "150.00")],
        "250.00",
        "250.00",
        "200.00",
        ("100.00", "300.00"),
    )
    assert rep.violations == []  # 500.00 applied: 250.00 + 200.00 refunded + 150.00 back
