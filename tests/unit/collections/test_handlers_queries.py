"""collections read models: outstanding principal from plan events, open cases, risk
reserve, and the collections CLI (SQLite, no broker)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from typer.testing import CliRunner

from services.collections.cli import app
from services.collections.policy import DEFAULT_POLICY
from services.collections.queries import (
    open_cases,
    outstanding_principal,
    reserve_totals,
    risk_reserve,
)
from tests.builders.collections import paid, plan_created, plan_event
from tests.builders.services import COLLECTIONS as SERVICE
from tests.harness import Harness
from tests.support import envelope

PLANS = "installments.plans.v1"
D = Decimal


def delinquency(account_id: str, dpd: int, on: date, overdue: str = "300.00") -> dict[str, Any]:
    data: dict[str, Any] = {
        "account_id": account_id, "business_date": on.isoformat(), "days_past_due": dpd,
        "overdue_amount": overdue if dpd else "0.00", "currency": "USD",
    }  # fmt: skip
    if dpd:
        data["oldest_unpaid_due_date"] = (on - timedelta(days=dpd)).isoformat()
    return envelope("account.delinquency", account_id, data, source="offers")


DAY = date(2026, 6, 1)


@pytest.fixture
def h(tmp_path):
    harness = Harness(SERVICE, tmp_path)
    harness.events(
        PLANS,
        # current (no report): 1200.00 outstanding
        plan_created("acc-a", "p-a", "1200.00", 3),
        # M1: 600.00, one installment paid -> 400.00
        plan_created("acc-b", "p-b", "600.00", 3),
        paid("acc-b", "p-b", 1, "200.00"),
        delinquency("acc-b", 10, DAY),
        # M2: 900.00; a completed plan does not count
        plan_created("acc-c", "p-c", "900.00", 3),
        plan_created("acc-c", "p-c2", "450.00", 3),
        plan_event("plan.completed", "acc-c", "p-c2"),
        delinquency("acc-c", 45, DAY),
        # M3: 1000.00; a cancelled plan does not count
        plan_created("acc-d", "p-d", "1000.00", 2),
        plan_created("acc-d", "p-d2", "800.00", 2),
        plan_event("plan.cancelled", "acc-d", "p-d2"),
        delinquency("acc-d", 70, DAY),
        # M4+: 333.33 (111.11 x 3); the case opened 20 days before the others
        plan_created("acc-e", "p-e", "333.33", 3),
        delinquency("acc-e", 100, DAY - timedelta(days=20)),
        delinquency("acc-e", 120, DAY),
        # cured: back to current, 500.00
        plan_created("acc-f", "p-f", "500.00", 1),
        delinquency("acc-f", 5, DAY - timedelta(days=1)),
        delinquency("acc-f", 0, DAY),
        # only a delinquency, no plan known: no principal
        delinquency("acc-g", 3, DAY),
    )
    yield harness
    harness.close()


def test_outstanding_principal_from_plan_events(h):
    assert outstanding_principal(h.runner.engine) == {
        ("acc-a", "USD"): D("1200.00"),
        ("acc-b", "USD"): D("400.00"),
        ("acc-c", "USD"): D("900.00"),
        ("acc-d", "USD"): D("1000.00"),
        ("acc-e", "USD"): D("333.33"),
        ("acc-f", "USD"): D("500.00"),
    }


def test_duplicate_plan_created_counts_once(h):
    again = plan_created("acc-a", "p-a", "1200.00", 3)
    assert h.events(PLANS, again) == []
    assert outstanding_principal(h.runner.engine)[("acc-a", "USD")] == D("1200.00")


def test_open_cases_by_level_then_oldest_first(h):
    rows = open_cases(h.runner.engine)
    assert [(r.account_id, r.level, r.action, r.bucket) for r in rows] == [
        ("acc-e", 5, "agency", "M4+"),  # opened 20 days before acc-d's case
        ("acc-d", 5, "agency", "M3"),
        ("acc-c", 4, "letter", "M2"),
        ("acc-b", 2, "sms_push", "M1"),
        ("acc-g", 1, "sms", "M1"),
    ]
    e = rows[0]
    assert e.case_id == f"case:acc-e:{(DAY - timedelta(days=20)).isoformat()}"
    assert (e.days_past_due, e.overdue_amount, e.business_date) == (120, D("300.00"), DAY)


def test_risk_reserve_by_bucket(h):
    lines = risk_reserve(h.runner.engine, DEFAULT_POLICY)
    got = {line.bucket: (line.accounts, line.principal, line.rate, line.reserve) for line in lines}
    assert got == {
        "current": (2, D("1700.00"), D("0.01"), D("17.00")),
        "M1": (1, D("400.00"), D("0.05"), D("20.00")),
        "M2": (1, D("900.00"), D("0.20"), D("180.00")),
        "M3": (1, D("1000.00"), D("0.50"), D("500.00")),
        "M4+": (1, D("333.33"), D("1.00"), D("333.33")),
    }
    assert [line.bucket for line in lines] == ["current", "M1", "M2", "M3", "M4+"]
    assert reserve_totals(lines) == {"USD": D("1050.33")}


def test_paying_and_completing_lower_the_reserve(h):
    h.events(PLANS, paid("acc-e", "p-e", 1, "111.11"), paid("acc-e", "p-e", 2, "111.11"))
    h.events(PLANS, plan_event("plan.completed", "acc-a", "p-a"))
    lines = {line.bucket: line for line in risk_reserve(h.runner.engine)}
    assert lines["M4+"].principal == D("111.11")
    assert lines["current"].principal == D("500.00")


def test_empty_database_has_no_reserve_and_no_cases(tmp_path):
    empty = Harness(SERVICE, tmp_path / "empty")
    try:
        assert risk_reserve(empty.runner.engine) == []
        assert open_cases(empty.runner.engine) == []
    finally:
        empty.close()


@pytest.fixture
def cli_env(h, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/{{service}}.sqlite3")
    monkeypatch.delenv("INSTALLMENTS_POLICY_FILE", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def test_cli_cases(cli_env):
    result = cli_env.invoke(app, ["cases"])
    assert result.exit_code == 0, result.output
    assert "Open collections cases (5)" in result.output
    assert (
        result.output.index("acc-e") < result.output.index("acc-d") < result.output.index("acc-b")
    )
    result = cli_env.invoke(app, ["cases", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["account_id"] for r in rows] == ["acc-e", "acc-d", "acc-c", "acc-b", "acc-g"]
    assert rows[0]["overdue_amount"] == "300.00" and rows[0]["opened_on"] == "2026-05-12"


def test_cli_reserve(cli_env):
    result = cli_env.invoke(app, ["reserve"])
    assert result.exit_code == 0, result.output
    assert "1050.33" in result.output and "M4+" in result.output and "5 %" in result.output
    result = cli_env.invoke(app, ["reserve", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert rows[0] == {"currency": "USD", "bucket": "current", "accounts": 2,
                       "principal": "1700.00", "rate": "0.01", "reserve": "17.00"}  # fmt: skip


def test_cli_without_a_migrated_database_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/nothing/{{service}}.sqlite3")
    result = CliRunner().invoke(app, ["cases"])
    assert result.exit_code == 1
