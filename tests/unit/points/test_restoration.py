"""Points restored (second release, issue #13): ``points_to_restore`` of a plan.cancelled
or plan.adjusted gives back redeemed points, never more than was redeemed for the plan,
exactly once per cause, and the ledger stays Σ = balance.

Domain properties (hypothesis) first, then the handlers through the runtime's batch
code (SQLite, no broker).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.points import domain
from services.points.domain import (
    FEE_REDEMPTION,
    PURCHASE,
    RESTORED_ON_ADJUST,
    RESTORED_ON_CANCEL,
    Ledger,
    LedgerEntry,
    points_to_restore,
    redeem,
)
from services.points.tables import plans, restorations
from tests.builders import messages as f
from tests.builders.points import (
    LEDGER,
    PLANS,
    RECORDED,
    Points,
    plan_adjusted,
    plan_cancelled,
    plan_created,
    recorded,
    with_new_id,
)
from tests.builders.services import POINTS as SERVICE
from tests.harness import Harness

D = Decimal

# --------------------------------------------------------------------------- domain


def test_restore_is_capped_at_what_was_redeemed_less_what_came_back():
    assert points_to_restore(300, redeemed=1000, already_restored=0) == 300
    assert points_to_restore(300, redeemed=1000, already_restored=800) == 200
    assert points_to_restore(300, redeemed=1000, already_restored=1000) == 0
    assert points_to_restore(300, redeemed=0, already_restored=0) == 0  # nothing redeemed
    assert points_to_restore(0, redeemed=1000, already_restored=0) == 0


def test_restore_refuses_negative_or_non_int_inputs():
    with pytest.raises(ValueError):
        points_to_restore(-1, 10, 0)
    with pytest.raises(TypeError):
        points_to_restore(True, 10, 0)  # type: ignore[arg-type]


def test_restoration_is_a_credit_in_the_ledger():
    assert LedgerEntry(5, RESTORED_ON_CANCEL, "plan-1").points == 5
    with pytest.raises(ValueError):
        LedgerEntry(-5, RESTORED_ON_ADJUST, "plan-1")
    assert domain.RESTORE_EVENT_REASON == {
        RESTORED_ON_CANCEL: "plan_cancelled",
        RESTORED_ON_ADJUST: "plan_adjusted",
    }


# One plan's life as the domain sees it: accruals, one redemption (at most, when the
# plan is created: it may come before or after restorations are asked, the handler
# then knows 0 redeemed), and restoration requests of any size.
ops = st.lists(
    st.one_of(
        st.tuples(st.just("accrue"), st.integers(0, 5_000)),
        st.tuples(st.just("redeem"), st.integers(0, 5_000), st.integers(0, 100_00)),
        st.tuples(st.just("restore"), st.integers(0, 10_000), st.sampled_from(
            [RESTORED_ON_CANCEL, RESTORED_ON_ADJUST])),
    ),
    max_size=30,
)  # fmt: skip


@given(ops)
def test_property_restored_never_exceeds_redeemed_and_balance_is_the_ledger(steps):
    ledger = Ledger()
    redeemed = restored = 0
    redeemed_once = False
    for op in steps:
        if op[0] == "accrue" and op[1] > 0:
            ledger = ledger.append(op[1], PURCHASE)
        elif op[0] == "redeem" and not redeemed_once:
            outcome = redeem(ledger.balance(), op[1], D(op[2]) / 100)
            if outcome.accepted:
                ledger = ledger.append(-outcome.points, FEE_REDEMPTION, "plan")
                redeemed, redeemed_once = outcome.points, True
        elif op[0] == "restore":
            points = points_to_restore(op[1], redeemed, restored)
            assert 0 <= points <= op[1]
            if points:
                ledger = ledger.append(points, op[2], "plan")
                restored += points
        assert restored <= redeemed
        assert restored == sum(ledger.total(r, "plan") for r in domain.RESTORE_REASONS)
        assert ledger.balance() == sum(e.points for e in ledger.entries)
        assert ledger.balance() >= 0  # redemptions never below zero, restorations credit


@given(st.integers(0, 10_000), st.lists(st.integers(0, 10_000), max_size=10))
def test_property_full_requests_give_back_exactly_what_was_redeemed(redeemed, requests):
    restored = 0
    for requested in requests:
        restored += points_to_restore(requested, redeemed, restored)
    assert restored == min(redeemed, sum(requests))


# --------------------------------------------------------------------------- handlers


@pytest.fixture
def p(tmp_path):
    harness = Harness(SERVICE, tmp_path)
    points = Points(harness)
    yield points
    points.check_ledger()
    harness.close()


def account_id() -> str:
    return f.new_id("acc")


def _plan_with_redemption(p: Points, redeem: int = 1000, fee: str = "54.00") -> tuple[str, str]:
    """An account with 2,000 points that redeems ``redeem`` on a new plan's fee."""
    acc = account_id()
    p.feed(RECORDED, recorded(acc, "2000.00"))
    second = recorded(acc, "1200.00")
    p.feed(RECORDED, second)
    p.feed(PLANS, plan_created(acc, f.new_id("pur"), "500.00"))  # the first plan (bonus)
    plan = plan_created(acc, second["data"]["purchase_id"], "1200.00", total_fee=fee,
                        redeem_points=redeem, tenor=12)  # fmt: skip
    moves = p.events(PLANS, plan)
    assert [e.type for e in moves] == ["points.redeemed"]
    return acc, plan["data"]["plan_id"]


