"""offers handlers, second release (CONTRACT 5.1), through the runtime's batch code:
fraud review holds, pre-approval, partial refunds (plan.adjusted), points restored, the
migration that adds their state; and the "Clarified" rules that concern offers."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

from sqlalchemy import create_engine, delete, insert, select, text

from services.offers.tables import MIGRATIONS, plans, waivers
from shared.runtime.store import migrate, schema_migrations
from tests.builders import messages as f
from tests.builders.offers import (
    ACCOUNTS,
    DAYS,
    DECISIONS,
    FRAUD,
    PAYMENTS,
    POINTS,
    RECORDED,
    auto_convert,
    points_redeemed,
    pre_approval,
    purchase_recorded,
    refund_recorded,
    review_closed,
)
from tests.builders.services import OFFERS as SERVICE

FLAGGED = {"risk_flags": ["velocity"]}


def flagged(h, acc="acc-1", pid="pur-f", amount="1200.00", **kw):
    return h.events(RECORDED, purchase_recorded(acc, amount, purchase_id=pid, **FLAGGED, **kw))


# ------------------------------------------------------------------ fraud review


def test_a_flagged_purchase_is_held_until_cleared_then_offered_as_of_closed_on(h):
    h.events(ACCOUNTS, f.account("acc-1"))
    [held] = flagged(h)
    assert held.type == "offer.not-eligible" and held.data.reasons == ["fraud_review"]
    [made] = h.events(FRAUD, review_closed("acc-1", "pur-f", "cleared", "2026-03-10"))
    assert made.type == "offer.made" and made.data.offer_id == "off-pur-f"
    assert made.data.expires_on == date(2026, 4, 9)  # closed_on + 30
    assert made.data.pre_approved is False
    [plan] = h.events(DECISIONS, f.offer_accepted("acc-1", "off-pur-f", 3))
    assert [line.due_date for line in plan.data.schedule] == [
        date(2026, 4, 10),
        date(2026, 5, 10),
        date(2026, 6, 10),
    ]


def test_a_cleared_offer_expires_30_days_after_closed_on_not_after_posting(h):
    h.events(ACCOUNTS, f.account("acc-1"))
    flagged(h)  # posted Jan 15: an ordinary offer would expire at the close of Feb 14
    h.events(FRAUD, review_closed("acc-1", "pur-f", "cleared", "2026-01-20"))
    days = ["2026-02-14", "2026-02-18"]
    assert [e for d in days for e in h.events(DAYS, f.business_day(d))] == []
    [expired] = h.events(DAYS, f.business_day("2026-02-19"))  # Jan 20 + 30
    assert (expired.type, expired.data.offer_id) == ("offer.expired", "off-pur-f")


def test_a_confirmed_fraud_is_never_offered(h):
    h.events(ACCOUNTS, f.account("acc-1"))
    flagged(h)
    assert h.events(FRAUD, review_closed("acc-1", "pur-f", "confirmed_fraud")) == []
    # a later cleared review (or a re-delivery) changes nothing: the first one wins
    assert h.events(FRAUD, review_closed("acc-1", "pur-f", "cleared")) == []
    [r] = h.events(DECISIONS, f.offer_accepted("acc-1", "off-pur-f", 3))
    assert (r.type, r.data.reason) == ("offer.rejected", "unknown_offer")


def test_a_review_closed_before_its_purchase_is_kept_and_applied_on_arrival(h):
    h.events(ACCOUNTS, f.account("acc-1"))
    assert h.events(FRAUD, review_closed("acc-1", "pur-f", "cleared", "2026-03-10")) == []
    [made] = flagged(h)  # cleared already: offered at once, as of closed_on
    assert made.type == "offer.made" and made.data.expires_on == date(2026, 4, 9)
    assert h.events(FRAUD, review_closed("acc-1", "pur-x", "confirmed_fraud")) == []
    [e] = flagged(h, pid="pur-x")
    assert e.type == "offer.not-eligible" and e.data.reasons == ["fraud_review"]


def test_a_review_is_idempotent_on_redelivery(h):
    h.events(ACCOUNTS, f.account("acc-1"))
    flagged(h)
    review = review_closed("acc-1", "pur-f", "cleared")
    [made] = h.events(FRAUD, review)
    assert made.type == "offer.made"
    assert h.events(FRAUD, review) == []  # the same event again (inbox)
    assert h.events(FRAUD, review_closed("acc-1", "pur-f", "cleared")) == []  # another id


def test_a_flagged_purchase_is_never_auto_converted_until_cleared(h):
    h.events(ACCOUNTS, f.account("acc-1", auto_convert=auto_convert("1000.00", 6)))
    [held] = flagged(h)
    assert held.data.reasons == ["fraud_review"]
    [plan] = h.events(FRAUD, review_closed("acc-1", "pur-f", "cleared", "2026-01-31"))
    assert plan.type == "plan.created" and plan.data.auto_converted
    assert plan.data.schedule[0].due_date == date(2026, 2, 28)  # from closed_on, clamped


def test_a_held_purchase_refunded_before_it_is_cleared_is_not_converted(h):
    h.events(ACCOUNTS, f.account("acc-1"))
    flagged(h)
    assert h.events(RECORDED, refund_recorded("acc-1", "pur-f", "100.00")) == []
    [e] = h.events(FRAUD, review_closed("acc-1", "pur-f", "cleared"))
    assert e.type == "offer.not-eligible" and e.data.reasons == ["purchase_refunded"]


def test_a_review_of_a_clean_purchase_changes_nothing(h):
    h.events(ACCOUNTS, f.account("acc-1"))
    [made] = h.events(RECORDED, purchase_recorded("acc-1", purchase_id="pur-c"))
    assert made.type == "offer.made"
    assert h.events(FRAUD, review_closed("acc-1", "pur-c", "confirmed_fraud")) == []


def test_a_review_naming_another_account_is_dead_lettered(h):
    h.events(ACCOUNTS, f.account("acc-1"))
    flagged(h)
    [dlq] = h.feed(FRAUD, review_closed("acc-2", "pur-f", "cleared"))
    assert dlq.topic == FRAUD + ".dlq" and "another account" in dlq.headers["error.reason"]


def test_the_consumed_topics_include_the_fraud_reviews():
    assert FRAUD in SERVICE.consumes


# ------------------------------------------------------------------ pre-approval


def test_a_pre_approved_account_gets_a_discounted_offer_whatever_its_risk_score(h):
    h.events(ACCOUNTS, f.account("acc-1", risk_score=100, credit_limit="500.00",
                                 pre_approval=pre_approval()))  # fmt: skip
    [made] = h.events(RECORDED, purchase_recorded("acc-1", "1000.00"))
    assert made.type == "offer.made" and made.data.pre_approved is True
    assert [o.monthly_fee_rate for o in made.data.options] == [
        D("0.0060"),
        D("0.0056"),
        D("0.0048"),
        D("0.0048"),
    ]
    [plan] = h.events(DECISIONS, f.offer_accepted("acc-1", made.data.offer_id, 3))
    assert plan.type == "plan.created" and plan.data.total_fee == D("18.00")
    # 1000 owed + 4500 > 5000: beyond the pre-approval the ordinary rules apply
    [e] = h.events(RECORDED, purchase_recorded("acc-1", "4500.00"))
    assert e.data.reasons == ["risk_score_too_low", "installment_limit_exceeded"]


def test_a_lapsed_pre_approval_gives_the_ordinary_rules(h):
    h.events(ACCOUNTS, f.account("acc-1", pre_approval=pre_approval(valid_to="2026-01-14")))
    [made] = h.events(RECORDED, purchase_recorded("acc-1", "1000.00"))  # posted Jan 15
    assert made.data.pre_approved is False
    assert made.data.options[0].monthly_fee_rate == D("0.0075")


# ------------------------------------------------------------------ points restored


def points_plan(h, redeem=1000):
    """1200.00 x 3 (400.00 + 9.00 due Feb 15, Mar 15, Apr 15), then 10.00 of its fees
    waived for `redeem` points on Jan 20: 9.00 of installment 1, 1.00 of installment 2."""
    h.events(ACCOUNTS, f.account("acc-1"))
    [made] = h.events(RECORDED, purchase_recorded("acc-1", "1200.00", purchase_id="pur-p"))
    [created] = h.events(DECISIONS, f.offer_accepted("acc-1", made.data.offer_id, 3, redeem))
    [waived] = h.events(POINTS, points_redeemed("acc-1", created.data.plan_id, redeem))
    assert waived.type == "fee.waived" and waived.data.amount == D(redeem) / 100
    return created.data


def test_a_partial_refund_restores_the_points_of_the_waived_fees_it_removes(h):
    plan = points_plan(h)
    [a] = h.events(RECORDED, refund_recorded("acc-1", "pur-p", "600.00"))  # Jan 20: half
    # fees 27.00 -> 13.50; waived 10.00 -> floor(10 x 600/1200) = 5.00 removed: 500 points
    assert a.type == "plan.adjusted" and a.data.plan_id == plan.plan_id
    assert (a.data.fee_reduced, a.data.points_to_restore) == (D("13.50"), 500)
    # the rest cancels the plan: the 5.00 still waived is removed too
    [c] = h.events(RECORDED, refund_recorded("acc-1", "pur-p", "600.00", refunded_total="1200.00"))
    assert c.type == "plan.cancelled" and c.data.points_to_restore == 500  # 1000 in all


def test_points_restored_never_exceed_those_redeemed(h):
    points_plan(h, redeem=1000)
    [c] = h.events(RECORDED, refund_recorded("acc-1", "pur-p", "1200.00", fully_refunded=True))
    assert c.type == "plan.cancelled" and c.data.points_to_restore == 1000


def test_an_early_payoff_restores_the_points_of_the_fees_it_removes(h):
    points_plan(h)
    out = h.events(PAYMENTS, f.payment("acc-1", "1200.00", received_at="2026-02-01T10:00:00Z"))
    [c] = [e for e in out if e.type == "plan.cancelled"]
    assert c.data.reason == "early_payoff" and c.data.points_to_restore == 1000
    assert c.data.fee_returned == D("17.00")  # 27.00 - 10.00 already waived


def test_no_points_to_restore_without_a_redemption(h):
    h.events(ACCOUNTS, f.account("acc-1"))
    [made] = h.events(RECORDED, purchase_recorded("acc-1", "1200.00", purchase_id="pur-p"))
    h.events(DECISIONS, f.offer_accepted("acc-1", made.data.offer_id, 3))
    [a] = h.events(RECORDED, refund_recorded("acc-1", "pur-p", "600.00"))
    assert a.data.points_to_restore == 0


# ------------------------------------------------------------------ Clarified (5.1)


def test_clarified_installment_paid_once_in_full_with_its_full_amount(h):
    h.events(ACCOUNTS, f.account("acc-1"))
    [made] = h.events(RECORDED, purchase_recorded("acc-1", "1200.00", purchase_id="pur-q"))
    h.events(DECISIONS, f.offer_accepted("acc-1", made.data.offer_id, 3))
    first = f.payment("acc-1", "200.00", received_at="2026-02-14T10:00:00Z")
    assert h.events(PAYMENTS, first) == []  # part of installment 1: nothing yet
    [paid] = h.events(PAYMENTS, f.payment("acc-1", "209.00", received_at="2026-02-15T10:00:00Z"))
    assert (paid.type, paid.data.seq, paid.data.amount) == ("installment.paid", 1, D("409.00"))


def test_clarified_declined_expired_refunded_and_unknown_offers_are_rejected(h):
    h.events(ACCOUNTS, f.account("acc-1"))
    made = {}
    for pid in ("d", "e", "r"):
        [m] = h.events(RECORDED, purchase_recorded("acc-1", "1200.00", purchase_id=pid))
        made[pid] = m.data.offer_id
    h.events(DECISIONS, f.offer_declined("acc-1", made["d"]))
    h.events(RECORDED, refund_recorded("acc-1", "r", "1200.00", fully_refunded=True))
    h.events(DAYS, f.business_day("2026-02-14"))
    h.events(DAYS, f.business_day("2026-02-15"))  # posted Jan 15 + 30 = Feb 14: expired
    reasons = []
    for offer_id in (made["d"], made["e"], made["r"], "off-nope"):
        [r] = h.events(DECISIONS, f.offer_accepted("acc-1", offer_id, 3))
        assert r.type == "offer.rejected"
        reasons.append(r.data.reason)
    assert reasons == ["declined", "expired", "refunded", "unknown_offer"]


def test_clarified_diamond_is_offered_36_months_at_0_60_percent(h):
    h.events(ACCOUNTS, f.account("acc-1", tier="diamond"))
    [made] = h.events(RECORDED, purchase_recorded("acc-1", "1200.00"))
    last = made.data.options[-1]
    assert (last.tenor_months, last.monthly_fee_rate) == (36, D("0.006"))


def test_clarified_due_soon_is_0_to_7_days_ahead(h):
    h.events(ACCOUNTS, f.account("acc-1"))
    [made] = h.events(RECORDED, purchase_recorded("acc-1", "1200.00"))
    h.events(DECISIONS, f.offer_accepted("acc-1", made.data.offer_id, 3))  # due Feb 15
    assert h.events(DAYS, f.business_day("2026-02-07")) == []  # 8 days
    [soon] = h.events(DAYS, f.business_day("2026-02-08"))
    assert (soon.type, soon.data.days_until_due) == ("installment.due-soon", 7)
    [soon] = h.events(DAYS, f.business_day("2026-02-15"))
    assert soon.data.days_until_due == 0


# ------------------------------------------------------------------ migration


def test_migration_4_adds_the_second_release_state_to_a_version_3_database(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/old.sqlite3")
    migrate(engine, MIGRATIONS)
    with engine.begin() as conn:  # make it look like a database left at version 3
        for table, column in [
            ("accounts", "pre_approval_limit"),
            ("accounts", "pre_approval_valid_to"),
            ("accounts", "pre_approval_fee_discount"),
            ("purchases", "considered_on"),
            ("plans", "points_redeemed"),
            ("plans", "points_restored"),
        ]:
            conn.execute(text(f'ALTER TABLE "{table}" DROP COLUMN "{column}"'))
        conn.execute(text('DROP TABLE "fraud_reviews"'))
        conn.execute(
            delete(schema_migrations).where(
                schema_migrations.c.component == "service", schema_migrations.c.version == 4
            )
        )
        conn.execute(
            text(
                "INSERT INTO plans (plan_id, purchase_id, offer_id, account_id, principal,"
                " currency, tenor_months, total_fee, apr, auto_converted, redeem_points,"
                " posted_on, plan_order, status, principal_returned, fee_returned, event_id)"
                " VALUES ('plan-p', 'p', NULL, 'acc-1', '900.00', 'EUR', 3, '0.00', '0', 0,"
                " 700, '2026-01-15', 1, 'active', '0.00', '0.00', 'e')"
            )
        )
        conn.execute(
            insert(waivers),
            [
                {"event_id": "w1", "plan_id": "plan-p", "points": 500, "amount": D("5.00")},
                {"event_id": "w2", "plan_id": "plan-p", "points": 200, "amount": D("2.00")},
            ],
        )
    assert migrate(engine, MIGRATIONS) == ["service:4 pre-approval, fraud reviews, points restored"]
    with engine.connect() as conn:
        row = conn.execute(select(plans.c.points_redeemed, plans.c.points_restored)).one()
        assert tuple(row) == (700, 0)
        assert conn.execute(text("SELECT count(*) FROM fraud_reviews")).scalar() == 0
    assert migrate(engine, MIGRATIONS) == []
    engine.dispose()
