"""The checker's money and offset checks, on fabricated histories (no broker).

Each check passes a good history and flags a bad one.
"""

from __future__ import annotations

from datetime import date

from shared.ops.invariants import check_fraud_holds, check_plan_adjustments, check_points_restored
from shared.ops.offset_watch import OffsetWatch
from shared.runtime.settings import Settings
from tests.builders.invariants import (
    fee_waived,
    flagged,
    history_report,
    money_report,
    offer_made,
    paid,
    payment,
    plan_adjusted,
    plan_cancelled,
    plan_created,
    points_event,
    recorded,
    refund_recorded,
    review_closed,
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


def test_restoration_creates_no_points():
    redeemed = points_event("points.redeemed", "p1", 500, 500)
    plans = [plan_created("p1", "pur-1", [("300.00", "3.00")] * 3), plan_cancelled("p1", 300)]
    good = history_report(
        check_points_restored,
        installments_plans_v1=plans,
        points_ledger_v1=[redeemed, points_event("points.restored", "p1", 300, 800)],
    )
    assert good.violations == []
    assert good.checked["points restored never more than redeemed"] == 1
    assert good.checked["points restored only as the plan asked"] == 1

    # 600 restored for a plan that redeemed 500 (and asked for 300): points created
    bad = history_report(
        check_points_restored,
        installments_plans_v1=plans,
        points_ledger_v1=[redeemed, points_event("points.restored", "p1", 600, 1100)],
    )
    assert bad.violations == [
        "points restored never more than redeemed: p1: 600 restored, 500 redeemed",
        "points restored only as the plan asked: p1: 600 restored, points_to_restore 300",
    ]
    # restored before anything was redeemed on that plan (another plan's points)
    early = history_report(
        check_points_restored,
        installments_plans_v1=[plan_cancelled("p2", 100)],
        points_ledger_v1=[points_event("points.restored", "p2", 100, 100), redeemed],
    )
    assert early.violations == [
        "points restored never more than redeemed: p2: 100 restored, 0 redeemed"
    ]


def test_an_adjusted_plan_agrees_with_its_refund():
    plan = plan_created("p1", "pur-1", [("300.00", "3.00")] * 3)
    refund = refund_recorded("ref-1", "pur-1", "100.00")
    pay = payment("pay-1", "303.00")
    # #1 paid; the refund of 100.00 leaves 500.00 over #2 and #3
    good_history = [
        plan,
        paid(pay, "p1", 1, "303.00"),
        plan_adjusted("p1", "ref-1", "100.00", [(2, "250.00", "2.50"), (3, "250.00", "2.50")]),
    ]
    good = history_report(
        check_plan_adjustments,
        purchases_recorded_v1=[refund],
        installments_plans_v1=good_history,
    )
    assert good.violations == []
    assert good.checked["adjusted Σ principal = unpaid principal - principal_reduced"] == 1
    assert good.checked["adjusted amount = principal + fee"] == 2

    # a second refund then adjusts the adjusted schedule (500.00 - 50.00)
    second = history_report(
        check_plan_adjustments,
        purchases_recorded_v1=[refund, refund_recorded("ref-2", "pur-1", "50.00")],
        installments_plans_v1=[
            *good_history,
            plan_adjusted("p1", "ref-2", "50.00", [(2, "225.00", "2.00"), (3, "225.00", "2.00")]),
        ],
    )
    assert second.violations == []

    def bad(adjusted, refunds=(refund,)):
        return history_report(
            check_plan_adjustments,
            purchases_recorded_v1=list(refunds),
            installments_plans_v1=[plan, paid(pay, "p1", 1, "303.00"), adjusted],
        ).violations

    # principal_reduced is not what was refunded
    assert bad(
        plan_adjusted("p1", "ref-1", "90.00", [(2, "255.00", "2.50"), (3, "255.00", "2.50")])
    ) == [
        "principal_reduced = the refund's amount: p1: principal_reduced 90.00,"
        " refund ref-1 of 100.00"
    ]
    # the schedule loses principal (499.99 left instead of 500.00)
    assert bad(
        plan_adjusted("p1", "ref-1", "100.00", [(2, "250.00", "2.50"), (3, "249.99", "2.50")])
    ) == [
        "adjusted Σ principal = unpaid principal - principal_reduced: p1: schedule principal"
        " 499.99, unpaid before 600.00, principal_reduced 100.00"
    ]
    # the paid installment is re-split too
    assert bad(
        plan_adjusted(
            "p1",
            "ref-1",
            "100.00",
            [(1, "100.00", "0"), (2, "200.00", "2.50"), (3, "200.00", "2.50")],
        )
    )[0].startswith("adjusted schedule lists unpaid installments only: p1: schedule seqs [1, 2, 3]")
    # a line whose amount is not principal + fee
    assert bad(
        plan_adjusted(
            "p1",
            "ref-1",
            "100.00",
            [(2, "250.00", "2.50"), (3, "250.00", "2.50")],
            amounts={3: "250.00"},
        )
    ) == ["adjusted amount = principal + fee: p1#3: 250.00 != 250.00 + 2.50"]
    # a refund of another purchase, and an adjustment of a plan never created
    other = refund_recorded("ref-1", "pur-2", "100.00")
    assert bad(
        plan_adjusted("p1", "ref-1", "100.00", [(2, "250.00", "2.50"), (3, "250.00", "2.50")]),
        refunds=(other,),
    )[0].startswith("plan.adjusted by a refund of its purchase: p1: refund ref-1")
    unknown = history_report(
        check_plan_adjustments,
        purchases_recorded_v1=[refund],
        installments_plans_v1=[plan_adjusted("p9", "ref-1", "100.00", [(2, "1.00", "0")])],
    )
    assert unknown.violations == [
        "plan.adjusted of a known plan: p9 adjusted before (or without) its plan.created"
    ]
    # a refund as large as the unpaid principal must cancel the plan, not adjust it
    whole = refund_recorded("ref-1", "pur-1", "600.00")
    assert bad(
        plan_adjusted("p1", "ref-1", "600.00", [(2, "0.00", "0"), (3, "0.00", "0")]),
        refunds=(whole,),
    ) == [
        "adjusted Σ principal = unpaid principal - principal_reduced: p1: schedule principal"
        " 0.00, unpaid before 600.00, principal_reduced 600.00"
    ]


def test_flagged_purchases_wait_for_the_fraud_team():
    lines = [("1000.00", "7.50")] * 3
    closed_on = date(2026, 3, 4)
    clean = recorded("pur-1")
    spike = recorded("pur-2", flags=("amount_spike",))
    burst = recorded("pur-3", flags=("velocity",))
    announced = [flagged("pur-2", ("amount_spike",)), flagged("pur-3", ("velocity",))]
    good = history_report(
        check_fraud_holds,
        purchases_recorded_v1=[clean, spike, burst, *announced],
        fraud_reviews_v1=[
            review_closed("pur-2", "cleared", closed_on),
            review_closed("pur-3", "confirmed_fraud", closed_on),
        ],
        installments_offers_v1=[offer_made("pur-1")],
        installments_plans_v1=[
            plan_created("a", "pur-1", lines),
            # cleared on 4 March: auto-converted as of that day, first due 4 April
            plan_created("b", "pur-2", lines, start=closed_on, auto_converted=True),
        ],
    )
    assert good.violations == []
    assert good.checked["flagged purchase announced once with its flags"] == 3
    assert good.checked["cleared purchase's plan counts from closed_on"] == 1
    assert good.checked["no auto-conversion for a confirmed-fraud purchase"] == 1

    def bad(*, reviews=(), offers=(), plans=(), records=(clean, spike, burst, *announced)):
        return history_report(
            check_fraud_holds,
            purchases_recorded_v1=list(records),
            fraud_reviews_v1=list(reviews),
            installments_offers_v1=list(offers),
            installments_plans_v1=list(plans),
        ).violations

    fraud = review_closed("pur-3", "confirmed_fraud", closed_on)
    assert bad(reviews=[fraud], offers=[offer_made("pur-3")]) == [
        "no offer for a confirmed-fraud purchase: pur-3: offer"
    ]
    assert bad(reviews=[fraud], plans=[plan_created("c", "pur-3", lines, auto_converted=True)]) == [
        "no auto-conversion for a confirmed-fraud purchase: pur-3: auto-conversion"
    ]
    # auto-converted (or offered) while the review is still open
    assert bad(plans=[plan_created("b", "pur-2", lines, auto_converted=True)]) == [
        "flagged purchase's auto-conversion only once cleared: pur-2 flagged"
        " ['amount_spike'], auto-conversion with its review still open"
    ]
    assert bad(offers=[offer_made("pur-2")])[0].startswith(
        "flagged purchase's offer only once cleared: pur-2"
    )
    # cleared, but the plan counts from the posting date (2 March), not closed_on
    cleared = review_closed("pur-2", "cleared", closed_on)
    assert bad(
        reviews=[cleared], plans=[plan_created("b", "pur-2", lines, auto_converted=True)]
    ) == [
        "cleared purchase's plan counts from closed_on: b: first due 2026-04-02,"
        " review closed 2026-03-04"
    ]
    # recorded with flags but never announced; announced without flags
    assert bad(records=[clean, spike, flagged("pur-1", ("velocity",))]) == [
        "flagged purchase announced once with its flags: pur-1: risk_flags [],"
        " purchase.flagged [['velocity']]",
        "flagged purchase announced once with its flags: pur-2: risk_flags ['amount_spike'],"
        " purchase.flagged []",
    ]
