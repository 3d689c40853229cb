"""What the points tests build: raw messages as the purchases and offers services would
write them, and ``Points``, the harness plus the points events seen per account and
ledger queries. Shared by the points handler tests (SQLite) and
``tests/integration/test_points.py``.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import ROUND_DOWN, Decimal
from typing import Any

from sqlalchemy import func, select

from schemas import Envelope
from services.points.tables import ledger
from shared.runtime.store import consumer_offsets
from tests.builders import messages as f
from tests.harness import Harness
from tests.support import envelope

RECORDED = "purchases.recorded.v1"
ACCOUNTS = "card.accounts.v1"
PLANS = "installments.plans.v1"
LEDGER = "points.ledger.v1"
D = Decimal


# --------------------------------------------------------------------------- messages
# Raw messages as the purchases and offers services would write them.


def recorded(
    account_id: str, amount: str, *, purchase_id: str | None = None, event_id: str | None = None
) -> dict[str, Any]:
    """A ``purchase.recorded`` (the purchase.posted fields, from the purchases service)."""
    msg = f.purchase(account_id, amount, purchase_id=purchase_id, event_id=event_id)
    msg["type"], msg["source"] = "purchase.recorded", "purchases"
    return msg


def refund_recorded(
    account_id: str,
    purchase_id: str,
    amount: str,
    refunded_total: str,
    *,
    fully: bool = False,
    refund_id: str | None = None,
) -> dict[str, Any]:
    msg = f.refund(account_id, purchase_id, amount, refund_id=refund_id)
    msg["type"], msg["source"] = "refund.recorded", "purchases"
    msg["data"].update(refunded_total=refunded_total, fully_refunded=fully)
    return msg


def _split(total: Decimal, n: int) -> list[Decimal]:
    """Equal parts rounded down to the cent, the remainder on the first."""
    part = (total / n).quantize(D("0.01"), rounding=ROUND_DOWN)
    return [total - part * (n - 1)] + [part] * (n - 1)


def plan_created(
    account_id: str,
    purchase_id: str,
    principal: str,
    *,
    total_fee: str = "0.00",
    redeem_points: int = 0,
    tenor: int = 3,
    plan_id: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A valid ``plan.created`` (schedule adds up) from the offers service."""
    principals, fees = _split(D(principal), tenor), _split(D(total_fee), tenor)
    schedule = [
        {
            "seq": i + 1,
            "due_date": date(2026, 2 + i % 11, 15).isoformat(),
            "principal": str(p),
            "fee": str(fee),
            "amount": str(p + fee),
        }
        for i, (p, fee) in enumerate(zip(principals, fees, strict=True))
    ]
    data = {
        "plan_id": plan_id or f.new_id("plan"),
        "offer_id": f.new_id("off"),
        "purchase_id": purchase_id,
        "account_id": account_id,
        "principal": principal,
        "currency": "USD",
        "tenor_months": tenor,
        "total_fee": total_fee,
        "apr": "13.03",
        "auto_converted": False,
        "redeem_points": redeem_points,
        "schedule": schedule,
    }
    return envelope("plan.created", account_id, data, event_id=event_id, source="offers")


def plan_cancelled(
    account_id: str,
    plan_id: str,
    principal_returned: str,
    *,
    reason: str = "refund",
    fee_returned: str = "0.00",
    points_to_restore: int | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "plan_id": plan_id,
        "reason": reason,
        "principal_returned": principal_returned,
        "fee_returned": fee_returned,
        "currency": "USD",
    }
    if points_to_restore is not None:
        data["points_to_restore"] = points_to_restore
    return envelope("plan.cancelled", account_id, data, source="offers")