def restored(events: list[Any]) -> list[tuple[str, int, int, str]]:
    return [(e.type, e.data.points, e.data.balance_after, e.data.reason) for e in events]


def test_cancellation_restores_points_as_a_credit(p):
    acc, plan_id = _plan_with_redemption(p)
    before = p.ledger_sum(acc)
    out = p.feed(PLANS, plan_cancelled(acc, plan_id, "1200.00", points_to_restore=300))
    [e] = [o.event for o in out]
    assert out[0].topic == LEDGER and e.subject == acc
    assert restored([e]) == [("points.restored", 300, before + 300, "plan_cancelled")]
    assert e.data.plan_id == plan_id
    [row] = [r for r in p.rows(acc) if r.event_id == e.id]
    assert (row.points, row.reason, row.plan_id) == (300, "restored:plan_cancelled", plan_id)


def test_early_payoff_restores_too(p):
    acc, plan_id = _plan_with_redemption(p)
    cancel = plan_cancelled(acc, plan_id, "0.00", reason="early_payoff", points_to_restore=120)
    assert restored(p.events(PLANS, cancel))[0][:2] == ("points.restored", 120)


def test_adjustments_then_cancellation_never_give_back_more_than_redeemed(p):
    acc, plan_id = _plan_with_redemption(p, redeem=1000)
    start = p.ledger_sum(acc)
    a1 = p.events(PLANS, plan_adjusted(acc, plan_id, "200.00", points_to_restore=400))
    assert restored(a1) == [("points.restored", 400, start + 400, "plan_adjusted")]
    a2 = p.events(PLANS, plan_adjusted(acc, plan_id, "300.00", points_to_restore=500))
    assert restored(a2) == [("points.restored", 500, start + 900, "plan_adjusted")]
    # offers asks for more than is left: capped at the 100 still redeemed
    c = p.events(PLANS, plan_cancelled(acc, plan_id, "700.00", points_to_restore=400))
    assert restored(c) == [("points.restored", 100, start + 1000, "plan_cancelled")]
    assert p.ledger_sum(acc) == start + 1000
    assert p.row(plans, plan_id).principal_returned == D("1200.00")


def test_nothing_redeemed_nothing_restored(p):
    acc = account_id()
    p.feed(RECORDED, recorded(acc, "100.00"))
    plan = plan_created(acc, f.new_id("pur"), "600.00", total_fee="10.80", redeem_points=500)
    assert [e.type for e in p.events(PLANS, plan)] == [
        "points.redemption-rejected",
        "points.accrued",
    ]
    cancel = plan_cancelled(acc, plan["data"]["plan_id"], "600.00", points_to_restore=500)
    assert p.events(PLANS, cancel) == []
    assert p.ledger_sum(acc) == 100 + 600  # purchase + first-plan bonus, no restoration


def test_exactly_once_per_event_redelivered_or_republished(p):
    acc, plan_id = _plan_with_redemption(p)
    adjusted = plan_adjusted(acc, plan_id, "100.00", points_to_restore=250)
    assert len(p.events(PLANS, adjusted)) == 1
    assert p.events(PLANS, adjusted) == []  # redelivered (same id): the inbox drops it
    assert p.events(PLANS, with_new_id(adjusted)) == []  # re-published: same refund_id
    cancel = plan_cancelled(acc, plan_id, "1100.00", points_to_restore=250)
    assert len(p.events(PLANS, cancel)) == 1
    assert p.events(PLANS, cancel) == []
    # both in one batch, twice: still once each
    again = [with_new_id(adjusted), with_new_id(adjusted)]
    assert p.events(PLANS, *again) == []
    assert [r.points for r in p.rows(acc) if r.reason.startswith("restored:")] == [250, 250]


