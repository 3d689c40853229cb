"""Property: random purchases / refunds / plans (with redemptions) / cancellations / tier
changes through the real handlers. Always: balance == Σ ledger entries, each entry's
balance_after is the running sum, no redemption takes the balance below zero (and one is
rejected only when it does not fit), and no purchase or bonus is reversed beyond what it
earned.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.points.bootstrap import SERVICE
from services.points.tables import plans, purchases
from tests import factories as f
from tests.harness import Harness
from tests.unit.points.test_handlers import (
    ACCOUNTS,
    PLANS,
    RECORDED,
    Points,
    plan_cancelled,
    plan_created,
    recorded,
    refund_recorded,
)

D = Decimal
TIERS = ["silver", "gold", "platinum", "diamond"]

cents = st.integers(min_value=1, max_value=500_000)  # 0.01 .. 5,000.00
operation = st.one_of(
    st.tuples(st.just("tier"), st.sampled_from(TIERS)),
    st.tuples(st.just("purchase"), cents),
    st.tuples(st.just("refund"), st.integers(0, 50), st.floats(0.01, 1.0)),
    st.tuples(st.just("plan"), st.integers(0, 50), st.integers(0, 20_000), cents),
    st.tuples(st.just("cancel"), st.integers(0, 50), st.floats(0.01, 1.0)),
)


@pytest.fixture(scope="module")
def pts(tmp_path_factory):
    harness = Harness(SERVICE, tmp_path_factory.mktemp("points"))
    yield Points(harness)
    harness.close()


def _money(c: int) -> str:
    return str(D(c) / 100)


def _part(remaining: int, fraction: float) -> int:
    return max(1, min(remaining, round(remaining * fraction)))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(operation, min_size=1, max_size=25))
def test_ledger_is_the_sum_and_redemptions_never_go_below_zero(pts, ops):
    acc = f.new_id("acc")
    bought: list[dict] = []  # purchase_id, amount (cents), refunded (cents), planned
    open_plans: list[dict] = []  # plan_id, principal (cents), returned (cents)
    for op in ops:
        balance_before = pts.ledger_sum(acc)
        events = []
        if op[0] == "tier":
            events = pts.events(ACCOUNTS, f.account(acc, tier=op[1]))
        elif op[0] == "purchase":
            msg = recorded(acc, _money(op[1]))
            bought.append({"id": msg["data"]["purchase_id"], "amount": op[1], "refunded": 0,
                           "planned": False})
            events = pts.events(RECORDED, msg)
        elif op[0] == "refund" and bought:
            b = bought[op[1] % len(bought)]
            left = b["amount"] - b["refunded"]
            if left == 0:
                continue
            amount = _part(left, op[2])
            b["refunded"] += amount
            events = pts.events(RECORDED, refund_recorded(
                acc, b["id"], _money(amount), _money(b["refunded"]),
                fully=b["refunded"] == b["amount"]))
        elif op[0] == "plan" and bought:
            b = bought[op[1] % len(bought)]
            if b["planned"] or b["refunded"]:
                continue
            b["planned"] = True
            fee = min(op[3], b["amount"])
            msg = plan_created(acc, b["id"], _money(b["amount"]), total_fee=_money(fee),
                               redeem_points=op[2], tenor=1)
            open_plans.append({"id": msg["data"]["plan_id"], "principal": b["amount"],
                               "returned": 0})
            events = pts.events(PLANS, msg)
            redemption = [e for e in events if e.type in ("points.redeemed",
                                                          "points.redemption-rejected")]
            wanted = min(op[2], fee)  # fee in cents = points cap at 100 points per 1.00
            if wanted == 0:
                assert redemption == []
            else:
                [r] = redemption
                assert r.data.points == wanted
                if wanted <= balance_before:
                    assert r.type == "points.redeemed"
                    assert r.data.balance_after == balance_before - wanted >= 0
                else:
                    assert r.type == "points.redemption-rejected"
                    assert r.data.balance_after == balance_before
        elif op[0] == "cancel" and open_plans:
            pl = open_plans[op[1] % len(open_plans)]
            left = pl["principal"] - pl["returned"]
            if left == 0:
                continue
            amount = _part(left, op[2])
            pl["returned"] += amount
            events = pts.events(PLANS, plan_cancelled(acc, pl["id"], _money(amount)))
        for e in events:
            assert e.type.startswith("points.") and e.subject == acc
        if events:
            assert events[-1].data.balance_after == pts.ledger_sum(acc)
    rows = pts.rows(acc)
    running = 0
    for row in rows:
        running += row.points
        assert row.balance_after == running
        if row.reason == "fee_redemption":
            assert row.balance_after >= 0
    assert running == pts.ledger_sum(acc)
    with pts.h.runner.engine.connect() as conn:
        for p in conn.execute(select(purchases).where(purchases.c.account_id == acc)):
            assert 0 <= p.points_reversed <= p.points_earned
            if p.refunded_total == p.amount:
                assert p.points_reversed == p.points_earned
        for p in conn.execute(select(plans).where(plans.c.account_id == acc)):
            assert 0 <= p.bonus_reversed <= p.bonus_points
            if p.principal_returned == p.principal:
                assert p.bonus_reversed == p.bonus_points
