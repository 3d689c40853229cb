"""The offers service's second release (CONTRACT 5.1) through the real broker and
PostgreSQL: a flagged purchase is held, then offered once the fraud team clears it (as
of closed_on); a partial refund of a converted purchase emits plan.adjusted on
installments.plans.v1."""

from __future__ import annotations

import time
from datetime import date
from decimal import Decimal as D

import pytest

from shared.runtime.store import stored_offsets
from tests.builders import messages as f
from tests.builders.offers import (
    ACCOUNTS,
    DECISIONS,
    FRAUD,
    OFFERS,
    PLANS,
    RECORDED,
    purchase_recorded,
    refund_recorded,
    review_closed,
)
from tests.builders.services import OFFERS as SERVICE
from tests.support import Collector, Producer, ServiceThread

pytestmark = pytest.mark.integration


def _start(settings) -> ServiceThread:
    """The offers service, once it holds every partition it subscribes to (a join can come
    back without the new topics' partitions under load: start it again then)."""
    wanted = settings.topic_partitions * len(SERVICE.consumes)
    for _attempt in range(3):
        thread = ServiceThread(SERVICE, settings).start()
        deadline = time.monotonic() + 15
        while len(thread.runner.assigned) < wanted and time.monotonic() < deadline:
            time.sleep(0.1)
        if len(thread.runner.assigned) >= wanted:
            return thread
        thread.stop()
    raise AssertionError("the offers service never got its partitions")


def _wait_applied(thread: ServiceThread, topic: str, records: int, timeout: float = 30) -> None:
    """Until the service has applied ``records`` records of ``topic`` (its stored offsets:
    the topic is the test's own, so they count from 0)."""
    runner = thread.runner
    deadline = time.monotonic() + timeout
    while True:
        with runner.engine.connect() as conn:
            done = sum(stored_offsets(conn, runner.group, runner.settings.topic(topic)).values())
        if done >= records:
            return
        assert time.monotonic() < deadline, f"{done} of {records} records of {topic} applied"
        time.sleep(0.1)


def _of(events, event_type, account_id):
    return [e for e in events if e.type == event_type and e.subject == account_id]


def test_a_flagged_purchase_is_held_then_offered_and_a_partial_refund_adjusts_a_plan(settings):
    producer = Producer(settings)
    offers_out, plans_out = Collector(settings, OFFERS), Collector(settings, PLANS)
    a, b = f.new_id("acc"), f.new_id("acc")
    held, early = f.new_id("pur"), f.new_id("pur")
    thread = _start(settings)
    try:
        producer.send_all(ACCOUNTS, [f.account(a), f.account(b)])
        # a flagged purchase: offer.not-eligible fraud_review, no offer
        producer.send_all(
            RECORDED, [purchase_recorded(a, "1200.00", purchase_id=held, risk_flags=["velocity"])]
        )
        offers_out.wait_for(
            lambda rs: len(_of(offers_out.events(), "offer.not-eligible", a)) == 1,
            30,
            "the flagged purchase held",
        )
        [ne] = _of(offers_out.events(), "offer.not-eligible", a)
        assert ne.data.reasons == ["fraud_review"]
        assert _of(offers_out.events(), "offer.made", a) == []

        # cleared on Mar 10: offered as of then; a review that comes before its purchase
        # (account b) is kept and applied when the purchase arrives
        producer.send_all(
            FRAUD,
            [
                review_closed(a, held, "cleared", "2026-03-10"),
                review_closed(b, early, "cleared", "2026-03-12"),
            ],
        )
        # b's review must be applied before its purchase comes: the two are on different
        # topics, which a consumer reads in no set order (a purchase read first is held,
        # then offered once the review comes: another story than this one)
        _wait_applied(thread, FRAUD, 2)
        producer.send_all(
            RECORDED,
            [purchase_recorded(b, "900.00", purchase_id=early, risk_flags=["amount_spike"])],
        )
        offers_out.wait_for(
            lambda rs: (
                len(_of(offers_out.events(), "offer.made", a)) == 1
                and len(_of(offers_out.events(), "offer.made", b)) == 1
            ),
            30,
            "both cleared purchases offered",
        )
        [made] = _of(offers_out.events(), "offer.made", a)
        assert made.data.expires_on == date(2026, 4, 9)
        [made_b] = _of(offers_out.events(), "offer.made", b)
        assert made_b.data.expires_on == date(2026, 4, 11)
        assert _of(offers_out.events(), "offer.not-eligible", b) == []

        # accepted: the plan counts from closed_on (3 x 400.00 + 9.00, Apr 10, May 10, Jun 10)
        producer.send_all(DECISIONS, [f.offer_accepted(a, made.data.offer_id, 3)])
        plans_out.wait_for(
            lambda rs: len(_of(plans_out.events(), "plan.created", a)) == 1, 30, "the plan"
        )
        [plan] = _of(plans_out.events(), "plan.created", a)
        assert [line.due_date for line in plan.data.schedule] == [
            date(2026, 4, 10),
            date(2026, 5, 10),
            date(2026, 6, 10),
        ]

        # a partial refund: plan.adjusted on installments.plans.v1
        producer.send_all(
            RECORDED,
            [
                refund_recorded(
                    a, held, "300.00", refund_id="ref-" + held, refunded_at="2026-03-20T10:00:00Z"
                )
            ],
        )
        plans_out.wait_for(
            lambda rs: len(_of(plans_out.events(), "plan.adjusted", a)) == 1, 30, "plan.adjusted"
        )
        [adjusted] = _of(plans_out.events(), "plan.adjusted", a)
        d = adjusted.data
        assert (d.plan_id, d.reason, d.refund_id) == (plan.data.plan_id, "refund", "ref-" + held)
        # 1200 -> 900 unpaid; fees 27.00 -> 20.25, nothing paid early
        assert (d.principal_reduced, d.fee_reduced, d.fee_returned) == (
            D("300.00"),
            D("6.75"),
            D("0.00"),
        )
        assert [(x.seq, x.principal, x.fee, x.amount) for x in d.schedule] == [
            (k, D("300.00"), D("6.75"), D("306.75")) for k in (1, 2, 3)
        ]
        assert _of(plans_out.events(), "plan.cancelled", a) == []
    finally:
        thread.stop()


