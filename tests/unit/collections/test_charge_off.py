"""The charge-off amount: the overdue amount reported + the principal not yet due of the
account's open plans (domain rules, a property, and through the handlers on SQLite)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from structlog.testing import capture_logs

from services.collections.domain import (
    CHARGED_OFF,
    CaseState,
    ScheduledPrincipal,
    assess_delinquency,
    charge_off_amount,
    charges_off,
    principal_not_yet_due,
    schedule_explains_report,
)
from services.collections.queries import outstanding_principal, risk_reserve
from services.collections.tables import plans
from tests.builders.services import COLLECTIONS as SERVICE
from tests.harness import Harness
from tests.support import envelope

D = Decimal
PLANS = "installments.plans.v1"
BD = date(2026, 7, 10)  # the business date of the charge-off report (DPD 180)
OLDEST = BD - timedelta(days=180)

# --------------------------------------------------------------------------- domain


def test_an_installment_due_on_the_business_date_is_not_yet_due() -> None:
    unpaid = [
        ScheduledPrincipal(BD - timedelta(days=1), D("100.00")),  # overdue: in the report
        ScheduledPrincipal(BD, D("100.00")),  # on time all its due date: not yet due
        ScheduledPrincipal(BD + timedelta(days=30), D("99.99")),
    ]
    assert principal_not_yet_due(unpaid, BD) == D("199.99")
    assert principal_not_yet_due([], BD) == 0
    assert schedule_explains_report(unpaid, BD)
    assert not schedule_explains_report(unpaid[1:], BD)  # nothing overdue tracked
    assert not schedule_explains_report([], BD)


def test_charge_off_amount_falls_back_to_the_overdue_amount() -> None:
    assert charge_off_amount(D("636.00"), D("1800.00")) == D("2436.00")
    assert charge_off_amount(D("636.00"), D(0)) == D("636.00")
    assert charge_off_amount(D("636.00"), None) == D("636.00")
    with pytest.raises(TypeError):
        charge_off_amount(D("1.00"), 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        charge_off_amount(D("1.00"), D("-0.01"))


def test_charges_off_once_per_case() -> None:
    case = CaseState([], opened_on=OLDEST)
    assert charges_off(None, 180) and charges_off(case, 200)
    assert not charges_off(case, 179)
    assert not charges_off(CaseState([], OLDEST, charged_off=True), 200)


def test_assess_writes_off_the_overdue_amount_plus_the_principal_not_yet_due() -> None:
    case = CaseState([], opened_on=OLDEST)
    off = assess_delinquency("acc-1", case, 180, D("636.00"), BD,
                             principal_not_yet_due=D("1800.00"))  # fmt: skip
    assert (off.resolution, off.written_off) == (CHARGED_OFF, D("2436.00"))
    unknown = assess_delinquency("acc-1", case, 180, D("636.00"), BD)
    assert unknown.written_off == D("636.00")
    not_yet = assess_delinquency("acc-1", case, 179, D("636.00"), BD - timedelta(days=1),
                                 principal_not_yet_due=D("1800.00"))  # fmt: skip
    assert (not_yet.resolution, not_yet.written_off) == (None, None)


@dataclass(frozen=True)
class Line:
    due_date: date
    principal: Decimal
    fee: Decimal


def _plan_lines(first_due: int, tenor: int, principal_cents: int, fee_cents: int) -> list[Line]:
    """Equal parts rounded down, the remainder on the first (as offers schedules)."""
    part = principal_cents // tenor
    parts = [principal_cents - part * (tenor - 1)] + [part] * (tenor - 1)
    return [
        Line(BD + timedelta(days=first_due + 30 * i), D(p) / 100, D(fee_cents) / 100)
        for i, p in enumerate(parts)
    ]


@given(
    shapes=st.lists(
        st.tuples(
            st.integers(min_value=-400, max_value=120),  # first due date, days from BD
            st.sampled_from([3, 6, 12, 24, 36]),
            st.integers(min_value=100, max_value=10_000_000),  # principal, cents
            st.integers(min_value=0, max_value=5_000),  # fee per installment, cents
        ),
        min_size=1,
        max_size=4,
    ),
    paid_count=st.integers(min_value=0, max_value=40),
    partial_cents=st.integers(min_value=0, max_value=1_000_000),
)
def test_written_off_is_outstanding_principal_plus_overdue_fees(
    shapes: list[tuple[int, int, int, int]], paid_count: int, partial_cents: int
) -> None:
    """As offers sees the account: the oldest installments paid in full, then maybe a
    partial payment (fee first) on the next one; collections tracks only the full
    payments (installment.paid)."""
    lines = sorted(
        (line for shape in shapes for line in _plan_lines(*shape)), key=lambda x: x.due_date
    )
    unpaid = lines[paid_count:]  # the oldest ones paid in full
    overdue_lines = [x for x in unpaid if x.due_date < BD]
    if not overdue_lines:
        return  # not delinquent: no charge-off
    # a partial payment on the oldest unpaid (overdue) installment, fee first
    oldest = overdue_lines[0]
    partial = min(D(partial_cents) / 100, oldest.principal + oldest.fee - D("0.01"))
    fee_paid = min(partial, oldest.fee)
    principal_paid = partial - fee_paid
    overdue = sum((x.principal + x.fee for x in overdue_lines), D(0)) - partial  # the report
    tracked = [ScheduledPrincipal(x.due_date, x.principal) for x in unpaid]
    assert schedule_explains_report(tracked, BD)

    written_off = charge_off_amount(overdue, principal_not_yet_due(tracked, BD))

    not_yet_due = sum((x.principal for x in unpaid if x.due_date >= BD), D(0))
    assert written_off == overdue + not_yet_due
    assert written_off >= overdue
    outstanding_principal_ = sum((x.principal for x in unpaid), D(0)) - principal_paid
    overdue_fees = sum((x.fee for x in overdue_lines), D(0)) - fee_paid
    assert written_off == outstanding_principal_ + overdue_fees
    not_yet_due_tracked = principal_not_yet_due(tracked, BD)
    decision = assess_delinquency(
        "acc-1", None, 180, overdue, BD, principal_not_yet_due=not_yet_due_tracked
    )
    assert decision.written_off == written_off


# --------------------------------------------------------------------------- handlers


def plan_created(account_id: str, plan_id: str, principal: str, tenor: int, first_due: date,
                 fee: str = "0.00", currency: str = "USD") -> dict[str, Any]:  # fmt: skip
    total = D(principal)
    part = (total / tenor).quantize(D("0.01"), rounding="ROUND_DOWN")
    parts = [total - part * (tenor - 1)] + [part] * (tenor - 1)
    schedule = [
        {"seq": i + 1, "due_date": (first_due + timedelta(days=30 * i)).isoformat(),
         "principal": str(p), "fee": fee, "amount": str(p + D(fee))}
        for i, p in enumerate(parts)
    ]  # fmt: skip
    data = {
        "plan_id": plan_id, "offer_id": f"off-{plan_id}", "purchase_id": f"pur-{plan_id}",
        "account_id": account_id, "principal": principal, "currency": currency,
        "tenor_months": tenor, "total_fee": str(D(fee) * tenor), "apr": "0.00",
        "auto_converted": False, "redeem_points": 0, "schedule": schedule,
    }  # fmt: skip
    return envelope("plan.created", account_id, data, source="offers")


def paid(account_id: str, plan_id: str, seq: int) -> dict[str, Any]:
    data = {"plan_id": plan_id, "seq": seq, "amount": "1.00", "currency": "USD",
            "paid_on": "2026-01-01"}  # fmt: skip
    return envelope("installment.paid", account_id, data, source="offers")


def plan_event(event_type: str, account_id: str, plan_id: str) -> dict[str, Any]:
    data: dict[str, Any] = {"plan_id": plan_id}
    if event_type == "plan.cancelled":
        data |= {"reason": "early_payoff", "principal_returned": "0.00", "fee_returned": "0.00",
                 "currency": "USD"}  # fmt: skip
    return envelope(event_type, account_id, data, source="offers")


def delinquency(account_id: str, dpd: int, overdue: str, on: date = BD,
                oldest: date | None = None) -> dict[str, Any]:  # fmt: skip
    data: dict[str, Any] = {
        "account_id": account_id, "business_date": on.isoformat(), "days_past_due": dpd,
        "overdue_amount": overdue if dpd else "0.00", "currency": "USD",
    }  # fmt: skip
    if dpd:
        data["oldest_unpaid_due_date"] = (oldest or on - timedelta(days=dpd)).isoformat()
    return envelope("account.delinquency", account_id, data, source="offers")


def written_off(events: list[Any]) -> Decimal | None:
    [resolved] = [e for e in events if e.type == "escalation.resolved"]
    assert resolved.data.resolution == "charged_off"
    return resolved.data.amount


@pytest.fixture
def h(tmp_path):
    harness = Harness(SERVICE, tmp_path)
    yield harness
    harness.close()


A = "acc-1"
# (plan events before the charge-off, the reported overdue amount, expected written off)
# Installments every 30 days from the first due date; the oldest unpaid is OLDEST (DPD 180).
CHARGE_OFFS = {
    "24 months, 6 overdue, 18 not yet due (the review's example)": (
        [plan_created(A, "p1", "2400.00", 24, OLDEST, fee="6.00")],
        "636.00",  # 6 x (100.00 + 6.00); the 7th is due on the business date: not yet due
        "2436.00",  # + 18 x 100.00 (fees not yet due are not written off)
    ),
    "3 months, all overdue: nothing not yet due": (
        [plan_created(A, "p1", "300.00", 3, OLDEST, fee="2.00")],
        "306.00",
        "306.00",
    ),
    "remainder on the first installment": (
        [plan_created(A, "p1", "1000.00", 12, OLDEST)],  # 83.37 + 11 x 83.33
        "500.02",  # 83.37 + 5 x 83.33
        "1000.00",
    ),
    "two plans; a completed and a cancelled one do not count": (
        [
            plan_created(A, "p1", "1200.00", 12, OLDEST),
            plan_created(A, "p2", "600.00", 6, OLDEST + timedelta(days=100)),  # 3 overdue
            plan_created(A, "p3", "900.00", 3, OLDEST + timedelta(days=200)),
            plan_event("plan.completed", A, "p3"),
            plan_created(A, "p4", "900.00", 3, OLDEST + timedelta(days=200)),
            plan_event("plan.cancelled", A, "p4"),
        ],
        "900.00",  # 6 x 100.00 + 3 x 100.00
        "1800.00",  # + 6 x 100.00 + 3 x 100.00
    ),
    "first installment paid, a partial payment on the oldest unpaid": (
        [
            plan_created(A, "p1", "1200.00", 12, OLDEST - timedelta(days=30)),
            paid(A, "p1", 1),
        ],
        "560.00",  # seqs 2-7 overdue: 600.00 - 40.00 paid on seq 2
        "1060.00",  # + seqs 8-12
    ),
    "a plan in another currency does not count": (
        [
            plan_created(A, "p1", "300.00", 3, OLDEST),
            plan_created(A, "p2", "900.00", 3, OLDEST + timedelta(days=200), currency="EUR"),
        ],
        "300.00",
        "300.00",
    ),
}


@pytest.mark.parametrize("story", list(CHARGE_OFFS))
def test_charge_off_amount_by_plan_shape(h, story):
    plan_events, overdue, expected = CHARGE_OFFS[story]
    h.events(PLANS, *plan_events)
    h.events(PLANS, delinquency(A, 100, "1.00", on=BD - timedelta(days=80)))
    assert written_off(h.events(PLANS, delinquency(A, 180, overdue))) == D(expected)
    # the written-off plans are no longer outstanding: nothing of the account is reserved
    assert {k: v for k, v in outstanding_principal(h.runner.engine).items() if k[1] == "USD"} == {}
    # a charged-off case takes nothing more
    assert h.events(PLANS, delinquency(A, 181, overdue, on=BD + timedelta(days=1))) == []


def test_charge_off_in_the_batch_of_the_plan_events(h):
    """Plan created earlier, an installment paid and a new plan in the charge-off's batch."""
    h.events(PLANS, plan_created(A, "p1", "1200.00", 12, OLDEST - timedelta(days=30)))
    events = h.events(
        PLANS,
        paid(A, "p1", 1),
        plan_created(A, "p2", "300.00", 3, BD + timedelta(days=5)),
        delinquency(A, 180, "600.00"),
    )
    assert written_off(events) == D("600.00") + D("500.00") + D("300.00")
    with h.runner.engine.connect() as conn:
        statuses = dict(conn.execute(select(plans.c.plan_id, plans.c.status)).all())
    assert statuses == {"p1": "charged_off", "p2": "charged_off"}


