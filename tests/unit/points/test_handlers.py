"""points handlers through the runtime's batch code (SQLite, no broker).

Every test ends with the ledger check of the ``p`` fixture: for every account that had a
points event, the last ``balance_after`` == Σ ledger rows in the database, and each
row's ``balance_after`` is the running sum of the rows before it.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DatabaseError

from schemas import Envelope
from services.points.policy import PointsPolicy
from services.points.tables import accounts, ledger, plans, purchases
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
    with_new_id,
)
from tests.builders.services import POINTS as SERVICE
from tests.harness import Harness
from tests.support import envelope

D = Decimal


@pytest.fixture
def p(tmp_path):
    harness = Harness(SERVICE, tmp_path)
    points = Points(harness)
    yield points
    points.check_ledger()
    harness.close()


def points_with(tmp_path, **policy: Any) -> Points:
    service = dataclasses.replace(SERVICE, policy=PointsPolicy(**policy))
    return Points(Harness(service, tmp_path))


def account_id() -> str:
    return f.new_id("acc")


# --------------------------------------------------------------------------- accrual


@pytest.mark.parametrize(
    ("tier", "expected"), [("silver", 999), ("gold", 1199), ("platinum", 1499), ("diamond", 1999)]
)
def test_accrual_by_tier(p, tier, expected):
    acc = account_id()
    assert p.events(ACCOUNTS, f.account(acc, tier=tier)) == []
    msg = recorded(acc, "999.99")
    accrued = p.one(RECORDED, msg)
    assert accrued.type == "points.accrued"
    assert accrued.subject == acc and accrued.source == "points"
    assert accrued.causation_id == msg["id"]
    assert accrued.data.model_dump() == {
        "account_id": acc,
        "points": expected,
        "balance_after": expected,
        "reason": "purchase",
        "purchase_id": msg["data"]["purchase_id"],
        "plan_id": None,
    }
    row = p.row(purchases, msg["data"]["purchase_id"])
    assert (row.tier, row.tier_assumed, row.points_earned, row.points_reversed) == (
        tier,
        False,
        expected,
        0,
    )


def test_unknown_account_earns_at_silver_and_the_tier_is_marked_assumed(p):
    acc = account_id()
    msg = recorded(acc, "100.00")
    assert p.one(RECORDED, msg).data.points == 100
    row = p.row(purchases, msg["data"]["purchase_id"])
    assert (row.tier, row.tier_assumed) == ("silver", True)


def test_a_purchase_waits_for_the_accounts_published_before_it(p):
    """Restart with a backlog: the purchase is read before its account's upsert (another
    topic). It is deferred, not accrued at silver, and earns gold once the upsert is in."""
    acc = account_id()
    upsert = p.h.publish(ACCOUNTS, f.account(acc, tier="gold"))
    msg = recorded(acc, "1000.00")
    purchase = p.h.publish(RECORDED, msg)
    assert p.process(purchase) == []
    assert p.deferred(purchase)
    assert p.rows(acc) == []
    with p.h.runner.engine.connect() as conn:
        assert (
            conn.execute(
                select(purchases).where(purchases.c.purchase_id == msg["data"]["purchase_id"])
            ).all()
            == []
        )
    assert p.process(upsert) == []
    [accrued] = p.process(purchase)
    assert (accrued.data.points, accrued.data.balance_after) == (1200, 1200)
    assert not p.deferred(purchase)
    row = p.row(purchases, msg["data"]["purchase_id"])
    assert (row.tier, row.tier_assumed) == ("gold", False)


def test_a_purchase_and_its_account_in_one_batch_apply_in_either_order(p):
    """The account's partition comes later in the batch: the purchase's partition is
    deferred, the rest of the batch is applied, and the retry earns gold."""
    acc, other = account_id(), account_id()
    msg = recorded(acc, "1000.00")
    purchase = p.h.publish(RECORDED, msg)
    later = p.h.publish(RECORDED, recorded(acc, "10.00"))  # same partition: waits too
    elsewhere = p.h.publish(RECORDED, recorded(other, "50.00"), partition=1)
    upsert = p.h.publish(ACCOUNTS, f.account(acc, tier="gold"), partition=1)
    # the other account's purchase waits as well: the upsert was published before it
    out = p.process(elsewhere, purchase, later, upsert)
    assert [(e.subject, e.data.points) for e in out] == []
    assert p.deferred(purchase) and p.deferred(later) and p.deferred(elsewhere)
    assert not p.deferred(upsert)
    out = p.process(elsewhere, purchase, later)
    assert [(e.subject, e.data.points) for e in out] == [(other, 50), (acc, 1200), (acc, 12)]


def test_an_account_still_unknown_after_the_barrier_earns_the_unknown_account_tier(p):
    """Every account record published before it is applied and the account is not among
    them: silver (assumed), at once: nothing to wait for."""
    acc, known = account_id(), account_id()
    upsert = p.h.publish(ACCOUNTS, f.account(known, tier="diamond"))
    p.process(upsert)
    msg = recorded(acc, "100.00")
    [accrued] = p.process(p.h.publish(RECORDED, msg))
    assert accrued.data.points == 100
    assert p.row(purchases, msg["data"]["purchase_id"]).tier_assumed


def test_a_first_plan_before_its_purchase_waits_for_the_account_tier(p):
    """The bonus from the principal needs the tier: the same barrier as a purchase."""
    acc = account_id()
    upsert = p.h.publish(ACCOUNTS, f.account(acc, tier="platinum"))
    buy = recorded(acc, "400.00")
    plan = plan_created(
        acc, buy["data"]["purchase_id"], "400.00", total_fee="7.20", redeem_points=50
    )
    record = p.h.publish(PLANS, plan)
    assert p.process(record) == []  # nothing redeemed or rejected either
    assert p.deferred(record)
    p.process(upsert)
    [rejected, bonus] = p.process(record)
    assert rejected.type == "points.redemption-rejected"
    assert (bonus.data.reason, bonus.data.points) == ("first_installment_bonus", 600)
    assert p.row(plans, plan["data"]["plan_id"]).bonus_basis == "principal"


def test_a_plan_whose_bonus_needs_no_tier_does_not_wait(p):
    """Its purchase is recorded (the bonus is the purchase's points), or the account had
    a plan already (no bonus): unread account records do not hold it up."""
    acc = account_id()
    buy = recorded(acc, "300.00")
    p.feed(RECORDED, buy)  # silver: nothing unread yet
    p.h.publish(ACCOUNTS, f.account(acc, tier="gold"))  # published, not applied
    [bonus] = p.process(p.h.publish(PLANS, plan_created(acc, buy["data"]["purchase_id"], "300.00")))
    assert bonus.data.points == 300
    second = recorded(acc, "500.00")
    plan2 = p.h.publish(PLANS, plan_created(acc, second["data"]["purchase_id"], "500.00"))
    assert p.process(plan2) == [] and not p.deferred(plan2)  # no bonus, no wait


def test_unknown_account_tier_is_configurable(tmp_path):
    pts = points_with(tmp_path, unknown_account_tier="gold")
    acc = account_id()
    assert pts.one(RECORDED, recorded(acc, "100.00")).data.points == 120
    pts.check_ledger()
    pts.h.close()
    with pytest.raises(ValidationError):
        PointsPolicy(unknown_account_tier="bronze")


def test_tier_change_applies_only_to_later_purchases(p):
    acc = account_id()
    p.feed(ACCOUNTS, f.account(acc, tier="silver"))
    first = recorded(acc, "100.00")
    assert p.one(RECORDED, first).data.points == 100
    p.feed(ACCOUNTS, f.account(acc, tier="diamond"))
    later = p.one(RECORDED, recorded(acc, "100.00"))
    assert (later.data.points, later.data.balance_after) == (200, 300)
    # the earlier purchase keeps its silver points: a full refund reverses 100, not 200
    reversed_ = p.one(
        RECORDED, refund_recorded(acc, first["data"]["purchase_id"], "100.00", "100.00", fully=True)
    )
    assert (reversed_.data.points, reversed_.data.balance_after) == (100, 200)
    assert p.row(purchases, first["data"]["purchase_id"]).tier == "silver"


def test_purchase_under_one_unit_books_nothing(p):
    acc = account_id()
    msg = recorded(acc, "0.99")
    assert p.events(RECORDED, msg) == []
    assert p.rows(acc) == []
    assert p.row(purchases, msg["data"]["purchase_id"]).points_earned == 0


# --------------------------------------------------------------------------- refunds


def test_partial_refunds_then_full_refund_reverse_exactly_the_earned_points(p):
    acc = account_id()
    p.feed(ACCOUNTS, f.account(acc, tier="gold"))
    msg = recorded(acc, "100.00")
    pid = msg["data"]["purchase_id"]
    assert p.one(RECORDED, msg).data.points == 120
    steps = [("33.33", "33.33"), ("33.33", "66.66"), ("33.33", "99.99"), ("0.01", "100.00")]
    reversed_points = []
    for amount, total in steps:
        events = p.events(
            RECORDED, refund_recorded(acc, pid, amount, total, fully=total == "100.00")
        )
        reversed_points += [e.data.points for e in events]
        assert all(e.type == "points.reversed" and e.data.reason == "refund" for e in events)
        assert all(e.data.purchase_id == pid for e in events)
    # floor(120 * cumulative / 100): 39, 79, 119, 120
    assert reversed_points == [39, 40, 40, 1]
    assert sum(reversed_points) == 120
    assert p.ledger_sum(acc) == 0
    row = p.row(purchases, pid)
    assert (row.points_earned, row.points_reversed, row.refunded_total) == (120, 120, D("100.00"))


def test_a_refund_whose_share_rounds_to_zero_emits_nothing(p):
    acc = account_id()
    msg = recorded(acc, "1000.00")
    p.feed(RECORDED, msg)
    assert (
        p.events(RECORDED, refund_recorded(acc, msg["data"]["purchase_id"], "0.50", "0.50")) == []
    )
    assert p.ledger_sum(acc) == 1000


def test_refund_of_an_unknown_purchase_is_dead_lettered(p):
    acc = account_id()
    [dead] = p.feed(RECORDED, refund_recorded(acc, "pur-never", "1.00", "1.00"))
    assert dead.topic == RECORDED + ".dlq"
    assert "never recorded" in dead.headers["error.reason"]


# --------------------------------------------------------------------------- plans


def test_first_plan_earns_the_bonus_once(p):
    acc = account_id()
    p.feed(ACCOUNTS, f.account(acc, tier="platinum"))
    first, second = recorded(acc, "1000.00"), recorded(acc, "2000.00")
    p.feed(RECORDED, first, second)
    assert p.ledger_sum(acc) == 1500 + 3000
    plan1 = plan_created(acc, first["data"]["purchase_id"], "1000.00", total_fee="18.00")
    bonus = p.one(PLANS, plan1)
    assert bonus.type == "points.accrued"
    assert bonus.data.model_dump() == {
        "account_id": acc,
        "points": 1500,
        "balance_after": 6000,
        "reason": "first_installment_bonus",
        "purchase_id": first["data"]["purchase_id"],
        "plan_id": plan1["data"]["plan_id"],
    }
    plan2 = plan_created(acc, second["data"]["purchase_id"], "2000.00", total_fee="36.00")
    assert p.events(PLANS, plan2) == []  # not the first plan: no bonus
    account = p.row(accounts, acc)
    assert (account.had_plan, account.first_plan_id) == (True, plan1["data"]["plan_id"])
    assert p.row(plans, plan2["data"]["plan_id"]).bonus_points == 0


def test_plan_before_its_purchase_takes_the_bonus_from_the_principal(p):
    """plan.created overtook purchase.recorded (another topic): no Defer, no lost bonus."""
    acc = account_id()
    p.feed(ACCOUNTS, f.account(acc, tier="gold"))
    msg = recorded(acc, "750.00")
    plan = plan_created(acc, msg["data"]["purchase_id"], "750.00", total_fee="13.50")
    bonus = p.one(PLANS, plan)
    assert (bonus.data.reason, bonus.data.points, bonus.data.balance_after) == (
        "first_installment_bonus",
        900,
        900,
    )
    assert p.row(plans, plan["data"]["plan_id"]).bonus_basis == "principal"
    accrued = p.one(RECORDED, msg)  # the purchase still earns its own points
    assert (accrued.data.points, accrued.data.balance_after) == (900, 1800)


def _moves(events: list[Envelope]) -> list[tuple[str, str, int, int, str | None]]:
    return [
        (e.type, e.data.reason, e.data.points, e.data.balance_after, e.data.plan_id) for e in events
    ]


def test_a_partial_refund_reverses_the_same_share_of_the_first_plan_bonus(p):
    """Silver, first plan: 1,200.00 earns 1200 + a 1200 bonus; refunding 600.00 takes back
    600 + 600 (net 1200, not 1800); refunding the rest takes back everything."""
    acc = account_id()
    buy = recorded(acc, "1200.00")
    pid = buy["data"]["purchase_id"]
    p.feed(RECORDED, buy)
    plan = plan_created(acc, pid, "1200.00", total_fee="43.20", tenor=6)
    plan_id = plan["data"]["plan_id"]
    assert p.one(PLANS, plan).data.points == 1200
    half = refund_recorded(acc, pid, "600.00", "600.00")
    events = p.events(RECORDED, half)
    assert _moves(events) == [
        ("points.reversed", "refund", 600, 1800, None),  # the purchase's points
        ("points.reversed", "refund", 600, 1200, plan_id),  # the bonus's share
    ]
    assert all(e.data.purchase_id == pid and e.causation_id == half["id"] for e in events)
    assert len({e.id for e in events}) == 2
    assert p.row(plans, plan_id).bonus_reversed == 600
    rest = refund_recorded(acc, pid, "600.00", "1200.00", fully=True)
    assert _moves(p.events(RECORDED, rest)) == [
        ("points.reversed", "refund", 600, 600, None),
        ("points.reversed", "refund", 600, 0, plan_id),
    ]
    # the offers service then cancels the plan (no principal left): no second reversal
    assert p.events(PLANS, plan_cancelled(acc, plan_id, "1200.00")) == []
    row = p.row(plans, plan_id)
    assert (row.bonus_points, row.bonus_reversed, row.principal_returned) == (
        1200,
        1200,
        D("1200.00"),
    )
    assert p.ledger_sum(acc) == 0


def test_a_full_refund_after_paid_installments_reverses_the_whole_bonus(p):
    """2 of 6 installments paid: the cancellation returns only 800.00 of principal, but
    the purchase was refunded whole, so the whole bonus goes (not 800 of it)."""
    acc = account_id()
    buy = recorded(acc, "1200.00")
    pid = buy["data"]["purchase_id"]
    p.feed(RECORDED, buy)
    plan = plan_created(acc, pid, "1200.00", total_fee="43.20", tenor=6)
    plan_id = plan["data"]["plan_id"]
    p.feed(PLANS, plan)
    events = p.events(RECORDED, refund_recorded(acc, pid, "1200.00", "1200.00", fully=True))
    assert _moves(events) == [
        ("points.reversed", "refund", 1200, 1200, None),
        ("points.reversed", "refund", 1200, 0, plan_id),
    ]
    assert p.events(PLANS, plan_cancelled(acc, plan_id, "800.00")) == []
    assert p.ledger_sum(acc) == 0


def test_refunds_before_the_plan_reverse_their_share_of_the_bonus_when_it_arrives(p):
    """refund.recorded and plan.created are on different topics: the plan may come after
    refunds of its purchase. Its bonus is credited, then the refunded share at once."""
    acc = account_id()
    p.feed(ACCOUNTS, f.account(acc, tier="gold"))
    buy = recorded(acc, "1000.00")
    pid = buy["data"]["purchase_id"]
    p.feed(RECORDED, buy)  # 1200
    assert p.one(RECORDED, refund_recorded(acc, pid, "250.00", "250.00")).data.points == 300
    plan = plan_created(acc, pid, "1000.00", total_fee="18.00", redeem_points=100)
    plan_id = plan["data"]["plan_id"]
    events = p.events(PLANS, plan)
    assert _moves(events) == [
        ("points.redeemed", "fee_redemption", 100, 800, plan_id),  # redemption first
        ("points.accrued", "first_installment_bonus", 1200, 2000, plan_id),
        ("points.reversed", "refund", 300, 1700, plan_id),  # floor(1200 x 250 / 1000)
    ]
    assert all(e.causation_id == plan["id"] for e in events)
    assert len({e.id for e in events}) == 3
    row = p.row(plans, plan_id)
    assert (row.bonus_points, row.bonus_reversed) == (1200, 300)
    # the same plan again, under its id or a new one: nothing
    assert p.feed(PLANS, plan) == [] and p.feed(PLANS, with_new_id(plan)) == []
    # a later refund reverses the difference to the new cumulative share
    assert _moves(p.events(RECORDED, refund_recorded(acc, pid, "250.00", "500.00"))) == [
        ("points.reversed", "refund", 300, 1400, None),
        ("points.reversed", "refund", 300, 1100, plan_id),
    ]
    assert p.row(plans, plan_id).bonus_reversed == 600


def test_a_plan_after_a_full_refund_credits_and_reverses_the_whole_bonus(p):
    acc = account_id()
    buy = recorded(acc, "700.00")
    pid = buy["data"]["purchase_id"]
    p.feed(RECORDED, buy)
    p.feed(RECORDED, refund_recorded(acc, pid, "700.00", "700.00", fully=True))
    plan = plan_created(acc, pid, "700.00", total_fee="12.60")
    assert _moves(p.events(PLANS, plan)) == [
        ("points.accrued", "first_installment_bonus", 700, 700, plan["data"]["plan_id"]),
        ("points.reversed", "refund", 700, 0, plan["data"]["plan_id"]),
    ]
    assert p.events(PLANS, plan_cancelled(acc, plan["data"]["plan_id"], "700.00")) == []


def test_a_plan_before_its_purchase_then_refunds_reverse_its_bonus(p):
    """plan.created first (bonus from the principal), then the purchase, then a refund."""
    acc = account_id()
    p.feed(ACCOUNTS, f.account(acc, tier="gold"))
    buy = recorded(acc, "750.00")
    pid = buy["data"]["purchase_id"]
    plan = plan_created(acc, pid, "750.00", total_fee="13.50")
    plan_id = plan["data"]["plan_id"]
    assert p.one(PLANS, plan).data.points == 900
    p.feed(RECORDED, buy)  # 1800
    assert _moves(p.events(RECORDED, refund_recorded(acc, pid, "375.00", "375.00"))) == [
        ("points.reversed", "refund", 450, 1350, None),
        ("points.reversed", "refund", 450, 900, plan_id),
    ]


def test_only_the_first_plans_purchase_reverses_a_bonus_and_cancellations_move_nothing(p):
    acc = account_id()
    first, second = recorded(acc, "600.00"), recorded(acc, "800.00")
    p.feed(RECORDED, first, second)
    plan1 = plan_created(acc, first["data"]["purchase_id"], "600.00", total_fee="10.80")
    plan2 = plan_created(acc, second["data"]["purchase_id"], "800.00", total_fee="14.40")
    p.feed(PLANS, plan1)
    p.feed(PLANS, plan2)  # no bonus
    assert p.ledger_sum(acc) == 2000
    # a refund of the second plan's purchase: its own points only
    assert _moves(
        p.events(RECORDED, refund_recorded(acc, second["data"]["purchase_id"], "400.00", "400.00"))
    ) == [
        ("points.reversed", "refund", 400, 1600, None),
    ]
    # early payoff and cancellations by refund move no points
    assert (
        p.events(
            PLANS, plan_cancelled(acc, plan1["data"]["plan_id"], "0.00", reason="early_payoff")
        )
        == []
    )
    assert p.events(PLANS, plan_cancelled(acc, plan2["data"]["plan_id"], "400.00")) == []
    assert p.events(PLANS, plan_cancelled(acc, plan1["data"]["plan_id"], "300.00")) == []
    row = p.row(plans, plan1["data"]["plan_id"])
    assert (row.bonus_points, row.bonus_reversed, row.principal_returned) == (600, 0, D("300.00"))
    # a cancellation returning more than the principal is still refused
    [dead] = p.feed(PLANS, plan_cancelled(acc, plan1["data"]["plan_id"], "300.01"))
    assert (
        dead.topic == PLANS + ".dlq" and "more than the principal" in dead.headers["error.reason"]
    )
    assert p.ledger_sum(acc) == 1600


def test_cancellation_of_an_unknown_plan_is_dead_lettered(p):
    [dead] = p.feed(PLANS, plan_cancelled(account_id(), "plan-never", "1.00"))
    assert dead.topic == PLANS + ".dlq" and "never saw" in dead.headers["error.reason"]


def test_other_plan_events_are_ignored(p):
    acc = account_id()
    waived = envelope(
        "fee.waived",
        acc,
        {"plan_id": "plan-x", "amount": "1.00", "currency": "USD", "points": 100},
        source="offers",
    )
    assert p.feed(PLANS, waived) == []


# --------------------------------------------------------------------------- redemption


def _account_with_a_plan(p: Points, acc: str, earn: str) -> None:
    """An account that already had its first plan (no bonus later) and ``earn`` points."""
    first = recorded(acc, "1.00")
    p.feed(RECORDED, first)
    p.feed(PLANS, plan_created(acc, first["data"]["purchase_id"], "1.00"))  # bonus 1
    p.feed(
        RECORDED, refund_recorded(acc, first["data"]["purchase_id"], "1.00", "1.00", fully=True)
    )  # -1
    p.feed(RECORDED, recorded(acc, earn))
    assert p.ledger_sum(acc) == int(D(earn))  # the refund took back the bonus's 1 too


def test_redemption_accepted(p):
    acc = account_id()
    _account_with_a_plan(p, acc, "2000.00")
    msg = recorded(acc, "1200.00")
    p.feed(RECORDED, msg)
    balance = p.ledger_sum(acc)
    plan = plan_created(
        acc, msg["data"]["purchase_id"], "1200.00", total_fee="86.40", tenor=12, redeem_points=1500
    )
    redeemed = p.one(PLANS, plan)
    assert redeemed.type == "points.redeemed" and redeemed.subject == acc
    assert redeemed.data.model_dump() == {
        "account_id": acc,
        "points": 1500,
        "balance_after": balance - 1500,
        "reason": "fee_redemption",
        "plan_id": plan["data"]["plan_id"],
    }
    row = p.row(plans, plan["data"]["plan_id"])
    assert (row.redeem_requested, row.points_redeemed, row.fee_redeemed) == (1500, 1500, D("15.00"))


def test_redemption_rejected_with_too_few_points_keeps_the_balance(p):
    acc = account_id()
    _account_with_a_plan(p, acc, "500.00")
    msg = recorded(acc, "1200.00")
    p.feed(RECORDED, msg)
    balance = p.ledger_sum(acc)  # 1700
    before = len(p.rows(acc))
    plan = plan_created(
        acc, msg["data"]["purchase_id"], "1200.00", total_fee="86.40", tenor=12, redeem_points=2000
    )
    rejected = p.one(PLANS, plan)
    assert rejected.type == "points.redemption-rejected"
    assert rejected.data.model_dump() == {
        "account_id": acc,
        "points": 2000,
        "balance_after": balance,
        "reason": "fee_redemption",
        "plan_id": plan["data"]["plan_id"],
        "why": "insufficient_points",
    }
    assert len(p.rows(acc)) == before and p.ledger_sum(acc) == balance
    assert p.row(plans, plan["data"]["plan_id"]).points_redeemed == 0


def test_redemption_of_the_exact_balance_reaches_zero(p):
    acc = account_id()
    _account_with_a_plan(p, acc, "100.00")
    msg = recorded(acc, "500.00")
    p.feed(RECORDED, msg)
    plan = plan_created(
        acc, msg["data"]["purchase_id"], "500.00", total_fee="9.00", redeem_points=600
    )
    redeemed = p.one(PLANS, plan)
    assert (redeemed.data.points, redeemed.data.balance_after) == (600, 0)


def test_redemption_is_capped_at_the_plans_total_fee(p):
    acc = account_id()
    _account_with_a_plan(p, acc, "20000.00")
    msg = recorded(acc, "1000.00")
    p.feed(RECORDED, msg)
    plan = plan_created(
        acc, msg["data"]["purchase_id"], "1000.00", total_fee="12.34", redeem_points=10000
    )
    redeemed = p.one(PLANS, plan)
    assert redeemed.data.points == 1234
    assert p.row(plans, plan["data"]["plan_id"]).fee_redeemed == D("12.34")


def test_redemption_on_a_plan_without_fee_is_rejected_and_zero_requested_is_silent(p):
    acc = account_id()
    _account_with_a_plan(p, acc, "1000.00")
    a, b = recorded(acc, "600.00"), recorded(acc, "700.00")
    p.feed(RECORDED, a, b)
    promo = plan_created(acc, a["data"]["purchase_id"], "600.00", redeem_points=500)
    rejected = p.one(PLANS, promo)
    assert rejected.type == "points.redemption-rejected"
    assert (rejected.data.why, rejected.data.points) == ("nothing_to_waive", 500)
    assert (
        p.events(PLANS, plan_created(acc, b["data"]["purchase_id"], "700.00", total_fee="12.60"))
        == []
    )


def test_the_first_plan_redeems_before_its_bonus_is_credited(p):
    acc = account_id()
    msg = recorded(acc, "1000.00")
    p.feed(RECORDED, msg)
    plan = plan_created(
        acc, msg["data"]["purchase_id"], "1000.00", total_fee="50.00", redeem_points=1500
    )
    rejected, bonus = p.events(PLANS, plan)
    assert (rejected.type, rejected.data.balance_after) == ("points.redemption-rejected", 1000)
    assert (bonus.type, bonus.data.points, bonus.data.balance_after) == (
        "points.accrued",
        1000,
        2000,
    )
    second = recorded(acc, "500.00")
    p.feed(RECORDED, second)
    plan2 = plan_created(
        acc, second["data"]["purchase_id"], "500.00", total_fee="50.00", redeem_points=1000
    )
    [redeemed] = p.events(PLANS, plan2)
    assert (redeemed.type, redeemed.data.balance_after) == ("points.redeemed", 1500)


def test_a_reversal_may_take_the_balance_below_zero(p):
    acc = account_id()
    a = recorded(acc, "1000.00")
    p.feed(RECORDED, a)
    plan_a = plan_created(acc, a["data"]["purchase_id"], "1000.00", total_fee="18.00")
    p.feed(PLANS, plan_a)  # bonus 1000 -> 2000
    b = recorded(acc, "500.00")
    p.feed(RECORDED, b)  # 2500
    plan_b = plan_created(
        acc, b["data"]["purchase_id"], "500.00", total_fee="30.00", redeem_points=2500
    )
    assert p.one(PLANS, plan_b).data.balance_after == 0  # everything spent
    refund, bonus_back = p.events(
        RECORDED, refund_recorded(acc, a["data"]["purchase_id"], "1000.00", "1000.00", fully=True)
    )
    assert (refund.data.points, refund.data.balance_after) == (1000, -1000)
    assert (bonus_back.data.points, bonus_back.data.balance_after) == (1000, -2000)
    assert bonus_back.data.plan_id == plan_a["data"]["plan_id"]
    assert p.events(PLANS, plan_cancelled(acc, plan_a["data"]["plan_id"], "1000.00")) == []
    # and a redemption is then refused, not taken further below zero
    c = recorded(acc, "100.00")
    p.feed(RECORDED, c)
    rejected = p.one(
        PLANS,
        plan_created(acc, c["data"]["purchase_id"], "100.00", total_fee="5.00", redeem_points=1),
    )
    assert (rejected.type, rejected.data.balance_after) == ("points.redemption-rejected", -1900)


# --------------------------------------------------------------------------- duplicates


def test_duplicates_emit_nothing_twice(p):
    acc = account_id()
    p.feed(ACCOUNTS, f.account(acc, tier="gold"))
    buy = recorded(acc, "1000.00")
    pid = buy["data"]["purchase_id"]
    refund = refund_recorded(acc, pid, "250.00", "250.00")
    plan = plan_created(acc, pid, "1000.00", total_fee="18.00", redeem_points=100)
    cancel = plan_cancelled(acc, plan["data"]["plan_id"], "250.00")
    first = [
        *p.events(RECORDED, buy),
        *p.events(PLANS, plan),
        *p.events(RECORDED, refund),
        *p.events(PLANS, cancel),
    ]
    assert [e.type for e in first] == [
        "points.accrued",
        "points.redeemed",
        "points.accrued",
        "points.reversed",
        "points.reversed",
    ]
    balance = p.ledger_sum(acc)
    # the same events again (inbox), the same facts under new ids (business keys), and the
    # same record redelivered (stored offset): nothing is emitted, nothing is booked
    assert p.feed(RECORDED, buy, refund) == []
    assert p.feed(PLANS, plan) == []
    assert p.feed(RECORDED, with_new_id(buy), with_new_id(refund)) == []
    assert p.feed(PLANS, with_new_id(plan)) == []
    record = p.h.publish(RECORDED, recorded(acc, "10.00"))
    [accrued] = p.h.process(record)
    p.seen[acc].append(accrued.event)  # (fed around the wrapper) for the ledger check
    assert p.h.process(record) == []
    assert p.ledger_sum(acc) == balance + 12


def test_replay_with_a_wiped_inbox_emits_nothing(p):
    """Business dedupe alone (purchase_id, refunded_total, plan_id) holds on a replay."""
    from shared.runtime.store import consumer_offsets, inbox

    acc = account_id()
    buy = recorded(acc, "300.00")
    msgs = [
        (RECORDED, buy),
        (
            PLANS,
            plan_created(
                acc, buy["data"]["purchase_id"], "300.00", total_fee="5.40", redeem_points=200
            ),
        ),
        (RECORDED, refund_recorded(acc, buy["data"]["purchase_id"], "100.00", "100.00")),
    ]
    for topic, msg in msgs:
        p.feed(topic, msg)
    with p.h.runner.engine.begin() as conn:
        conn.execute(delete(inbox))
        conn.execute(delete(consumer_offsets))
    for topic, msg in msgs:
        assert p.feed(topic, msg) == []


def test_the_ledger_refuses_update_and_delete(p):
    acc = account_id()
    p.feed(RECORDED, recorded(acc, "10.00"))
    with pytest.raises(DatabaseError, match="append-only"):
        with p.h.runner.engine.begin() as conn:
            conn.execute(update(ledger).values(points=1000))
    with pytest.raises(DatabaseError, match="append-only"):
        with p.h.runner.engine.begin() as conn:
            conn.execute(delete(ledger))
    assert p.ledger_sum(acc) == 10


def test_migration_3_indexes_plans_by_purchase_on_an_older_database(p):
    """A database created before the index (migrations 1-2 of the older metadata) gets it
    from migration 3; a new one already has it from migration 1 (IF NOT EXISTS)."""
    from sqlalchemy import inspect, text

    from services.points.tables import MIGRATIONS, PLANS_BY_PURCHASE
    from shared.runtime.store import migrate, schema_migrations

    engine = p.h.runner.engine

    def indexed() -> bool:
        return PLANS_BY_PURCHASE in {i["name"] for i in inspect(engine).get_indexes("plans")}

    assert indexed()
    with engine.begin() as conn:
        conn.execute(text(f"DROP INDEX {PLANS_BY_PURCHASE}"))
        conn.execute(
            delete(schema_migrations).where(
                schema_migrations.c.component == "service", schema_migrations.c.version == 3
            )
        )
    assert not indexed()
    assert migrate(engine, MIGRATIONS) == ["service:3 plans indexed by purchase_id"]
    assert indexed()
    assert migrate(engine, MIGRATIONS) == []
