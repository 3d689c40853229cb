"""The points mixed-batch scenario: tier changes, purchases, refunds, plans,
cancellations and business duplicates for four accounts, run in ONE runtime call and
record by record; outputs and rows must be identical.

Shared by ``tests/unit/points/test_batch.py`` (SQLite) and
``tests/integration/test_points.py`` (PostgreSQL).

Note: the runtime processes a batch partition by partition (in the order each
``(topic, partition)`` first appears), so the scenario keeps each partition's records
together and interleaves topics by using two partitions.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from sqlalchemy import select

from services.points.handlers import PRELOAD
from services.points.repository import PointsRepository
from services.points.tables import accounts, ledger, plans, purchases
from tests.builders import messages as f
from tests.builders.points import (
    ACCOUNTS,
    LEDGER,
    PLANS,
    RECORDED,
    plan_cancelled,
    plan_created,
    recorded,
    refund_recorded,
    with_new_id,
)
from tests.builders.services import POINTS as SERVICE
from tests.harness import Emitted, Harness

Message = tuple[str, int, dict[str, Any]]  # topic, partition, raw message


def prelude(acc3: str) -> list[Message]:
    """An earlier batch: a purchase and its plan, changed by the mixed batch (UPDATEs of
    rows that exist before the batch, not only rows the batch inserts)."""
    f_ = recorded(acc3, "400.00", purchase_id=f"pur-{acc3}")
    return [
        (RECORDED, 0, f_),
        (
            PLANS,
            0,
            plan_created(
                acc3, f_["data"]["purchase_id"], "400.00", total_fee="7.20", plan_id=f"plan-{acc3}"
            ),
        ),
    ]


def mixed_scenario(
    acc: str, acc2: str, acc3: str, acc4: str, *, with_reject: bool = False
) -> list[Message]:
    """Tier changes, purchases, refunds (of purchases with and without a first-plan
    bonus, before and after the plan), plans (redemption, bonus, principal basis),
    cancellations and business duplicates, for four accounts, in partition groups.

    Every ``account.upserted`` of the batch comes before the events of accounts never
    upserted (acc2, acc4): those then pass the accounts barrier (nothing unread) and earn
    at the unknown-account tier, in the batch as one by one.
    """
    a, b, c = recorded(acc, "1000.00"), recorded(acc, "500.00"), recorded(acc, "100.00")
    d, e = recorded(acc2, "300.00"), recorded(acc2, "200.00")
    h = recorded(acc4, "500.00")
    pid = {
        name: m["data"]["purchase_id"] for name, m in zip("abcdeh", (a, b, c, d, e, h), strict=True)
    }
    plan_b = plan_created(acc, pid["b"], "500.00", total_fee="9.00", redeem_points=800)
    plan_c = plan_created(acc, pid["c"], "100.00", total_fee="5.00", redeem_points=1000)
    plan_e = plan_created(acc2, pid["e"], "200.00", total_fee="3.60")  # before its purchase
    plan_h = plan_created(acc4, pid["h"], "500.00", total_fee="9.00")  # after a refund
    group0: list[Message] = [
        (ACCOUNTS, 0, f.account(acc, tier="gold")),
        (RECORDED, 0, a),
        (RECORDED, 0, b),
        (RECORDED, 0, refund_recorded(acc, pid["a"], "250.00", "250.00")),
        (RECORDED, 0, refund_recorded(acc, pid["a"], "250.00", "500.00")),
        (RECORDED, 0, refund_recorded(acc3, f"pur-{acc3}", "100.00", "100.00")),  # + bonus
        (PLANS, 0, plan_b),  # redeem 800, then the first-plan bonus 600
    ]
    if with_reject:  # a rejection in the batch (dead-lettered in it: it changes nothing)
        group0.insert(4, (RECORDED, 0, refund_recorded(acc, "pur-never", "1.00", "1.00")))
    group1: list[Message] = [
        (ACCOUNTS, 1, f.account(acc, tier="diamond")),
        (RECORDED, 1, c),  # diamond now
        (RECORDED, 1, d),  # acc2 never upserted: silver, tier assumed
        (RECORDED, 1, with_new_id(a)),  # the same purchase again: nothing
        (RECORDED, 1, refund_recorded(acc3, f"pur-{acc3}", "100.00", "200.00")),
        (RECORDED, 1, refund_recorded(acc, pid["b"], "250.00", "250.00")),  # plan b's bonus
        (RECORDED, 1, h),  # acc4 never upserted: silver
        (RECORDED, 1, refund_recorded(acc4, pid["h"], "100.00", "100.00")),  # before plan h
        (PLANS, 1, plan_c),  # not the first plan: redemption only
        (PLANS, 1, with_new_id(plan_b)),  # the same plan again: nothing
        (PLANS, 1, plan_e),  # acc2's first plan, from the principal at the assumed tier
        (PLANS, 1, plan_h),  # bonus 500, then at once the 100.00 already refunded: -100
        (PLANS, 1, plan_cancelled(acc, plan_b["data"]["plan_id"], "250.00")),  # no points
        (PLANS, 1, plan_cancelled(acc3, f"plan-{acc3}", "200.00")),  # no points
    ]
    group2: list[Message] = [
        (RECORDED, 2, e),  # after its plan: silver
    ]
    return group0 + group1 + group2


def outputs(emitted: list[Emitted]) -> list[Any]:
    return [
        (e.topic, e.event.id, e.event.type, e.event.subject, e.event.data.model_dump())
        if e.event is not None
        else (e.topic, e.headers)
        for e in emitted
    ]


def state(h: Harness, account_ids: list[str]) -> dict[str, list[Any]]:
    """Every row of the accounts (the ledger without its serial and wall-clock columns)."""
    cols = [c for c in ledger.c if c.name not in ("entry_id", "created_at")]
    with h.runner.engine.connect() as conn:
        return {
            "ledger": [
                tuple(r)
                for r in conn.execute(
                    select(*cols)
                    .where(ledger.c.account_id.in_(account_ids))
                    .order_by(ledger.c.entry_id)
                )
            ],
            **{
                t.name: sorted(
                    tuple(r) for r in conn.execute(select(t).where(t.c.account_id.in_(account_ids)))
                )
                for t in (accounts, purchases, plans)
            },
        }


def check_running_balance(h: Harness, account_ids: list[str]) -> None:
    with h.runner.engine.connect() as conn:
        for account_id in account_ids:
            running = 0
            for row in conn.execute(
                select(ledger).where(ledger.c.account_id == account_id).order_by(ledger.c.entry_id)
            ):
                running += row.points
                assert row.balance_after == running


def compare_batch_with_one_by_one(
    batch: Harness, single: Harness, loads: list[int], *, with_reject: bool
) -> list[Emitted]:
    """Run the scenario in ONE ``process`` call on ``batch`` and record by record on
    ``single``; outputs and rows must be identical. Returns the batch's outputs."""
    acc, acc2, acc3, acc4 = (f.new_id("acc") for _ in range(4))
    before = prelude(acc3)
    batch.process(*(batch.publish(t, m, partition=p) for t, p, m in before))
    for topic, partition, message in before:
        single.process(single.publish(topic, message, partition=partition))
    loads.clear()
    messages = mixed_scenario(acc, acc2, acc3, acc4, with_reject=with_reject)
    groups = [(t, p) for t, p, _m in messages]
    assert all(g not in groups[:i] or groups[i - 1] == g for i, g in enumerate(groups)), (
        "keep each (topic, partition) together: the runtime runs a batch partition by partition"
    )
    in_batch = batch.process(*(batch.publish(t, m, partition=p) for t, p, m in messages))
    # ONE load (and lock) for the whole batch; with_reject too: the rejected record changed
    # nothing before it refused (the repository counts its changes), so it is
    # dead-lettered inside the batch's transaction instead of splitting the batch
    assert loads == [len(messages)]
    one_by_one: list[Emitted] = []
    for topic, partition, message in messages:
        one_by_one += single.process(single.publish(topic, message, partition=partition))
    assert outputs(in_batch) == outputs(one_by_one)
    everyone = [acc, acc2, acc3, acc4]
    assert state(batch, everyone) == state(single, everyone)
    check_running_balance(batch, everyone)

    ledger_events = [e.event for e in in_batch if e.topic == LEDGER]

    def moves(account_id: str) -> list[tuple[str, str, int, int]]:
        return [
            (e.type, e.data.reason, e.data.points, e.data.balance_after)
            for e in ledger_events
            if e.subject == account_id
        ]

    assert moves(acc) == [
        ("points.accrued", "purchase", 1200, 1200),  # a, gold
        ("points.accrued", "purchase", 600, 1800),  # b
        ("points.reversed", "refund", 300, 1500),  # a: 250 of 1000 refunded
        ("points.reversed", "refund", 300, 1200),  # a: 500 of 1000
        ("points.redeemed", "fee_redemption", 800, 400),  # plan b: redemption first ...
        ("points.accrued", "first_installment_bonus", 600, 1000),  # ... then the bonus
        ("points.accrued", "purchase", 200, 1200),  # c, diamond
        ("points.reversed", "refund", 300, 900),  # b: 250 of 500 refunded
        ("points.reversed", "refund", 300, 600),  # ... and that share of plan b's bonus
        ("points.redeemed", "fee_redemption", 500, 100),  # plan c: capped at its fee
    ]  # plan b's cancellation: nothing (the refund reversed the bonus)
    assert moves(acc2) == [
        ("points.accrued", "purchase", 300, 300),  # d, silver (assumed)
        ("points.accrued", "first_installment_bonus", 200, 500),  # plan e, from its principal
        ("points.accrued", "purchase", 200, 700),  # e, silver
    ]
    assert moves(acc3) == [  # 400 earned + 400 bonus in the earlier batch
        ("points.reversed", "refund", 100, 700),  # f: 100 of 400 refunded
        ("points.reversed", "refund", 100, 600),  # ... and that share of the bonus
        ("points.reversed", "refund", 100, 500),  # f: 200 of 400
        ("points.reversed", "refund", 100, 400),  # bonus: 200 of 400 in all
    ]
    assert moves(acc4) == [
        ("points.accrued", "purchase", 500, 500),  # h, silver (assumed)
        ("points.reversed", "refund", 100, 400),  # h: 100 of 500 refunded (no plan yet)
        ("points.accrued", "first_installment_bonus", 500, 900),  # plan h's bonus ...
        ("points.reversed", "refund", 100, 800),  # ... less the share already refunded
    ]
    bonus_reversals = [
        e for e in ledger_events if e.type == "points.reversed" and e.data.plan_id is not None
    ]
    assert len(bonus_reversals) == 4  # the bonus shares name their plan
    first_plan = {}
    for _topic, _partition, m in messages:
        if m["type"] == "plan.created":
            first_plan.setdefault(m["subject"], m["data"]["plan_id"])
    assert sorted(state(batch, [acc, acc2, acc4])["accounts"]) == sorted(
        [
            (acc, "diamond", True, first_plan[acc]),
            (acc2, None, True, first_plan[acc2]),
            (acc4, None, True, first_plan[acc4]),
        ]
    )
    dead = [e for e in in_batch if e.event is None]
    assert len(dead) == with_reject
    return in_batch


def counting_service(loads: list[int]) -> Any:
    class Counting(PointsRepository):
        def load(self, events: list[Any]) -> None:
            loads.append(len(events))
            super().load(events)

    return dataclasses.replace(SERVICE, repository=functools.partial(Counting, preload=PRELOAD))