#: what migration 4 adds (table -> columns), and its new table
ADDED = {
    "accounts": ["pre_approval_limit", "pre_approval_valid_to", "pre_approval_fee_discount"],
    "purchases": ["considered_on"],
    "plans": ["points_redeemed", "points_restored"],
}


def test_a_version_3_database_on_postgresql_gets_the_second_release_state(pg_database):
    from sqlalchemy import MetaData, insert, text

    from services.offers import tables
    from shared.runtime.db import Migration, create_tables, make_engine
    from shared.runtime.settings import Settings
    from shared.runtime.store import migrate

    settings = Settings(database_url=pg_database, environment="test")
    engine = make_engine(settings, "offers")
    old = MetaData()  # the tables as version 3 had them
    for table in tables.metadata.tables.values():
        if table.name != "fraud_reviews":
            table.to_metadata(old)
    for name, columns in ADDED.items():
        for column in columns:
            old.tables[name]._columns.remove(old.tables[name].c[column])
    first = tables.MIGRATIONS[0]
    steps = [Migration(first.version, first.name, create_tables(old)), *tables.MIGRATIONS[1:3]]
    migrate(engine, steps)

    def columns(conn, name):
        return {
            row[0]
            for row in conn.execute(
                text(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_schema = 'offers' AND table_name = :t"
                ),
                {"t": name},
            )
        }

    with engine.begin() as conn:
        for name, added in ADDED.items():
            assert not set(added) & columns(conn, name), name  # really a version-3 shape
        assert not columns(conn, "fraud_reviews")
        conn.execute(
            insert(old.tables["waivers"]),
            [
                {"event_id": "w1", "plan_id": "plan-p", "points": 500, "amount": D("5.00")},
                {"event_id": "w2", "plan_id": "plan-p", "points": 200, "amount": D("2.00")},
            ],
        )
        conn.execute(
            insert(old.tables["plans"]).values(
                plan_id="plan-p",
                purchase_id="p",
                offer_id=None,
                account_id="acc-1",
                principal=D("900.00"),
                currency="EUR",
                tenor_months=3,
                total_fee=D("0.00"),
                apr="0",
                auto_converted=False,
                redeem_points=700,
                posted_on=date(2026, 1, 15),
                plan_order=1,
                status="active",
                principal_returned=D("0"),
                fee_returned=D("0"),
                event_id="e",
            )  # fmt: skip
        )
    applied = migrate(engine, tables.MIGRATIONS)
    # migration 4 upgrades the first release's rows; later ones (retention) follow it
    assert applied[0] == "service:4 pre-approval, fraud reviews, points restored"
    assert len(applied) == len(tables.MIGRATIONS) - 3
    assert migrate(engine, tables.MIGRATIONS) == []
    with engine.connect() as conn:
        for name, added in ADDED.items():
            assert set(added) <= columns(conn, name), name
        row = conn.execute(
            text('SELECT points_redeemed, points_restored FROM "offers".plans')
        ).one()
        assert tuple(row) == (700, 0)
        assert conn.execute(text('SELECT count(*) FROM "offers".fraud_reviews')).scalar() == 0
    engine.dispose()
