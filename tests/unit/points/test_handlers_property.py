"""Property: random purchases / refunds / plans (with redemptions) / cancellations / tier
changes through the real handlers. Always: balance == Σ ledger entries, each entry's
balance_after is the running sum, no redemption takes the balance below zero (and one is
rejected only when it does not fit), and no purchase or first-plan bonus is reversed
beyond what it earned: each has been reversed exactly ``floor(earned x refunded / amount)``
of its purchase, whatever the order of refunds, plans and cancellations.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.points.tables import plans, purchases
from tests.builders import messages as f
from tests.builders.points import (
    ACCOUNTS,
    PLANS,
    RECORDED,
    Points,
    plan_cancelled,
    plan_created,
    recorded,
    refund_recorded,
)
from tests.builders.services import POINTS as SERVICE
from tests.harness import Harness

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
            bought.append(
                {"id": msg["data"]["purchase_id"], "amount": op[1], "refunded": 0, "planned": False}
            )
            events = pts.events(RECORDED, msg)
        elif op[0] == "refund" and bought:
            b = bought[op[1] % len(bought)]
            left = b["amount"] - b["refunded"]
            if left == 0:
                continue
            amount = _part(left, op[2])
            b["refunded"] += amount
            events = pts.events(
                RECORDED,
                refund_recorded(
                    acc,
                    b["id"],
                    _money(amount),
                    _money(b["refunded"]),
                    fully=b["refunded"] == b["amount"],
                ),
            )
        elif op[0] == "plan" and bought:
            b = bought[op[1] % len(bought)]
            if b["planned"]:  # (refunds may come first: another topic)
                continue
            b["planned"] = True
            fee = min(op[3], b["amount"])
            msg = plan_created(
                acc,
                b["id"],
                _money(b["amount"]),
                total_fee=_money(fee),
                redeem_points=op[2],
                tenor=1,
            )
            open_plans.append(
                {"id": msg["data"]["plan_id"], "principal": b["amount"], "returned": 0}
            )
            events = pts.events(PLANS, msg)
            redemption = [
                e for e in events if e.type in ("points.redeemed", "points.redemption-rejected")
            ]
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
        refunded = {
            r.purchase_id: (r.refunded_total, r.amount)
            for r in conn.execute(select(purchases).where(purchases.c.account_id == acc))
        }
        for p in conn.execute(select(plans).where(plans.c.account_id == acc)):
            assert 0 <= p.bonus_reversed <= p.bonus_points
            total, amount = refunded[p.purchase_id]  # (cancellations move no points)
            assert p.bonus_reversed == math.floor(
                Fraction(p.bonus_points) * Fraction(total) / Fraction(amount)
            )


@st.composite
def bonus_stories(draw: st.DrawFn) -> dict:
    """A first plan's purchase, partial refunds summing to at most its amount, and where
    plan.created lands among them (before the purchase, or after any refund)."""
    cents = draw(st.integers(min_value=1, max_value=2_000_000))
    cuts = sorted(draw(st.lists(st.integers(min_value=1, max_value=cents), max_size=6)))
    if draw(st.booleans()):
        cuts.append(cents)  # refunded whole
    parts, previous = [], 0
    for cut in cuts:
        if cut > previous:
            parts.append(cut - previous)
            previous = cut
    return {
        "cents": cents,
        "parts": parts,
        "tier": draw(st.sampled_from(TIERS)),
        # -1: plan.created before purchase.recorded; k: after the first k refunds
        "plan_at": draw(st.integers(min_value=-1, max_value=len(parts))),
        "cancel": draw(st.booleans()),
    }


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(story=bonus_stories())
def test_the_bonus_is_reversed_in_proportion_to_any_refund_sequence(pts, story):
    """Total bonus reversed == floor(bonus x refunded / amount) <= bonus after every step,
    in both arrival orders; the purchase's own points likewise; balance == Σ ledger."""
    acc = f.new_id("acc")
    pts.events(ACCOUNTS, f.account(acc, tier=story["tier"]))
    cents = story["cents"]
    buy = recorded(acc, _money(cents))
    pid = buy["data"]["purchase_id"]
    plan = plan_created(acc, pid, _money(cents), total_fee="0.00", tenor=1)
    plan_id = plan["data"]["plan_id"]
    steps: list[tuple[str, dict]] = [(RECORDED, buy)]
    refunded = 0
    for part in story["parts"]:
        refunded += part
        steps.append(
            (
                RECORDED,
                refund_recorded(acc, pid, _money(part), _money(refunded), fully=refunded == cents),
            )
        )
    steps.insert(story["plan_at"] + 1 if story["plan_at"] >= 0 else 0, (PLANS, plan))
    if story["cancel"] and refunded:
        steps.append((PLANS, plan_cancelled(acc, plan_id, _money(refunded))))
    earned = bonus = None
    done = 0  # refunded so far, in cents
    events = []
    for topic, msg in steps:
        out = pts.events(topic, msg)
        events += out
        if msg["type"] == "refund.recorded":
            done = int(D(msg["data"]["refunded_total"]) * 100)
        for e in out:
            if e.type == "points.accrued" and e.data.reason == "purchase":
                earned = e.data.points
            if e.type == "points.accrued" and e.data.reason == "first_installment_bonus":
                bonus = e.data.points
        if msg["type"] == "plan.cancelled":
            assert out == []  # a cancellation reverses nothing: the refunds did
        bonus_reversed = sum(
            e.data.points
            for e in events
            if e.type == "points.reversed" and e.data.plan_id == plan_id
        )
        own_reversed = sum(
            e.data.points for e in events if e.type == "points.reversed" and e.data.plan_id is None
        )
        if bonus is not None:
            assert bonus_reversed == bonus * done // cents <= bonus
        else:
            assert bonus_reversed == 0
        if earned is not None:
            assert own_reversed == earned * done // cents <= earned
        if out:
            assert out[-1].data.balance_after == pts.ledger_sum(acc)
    expected = int(
        D(cents)
        / 100
        * {"silver": D("1.0"), "gold": D("1.2"), "platinum": D("1.5"), "diamond": D("2.0")}[
            story["tier"]
        ]
    )
    assert (earned or 0) == expected and (bonus or 0) == expected
    assert all(e.type.startswith("points.") for e in events)
    assert all(r.reason != "plan_cancelled" for r in pts.rows(acc))
    assert len({e.id for e in events}) == len(events)
    assert (
        sum(r.points for r in pts.rows(acc))
        == pts.ledger_sum(acc)
        == (2 * (expected - expected * done // cents))
    )
