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
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from services.purchases.domain import RecordedPurchase
from services.purchases.tables import (
    purchases,
    refunds,
    screening_amounts,
    screening_card_times,
    screening_merchants,
)
from shared.runtime.api import NotLoaded
from shared.runtime.db import Prebuilt, bulk_insert, delete_keys, key_params, restrict_to_keys

# A batch's reads, built once (shared.runtime.db.Prebuilt); the ids bound as "ids".
_PURCHASES = Prebuilt(
    lambda among: select(
        purchases.c.purchase_id,
        purchases.c.account_id,
        purchases.c.amount,
        purchases.c.currency,
        purchases.c.refunded_total,
    ).where(among(purchases.c.purchase_id))
)
_REFUNDS = Prebuilt(lambda among: select(refunds.c.refund_id).where(among(refunds.c.refund_id)))
_CARD_TIMES = Prebuilt(
    lambda among: select(
        screening_card_times.c.account_id,
        screening_card_times.c.card_token,
        screening_card_times.c.posted_at,
        screening_card_times.c.purchase_id,
    ).where(among(screening_card_times.c.account_id))
)
_AMOUNTS = Prebuilt(
    lambda among: (
        select(screening_amounts.c.account_id, screening_amounts.c.seq, screening_amounts.c.amount)
        .where(among(screening_amounts.c.account_id))
        .order_by(screening_amounts.c.account_id, screening_amounts.c.seq)
    )
)
# The batch's writes other than COPY, built once as well.
_SET_REFUNDED_TOTAL = (
    update(purchases)
    .where(purchases.c.purchase_id == bindparam("pid"))
    .values(refunded_total=bindparam("total"))
)
_DROP_CARD_TIMES = Prebuilt(
    lambda among: delete(screening_card_times).where(among(screening_card_times.c.purchase_id))
)
_DROP_AMOUNTS = Prebuilt(
    lambda among: delete_keys(screening_amounts, ("account_id", "seq"), among.dialect)
)
# the (account, merchant) pairs: bound as shared.runtime.db.key_params
_MERCHANTS = Prebuilt(
    lambda among: restrict_to_keys(
        select(screening_merchants.c.account_id, screening_merchants.c.merchant_id),
        screening_merchants,
        ("account_id", "merchant_id"),
        None,
        among.dialect,
    )
)


