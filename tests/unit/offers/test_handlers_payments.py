"""offers handlers (harness, SQLite): payments, credit, early payoff and fee waivers."""

from dataclasses import replace
from decimal import Decimal as D

from services.offers.policy import OffersPolicy, load_policy
from tests.builders import messages as f
from tests.builders.offers import (
    DAYS,
    PAYMENTS,
    PLANS,
    POINTS,
    RECORDED,
    plan,
    points_redeemed,
    refund_recorded,
)
from tests.builders.services import OFFERS as SERVICE
from tests.harness import Harness
from tests.support import envelope


def pay(h, amount, on, acc="acc-1", **kw):
    out = h.feed(PAYMENTS, f.payment(acc, amount, received_at=f"{on}T10:00:00Z", **kw))
    assert all(e.topic == PLANS and e.event.subject == acc for e in out)
    return [e.event for e in out]


def summary(events):
    rows = []
    for e in events:
        d = e.data
        if e.type == "installment.paid":
            rows.append(("paid", d.plan_id, d.seq, str(d.amount), d.paid_on.isoformat()))
        elif e.type == "plan.cancelled":
            rows.append(
                ("cancelled", d.plan_id, d.reason, str(d.principal_returned), str(d.fee_returned))
            )
        elif e.type == "plan.completed":
            rows.append(("completed", d.plan_id))
        else:
            rows.append((e.type,))
    return rows


def test_payments_over_a_plans_life(h):
    p = plan(h)
    pid = p.plan_id
    assert summary(pay(h, "409.00", "2026-02-15")) == [("paid", pid, 1, "409.00", "2026-02-15")]
    assert pay(h, "200.00", "2026-03-14") == []  # fee, then part of the principal
    assert summary(pay(h, "209.00", "2026-03-16")) == [("paid", pid, 2, "409.00", "2026-03-16")]
    [paid, completed] = pay(h, "409.00", "2026-04-15")
    assert summary([paid, completed]) == [
        ("paid", pid, 3, "409.00", "2026-04-15"),
        ("completed", pid),
    ]
    assert paid.data.currency == "USD"
    assert pay(h, "5.00", "2026-04-20") == []  # nothing owed: credit


def test_payments_go_to_the_oldest_installment_first_across_plans(h):
    a = plan(h, amount="1200.00", posted_at="2026-01-15T10:00:00Z")  # 409.00 due Feb 15
    b = plan(h, amount="600.00", posted_at="2026-01-10T10:00:00Z")  # 204.50 due Feb 10
    assert summary(pay(h, "613.50", "2026-02-20")) == [
        ("paid", b.plan_id, 1, "204.50", "2026-02-20"),
        ("paid", a.plan_id, 1, "409.00", "2026-02-20"),
    ]


def test_an_overpayment_is_credit_for_the_next_installment(h):
    a = plan(h)
    pay(h, "409.00", "2026-02-15")
    pay(h, "409.00", "2026-03-15")
    assert summary(pay(h, "459.00", "2026-04-15")) == [
        ("paid", a.plan_id, 3, "409.00", "2026-04-15"),
        ("completed", a.plan_id),
    ]
    # 50.00 of credit left; a new plan's first installment needs only 359.00 more
    b = plan(h, posted_at="2026-04-20T10:00:00Z")
    assert summary(pay(h, "359.00", "2026-05-20")) == [
        ("paid", b.plan_id, 1, "409.00", "2026-05-20")
    ]


def test_an_overpayment_pays_ahead_on_the_next_installments(h):
    a = plan(h)
    assert summary(pay(h, "509.00", "2026-02-15")) == [
        ("paid", a.plan_id, 1, "409.00", "2026-02-15")
    ]
    # 100.00 went to installment 2 (fee first): 309.00 settles it
    assert summary(pay(h, "309.00", "2026-03-15")) == [
        ("paid", a.plan_id, 2, "409.00", "2026-03-15")
    ]


def test_early_payoff_waives_the_remaining_fees(h):
    a = plan(h)
    pay(h, "409.00", "2026-02-15")
    assert summary(pay(h, "800.00", "2026-03-01")) == [
        ("paid", a.plan_id, 2, "400.00", "2026-03-01"),
        ("paid", a.plan_id, 3, "400.00", "2026-03-01"),
        ("cancelled", a.plan_id, "early_payoff", "0.00", "18.00"),
    ]
    assert pay(h, "1.00", "2026-03-02") == []


def test_early_payoff_without_the_waiver_when_the_policy_says_so(tmp_path):
    service = replace(SERVICE, policy=OffersPolicy(early_payoff_waives_fees=False))
    h = Harness(service, tmp_path)
    try:
        a = plan(h)
        assert summary(pay(h, "818.00", "2026-02-01")) == [
            ("paid", a.plan_id, 1, "409.00", "2026-02-01"),
            ("paid", a.plan_id, 2, "409.00", "2026-02-01"),
        ]
    finally:
        h.close()


def test_a_payment_is_applied_once(h):
    a = plan(h)
    first = f.payment("acc-1", "409.00", received_at="2026-02-15T10:00:00Z", payment_id="pay-1")
    assert len(h.events(PAYMENTS, first)) == 1
    assert h.events(PAYMENTS, first) == []  # the same event: the inbox
    same_payment = f.payment(
        "acc-1", "409.00", received_at="2026-03-15T10:00:00Z", payment_id="pay-1"
    )
    assert h.events(PAYMENTS, same_payment) == []  # a new event, same payment_id
    assert summary(pay(h, "409.00", "2026-03-15")) == [
        ("paid", a.plan_id, 2, "409.00", "2026-03-15")
    ]


