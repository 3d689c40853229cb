"""The purchases service's batch repository: one read and one write per table per batch.

``load`` reads every purchase and refund a batch of events touches (one query per
table); handlers then read and change the in-memory view; ``save`` writes what
changed with bulk statements. This is what lets a service keep up with the broker:
per-event SQL round trips, not Python, are the limit otherwise.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from services.purchases.domain import RecordedPurchase
from services.purchases.tables import purchases, refunds
from shared.runtime.db import among, bulk_insert


class PurchasesRepository:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.dialect = session.get_bind().dialect.name
        self._purchases: dict[str, RecordedPurchase] = {}
        self._refund_ids: set[str] = set()
        self._new_purchases: dict[str, dict[str, Any]] = {}
        self._changed_totals: dict[str, Decimal] = {}
        self._new_refunds: list[dict[str, Any]] = []
        #: Changes made in memory (every change adds one): the runtime dead-letters a
        #: rejection that changed nothing without splitting the batch.
        self.changes = 0

    def load(self, events: list[Any]) -> None:
        purchase_ids = {e.data.purchase_id for e in events if hasattr(e.data, "purchase_id")}
        refund_ids = {e.data.refund_id for e in events if e.type == "purchase.refunded"}
        if purchase_ids:
            rows = self.session.execute(
                select(
                    purchases.c.purchase_id,
                    purchases.c.account_id,
                    purchases.c.amount,
                    purchases.c.currency,
                    purchases.c.refunded_total,
                ).where(among(purchases.c.purchase_id, purchase_ids, self.dialect))
            )
            self._purchases.update({r[0]: RecordedPurchase(*r) for r in rows})
        if refund_ids:
            rows = self.session.execute(
                select(refunds.c.refund_id).where(
                    among(refunds.c.refund_id, refund_ids, self.dialect)
                )
            )
            self._refund_ids.update(r[0] for r in rows)

    # --- reads and changes, in memory ------------------------------------------

    def purchase(self, purchase_id: str) -> RecordedPurchase | None:
        return self._purchases.get(purchase_id)

    def add_purchase(self, recorded: RecordedPurchase, row: dict[str, Any]) -> None:
        self.changes += 1
        self._purchases[recorded.purchase_id] = recorded
        self._new_purchases[recorded.purchase_id] = row

    def has_refund(self, refund_id: str) -> bool:
        return refund_id in self._refund_ids

    def add_refund(self, purchase_id: str, refunded_total: Decimal, row: dict[str, Any]) -> None:
        self.changes += 1
        self._purchases[purchase_id] = replace(
            self._purchases[purchase_id], refunded_total=refunded_total
        )
        self._refund_ids.add(row["refund_id"])
        self._new_refunds.append(row)
        if purchase_id in self._new_purchases:
            self._new_purchases[purchase_id]["refunded_total"] = refunded_total
        else:
            self._changed_totals[purchase_id] = refunded_total

    # --- one bulk write per table ---------------------------------------------------

    def save(self) -> None:
        conn = self.session.connection()
        bulk_insert(conn, purchases, list(self._new_purchases.values()))
        if self._changed_totals:
            self.session.execute(
                update(purchases)
                .where(purchases.c.purchase_id == bindparam("pid"))
                .values(refunded_total=bindparam("total")),
                [{"pid": k, "total": v} for k, v in self._changed_totals.items()],
            )
        bulk_insert(conn, refunds, self._new_refunds)
