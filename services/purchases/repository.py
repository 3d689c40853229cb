"""The purchases service's batch repository: one read and one write per table per batch.

``load`` reads every purchase and refund a batch of events touches (one query per
table), as the ``PRELOAD`` table next to ``HANDLERS`` in ``handlers.py`` says (event type
-> :class:`Keys`); handlers then read and change the in-memory view; ``save`` writes what
changed with bulk statements. This is what lets a service keep up with the broker:
per-event SQL round trips, not Python, are the limit otherwise.

A getter asked for a key the batch did not load raises :class:`NotLoaded` (the preload
table misses it: a programming error); a key loaded and not found answers None / False.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from services.purchases.domain import RecordedPurchase
from services.purchases.tables import purchases, refunds
from shared.runtime.api import NotLoaded
from shared.runtime.db import among, bulk_insert


@dataclass(frozen=True)
class Keys:
    """What one event needs loaded (the values of ``handlers.PRELOAD``)."""

    purchases: tuple[str, ...] = ()  # purchase rows
    refunds: tuple[str, ...] = ()  # refund ids already recorded


class PurchasesRepository:
    def __init__(self, session: Session, preload: Mapping[str, Callable[[Any], Keys]]) -> None:
        #: event type -> the :class:`Keys` its handler needs: ``handlers.PRELOAD``, the
        #: table next to HANDLERS (``bootstrap.build`` passes it).
        self.preload = preload
        self.session = session
        self.dialect = session.get_bind().dialect.name
        self._purchases: dict[str, RecordedPurchase] = {}
        self._refund_ids: set[str] = set()
        self._purchases_loaded: set[str] = set()  # found or not
        self._refunds_loaded: set[str] = set()
        self._new_purchases: dict[str, dict[str, Any]] = {}
        self._changed_totals: dict[str, Decimal] = {}
        self._new_refunds: list[dict[str, Any]] = []
        #: Changes made in memory (every change adds one): the runtime dead-letters a
        #: rejection that changed nothing without splitting the batch.
        self.changes = 0

    def load(self, events: list[Any]) -> None:
        """Bulk-read what ``events`` need (:attr:`preload`; one query per table)."""
        assert self.preload, "bootstrap.build passes handlers.PRELOAD"
        purchase_ids: set[str] = set()
        refund_ids: set[str] = set()
        for e in events:
            preload = self.preload.get(e.type)
            if preload is not None:
                keys = preload(e)
                purchase_ids.update(keys.purchases)
                refund_ids.update(keys.refunds)
        self._purchases_loaded.update(purchase_ids)
        self._refunds_loaded.update(refund_ids)
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
        if purchase_id not in self._purchases_loaded:
            raise NotLoaded(f"purchase {purchase_id!r} was not preloaded")
        return self._purchases.get(purchase_id)

    def add_purchase(self, recorded: RecordedPurchase, row: dict[str, Any]) -> None:
        self.changes += 1
        self._purchases_loaded.add(recorded.purchase_id)
        self._purchases[recorded.purchase_id] = recorded
        self._new_purchases[recorded.purchase_id] = row

    def has_refund(self, refund_id: str) -> bool:
        if refund_id not in self._refunds_loaded:
            raise NotLoaded(f"refund {refund_id!r} was not preloaded")
        return refund_id in self._refund_ids

    def add_refund(self, purchase_id: str, refunded_total: Decimal, row: dict[str, Any]) -> None:
        self.changes += 1
        self._purchases[purchase_id] = replace(
            self._purchases[purchase_id], refunded_total=refunded_total
        )
        self._refund_ids.add(row["refund_id"])
        self._refunds_loaded.add(row["refund_id"])
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
