"""offers handlers through the runtime's batch code (SQLite, no broker): offers,
eligibility, acceptance, auto-conversion and refunds."""

from dataclasses import replace
from datetime import date
from decimal import Decimal as D

from kafka import TopicPartition

from services.offers.policy import OffersPolicy, Promotion
from tests.builders import messages as f
from tests.builders.offers import (
    ACCOUNTS,
    DECISIONS,
    OFFERS,
    PLANS,
    RECORDED,
    auto_convert,
    purchase_recorded,
    refund_recorded,
)
from tests.builders.services import OFFERS as SERVICE
from tests.harness import Harness


def offer_for(h, acc="acc-1", amount="1200.00", **kw):
    [made] = h.events(RECORDED, purchase_recorded(acc, amount, **kw))
    assert made.type == "offer.made", made
    return made


def test_a_purchase_gets_an_offer_with_every_tenor_and_its_apr(h):
    h.events(ACCOUNTS, f.account("acc-1"))
    out = h.feed(RECORDED, purchase_recorded("acc-1", "1200.00", purchase_id="pur-1"))
    [made] = [e.event for e in out]
    assert out[0].topic == OFFERS
    assert made.subject == "acc-1" and made.source == "offers"
    o = made.data
    assert (o.offer_id, o.purchase_id, o.account_id) == ("off-pur-1", "pur-1", "acc-1")
    assert o.principal == D("1200.00") and o.currency == "USD"
    assert o.expires_on == date(2026, 2, 14)  # posted 2026-01-15 + 30 days
    assert o.promotion is None
    by_tenor = {opt.tenor_months: opt for opt in o.options}
    assert list(by_tenor) == [3, 6, 12, 24]
    twelve = by_tenor[12]
    assert twelve.fee_model == "flat_monthly"
    assert twelve.monthly_fee_rate == D("0.006")
    assert str(twelve.apr) == "13.03"
    assert twelve.total_fee == D("86.40")
    assert (twelve.first_installment, twelve.regular_installment) == (D("107.20"), D("107.20"))
    assert by_tenor[3].total_fee == D("27.00") and by_tenor[3].monthly_fee_rate == D("0.0075")
    assert by_tenor[6].monthly_fee_rate == D("0.007")
    # the wire form of the rate and APR
    assert b'"apr":"13.03"' in out[0].value


def test_segment_pricing_and_the_diamond_tenor(h):
    h.events(ACCOUNTS, f.account("acc-1", segment="high_net_worth", tier="diamond"))
    o = offer_for(h, "acc-1").data
    by_tenor = {opt.tenor_months: opt for opt in o.options}
    assert list(by_tenor) == [3, 6, 12, 24, 36]
    assert by_tenor[12].monthly_fee_rate == D("0.0048")  # 80 % of 0.60 %
    assert by_tenor[3].monthly_fee_rate == D("0.006")


def test_a_merchant_promotion_is_named_on_the_offer(tmp_path):
    promo = Promotion(
        id="promo-tv",
        merchant_id="m-electro",
        tenors=[3, 6],
        valid_from=date(2026, 1, 1),
        valid_to=date(2026, 1, 31),
    )
    service = replace(SERVICE, policy=OffersPolicy(promotions=[promo]))
    h = Harness(service, tmp_path)
    try:
        h.events(ACCOUNTS, f.account("acc-1"))
        o = offer_for(h, "acc-1").data
        assert o.promotion == "promo-tv"
        by_tenor = {opt.tenor_months: opt for opt in o.options}
        assert by_tenor[3].total_fee == 0 and str(by_tenor[3].apr) == "0.00"
        assert by_tenor[12].total_fee == D("86.40")  # not in the promotion
        # another merchant: no promotion
        other = offer_for(h, "acc-1", merchant_id="m-other").data
        assert other.promotion is None
    finally:
        h.close()


