"""Builders and an independent IRR for the offers domain tests."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import strategies as st

from services.offers.domain import InstallmentState, build_schedule, total_fee

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