@dataclass(frozen=True)
class Keys:
    """What one event needs loaded (the values of ``handlers.PRELOAD``)."""

    purchases: tuple[str, ...] = ()  # purchase rows
    refunds: tuple[str, ...] = ()  # refund ids already recorded
    screening: tuple[str, ...] = ()  # accounts: card times and amount history
    merchants: tuple[tuple[str, str], ...] = ()  # (account, merchant) pairs seen or not


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
        # Screening state: account -> card token -> [(posted_at, purchase_id)];
        # account -> [(seq, amount)] in seq order; (account, merchant) pairs seen.
        self._card_times: dict[str, dict[str, list[tuple[datetime, str]]]] = {}
        self._amounts: dict[str, list[tuple[int, Decimal]]] = {}
        self._merchants: set[tuple[str, str]] = set()
        self._screening_loaded: set[str] = set()
        self._merchants_loaded: set[tuple[str, str]] = set()
        self._new_card_times: dict[str, dict[str, Any]] = {}
        self._dropped_card_times: set[str] = set()
        self._new_amounts: dict[tuple[str, int], Decimal] = {}
        self._dropped_amounts: set[tuple[str, int]] = set()
        self._new_merchants: list[dict[str, Any]] = []
        #: Changes made in memory (every change adds one): the runtime dead-letters a
        #: rejection that changed nothing without splitting the batch.
        self.changes = 0

    def load(self, events: list[Any]) -> None:
        """Bulk-read what ``events`` need (:attr:`preload`; one query per table)."""
        assert self.preload, "bootstrap.build passes handlers.PRELOAD"
        purchase_ids: set[str] = set()
        refund_ids: set[str] = set()
        accounts: set[str] = set()
        merchants: set[tuple[str, str]] = set()
        for e in events:
            preload = self.preload.get(e.type)
            if preload is not None:
                keys = preload(e)
                purchase_ids.update(keys.purchases)
                refund_ids.update(keys.refunds)
                accounts.update(keys.screening)
                merchants.update(keys.merchants)
        self._purchases_loaded.update(purchase_ids)
        self._refunds_loaded.update(refund_ids)
        self._load_screening(accounts - self._screening_loaded, merchants - self._merchants_loaded)
        if purchase_ids:
            rows = _PURCHASES.rows(self.session, self.dialect, purchase_ids)
            self._purchases.update({r[0]: RecordedPurchase(*r) for r in rows})
        if refund_ids:
            rows = _REFUNDS.rows(self.session, self.dialect, refund_ids)
            self._refund_ids.update(r[0] for r in rows)

    def _load_screening(self, accounts: set[str], merchants: set[tuple[str, str]]) -> None:
        for account_id in accounts:
            self._card_times.setdefault(account_id, {})
            self._amounts.setdefault(account_id, [])
        self._screening_loaded.update(accounts)
        self._merchants_loaded.update(merchants)
        if accounts:
            times = _CARD_TIMES.rows(self.session, self.dialect, accounts)
            for account_id, token, posted_at, purchase_id in times:
                self._card_times[account_id].setdefault(token, []).append(
                    (_aware(posted_at), purchase_id)
                )
            amounts = _AMOUNTS.rows(self.session, self.dialect, accounts)
            for account_id, seq, amount in amounts:
                self._amounts[account_id].append((seq, amount))
        if merchants:
            rows = self.session.execute(
                _MERCHANTS(self.dialect), key_params(merchants, self.dialect)
            ).all()
            self._merchants.update((r[0], r[1]) for r in rows)

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

    def card_times(self, account_id: str, card_token: str) -> tuple[datetime, ...]:
        """The posting times kept for the account's card (recorded purchases only)."""
        if account_id not in self._screening_loaded:
            raise NotLoaded(f"screening state of account {account_id!r} was not preloaded")
        return tuple(t for t, _ in self._card_times[account_id].get(card_token, ()))

    def amount_history(self, account_id: str) -> tuple[Decimal, ...]:
        """The account's kept amounts (its last recorded purchases), oldest first."""
        if account_id not in self._screening_loaded:
            raise NotLoaded(f"screening state of account {account_id!r} was not preloaded")
        return tuple(amount for _, amount in self._amounts[account_id])

    def merchant_seen(self, account_id: str, merchant_id: str) -> bool:
        if (account_id, merchant_id) not in self._merchants_loaded:
            raise NotLoaded(f"merchant {merchant_id!r} of account {account_id!r} not preloaded")
        return (account_id, merchant_id) in self._merchants

    def remember_screening(
        self,
        account_id: str,
        card_token: str,
        purchase_id: str,
        posted_at: datetime,
        amount: Decimal,
        merchant_id: str,
        *,
        keep_times_from: datetime,
        keep_amounts: int,
    ) -> None:
        """Add a recorded purchase to the screening state, then prune it: the card keeps
        the times at or after ``keep_times_from``, the account its last ``keep_amounts``
        amounts."""
        if account_id not in self._screening_loaded:
            raise NotLoaded(f"screening state of account {account_id!r} was not preloaded")
        self.changes += 1
        times = self._card_times[account_id].setdefault(card_token, [])
        times.append((posted_at, purchase_id))
        self._new_card_times[purchase_id] = {
            "purchase_id": purchase_id,
            "account_id": account_id,
            "card_token": card_token,
            "posted_at": posted_at,
        }
        kept = [(t, pid) for t, pid in times if t >= keep_times_from]
        for t, pid in times:
            if t < keep_times_from and self._new_card_times.pop(pid, None) is None:
                self._dropped_card_times.add(pid)
        if kept:
            self._card_times[account_id][card_token] = kept
        else:
            del self._card_times[account_id][card_token]

        amounts = self._amounts[account_id]
        seq = amounts[-1][0] + 1 if amounts else 1
        amounts.append((seq, amount))
        self._new_amounts[(account_id, seq)] = amount
        while len(amounts) > keep_amounts:
            old_seq, _ = amounts.pop(0)
            if self._new_amounts.pop((account_id, old_seq), None) is None:
                self._dropped_amounts.add((account_id, old_seq))

        pair = (account_id, merchant_id)
        self._merchants_loaded.add(pair)
        if pair not in self._merchants:
            self._merchants.add(pair)
            self._new_merchants.append({"account_id": account_id, "merchant_id": merchant_id})

    # --- one bulk write per table ---------------------------------------------------

    def save(self) -> None:
        conn = self.session.connection()
        bulk_insert(conn, purchases, list(self._new_purchases.values()))
        if self._changed_totals:
            self.session.execute(
                _SET_REFUNDED_TOTAL,
                [{"pid": k, "total": v} for k, v in self._changed_totals.items()],
            )
        bulk_insert(conn, refunds, self._new_refunds)
        if self._dropped_card_times:
            # Prebuilt.rows runs it with the ids bound (a DELETE: nothing to read back)
            _DROP_CARD_TIMES.rows(self.session, self.dialect, self._dropped_card_times)
        bulk_insert(conn, screening_card_times, list(self._new_card_times.values()))
        if self._dropped_amounts:
            self.session.execute(
                _DROP_AMOUNTS(self.dialect), key_params(self._dropped_amounts, self.dialect)
            )
        bulk_insert(
            conn,
            screening_amounts,
            [{"account_id": a, "seq": s, "amount": v} for (a, s), v in self._new_amounts.items()],
        )
        bulk_insert(conn, screening_merchants, self._new_merchants)


def _aware(t: datetime) -> datetime:
    """SQLite gives back naive datetimes (stored in UTC): make them aware again."""
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