def test_not_eligible_lists_every_failing_reason(h):
    h.events(ACCOUNTS, f.account("acc-1", status="blocked", risk_score=550))
    [e] = h.events(RECORDED, purchase_recorded("acc-1", "100.00", mcc="7995"))
    assert e.type == "offer.not-eligible"
    assert e.data.reasons == [
        "account_not_active",
        "amount_below_minimum",
        "mcc_excluded",
        "risk_score_too_low",
    ]
    [unknown] = h.events(RECORDED, purchase_recorded("acc-unknown", "1200.00"))
    assert unknown.data.reasons == ["account_unknown"]
    h.events(ACCOUNTS, f.account("acc-2", credit_limit="1000.00", currency="EUR"))
    [limit] = h.events(RECORDED, purchase_recorded("acc-2", "1200.00"))
    assert limit.data.reasons == ["installment_limit_exceeded", "currency_mismatch"]


def test_the_young_segment_minimum_and_an_explicit_installment_limit(h):
    h.events(
        ACCOUNTS,
        f.account("acc-1", segment="young", installment_limit="1500.00", credit_limit="1000.00"),
    )
    assert offer_for(h, "acc-1", "300.00").type == "offer.made"
    [low] = h.events(RECORDED, purchase_recorded("acc-1", "299.99"))
    assert low.data.reasons == ["amount_below_minimum"]


def test_outstanding_installment_principal_counts_against_the_limit(h):
    h.events(ACCOUNTS, f.account("acc-1", credit_limit="2000.00"))  # limit 1600.00
    made = offer_for(h, "acc-1", "1000.00")
    [plan] = h.events(DECISIONS, f.offer_accepted("acc-1", made.data.offer_id, 3))
    assert plan.type == "plan.created"
    assert offer_for(h, "acc-1", "600.00").type == "offer.made"  # 1000 + 600 <= 1600
    [e] = h.events(RECORDED, purchase_recorded("acc-1", "600.01"))
    assert e.data.reasons == ["installment_limit_exceeded"]


def test_acceptance_creates_the_plan_with_its_schedule(h):
    h.events(ACCOUNTS, f.account("acc-1"))
    made = offer_for(h, "acc-1", "1000.00", purchase_id="pur-9", posted_at="2026-01-31T12:00:00Z")
    out = h.feed(DECISIONS, f.offer_accepted("acc-1", made.data.offer_id, 3, redeem_points=500))
    assert [e.topic for e in out] == [PLANS]
    plan = out[0].event
    assert plan.subject == "acc-1"
    p = plan.data
    assert (p.plan_id, p.offer_id, p.purchase_id) == ("plan-pur-9", "off-pur-9", "pur-9")
    assert p.tenor_months == 3 and p.auto_converted is False and p.redeem_points == 500
    assert p.total_fee == D("22.50") and p.apr == made.data.options[0].apr
    assert [
        (line.seq, line.due_date, line.principal, line.fee, line.amount) for line in p.schedule
    ] == [
        (1, date(2026, 2, 28), D("333.34"), D("7.50"), D("340.84")),  # end-of-month clamp
        (2, date(2026, 3, 31), D("333.33"), D("7.50"), D("340.83")),
        (3, date(2026, 4, 30), D("333.33"), D("7.50"), D("340.83")),
    ]
    assert sum(line.principal for line in p.schedule) == p.principal == D("1000.00")


def test_redeem_points_defaults_to_zero(h):
    h.events(ACCOUNTS, f.account("acc-1"))
    made = offer_for(h, "acc-1")
    [plan] = h.events(DECISIONS, f.offer_accepted("acc-1", made.data.offer_id, 12))
    assert plan.data.redeem_points == 0 and len(plan.data.schedule) == 12
    assert str(plan.data.apr) == "13.03"