def test_a_replay_emits_the_same_event_ids(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Points(Harness(SERVICE, tmp_path / "a"))
    second = Points(Harness(SERVICE, tmp_path / "b"))
    acc = account_id()
    messages = [
        (RECORDED, recorded(acc, "3000.00")),
        (
            PLANS,
            plan_created(
                acc, f.new_id("pur"), "1200.00", total_fee="54.00", redeem_points=900, tenor=12
            ),
        ),  # fmt: skip
    ]
    plan_id = messages[1][1]["data"]["plan_id"]
    messages.append((PLANS, plan_adjusted(acc, plan_id, "100.00", points_to_restore=90)))
    ids = []
    for pts in (first, second):
        ids.append([e.id for topic, m in messages for e in pts.events(topic, m)])
    assert ids[0] == ids[1] and len(ids[0]) == 4  # accrued, redeemed, bonus, restored
    first.h.close()
    second.h.close()


def test_adjustment_of_an_unknown_plan_or_another_account_is_dead_lettered(p):
    [dead] = p.feed(PLANS, plan_adjusted(account_id(), "plan-never", "1.00", points_to_restore=5))
    assert dead.topic == PLANS + ".dlq" and "never saw" in dead.headers["error.reason"]
    acc, plan_id = _plan_with_redemption(p)
    other = plan_adjusted(acc, plan_id, "1.00", points_to_restore=5)
    other["data"]["account_id"] = "acc-someone-else"
    [dead] = p.feed(PLANS, other)
    assert dead.topic == PLANS + ".dlq"  # the envelope's subject is the account (decode)
    mine = plan_adjusted("acc-someone-else", plan_id, "1.00", points_to_restore=5)
    [dead] = p.feed(PLANS, mine)
    assert "subject differs from the plan's account" in dead.headers["error.reason"]


def test_adjustment_taking_all_the_principal_is_refused(p):
    acc, plan_id = _plan_with_redemption(p)
    [dead] = p.feed(PLANS, plan_adjusted(acc, plan_id, "1200.00", points_to_restore=5))
    assert dead.topic == PLANS + ".dlq" and "not less than" in dead.headers["error.reason"]


def test_restoration_rows_record_asked_and_given(p):
    acc, plan_id = _plan_with_redemption(p, redeem=100)
    p.feed(PLANS, plan_adjusted(acc, plan_id, "100.00", points_to_restore=0, refund_id="ref-1"))
    p.feed(PLANS, plan_cancelled(acc, plan_id, "1100.00", points_to_restore=500))
    with p.h.runner.engine.connect() as conn:
        rows = (
            conn.execute(restorations.select().order_by(restorations.c.cause_key)).mappings().all()
        )
    assert [(r["cause_key"], r["requested"], r["restored"], r["reason"]) for r in rows] == [
        ("adjusted:ref-1", 0, 0, "plan_adjusted"),
        ("cancelled", 500, 100, "plan_cancelled"),
    ]


# A whole-service property: any interleaving of adjustments, re-publications and a
# cancellation, each asking any number of points, never restores more than redeemed.
requests = st.lists(
    st.tuples(st.sampled_from(["adjust", "again", "cancel"]), st.integers(0, 3_000)),
    min_size=1, max_size=8,
)  # fmt: skip


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(redeem_wanted=st.integers(0, 6_000), steps=requests)
def test_property_service_restores_at_most_what_was_redeemed(
    tmp_path_factory, redeem_wanted, steps
):
    pts = Points(Harness(SERVICE, tmp_path_factory.mktemp("pts")))
    acc = account_id()
    pts.feed(RECORDED, recorded(acc, "4000.00"))
    plan = plan_created(acc, f.new_id("pur"), "1200.00", total_fee="54.00",
                        redeem_points=redeem_wanted, tenor=12)  # fmt: skip
    pts.feed(PLANS, plan)
    plan_id = plan["data"]["plan_id"]
    redeemed = -sum(r.points for r in pts.rows(acc) if r.reason == "fee_redemption")
    last: dict[str, Any] | None = None
    cancelled = False
    returned = D(0)
    for kind, asked in steps:
        if cancelled:
            break
        if kind == "again" and last is not None:
            msg = with_new_id(last)
        elif kind == "cancel":
            msg = plan_cancelled(acc, plan_id, str(D("1200.00") - returned),
                                 points_to_restore=asked)  # fmt: skip
            cancelled = True
        else:
            if returned + D("100.00") >= D("1200.00"):
                continue
            msg = last = plan_adjusted(acc, plan_id, "100.00", points_to_restore=asked)
            returned += D("100.00")
        pts.feed(PLANS, msg)
    total = sum(r.points for r in pts.rows(acc) if r.reason.startswith("restored:"))
    assert 0 <= total <= redeemed
    pts.check_ledger()
    pts.h.close()
