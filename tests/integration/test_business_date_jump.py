"""A far-future business day on the real broker and database (issue #11): offers and
reminders hold it (dead letter, reason ``business_date_jump``) and change nothing; the
operator's ``dlq redrive --confirm business_date_jump`` re-publishes it with the header
``installments.confirm`` and both services then apply it."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select
from sqlalchemy.exc import ProgrammingError

from services.offers.tables import business_days as offers_days
from services.reminders.tables import business_days as reminders_days
from shared.ops.dlq import read_dead_letters, redrive
from shared.runtime.db import make_engine
from tests.builders import messages as f
from tests.builders.services import OFFERS as OFFERS
from tests.builders.services import REMINDERS as REMINDERS
from tests.support import Collector, Producer, running, wait_until

pytestmark = pytest.mark.integration
DAYS = "card.business-days.v1"


def test_a_held_jump_is_applied_once_an_operator_confirms_it(settings):
    producer, dlq = Producer(settings), Collector(settings, DAYS + ".dlq")
    engines = {"offers": make_engine(settings, "offers"),
               "reminders": make_engine(settings, "reminders")}  # fmt: skip
    tables = {"offers": offers_days, "reminders": reminders_days}

    def closed(service: str) -> list[date]:
        table = tables[service]
        try:
            with engines[service].connect() as conn:
                return sorted(r[0] for r in conn.execute(select(table.c.business_date)))
        except ProgrammingError:  # the service has not created its tables yet
            return []

    try:
        with running(OFFERS, REMINDERS, settings=settings):
            producer.send_all(DAYS, [f.business_day("2026-02-16")])
            wait_until(lambda: all(closed(s) == [date(2026, 2, 16)] for s in engines),
                       what="the first day closed")  # fmt: skip
            producer.send_all(DAYS, [f.business_day("2099-01-01")])
            dlq.wait_count(2)  # one dead letter per service
            letters, consumer = read_dead_letters(settings, DAYS)
            consumer.close()
            assert sorted(d.headers["error.service"] for d in letters) == ["offers", "reminders"]
            assert all(d.headers["error.reason"].startswith("business_date_jump: 2099-01-01")
                       for d in letters)  # fmt: skip
            assert all(closed(s) == [date(2026, 2, 16)] for s in engines)

            # the operator confirms: --confirm re-drives both letters with the header
            chosen = redrive(settings, DAYS, dry_run=False, reason_contains=None, limit=None,
                             confirm="business_date_jump")  # fmt: skip
            assert len(chosen) == 2
            wait_until(
                lambda: all(closed(s) == [date(2026, 2, 16), date(2099, 1, 1)] for s in engines),
                what="the confirmed jump applied by both services",
            )
            dlq.settle(1.0)
            assert len(dlq.records) == 2  # nothing held again
    finally:
        for engine in engines.values():
            engine.dispose()
