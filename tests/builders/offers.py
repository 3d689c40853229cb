"""What the offers tests build.

Raw messages the offers service consumes that tests/builders/messages.py has no builder
for (purchases.recorded.v1, points.ledger.v1), plus a small driver over the harness:
shared by the offers handler tests and the offers integration tests. And, for the offers
domain tests, plan states and an independent IRR, and Hypothesis strategies for amounts
and dates.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from services.offers.domain import InstallmentState, build_schedule, total_fee
from tests.builders import messages as f
from tests.support import envelope

RECORDED = "purchases.recorded.v1"
ACCOUNTS = "card.accounts.v1"
DECISIONS = "installments.decisions.v1"
PAYMENTS = "card.payments.v1"
DAYS = "card.business-days.v1"
POINTS = "points.ledger.v1"
OFFERS = "installments.offers.v1"
PLANS = "installments.plans.v1"
FRAUD = "fraud.reviews.v1"


def purchase_recorded(account_id: str, amount: str = "1200.00", **kw: Any) -> dict[str, Any]:
    """purchase.recorded as the purchases service writes it (the purchase.posted fields)."""
    posted = f.purchase(account_id, amount, **kw)
    return envelope(
        "purchase.recorded",
        account_id,
        posted["data"],
        event_id=kw.get("event_id"),
        time_=posted["time"],
        source="purchases",
    )


def refund_recorded(
    account_id: str,
    purchase_id: str,
    amount: str,
    *,
    refunded_total: str | None = None,
    fully_refunded: bool = False,
    refund_id: str | None = None,
    refunded_at: str = "2026-01-20T10:00:00Z",
) -> dict[str, Any]:
    data = f.refund(account_id, purchase_id, amount, refund_id=refund_id, refunded_at=refunded_at)[
        "data"
    ]
    data["refunded_total"] = refunded_total or amount
    data["fully_refunded"] = fully_refunded
    return envelope("refund.recorded", account_id, data, time_=refunded_at, source="purchases")


def points_redeemed(
    account_id: str, plan_id: str, points: int, balance_after: int = 0
) -> dict[str, Any]:
    return envelope(
        "points.redeemed",
        account_id,
        {
            "account_id": account_id,
            "points": points,
            "balance_after": balance_after,
            "reason": "fee_redemption",
            "plan_id": plan_id,
        },
        source="points",
    )


def review_closed(
    account_id: str, purchase_id: str, outcome: str = "cleared", closed_on: str = "2026-03-10"
) -> dict[str, Any]:
    """purchase.review-closed as the fraud team writes it (fraud.reviews.v1)."""
    return envelope(
        "purchase.review-closed",
        account_id,
        {
            "purchase_id": purchase_id,
            "account_id": account_id,
            "outcome": outcome,
            "closed_on": closed_on,
        },
        time_=f"{closed_on}T16:00:00Z",
        source="fraud-team",
    )


def pre_approval(
    limit: str = "5000.00", valid_to: str = "2026-02-28", fee_discount: str = "0.20"
) -> dict[str, Any]:
    """account.upserted's pre_approval (second release)."""
    return {"limit": limit, "valid_to": valid_to, "fee_discount": fee_discount}


def auto_convert(threshold: str = "1000.00", tenor: int = 6) -> dict[str, Any]:
    return {"enabled": True, "threshold": threshold, "tenor_months": tenor}


def plan(
    h: Any, acc: str = "acc-1", amount: str = "1200.00", tenor: int = 3,
    posted_at: str = "2026-01-15T10:00:00Z",
) -> Any:  # fmt: skip
    """A plan via offer + acceptance (the harness ``h``). 1200.00 x 3 posted Jan 15:
    400.00 + 9.00 due Feb 15, Mar 15, Apr 15."""
    h.events(ACCOUNTS, f.account(acc))
    [made] = h.events(RECORDED, purchase_recorded(acc, amount, posted_at=posted_at))
    [created] = h.events(DECISIONS, f.offer_accepted(acc, made.data.offer_id, tenor))
    return created.data


# --------------------------------------------------------------------------- domain

D = Decimal


def plan_states(
    plan_id: str,
    principal: str | Decimal,
    tenor: int,
    posted_on: date,
    rate: str = "0.006",
    plan_order: int = 0,
) -> list[InstallmentState]:
    """A fresh plan's installments, nothing paid."""
    principal = D(principal)
    fee = total_fee(principal, D(rate), tenor)
    return [
        InstallmentState(plan_id, i.seq, i.due_date, i.principal, i.fee, plan_order=plan_order)
        for i in build_schedule(principal, fee, tenor, posted_on)
    ]


def float_irr_percent(principal: float, amounts: list[float]) -> float:
    """12 × the monthly IRR in percent, by plain float bisection on the NPV (written
    independently of the domain's Decimal Newton solver)."""

    def npv(r: float) -> float:
        return -principal + sum(a / (1 + r) ** k for k, a in enumerate(amounts, start=1))

    low, high = -0.5, 1.0  # npv decreasing in r: npv(low) > 0 > npv(high)
    for _ in range(200):
        mid = (low + high) / 2
        if npv(mid) > 0:
            low = mid
        else:
            high = mid
    return (low + high) / 2 * 1200


def money(minor_digits: int = 2, high: int = 10**9) -> st.SearchStrategy[Decimal]:
    """Amounts from one minor unit (0.01) to `high` whole units, on the minor unit."""
    return st.integers(1, high * 10**minor_digits).map(lambda units: D(units).scaleb(-minor_digits))


dates = st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31))
