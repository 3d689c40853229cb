"""offers handlers (harness, SQLite): end of day, the payments barrier, delinquency."""

from datetime import date
from decimal import Decimal as D

from kafka import TopicPartition

from tests.builders import messages as f
from tests.builders.offers import (
    ACCOUNTS,
    DAYS,
    DECISIONS,
    OFFERS,
    PAYMENTS,
    PLANS,
    POINTS,
    RECORDED,
    plan,
    points_redeemed,
    purchase_recorded,
    refund_recorded,
)


def eod(h, day):
    out = h.feed(DAYS, f.business_day(day))
    assert all(e.event is not None for e in out), out
    return out


def kinds(out):
    return [(e.topic, e.event.type, e.event.subject) for e in out]


def test_end_of_day_emits_due_soon_expiry_and_delinquency(h):
    a = plan(h)
    h.events(ACCOUNTS, f.account("acc-2"))
    [offer] = h.events(RECORDED, purchase_recorded("acc-2", posted_at="2026-01-15T08:00:00Z"))
    assert offer.data.expires_on == date(2026, 2, 14)

    assert eod(h, "2026-02-07") == []  # 8 days before the due date
    [soon] = eod(h, "2026-02-08")
    assert (soon.topic, soon.event.subject) == (PLANS, "acc-1")
    d = soon.event.data
    assert (
        d.plan_id,
        d.seq,
        d.due_date,
        d.amount_outstanding,
        d.days_until_due,
        d.business_date,
        d.currency,
    ) == (a.plan_id, 1, date(2026, 2, 15), D("409.00"), 7, date(2026, 2, 8), "USD")
    [soon] = eod(h, "2026-02-13")  # the day before the offer's last day: still open
    assert soon.event.data.days_until_due == 2
    out = eod(h, "2026-02-14")  # the end of the offer's last day (expires_on) expires it
    assert kinds(out) == [
        (OFFERS, "offer.expired", "acc-2"),
        (PLANS, "installment.due-soon", "acc-1"),
    ]
    expired = out[0].event.data
    assert (expired.offer_id, expired.purchase_id, expired.business_date) == (
        offer.data.offer_id,
        offer.data.purchase_id,
        date(2026, 2, 14),
    )
    assert out[1].event.data.days_until_due == 1
    [soon] = eod(h, "2026-02-15")
    assert soon.event.data.days_until_due == 0
    [late] = eod(h, "2026-02-16")
    assert (late.topic, late.event.type, late.event.subject) == (
        PLANS,
        "account.delinquency",
        "acc-1",
    )
    assert (
        late.event.data.days_past_due,
        late.event.data.overdue_amount,
        late.event.data.oldest_unpaid_due_date,
        late.event.data.business_date,
    ) == (1, D("409.00"), date(2026, 2, 15), date(2026, 2, 16))

    # the expired offer can no longer be accepted
    [r] = h.events(DECISIONS, f.offer_accepted("acc-2", offer.data.offer_id, 3))
    assert r.data.reason == "expired"
    # an overdue account gets no new offer
    [ne] = h.events(RECORDED, purchase_recorded("acc-1", posted_at="2026-02-16T12:00:00Z"))
    assert ne.data.reasons == ["overdue_installment"]


def test_an_offer_is_acceptable_on_expires_on_and_expired_by_its_end_of_day(h):
    h.events(ACCOUNTS, f.account("acc-1"), f.account("acc-2"))
    [one] = h.events(RECORDED, purchase_recorded("acc-1", posted_at="2026-01-01T09:00:00Z"))
    [two] = h.events(RECORDED, purchase_recorded("acc-2", posted_at="2026-01-01T09:00:00Z"))
    assert one.data.expires_on == date(2026, 1, 31)
    eod(h, "2026-01-30")
    # Jan 31, before its end of day: still acceptable (day 30 after posting)
    [created] = h.events(DECISIONS, f.offer_accepted("acc-1", one.data.offer_id, 3))
    assert created.type == "plan.created"
    [expired] = [e for e in eod(h, "2026-01-31") if e.topic == OFFERS]
    assert (expired.event.type, expired.event.data.offer_id) == ("offer.expired", two.data.offer_id)
    # Feb 1 (day 31): expired by the end of day of Jan 31
    [r] = h.events(DECISIONS, f.offer_accepted("acc-2", two.data.offer_id, 3))
    assert (r.type, r.data.reason) == ("offer.rejected", "expired")