def test_decisions_that_cannot_apply_are_rejected_with_a_reason(h):
    h.events(ACCOUNTS, f.account("acc-1"))
    first, second = offer_for(h, "acc-1"), offer_for(h, "acc-1")
    # decline, then accept -> declined
    assert h.events(DECISIONS, f.offer_declined("acc-1", first.data.offer_id)) == []
    assert h.events(DECISIONS, f.offer_declined("acc-1", first.data.offer_id)) == []  # again
    [r] = h.events(DECISIONS, f.offer_accepted("acc-1", first.data.offer_id, 6))
    assert r.type == "offer.rejected"
    assert (r.data.offer_id, r.data.purchase_id, r.data.reason) == (
        first.data.offer_id,
        first.data.purchase_id,
        "declined",
    )
    # a tenor that is not on the menu
    [r] = h.events(DECISIONS, f.offer_accepted("acc-1", second.data.offer_id, 36))
    assert r.data.reason == "invalid_tenor"
    # accept twice -> the second is already_converted; a late decline too
    [plan] = h.events(DECISIONS, f.offer_accepted("acc-1", second.data.offer_id, 6))
    assert plan.type == "plan.created"
    [r] = h.events(DECISIONS, f.offer_accepted("acc-1", second.data.offer_id, 6))
    assert r.data.reason == "already_converted"
    [r] = h.events(DECISIONS, f.offer_declined("acc-1", second.data.offer_id))
    assert r.data.reason == "already_converted"
    # an offer that does not exist, or belongs to another account
    [r] = h.events(DECISIONS, f.offer_accepted("acc-1", "off-nope", 6))
    assert r.data.reason == "unknown_offer" and r.data.purchase_id is None
    [r] = h.events(DECISIONS, f.offer_accepted("acc-2", second.data.offer_id, 6))
    assert r.data.reason == "unknown_offer" and r.subject == "acc-2"


def test_acceptance_rechecks_the_account(h):
    h.events(ACCOUNTS, f.account("acc-1"))
    made = offer_for(h, "acc-1")
    h.events(ACCOUNTS, f.account("acc-1", status="blocked"))
    [r] = h.events(DECISIONS, f.offer_accepted("acc-1", made.data.offer_id, 6))
    assert r.data.reason == "not_eligible"
    h.events(ACCOUNTS, f.account("acc-1"))
    [plan] = h.events(DECISIONS, f.offer_accepted("acc-1", made.data.offer_id, 6))
    assert plan.type == "plan.created"


def test_auto_conversion_makes_a_plan_at_once(h):
    h.events(ACCOUNTS, f.account("acc-1", auto_convert=auto_convert("1000.00", 6)))
    out = h.feed(RECORDED, purchase_recorded("acc-1", "1200.00", purchase_id="pur-a"))
    [plan] = [e.event for e in out]
    assert out[0].topic == PLANS and plan.type == "plan.created"
    p = plan.data
    assert p.auto_converted is True and p.offer_id is None and p.plan_id == "plan-pur-a"
    assert p.tenor_months == 6 and p.total_fee == D("50.40")  # 1200 x 0.70 % x 6
    assert sum(line.principal for line in p.schedule) == D("1200.00")
    # under the threshold: an ordinary offer
    assert offer_for(h, "acc-1", "999.99").type == "offer.made"
    # at the threshold but not eligible: offer.not-eligible, no plan
    [e] = h.events(RECORDED, purchase_recorded("acc-1", "1000.00", mcc="6011"))
    assert e.type == "offer.not-eligible" and e.data.reasons == ["mcc_excluded"]


def test_auto_conversion_off_or_at_a_tenor_not_offered_makes_an_offer(h):
    disabled = {"enabled": False, "threshold": "100.00", "tenor_months": 6}
    h.events(ACCOUNTS, f.account("acc-1", auto_convert=disabled))
    assert offer_for(h, "acc-1").type == "offer.made"
    h.events(ACCOUNTS, f.account("acc-2", auto_convert=auto_convert("100.00", 36)))  # silver
    assert offer_for(h, "acc-2").type == "offer.made"


