"""Contract section 2, the tolerant reader, on the real broker and PostgreSQL: every
service processes messages from a newer card system (and a newer customer channel) that
carry fields this build does not know, in the envelope and in ``data``, nested too; a
card number hidden in such a field is still dead-lettered (issue #13)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.builders import messages as f
from tests.builders.services import COLLECTIONS, OFFERS, POINTS, PURCHASES, REMINDERS
from tests.support import Collector, Producer, running

pytestmark = pytest.mark.integration

ACCOUNTS, CARD_PURCHASES, DAYS = "card.accounts.v1", "card.purchases.v1", "card.business-days.v1"
DECISIONS, PAYMENTS = "installments.decisions.v1", "card.payments.v1"
RECORDED, OFFERS_TOPIC, PLANS = (
    "purchases.recorded.v1",
    "installments.offers.v1",
    "installments.plans.v1",
)
LEDGER, REMINDERS_TOPIC = "points.ledger.v1", "reminders.outbound.v1"
ESCALATIONS = "collections.escalations.v1"


def newer(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` as a newer producer writes it: unknown fields at every level."""
    out = json.loads(json.dumps(message))
    out["trace_parent"] = "00-abc-def-01"  # envelope
    out["data"]["loyalty_programme"] = {"name": "gold-plus", "since": "2020-01-01"}
    for value in out["data"].values():
        if isinstance(value, dict):
            value["added_in_v1_9"] = True  # nested object
    return out


def test_every_service_processes_messages_with_unknown_fields(settings):
    producer = Producer(settings)
    account = newer(f.account("acc-tolerant"))
    purchase = newer(f.purchase("acc-tolerant", "1200.00", purchase_id="pur-tolerant"))
    hidden_pan = newer(f.purchase("acc-tolerant", "900.00", purchase_id="pur-hidden"))
    hidden_pan["data"]["loyalty_programme"]["card"] = "4111 1111 1111 1111"
    outs = {
        t: Collector(settings, t)
        for t in (RECORDED, OFFERS_TOPIC, PLANS, LEDGER, REMINDERS_TOPIC, ESCALATIONS)
    }
    dlq = Collector(settings, CARD_PURCHASES + ".dlq")
    with running(PURCHASES, OFFERS, POINTS, REMINDERS, COLLECTIONS, settings=settings):
        producer.send_all(ACCOUNTS, [account])
        producer.send_all(CARD_PURCHASES, [purchase, hidden_pan])
        outs[RECORDED].wait_for(lambda rs: len(rs) >= 1, 60, "purchase.recorded")
        outs[OFFERS_TOPIC].wait_for(lambda rs: len(rs) >= 1, 60, "offer.made")
        outs[LEDGER].wait_for(lambda rs: len(rs) >= 1, 60, "points.accrued")
        dlq.wait_for(lambda rs: len(rs) >= 1, 60, "the hidden card number's dead letter")
        # the customer channel's newer acceptance, then end of day before the due date
        producer.send_all(
            DECISIONS, [newer(f.offer_accepted("acc-tolerant", "off-pur-tolerant", 3))]
        )
        outs[PLANS].wait_for(
            lambda rs: any(json.loads(r.value)["type"] == "plan.created" for r in rs),
            60,
            "plan.created",
        )
        producer.send_all(DAYS, [newer(f.business_day("2026-02-10"))])
        outs[REMINDERS_TOPIC].wait_for(lambda rs: len(rs) >= 1, 60, "reminder.requested")
        # a payment from a newer card system is applied; a late end of day makes the
        # next installment overdue, which collections escalates
        producer.send_all(
            PAYMENTS,
            [newer(f.payment("acc-tolerant", "409.00", received_at="2026-02-14T10:00:00Z"))],
        )
        outs[PLANS].wait_for(
            lambda rs: any(json.loads(r.value)["type"] == "installment.paid" for r in rs),
            60,
            "installment.paid",
        )
        producer.send_all(
            DAYS,
            [
                newer(f.business_day(day))
                for day in (
                    "2026-02-16",
                    "2026-02-20",
                    "2026-02-27",
                    "2026-03-05",
                    "2026-03-12",
                    "2026-03-17",
                )
            ],
        )
        outs[ESCALATIONS].wait_for(lambda rs: len(rs) >= 1, 90, "escalation.raised")
        dlq.settle(1.0)
    recorded = [json.loads(r.value) for r in outs[RECORDED].records]
    assert [e["data"]["purchase_id"] for e in recorded if e["type"] == "purchase.recorded"] == [
        "pur-tolerant"
    ]
    assert "loyalty_programme" not in recorded[0]["data"]  # ignored, not copied along
    # only the card number was refused, with the field's place and not its value
    [letter] = dlq.records
    reason = dict((k, v.decode()) for k, v in letter.headers)["error.reason"]
    assert "card number" in reason and "4111" not in reason
    for topic in (ACCOUNTS, DECISIONS, PAYMENTS, DAYS):
        assert Collector(settings, topic + ".dlq").settle(0.5) == [], topic