def test_a_payment_in_another_currency_goes_to_the_dlq(h):
    plan(h)
    bad = f.payment("acc-1", "409.00")
    bad["data"]["currency"] = "EUR"
    [out] = h.feed(PAYMENTS, bad)
    assert out.topic == PAYMENTS + ".dlq" and "currency" in out.headers["error.reason"]


def test_refund_excess_over_the_unpaid_principal_becomes_credit(h):
    p = plan(h, posted_at="2026-01-15T10:00:00Z")
    pay(h, "409.00", "2026-02-15")
    refund = refund_recorded(
        "acc-1", p.purchase_id, "1200.00", fully_refunded=True, refunded_at="2026-02-20T10:00:00Z"
    )
    [c] = h.events(RECORDED, refund)
    assert (c.data.principal_returned, c.data.fee_returned) == (D("800.00"), D("18.00"))
    # the 400.00 already paid is credit: a later plan's first installment is covered
    b = plan(h, posted_at="2026-03-01T10:00:00Z")
    assert summary(pay(h, "9.00", "2026-04-01")) == [("paid", b.plan_id, 1, "409.00", "2026-04-01")]


def test_a_full_refund_returns_fees_paid_early_as_credit(h):
    p = plan(h, amount="1000.00", posted_at="2026-01-31T10:00:00Z")  # 340.84, 340.83, 340.83
    # Feb 10: installment 1 (due Feb 28) and 1.00 of installment 2's fee, all early
    assert summary(pay(h, "341.84", "2026-02-10")) == [
        ("paid", p.plan_id, 1, "340.84", "2026-02-10")
    ]
    refund = refund_recorded(
        "acc-1", p.purchase_id, "1000.00", fully_refunded=True, refunded_at="2026-02-15T10:00:00Z"
    )
    [c] = h.events(RECORDED, refund)
    # every fee not yet due is returned, the 8.50 already paid included
    assert (c.data.principal_returned, c.data.fee_returned) == (D("666.66"), D("22.50"))
    # credit: 333.34 of principal + 8.50 of fees = 341.84; a later plan's first
    # installment (340.84) takes it at its end of day and 1.00 goes to the second's fee
    b = plan(h, amount="1000.00", posted_at="2026-03-01T10:00:00Z")
    out = h.feed(DAYS, f.business_day("2026-04-01"))
    assert [(e.event.type, e.event.data.plan_id, e.event.data.seq) for e in out] == [
        ("installment.paid", b.plan_id, 1)
    ]
    assert summary(pay(h, "339.83", "2026-05-01")) == [
        ("paid", b.plan_id, 2, "340.83", "2026-05-01")
    ]


# ---------------------------------------------------------------- fee waivers


def test_points_redeemed_waive_unpaid_fees(h):
    p = plan(h, tenor=12)  # 100.00 + 7.20 a month
    out = h.feed(POINTS, points_redeemed("acc-1", p.plan_id, 1000))
    [w] = [e.event for e in out]
    assert out[0].topic == PLANS and w.type == "fee.waived" and w.subject == "acc-1"
    assert (w.data.plan_id, w.data.amount, w.data.currency, w.data.points) == (
        p.plan_id,
        D("10.00"),
        "USD",
        1000,
    )
    # 7.20 off installment 1, 2.80 off installment 2
    assert summary(pay(h, "100.00", "2026-02-15")) == [
        ("paid", p.plan_id, 1, "100.00", "2026-02-15")
    ]
    assert summary(pay(h, "104.40", "2026-03-15")) == [
        ("paid", p.plan_id, 2, "104.40", "2026-03-15")
    ]


def test_a_waiver_is_capped_at_the_unpaid_fees(h):
    p = plan(h)  # 27.00 of fees
    pay(h, "409.00", "2026-02-15")
    [w] = h.events(POINTS, points_redeemed("acc-1", p.plan_id, 100000))
    assert w.data.amount == D("18.00") and w.data.points == 100000
    assert h.events(POINTS, points_redeemed("acc-1", p.plan_id, 500)) == []  # nothing left


def test_the_points_rate_comes_from_the_policy(tmp_path):
    assert OffersPolicy().points_per_currency_unit == 100
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("offers:\n  points_per_currency_unit: 50\n")
    policy = load_policy(str(policy_file))
    assert policy.points_per_currency_unit == 50
    h = Harness(replace(SERVICE, policy=policy), tmp_path)
    try:
        p = plan(h)
        [w] = h.events(POINTS, points_redeemed("acc-1", p.plan_id, 1001))
        assert w.data.amount == D("20.02")
    finally:
        h.close()


def test_points_for_an_unknown_plan_go_to_the_dlq_and_other_points_events_are_skipped(h):
    [out] = h.feed(POINTS, points_redeemed("acc-1", "plan-nope", 100))
    assert out.topic == POINTS + ".dlq" and "plan" in out.headers["error.reason"]
    accrued = envelope(
        "points.accrued",
        "acc-1",
        {
            "account_id": "acc-1",
            "points": 5,
            "balance_after": 5,
            "reason": "purchase",
            "purchase_id": "pur-1",
        },
        source="points",
    )
    assert h.feed(POINTS, accrued) == []


def test_a_waiver_event_is_applied_once(h):
    p = plan(h, tenor=12)
    redeemed = points_redeemed("acc-1", p.plan_id, 1000)
    assert len(h.events(POINTS, redeemed)) == 1
    assert h.events(POINTS, redeemed) == []
