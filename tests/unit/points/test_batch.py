"""A mixed batch in ONE runtime call equals the same events processed one by one.

The batch repository loads and locks once per batch and handlers work on its in-memory
view: a second event of an account in the batch must see the first one's balance
(consecutive ``balance_after``), tier, purchases, plans and first-plan flag. The same
scenario runs on PostgreSQL in ``tests/integration/test_points.py``.

Note: the runtime processes a batch partition by partition (in the order each
``(topic, partition)`` first appears), so the scenario keeps each partition's records
together and interleaves topics by using two partitions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from sqlalchemy import select

from services.points.bootstrap import SERVICE
from services.points.repository import PointsRepository
from services.points.tables import accounts, ledger, plans, purchases
from tests import factories as f
from tests.harness import Emitted, Harness
from tests.unit.points.test_handlers import (
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

Message = tuple[str, int, dict[str, Any]]  # topic, partition, raw message


def prelude(acc3: str) -> list[Message]:
    """An earlier batch: a purchase and its plan, changed by the mixed batch (UPDATEs of
    rows that exist before the batch, not only rows the batch inserts)."""
    f_ = recorded(acc3, "400.00", purchase_id=f"pur-{acc3}")
    return [
        (RECORDED, 0, f_),
        (PLANS, 0, plan_created(acc3, f_["data"]["purchase_id"], "400.00", total_fee="7.20",
                                plan_id=f"plan-{acc3}")),
    ]


def mixed_scenario(acc: str, acc2: str, acc3: str, *, with_reject: bool = False
                   ) -> list[Message]:
    """Tier changes, purchases, refunds, plans (redemption, bonus, principal basis),
    cancellations and business duplicates, for three accounts, in partition groups."""
    a, b, c = recorded(acc, "1000.00"), recorded(acc, "500.00"), recorded(acc, "100.00")
    d, e = recorded(acc2, "300.00"), recorded(acc2, "200.00")
    pid = {name: m["data"]["purchase_id"] for name, m in zip("abcde", (a, b, c, d, e),
                                                              strict=True)}
    plan_b = plan_created(acc, pid["b"], "500.00", total_fee="9.00", redeem_points=800)
    plan_c = plan_created(acc, pid["c"], "100.00", total_fee="5.00", redeem_points=1000)
    plan_e = plan_created(acc2, pid["e"], "200.00", total_fee="3.60")  # before its purchase
    group0: list[Message] = [
        (ACCOUNTS, 0, f.account(acc, tier="gold")),
        (RECORDED, 0, a),
        (RECORDED, 0, d),  # acc2 not upserted yet: silver, tier assumed
        (RECORDED, 0, b),
        (RECORDED, 0, refund_recorded(acc, pid["a"], "250.00", "250.00")),
        (RECORDED, 0, refund_recorded(acc, pid["a"], "250.00", "500.00")),
        (RECORDED, 0, refund_recorded(acc3, f"pur-{acc3}", "100.00", "100.00")),
        (PLANS, 0, plan_b),  # redeem 800, then the first-plan bonus 600
        (PLANS, 0, plan_e),
    ]
    if with_reject:  # forces the runtime's replay, one record per transaction
        group0.insert(4, (RECORDED, 0, refund_recorded(acc, "pur-never", "1.00", "1.00")))
    group1: list[Message] = [
        (ACCOUNTS, 1, f.account(acc, tier="diamond")),
        (ACCOUNTS, 1, f.account(acc2, tier="gold")),
        (RECORDED, 1, c),  # diamond now
        (RECORDED, 1, e),
        (RECORDED, 1, with_new_id(a)),  # the same purchase again: nothing
        (RECORDED, 1, refund_recorded(acc3, f"pur-{acc3}", "100.00", "200.00")),
        (PLANS, 1, plan_c),  # not the first plan: redemption only
        (PLANS, 1, with_new_id(plan_b)),  # the same plan again: nothing
        (PLANS, 1, plan_cancelled(acc, plan_b["data"]["plan_id"], "250.00")),
        (PLANS, 1, plan_cancelled(acc3, f"plan-{acc3}", "200.00")),
    ]
    return group0 + group1


def outputs(emitted: list[Emitted]) -> list[Any]:
    return [
        (e.topic, e.event.id, e.event.type, e.event.subject, e.event.data.model_dump())
        if e.event is not None else (e.topic, e.headers)
        for e in emitted
    ]


def state(h: Harness, account_ids: list[str]) -> dict[str, list[Any]]:
    """Every row of the accounts (the ledger without its serial and wall-clock columns)."""
    cols = [c for c in ledger.c if c.name not in ("entry_id", "created_at")]
    with h.runner.engine.connect() as conn:
        return {
            "ledger": [tuple(r) for r in conn.execute(
                select(*cols).where(ledger.c.account_id.in_(account_ids))
                .order_by(ledger.c.entry_id))],
            **{
                t.name: sorted(tuple(r) for r in conn.execute(
                    select(t).where(t.c.account_id.in_(account_ids))))
                for t in (accounts, purchases, plans)
            },
        }


def check_running_balance(h: Harness, account_ids: list[str]) -> None:
    with h.runner.engine.connect() as conn:
        for account_id in account_ids:
            running = 0
            for row in conn.execute(select(ledger).where(ledger.c.account_id == account_id)
                                    .order_by(ledger.c.entry_id)):
                running += row.points
                assert row.balance_after == running


def compare_batch_with_one_by_one(batch: Harness, single: Harness, loads: list[int], *,
                                  with_reject: bool) -> list[Emitted]:
    """Run the scenario in ONE ``process`` call on ``batch`` and record by record on
    ``single``; outputs and rows must be identical. Returns the batch's outputs."""
    acc, acc2, acc3 = f.new_id("acc"), f.new_id("acc"), f.new_id("acc")
    before = prelude(acc3)
    batch.process(*(batch.publish(t, m, partition=p) for t, p, m in before))
    for topic, partition, message in before:
        single.process(single.publish(topic, message, partition=partition))
    loads.clear()
    messages = mixed_scenario(acc, acc2, acc3, with_reject=with_reject)
    groups = [(t, p) for t, p, _m in messages]
    assert all(g not in groups[:i] or groups[i - 1] == g for i, g in enumerate(groups)), \
        "keep each (topic, partition) together: the runtime runs a batch partition by partition"
    in_batch = batch.process(*(batch.publish(t, m, partition=p) for t, p, m in messages))
    if with_reject:  # the fast path failed: then one fresh repository per record
        assert len(loads) == 1 + len(messages)
    else:
        assert loads == [len(messages)]  # ONE load (and lock) for the whole batch
    one_by_one: list[Emitted] = []
    for topic, partition, message in messages:
        one_by_one += single.process(single.publish(topic, message, partition=partition))
    assert outputs(in_batch) == outputs(one_by_one)
    assert state(batch, [acc, acc2, acc3]) == state(single, [acc, acc2, acc3])
    check_running_balance(batch, [acc, acc2, acc3])

    ledger_events = [e.event for e in in_batch if e.topic == LEDGER]
    assert [(e.type, e.data.points, e.data.balance_after) for e in ledger_events
            if e.subject == acc] == [
        ("points.accrued", 1200, 1200),  # a, gold
        ("points.accrued", 600, 1800),  # b
        ("points.reversed", 300, 1500),  # a: 250 of 1000 refunded
        ("points.reversed", 300, 1200),  # a: 500 of 1000
        ("points.redeemed", 800, 400),  # plan b: redemption first ...
        ("points.accrued", 600, 1000),  # ... then the first-plan bonus
        ("points.accrued", 200, 1200),  # c, diamond
        ("points.redeemed", 500, 700),  # plan c: capped at its fee, no bonus
        ("points.reversed", 300, 400),  # plan b cancelled by refund, half the principal
    ]
    assert [(e.type, e.data.points, e.data.balance_after) for e in ledger_events
            if e.subject == acc2] == [
        ("points.accrued", 300, 300),  # d, silver (assumed)
        ("points.accrued", 200, 500),  # plan e's bonus from its principal, silver
        ("points.accrued", 240, 740),  # e, gold
    ]
    assert [(e.type, e.data.points, e.data.balance_after) for e in ledger_events
            if e.subject == acc3] == [  # 400 earned + 400 bonus in the earlier batch
        ("points.reversed", 100, 700),  # f: 100 of 400 refunded
        ("points.reversed", 100, 600),  # f: 200 of 400
        ("points.reversed", 200, 400),  # plan f cancelled, half the principal
    ]
    first_plan = {}
    for _topic, _partition, m in messages:
        if m["type"] == "plan.created":
            first_plan.setdefault(m["subject"], m["data"]["plan_id"])
    assert sorted(state(batch, [acc, acc2])["accounts"]) == sorted([
        (acc, "diamond", True, first_plan[acc]), (acc2, "gold", True, first_plan[acc2]),
    ])
    dead = [e for e in in_batch if e.event is None]
    assert len(dead) == with_reject
    return in_batch


def counting_service(loads: list[int]) -> Any:
    class Counting(PointsRepository):
        def load(self, events: list[Any]) -> None:
            loads.append(len(events))
            super().load(events)

    return dataclasses.replace(SERVICE, repository=Counting)


@pytest.mark.parametrize("with_reject", [False, True], ids=["fast-path", "replayed"])
def test_a_mixed_batch_gives_what_one_by_one_gives(tmp_path, with_reject):
    loads: list[int] = []
    (tmp_path / "batch").mkdir()
    (tmp_path / "single").mkdir()
    batch = Harness(counting_service(loads), tmp_path / "batch")
    single = Harness(SERVICE, tmp_path / "single")
    try:
        compare_batch_with_one_by_one(batch, single, loads, with_reject=with_reject)
    finally:
        batch.close()
        single.close()