def test_a_purchase_is_considered_once(h):
    h.events(ACCOUNTS, f.account("acc-1"))
    rec = purchase_recorded("acc-1", purchase_id="pur-1")
    assert len(h.events(RECORDED, rec)) == 1
    assert h.events(RECORDED, rec) == []  # same event: the inbox
    again = purchase_recorded("acc-1", purchase_id="pur-1")  # same purchase, new event id
    assert h.events(RECORDED, again) == []


# ---------------------------------------------------------------- refunds


def converted(h, acc="acc-1", amount="1200.00", tenor=3, pid="pur-r"):
    h.events(ACCOUNTS, f.account(acc))
    made = offer_for(h, acc, amount, purchase_id=pid)
    [plan] = h.events(DECISIONS, f.offer_accepted(acc, made.data.offer_id, tenor))
    return plan.data


def test_full_refund_of_a_converted_purchase_cancels_the_plan(h):
    plan = converted(h)  # 3 x (400.00 + 9.00), due Feb 15, Mar 15, Apr 15
    out = h.feed(RECORDED, refund_recorded("acc-1", "pur-r", "1200.00", fully_refunded=True))
    [c] = [e.event for e in out]
    assert out[0].topic == PLANS and c.type == "plan.cancelled" and c.subject == "acc-1"
    assert (c.data.plan_id, c.data.reason) == (plan.plan_id, "refund")
    assert (c.data.principal_returned, c.data.fee_returned) == (D("1200.00"), D("27.00"))
    # nothing is owed any more: a payment is all credit, no installment.paid
    assert h.events("card.payments.v1", f.payment("acc-1", "10.00")) == []


def test_partial_refund_adjusts_the_plan_then_the_rest_cancels_it(h):
    plan = converted(h)  # 3 x (400.00 + 9.00), due Feb 15, Mar 15, Apr 15
    # partial (CONTRACT 5.1): plan.adjusted on the plans topic, the installments shrink
    out = h.feed(
        RECORDED,
        refund_recorded("acc-1", "pur-r", "600.00", refunded_total="600.00", refund_id="ref-1"),
    )
    [a] = [e.event for e in out]
    assert out[0].topic == PLANS and a.type == "plan.adjusted" and a.subject == "acc-1"
    d = a.data
    assert (d.plan_id, d.account_id, d.reason, d.refund_id) == (
        plan.plan_id,
        "acc-1",
        "refund",
        "ref-1",
    )
    assert (d.principal_reduced, d.fee_reduced, d.fee_returned, d.points_to_restore) == (
        D("600.00"),
        D("13.50"),
        D("0.00"),
        0,
    )
    assert [(x.seq, x.principal, x.fee, x.amount) for x in d.schedule] == [
        (k, D("200.00"), D("4.50"), D("204.50")) for k in (1, 2, 3)
    ]
    assert [x.due_date for x in d.schedule] == [x.due_date for x in plan.schedule]
    # paying the first adjusted installment exactly settles it, with its full amount
    [paid] = h.events(
        "card.payments.v1", f.payment("acc-1", "204.50", received_at="2026-02-15T09:00:00Z")
    )
    assert paid.type == "installment.paid" and paid.data.amount == D("204.50")
    # the rest of the purchase refunded: the plan is cancelled for what this refund removed
    [c] = h.events(
        RECORDED,
        refund_recorded(
            "acc-1",
            "pur-r",
            "600.00",
            refunded_total="1200.00",
            fully_refunded=True,
            refunded_at="2026-02-20T10:00:00Z",
        ),
    )
    assert c.type == "plan.cancelled" and c.data.reason == "refund"
    # principal: the 400 still owed (200 was paid: it becomes credit); fees: 2 x 4.50
    assert (c.data.principal_returned, c.data.fee_returned) == (D("400.00"), D("9.00"))