def test_a_payment_that_clears_the_overdue_installments_cures_at_once(h):
    a = plan(h)
    eod(h, "2026-02-16")
    # a partial payment: still overdue, no cure
    assert (
        h.events(PAYMENTS, f.payment("acc-1", "200.00", received_at="2026-02-17T10:00:00Z")) == []
    )
    [late] = eod(h, "2026-02-17")
    assert (late.event.data.days_past_due, late.event.data.overdue_amount) == (2, D("209.00"))
    out = h.feed(PAYMENTS, f.payment("acc-1", "209.00", received_at="2026-02-18T10:00:00Z"))
    assert [e.event.type for e in out] == ["installment.paid", "account.delinquency"]
    cure = out[1].event
    assert cure.subject == "acc-1"
    assert (
        cure.data.days_past_due,
        cure.data.overdue_amount,
        cure.data.business_date,
        cure.data.oldest_unpaid_due_date,
    ) == (0, D("0.00"), date(2026, 2, 18), None)
    assert out[0].event.data.plan_id == a.plan_id
    assert eod(h, "2026-02-18") == []
    # the next payment does not cure again
    assert [
        e.event.type
        for e in h.feed(PAYMENTS, f.payment("acc-1", "409.00", received_at="2026-03-15T10:00:00Z"))
    ] == ["installment.paid"]


def test_no_cure_while_an_installment_due_since_the_flagging_end_of_day_is_unpaid(h):
    """Flagged overdue on Mar 31 (installment 1 due Mar 1); installment 2 fell due Apr 1
    with no end of day since. A payment on Apr 5 clears only installment 1: the account
    is still overdue on Apr 5, so no days_past_due 0."""
    a = plan(h, posted_at="2026-02-01T10:00:00Z")  # 409.00 due Mar 1, Apr 1, May 1
    [late] = [e for e in eod(h, "2026-03-31") if e.event.type == "account.delinquency"]
    assert (late.event.data.days_past_due, late.event.data.overdue_amount) == (30, D("409.00"))
    out = h.feed(PAYMENTS, f.payment("acc-1", "409.00", received_at="2026-04-05T10:00:00Z"))
    assert [(e.event.type, e.event.data.seq) for e in out] == [("installment.paid", 1)]
    # still flagged: no new offer, and the next end of day reports installment 2
    [ne] = h.events(RECORDED, purchase_recorded("acc-1", posted_at="2026-04-05T12:00:00Z"))
    assert ne.data.reasons == ["overdue_installment"]
    [late] = [e for e in eod(h, "2026-04-05") if e.event.type == "account.delinquency"]
    assert (late.event.data.days_past_due, late.event.data.oldest_unpaid_due_date) == (
        4,
        date(2026, 4, 1),
    )
    # clearing installment 2 cures, dated the payment
    out = h.feed(PAYMENTS, f.payment("acc-1", "409.00", received_at="2026-04-06T10:00:00Z"))
    assert [e.event.type for e in out] == ["installment.paid", "account.delinquency"]
    cure = out[1].event.data
    assert (cure.days_past_due, cure.business_date) == (0, date(2026, 4, 6))
    assert out[0].event.data.plan_id == a.plan_id


def test_a_cure_is_checked_as_of_the_date_it_carries_without_an_end_of_day_between(h):
    plan(h, posted_at="2026-02-01T10:00:00Z")  # 409.00 due Mar 1, Apr 1, May 1
    eod(h, "2026-03-31")
    # both installments paid on Apr 5 in one payment: cured, dated Apr 5
    out = h.feed(PAYMENTS, f.payment("acc-1", "818.00", received_at="2026-04-05T10:00:00Z"))
    assert [e.event.type for e in out] == [
        "installment.paid",
        "installment.paid",
        "account.delinquency",
    ]
    assert out[2].event.data.business_date == date(2026, 4, 5)


def test_a_business_date_is_processed_once_and_a_stale_one_is_ignored(h):
    plan(h)
    day = f.business_day("2026-02-16")
    assert len(h.events(DAYS, day)) == 1
    assert h.events(DAYS, day) == []  # the same event
    assert h.events(DAYS, f.business_day("2026-02-16")) == []  # the same date again
    assert h.events(DAYS, f.business_day("2026-02-10")) == []  # before the last date
    assert len(h.events(DAYS, f.business_day("2026-02-17"))) == 1