def test_without_the_plans_only_the_overdue_amount_is_written_off(h):
    with capture_logs() as logs:
        amount = written_off(h.events(PLANS, delinquency(A, 180, "700.00")))
    assert amount == D("700.00")
    assert any(
        e["log_level"] == "warning" and e["event"].startswith("charge-off without") for e in logs
    )
    # tracked plans with nothing overdue cannot explain the report either
    h.events(PLANS, plan_created("acc-2", "p9", "900.00", 3, BD))
    with capture_logs() as logs:
        assert written_off(h.events(PLANS, delinquency("acc-2", 200, "450.00"))) == D("450.00")
    assert any(e["event"].startswith("charge-off without") for e in logs)
    # ... and its plan is not touched: still outstanding (reserved at M4+)
    assert outstanding_principal(h.runner.engine) == {("acc-2", "USD"): D("900.00")}


def test_a_schedule_differing_from_the_report_is_used_with_a_warning(h):
    h.events(PLANS, plan_created(A, "p1", "1200.00", 12, OLDEST + timedelta(days=30)))
    with capture_logs() as logs:
        amount = written_off(h.events(PLANS, delinquency(A, 180, "800.00")))
    assert amount == D("800.00") + 7 * D("100.00")  # seqs 1-5 overdue, 6-12 not yet due
    assert any("differs from the report" in e["event"] for e in logs)


def test_a_later_charge_off_does_not_write_off_a_written_off_plan_again(h):
    h.events(PLANS, plan_created(A, "p1", "2400.00", 24, OLDEST))
    assert written_off(h.events(PLANS, delinquency(A, 180, "600.00"))) == D("2400.00")
    # cured (closed silently), a new plan, then a new delinquency reaching 180 days
    assert h.events(PLANS, delinquency(A, 0, "0.00", on=BD + timedelta(days=10))) == []
    later = BD + timedelta(days=400)
    h.events(PLANS, plan_created(A, "p2", "600.00", 6, later - timedelta(days=180)))
    h.events(PLANS, delinquency(A, 1, "100.00", on=later - timedelta(days=179)))
    events = h.events(PLANS, delinquency(A, 180, "600.00", on=later))
    assert written_off(events) == D("600.00")  # p2 all overdue; nothing of p1 again
    assert risk_reserve(h.runner.engine) == []
