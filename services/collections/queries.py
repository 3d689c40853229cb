"""Read models and reports of the collections service (for the CLI and ops).

- :func:`open_cases`: the open cases, highest level first, then oldest first.
- :func:`case_history`: a case's append-only history.
- :func:`outstanding_principal`: unpaid installment principal per account and currency
  (active plans only: a charged-off plan's principal was written off, it is not reserved;
  after a ``plan.adjusted``, the adjusted schedule's).
- :func:`risk_reserve`: the risk reserve per currency and bucket
  (``domain.risk_reserve`` over each account's outstanding principal and latest DPD).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import Engine, func, select

from services.collections import domain
from services.collections.policy import DEFAULT_POLICY, CollectionsPolicy
from services.collections.tables import (
    ACTIVE,
    OPEN,
    case_events,
    cases,
    plan_installments,
    plans,
    positions,
)


@dataclass(frozen=True)
class OpenCase:
    case_id: str
    account_id: str
    level: int
    action: str | None
    bucket: str | None
    days_past_due: int
    overdue_amount: Decimal
    currency: str
    opened_on: date
    business_date: date  # of the latest report applied


#: The columns of an :class:`OpenCase` (the CLI's table and the console's queue read them).
OPEN_CASE_COLUMNS = (
    cases.c.case_id,
    cases.c.account_id,
    cases.c.level,
    cases.c.action,
    cases.c.bucket,
    cases.c.days_past_due,
    cases.c.overdue_amount,
    cases.c.currency,
    cases.c.opened_on,
    cases.c.business_date,
)


def open_cases(engine: Engine) -> list[OpenCase]:
    """Open cases by level (highest first), then oldest first (opened_on, case_id)."""
    query = (
        select(*OPEN_CASE_COLUMNS)
        .where(cases.c.status == OPEN)
        .order_by(cases.c.level.desc(), cases.c.opened_on, cases.c.case_id)
    )
    with engine.connect() as conn:
        return [OpenCase(**row._mapping) for row in conn.execute(query)]


def case_history(engine: Engine, case_id: str) -> list[dict[str, object]]:
    """Every recorded step of a case, in order (opened, raised ..., resolved/closed)."""
    query = select(case_events).where(case_events.c.case_id == case_id).order_by(case_events.c.seq)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def outstanding_principal(engine: Engine) -> dict[tuple[str, str], Decimal]:
    """(account_id, currency) -> principal of the unpaid installments of active plans."""
    unpaid = plan_installments.join(plans, plans.c.plan_id == plan_installments.c.plan_id)
    where = (
        plans.c.status == ACTIVE,
        plan_installments.c.paid.is_(False),
        plan_installments.c.removed.is_(False),
    )
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":  # money is text there: add up in Python, exactly
            rows = conn.execute(
                select(plans.c.account_id, plans.c.currency, plan_installments.c.principal)
                .select_from(unpaid)
                .where(*where)
            )
        else:
            rows = conn.execute(
                select(
                    plans.c.account_id, plans.c.currency, func.sum(plan_installments.c.principal)
                )
                .select_from(unpaid)
                .where(*where)
                .group_by(plans.c.account_id, plans.c.currency)
            )
        for account_id, currency, principal in rows:
            totals[(account_id, currency)] += Decimal(principal)
    return {key: value for key, value in totals.items() if value > 0}


@dataclass(frozen=True)
class ReserveLine:
    """One bucket of the risk reserve in one currency."""

    currency: str
    bucket: str  # current, M1, M2, M3, M4+
    accounts: int
    principal: Decimal
    rate: Decimal
    reserve: Decimal


def risk_reserve(engine: Engine, policy: CollectionsPolicy = DEFAULT_POLICY) -> list[ReserveLine]:
    """The risk reserve: per currency, every bucket (current first, then the policy's).

    Each account's outstanding principal goes in the bucket of its latest reported DPD
    (no report, or DPD 0: ``current``); the reserve per bucket is
    ``domain.risk_reserve``. Empty when nothing is outstanding.
    """
    principal = outstanding_principal(engine)
    with engine.connect() as conn:
        dpd = dict(conn.execute(select(positions.c.account_id, positions.c.days_past_due)).all())
    exposures: dict[str, list[tuple[int | None, Decimal]]] = defaultdict(list)
    for (account_id, currency), amount in sorted(principal.items()):
        exposures[currency].append((dpd.get(account_id), amount))
    lines: list[ReserveLine] = []
    for currency in sorted(exposures):
        items = exposures[currency]
        reserve = domain.risk_reserve(items, policy)
        per_bucket: dict[str, Decimal] = defaultdict(Decimal)
        counts: dict[str, int] = defaultdict(int)
        for days, amount in items:
            bucket = domain.reserve_bucket_for(days, policy)
            per_bucket[bucket] += amount
            counts[bucket] += 1
        lines.extend(
            ReserveLine(
                currency=currency,
                bucket=bucket,
                accounts=counts[bucket],
                principal=per_bucket[bucket],
                rate=policy.reserve_rates[bucket],
                reserve=amount,
            )
            for bucket, amount in reserve.items()
        )
    return lines


def reserve_totals(lines: list[ReserveLine]) -> dict[str, Decimal]:
    """Currency -> total reserve of a :func:`risk_reserve` result."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for line in lines:
        totals[line.currency] += line.reserve
    return dict(totals)
