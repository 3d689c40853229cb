"""The checker's money and offset checks, on fabricated histories (no broker).

Each check passes a good history and flags a bad one.
"""

from __future__ import annotations

from shared.ops.offset_watch import OffsetWatch
from shared.runtime.settings import Settings
from tests.builders.invariants import (
    fee_waived,
    money_report,
    paid,
    payment,
    plan_created,
)


def test_payments_never_more_than_due_nor_received():
    plan = plan_created("p1", "pur-1", [("100.00", "1.50"), ("100.00", "1.50")])
    pay1, pay2, pay3 = payment("pay-1", "60.00"), payment("pay-2", "80.00"), payment("pay-3", "100")
    good = money_report(
        [pay1, pay2, pay3],
        [
            plan,
            fee_waived(plan, "p1", "1.50"),  # the fee of #2 waived for points
            # pay-1 pays 60.00 on #1; pay-2 completes it (101.50 in all), 37.00 go to #2
            paid(pay2, "p1", 1, "101.50"),
            # pay-3 completes #2 (principal only: its fee was waived); 37.00 left as credit
            paid(pay3, "p1", 2, "100.00"),
        ],
    )
    assert good.violations == []
    assert good.checked["payment never applies more than received"] == 2
    assert good.checked["plan paid at most what it was due"] == 1
    assert good.checked["installment paid at most its scheduled amount"] == 2
    assert good.checked["account paid at most what it received"] == 1

    # a payment of 60 settling an installment of 101.50 on an account that had nothing else
    more_than_received = money_report([pay1], [plan, paid(pay1, "p1", 1, "101.50")])
    assert any(
        v.startswith("payment never applies more than received") and "only 60.00" in v
        for v in more_than_received.violations
    ), more_than_received.violations
    assert any(
        v.startswith("account paid at most what it received") for v in more_than_received.violations
    )

    # an installment paid more than its schedule line; and a plan paid more than it was due
    # once a fee waiver lowered it
    rich = [payment("pay-9", "500.00")]
    over_line = money_report(rich, [plan, paid(rich[0], "p1", 1, "101.51")])
    assert [v for v in over_line.violations if "scheduled" in v] == [
        "installment paid at most its scheduled amount: p1#1: paid 101.51, scheduled 101.50"
    ]
    over_plan = money_report(
        rich,
        [
            plan,
            fee_waived(plan, "p1", "1.50"),
            paid(rich[0], "p1", 1, "101.50"),
            paid(plan, "p1", 2, "101.50"),  # the waived fee charged anyway
        ],
    )
    assert any(
        v.startswith("plan paid at most what it was due: p1: paid 203.00, due at most 201.50")
        for v in over_plan.violations
    ), over_plan.violations


def test_stored_offsets_never_move_backwards():
    watch = OffsetWatch(Settings(), services=[])
    db = ("database", "g-offers", "t.card.payments.v1", 0)
    kafka = ("kafka", "g-offers", "t.card.payments.v1", 0)
    for db_offset, kafka_offset in [(0, 0), (5, 3), (5, 5), (9, 5), (12, 12)]:
        watch.observe({db: db_offset, kafka: kafka_offset}, at=1.0)
    # a partition seen for the first time, or gone from a sample, is not a regression
    watch.observe({("database", "g-points", "t.x", 2): 4}, at=1.5)
    watch.observe({db: 12, kafka: 12}, at=2.0)
    assert watch.violations == []
    assert watch.samples == 7
    assert watch.watched == {"database": 2, "kafka": 1}

    watch.observe({db: 11, kafka: 12}, at=2.5)  # a zombie rewound the database
    watch.observe({db: 13, kafka: 7}, at=3.0)  # a stale commit rewound Kafka
    assert watch.violations == [
        "stored offsets never move backwards: database g-offers t.card.payments.v1[0]"
        " went from 12 back to 11 at 2.5s",
        "stored offsets never move backwards: kafka g-offers t.card.payments.v1[0]"
        " went from 12 back to 7 at 3.0s",
    ]