def test_a_partial_refund_returns_a_share_of_the_fees_paid_early_not_as_credit(h):
    converted(h)  # 3 x (400.00 + 9.00), due Feb 15, Mar 15, Apr 15
    # Feb 10: 409.00 + 9.00 pays installment 1 and the fee of installment 2, early
    assert [e.type for e in h.events(
        "card.payments.v1", f.payment("acc-1", "418.00", received_at="2026-02-10T09:00:00Z")
    )] == ["installment.paid"]  # fmt: skip
    [a] = h.events(
        RECORDED,
        refund_recorded("acc-1", "pur-r", "200.00", refunded_at="2026-02-12T10:00:00Z"),
    )
    # unpaid principal 800 -> 600; fees not yet due 27.00 -> floor(27 x 600/800) = 20.25;
    # of the 18.00 paid early floor(18 x 200/800) = 4.50 is returned (outside the pipeline)
    assert (a.data.fee_reduced, a.data.fee_returned) == (D("6.75"), D("4.50"))
    assert [(x.seq, x.principal, x.fee) for x in a.data.schedule] == [
        (2, D("300.00"), D("6.75")),
        (3, D("300.00"), D("6.75")),
    ]
    # no account credit; the 13.50 kept paid covers the new fees of #1 and #2 (oldest
    # first), so installment 2 owes only its 300.00 of principal
    [paid] = h.events(
        "card.payments.v1", f.payment("acc-1", "300.00", received_at="2026-03-15T09:00:00Z")
    )
    assert (paid.type, paid.data.seq) == ("installment.paid", 2)


def test_refund_before_acceptance_makes_the_offer_unusable(h):
    h.events(ACCOUNTS, f.account("acc-1"))
    made = offer_for(h, "acc-1", purchase_id="pur-x")
    assert h.events(RECORDED, refund_recorded("acc-1", "pur-x", "100.00")) == []
    [r] = h.events(DECISIONS, f.offer_accepted("acc-1", made.data.offer_id, 3))
    assert r.type == "offer.rejected" and r.data.reason == "refunded"


def test_a_refund_is_applied_once(h):
    converted(h)
    refund = refund_recorded("acc-1", "pur-r", "300.00", refund_id="ref-1")
    assert [e.type for e in h.events(RECORDED, refund)] == ["plan.adjusted"]
    again = refund_recorded(
        "acc-1", "pur-r", "900.00", refund_id="ref-1", refunded_total="1200.00", fully_refunded=True
    )
    assert h.events(RECORDED, again) == []  # same refund_id: ignored
    # still 900.00 of principal on the plan: a refund of 900 cancels it
    [c] = h.events(
        RECORDED,
        refund_recorded(
            "acc-1",
            "pur-r",
            "900.00",
            refund_id="ref-2",
            refunded_total="1200.00",
            fully_refunded=True,
        ),
    )
    assert c.data.principal_returned == D("900.00")  # ref-1's 300.00 was its plan.adjusted


def test_refund_of_an_ineligible_purchase_does_nothing(h):
    [e] = h.events(RECORDED, purchase_recorded("acc-9", "100.00", purchase_id="pur-small"))
    assert e.type == "offer.not-eligible"
    assert (
        h.events(RECORDED, refund_recorded("acc-9", "pur-small", "100.00", fully_refunded=True))
        == []
    )


def test_a_purchase_of_an_unknown_account_waits_for_the_accounts_published_before_it(h):
    account = h.publish(ACCOUNTS, f.account("acc-1"), partition=1)
    purchase = h.publish(RECORDED, purchase_recorded("acc-1"))
    assert h.process(purchase) == []  # deferred, not account_unknown
    assert TopicPartition(h.settings.topic(RECORDED), 0) in h.runner.deferred_until
    [made] = [e.event for e in h.process(account, purchase)]
    assert made.type == "offer.made"
    # accounts caught up: an account nobody published is unknown at once
    [e] = h.events(RECORDED, purchase_recorded("acc-2"))
    assert e.data.reasons == ["account_unknown"]
