"""Fraud and velocity screening through the real broker and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from services.purchases.tables import screening_amounts, screening_card_times
from shared.runtime.db import make_engine
from tests.builders import messages as f
from tests.builders.services import PURCHASES as SERVICE
from tests.support import Collector, Producer, running

pytestmark = pytest.mark.integration

IN = "card.purchases.v1"
OUT = "purchases.recorded.v1"


def test_a_burst_of_five_on_one_card_flags_the_fifth(settings):
    producer, out = Producer(settings), Collector(settings, OUT)
    acc = f.new_id("acc")
    burst = f.card_burst(acc, 5, every_s=150)  # the 5th exactly 10 minutes after the 1st
    producer.send_all(IN, [*burst, burst[2]])  # and one re-delivery, never counted twice
    with running(SERVICE, settings=settings):
        out.wait_count(6)
        out.settle()
    events = out.events()
    assert [e.type for e in events] == ["purchase.recorded"] * 5 + ["purchase.flagged"]
    assert [e.data.risk_flags for e in events[:5]] == [[], [], [], [], ["velocity"]]
    flagged = events[5].data
    assert flagged.purchase_id == burst[4]["data"]["purchase_id"] == events[4].data.purchase_id
    assert (flagged.account_id, flagged.flags, str(flagged.amount)) == (acc, ["velocity"], "25.00")
    engine = make_engine(settings, "purchases")
    try:
        with engine.connect() as conn:
            amounts = conn.execute(
                select(func.count())
                .select_from(screening_amounts)
                .where(screening_amounts.c.account_id == acc)
            ).scalar_one()
            times = conn.execute(
                select(func.count())
                .select_from(screening_card_times)
                .where(screening_card_times.c.account_id == acc)
            ).scalar_one()
    finally:
        engine.dispose()
    assert (amounts, times) == (5, 5)