def test_end_of_day_waits_for_the_payments_published_before_it(h):
    a = plan(h)
    payment = h.publish(PAYMENTS, f.payment("acc-1", "409.00", received_at="2026-02-15T10:00:00Z"))
    day = h.publish(DAYS, f.business_day("2026-03-08"))
    assert h.process(day) == []  # deferred: installment 1 is not reported overdue
    days_tp = TopicPartition(h.settings.topic(DAYS), 0)
    assert days_tp in h.runner.deferred_until
    out = h.process(payment, day)
    assert [(e.event.type, e.event.data.seq) for e in out] == [
        ("installment.paid", 1),
        ("installment.due-soon", 2),
    ]
    assert out[1].event.data.plan_id == a.plan_id
    assert out[1].event.data.business_date == date(2026, 3, 8)


def test_the_barrier_looks_at_every_partition_of_the_payments_topic(h):
    plan(h)
    h.feed(PAYMENTS, f.payment("acc-1", "409.00", received_at="2026-02-15T10:00:00Z"))
    pending = h.publish(PAYMENTS, f.payment("acc-7", "1.00"), partition=2)
    day = h.publish(DAYS, f.business_day("2026-03-08"))
    assert h.process(day) == []  # partition 2 is behind
    h.process(pending)
    out = h.process(day)
    assert [(e.event.type, e.event.data.seq) for e in out] == [("installment.due-soon", 2)]


def test_credit_pays_installments_at_end_of_day(h):
    a = plan(h)
    h.feed(PAYMENTS, f.payment("acc-1", "409.00", received_at="2026-02-15T10:00:00Z"))
    h.feed(PAYMENTS, f.payment("acc-1", "409.00", received_at="2026-03-15T10:00:00Z"))
    out = h.feed(PAYMENTS, f.payment("acc-1", "709.00", received_at="2026-04-15T10:00:00Z"))
    assert [e.event.type for e in out] == ["installment.paid", "plan.completed"]  # 300 credit
    b = plan(h, amount="600.00", posted_at="2026-04-20T10:00:00Z")  # 204.50 due May 20
    out = eod(h, "2026-05-20")
    assert [(e.event.type, e.event.data.plan_id, e.event.data.seq) for e in out] == [
        ("installment.paid", b.plan_id, 1)
    ]
    assert out[0].event.data.paid_on == date(2026, 5, 20)
    assert a.plan_id != b.plan_id
    # the other 95.50 went to installment 2: 109.00 settles it
    out = h.feed(PAYMENTS, f.payment("acc-1", "109.00", received_at="2026-06-20T10:00:00Z"))
    assert [(e.event.type, e.event.data.seq) for e in out] == [("installment.paid", 2)]


def test_a_waiver_never_cures_delinquency(h):
    p = plan(h, tenor=12)  # 100.00 + 7.20 a month
    [late] = eod(h, "2026-02-16")
    assert late.event.data.overdue_amount == D("107.20")
    [w] = h.events(POINTS, points_redeemed("acc-1", p.plan_id, 1000))
    assert w.data.amount == D("10.00")
    [late] = eod(h, "2026-02-17")
    assert late.event.type == "account.delinquency"
    assert late.event.data.overdue_amount == D("107.20")  # the overdue fee was not waived


def test_refund_leaves_due_fees_owed_and_their_payment_cures(h):
    p = plan(h)
    eod(h, "2026-02-16")
    [c] = h.events(
        RECORDED,
        refund_recorded(
            "acc-1",
            p.purchase_id,
            "1200.00",
            fully_refunded=True,
            refunded_at="2026-02-17T10:00:00Z",
        ),
    )
    assert (c.data.principal_returned, c.data.fee_returned) == (D("1200.00"), D("18.00"))
    [late] = eod(h, "2026-02-18")
    assert late.event.data.overdue_amount == D("9.00")  # installment 1's fee was due
    out = h.feed(PAYMENTS, f.payment("acc-1", "9.00", received_at="2026-02-19T10:00:00Z"))
    assert [e.event.type for e in out] == ["installment.paid", "account.delinquency"]
    assert out[0].event.data.amount == D("9.00")  # no plan.completed: it was cancelled
    assert out[1].event.data.days_past_due == 0