def plan_adjusted(
    account_id: str,
    plan_id: str,
    principal_reduced: str,
    *,
    points_to_restore: int = 0,
    refund_id: str | None = None,
    fee_reduced: str = "0.00",
    schedule: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ``plan.adjusted`` as offers emits it after a partial refund (the schedule is
    only checked for its shape by the points service)."""
    lines = schedule or [
        {"seq": 2, "due_date": "2026-03-15", "principal": "100.00", "fee": "0.00",
         "amount": "100.00"},
    ]  # fmt: skip
    data = {
        "plan_id": plan_id,
        "account_id": account_id,
        "reason": "refund",
        "refund_id": refund_id or f.new_id("ref"),
        "principal_reduced": principal_reduced,
        "fee_reduced": fee_reduced,
        "fee_returned": "0.00",
        "currency": "USD",
        "schedule": lines,
        "points_to_restore": points_to_restore,
    }
    return envelope("plan.adjusted", account_id, data, source="offers")


def with_new_id(msg: dict[str, Any]) -> dict[str, Any]:
    """The same facts under a new event id (a re-publication, not a redelivery)."""
    return {**msg, "id": str(uuid.uuid4())}


# --------------------------------------------------------------------------- harness


class Points:
    """The harness plus the points events seen per account and ledger queries."""

    def __init__(self, harness: Harness) -> None:
        self.h = harness
        self.seen: dict[str, list[Envelope]] = {}

    def feed(self, topic: str, *messages: dict[str, Any]) -> list[Any]:
        out = self.h.feed(topic, *messages)
        for e in out:
            if e.event is not None and e.topic == LEDGER:
                self.seen.setdefault(e.event.data.account_id, []).append(e.event)
        return out

    def events(self, topic: str, *messages: dict[str, Any]) -> list[Envelope]:
        return [e.event for e in self.feed(topic, *messages) if e.event is not None]

    def process(self, *records: Any) -> list[Envelope]:
        """Run already published records in one batch; returns the events emitted.

        A deferred partition is retried by the next ``process`` of its record (the
        runtime would re-seek it after the delay): the delay is forgotten here.
        """
        out = self.h.process(*records)
        self.h.runner.deferred_until.clear()
        for e in out:
            if e.event is not None and e.topic == LEDGER:
                self.seen.setdefault(e.event.data.account_id, []).append(e.event)
        return [e.event for e in out if e.event is not None]

    def deferred(self, record: Any) -> bool:
        """True when ``record`` is not applied yet (its stored offset is not past it)."""
        with self.h.runner.engine.connect() as conn:
            rows = conn.execute(
                select(consumer_offsets.c.next_offset).where(
                    consumer_offsets.c.consumer == self.h.runner.group,
                    consumer_offsets.c.topic == record.topic,
                    consumer_offsets.c.partition == record.partition,
                )
            ).all()
        return not rows or rows[0][0] <= record.offset

    def one(self, topic: str, message: dict[str, Any]) -> Envelope:
        [event] = self.events(topic, message)
        return event

    def rows(self, account_id: str) -> list[Any]:
        with self.h.runner.engine.connect() as conn:
            return conn.execute(
                select(ledger).where(ledger.c.account_id == account_id).order_by(ledger.c.entry_id)
            ).all()

    def ledger_sum(self, account_id: str) -> int:
        with self.h.runner.engine.connect() as conn:
            return conn.execute(
                select(func.coalesce(func.sum(ledger.c.points), 0)).where(
                    ledger.c.account_id == account_id
                )
            ).scalar_one()

    def row(self, table: Any, key: str) -> Any:
        pk = list(table.primary_key.columns)[0]
        with self.h.runner.engine.connect() as conn:
            return conn.execute(select(table).where(pk == key)).one()

    def check_ledger(self) -> None:
        """Last balance_after == Σ ledger rows; rows are a consistent running balance."""
        for account_id, events in self.seen.items():
            balance_events = [e for e in events if e.type != "points.redemption-rejected"]
            rows = self.rows(account_id)
            running = 0
            for row in rows:
                running += row.points
                assert row.balance_after == running
            assert events[-1].data.balance_after == self.ledger_sum(account_id) == running
            assert [e.id for e in balance_events] == [r.event_id for r in rows]
            signed = {
                "points.accrued": 1,
                "points.reversed": -1,
                "points.redeemed": -1,
                "points.restored": 1,
            }
            assert [signed[e.type] * e.data.points for e in balance_events] == [
                r.points for r in rows
            ]
