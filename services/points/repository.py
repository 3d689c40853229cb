"""The points service's batch repository: one read and one write per table per batch.

``load`` reads, with one query per table, everything a batch of events touches: the
accounts (created if missing, then locked once for the whole batch, in account id
order so that two processes never deadlock), their balances (Σ ledger per account, one
grouped query), the purchases and the plans (by plan id, and by the purchase id of each
refund the plan that earned a first-plan bonus: a refund reverses that bonus too).
Handlers then read and change this in-memory view (``ctx.repo``): a second event of
the same account in the batch sees the first one's balance, tier and flags. ``save``
writes what changed: new rows with ``bulk_insert`` (COPY on PostgreSQL), changed rows
with one UPDATE statement per table (``shared.runtime.db.update_rows``), and the ledger entries
appended in the order they were booked.

The ledger stays the source of truth and append-only: the balance is never stored, it
is read as ``SUM(points)`` under the account lock and carried forward in memory.

What each event needs is the ``PRELOAD`` table next to ``HANDLERS`` in ``handlers.py``
(event type -> :class:`Keys`). A getter asked for a key the batch did not load raises
:class:`NotLoaded` (the preload table misses it: a programming error); a key loaded and
not found answers None. Rows added during the batch count as loaded.

If a handler refuses or fails, the runtime rolls the batch back and replays it one
record per transaction with a fresh repository, so handlers may change the view freely.
A rejection that changed nothing (``changes``, every change adds one) is dead-lettered
in the batch's transaction instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import String, Table, bindparam, false, func, null, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from services.points.tables import accounts, ledger, plans, purchases, restorations
from shared.runtime.api import NotLoaded
from shared.runtime.db import Prebuilt, bulk_insert, update_rows

# A batch's statements, built once (shared.runtime.db.Prebuilt); the ids bound as "ids".
_RESTORATIONS = Prebuilt(lambda among: select(restorations).where(among(restorations.c.plan_id)))
# One lock for the whole batch, taken in account id order (no deadlock between processes).
_LOCK_ACCOUNTS = Prebuilt(
    lambda among: (
        select(
            accounts.c.account_id, accounts.c.tier, accounts.c.had_plan, accounts.c.first_plan_id
        )
        .where(among(accounts.c.account_id))
        .order_by(accounts.c.account_id)
        .with_for_update()
    )
)
_BALANCES = Prebuilt(
    lambda among: (
        select(ledger.c.account_id, func.sum(ledger.c.points))
        .where(among(ledger.c.account_id))
        .group_by(ledger.c.account_id)
    )
)
_PURCHASES = Prebuilt(lambda among: select(purchases).where(among(purchases.c.purchase_id)))
_PLANS = Prebuilt(lambda among: select(plans).where(among(plans.c.plan_id)))
_BONUS_PLANS = Prebuilt(
    lambda among: select(plans).where(among(plans.c.purchase_id), plans.c.bonus_points > 0)
)
_PG_CREATE_ACCOUNTS = (
    pg_insert(accounts)
    .from_select(
        ["account_id", "tier", "had_plan"],
        select(func.unnest(bindparam("ids", type_=ARRAY(String))), null(), false()),
    )
    .on_conflict_do_nothing(index_elements=["account_id"])
)


@dataclass
class Account:
    """An ``accounts`` row (locked for the batch)."""

    account_id: str
    tier: str | None
    had_plan: bool
    first_plan_id: str | None


@dataclass
class Purchase:
    """A ``purchases`` row."""

    purchase_id: str
    account_id: str
    amount: Decimal
    currency: str
    tier: str
    tier_assumed: bool
    points_earned: int
    points_reversed: int
    refunded_total: Decimal
    event_id: str


@dataclass
class Plan:
    """A ``plans`` row."""

    plan_id: str
    account_id: str
    purchase_id: str
    principal: Decimal
    total_fee: Decimal
    currency: str
    bonus_points: int
    bonus_basis: str
    bonus_reversed: int
    principal_returned: Decimal
    redeem_requested: int
    points_redeemed: int
    fee_redeemed: Decimal
    event_id: str


@dataclass(frozen=True)
class Keys:
    """What one event needs loaded (the values of ``handlers.PRELOAD``)."""

    #: accounts created if missing and locked for the batch (in account id order)
    accounts: tuple[str, ...] = ()
    #: accounts whose balance (Σ ledger) a handler reads
    balances: tuple[str, ...] = ()
    purchases: tuple[str, ...] = ()
    plans: tuple[str, ...] = ()
    #: purchases whose plan with a first-plan bonus a refund may reverse
    bonus_plans: tuple[str, ...] = ()
    #: plans whose restorations (points given back) a handler reads
    restorations: tuple[str, ...] = ()


class PointsRepository:
    def __init__(self, session: Session, preload: Mapping[str, Callable[[Any], Keys]]) -> None:
        #: event type -> the :class:`Keys` its handler needs: ``handlers.PRELOAD``, the
        #: table next to HANDLERS (``bootstrap.build`` passes it).
        self.preload = preload
        self.session = session
        self.dialect = session.get_bind().dialect.name
        self._accounts: dict[str, Account] = {}
        self._balances: dict[str, int] = {}
        self._purchases: dict[str, Purchase] = {}
        self._plans: dict[str, Plan] = {}
        self._bonus_plans: dict[str, Plan] = {}  # purchase id -> its plan with a bonus
        self._new_purchases: dict[str, Purchase] = {}
        self._changed_purchases: dict[str, Purchase] = {}
        self._new_plans: dict[str, Plan] = {}
        self._changed_plans: dict[str, Plan] = {}
        self._changed_accounts: dict[str, Account] = {}
        self._entries: list[dict[str, Any]] = []
        self._restorations: dict[str, dict[str, dict[str, Any]]] = {}  # plan -> key -> row
        self._new_restorations: list[dict[str, Any]] = []
        # keys loaded (found or not): a getter refuses the others
        self._purchases_loaded: set[str] = set()
        self._plans_loaded: set[str] = set()
        self._bonus_loaded: set[str] = set()  # purchase ids
        #: Changes made in memory (every change adds one): the runtime dead-letters a
        #: rejection that changed nothing without splitting the batch.
        self.changes = 0

    # --- one read per table ---------------------------------------------------------

    def load(self, events: list[Any]) -> None:
        """Bulk-read what ``events`` need (:attr:`preload`; one query per table)."""
        assert self.preload, "bootstrap.build passes handlers.PRELOAD"
        account_ids: set[str] = set()
        balance_ids: set[str] = set()  # accounts whose balance a handler may need
        purchase_ids: set[str] = set()
        plan_ids: set[str] = set()
        refunded_ids: set[str] = set()  # purchases whose bonus plan a refund may reverse
        restored_ids: set[str] = set()  # plans whose restorations a handler reads
        for e in events:
            preload = self.preload.get(e.type)
            if preload is None:
                continue
            keys = preload(e)
            account_ids.update(keys.accounts)
            balance_ids.update(keys.balances)
            purchase_ids.update(keys.purchases)
            plan_ids.update(keys.plans)
            refunded_ids.update(keys.bonus_plans)
            restored_ids.update(keys.restorations)
        self._purchases_loaded.update(purchase_ids)
        self._plans_loaded.update(plan_ids)
        self._bonus_loaded.update(refunded_ids)
        if restored_ids:
            self._restorations.update({plan_id: {} for plan_id in restored_ids})
            rows = _RESTORATIONS.rows(self.session, self.dialect, restored_ids)
            for r in rows:
                self._restorations[r.plan_id][r.cause_key] = dict(r._mapping)
        if not account_ids:
            return
        ordered = sorted(account_ids)
        self._create_missing_accounts(ordered)
        # One lock for the whole batch, taken in account id order (no deadlock between
        # processes): one account's events arrive on three topics whose partitions may
        # be owned by different processes.
        rows = _LOCK_ACCOUNTS.rows(self.session, self.dialect, ordered)
        self._accounts = {r[0]: Account(*r) for r in rows}
        if balance_ids:
            self._balances = dict.fromkeys(balance_ids, 0)
            rows = _BALANCES.rows(self.session, self.dialect, sorted(balance_ids))
            self._balances.update({r[0]: int(r[1]) for r in rows})
        if purchase_ids:
            rows = _PURCHASES.rows(self.session, self.dialect, purchase_ids)
            self._purchases = {r.purchase_id: Purchase(**r._mapping) for r in rows}
        if plan_ids:
            rows = _PLANS.rows(self.session, self.dialect, plan_ids)
            self._plans = {r.plan_id: Plan(**r._mapping) for r in rows}
        if refunded_ids:
            rows = _BONUS_PLANS.rows(self.session, self.dialect, refunded_ids)
            for r in rows:
                self._plans.setdefault(r.plan_id, Plan(**r._mapping))
        for plan in self._plans.values():
            self._bonus_loaded.add(plan.purchase_id)  # a purchase has at most one plan
            if plan.bonus_points > 0:
                self._bonus_plans[plan.purchase_id] = plan

    def _create_missing_accounts(self, ordered: list[str]) -> None:
        """``INSERT ... ON CONFLICT DO NOTHING`` of the batch's accounts (sorted)."""
        if self.dialect == "postgresql":
            self.session.execute(_PG_CREATE_ACCOUNTS, {"ids": ordered})
        elif self.dialect == "sqlite":
            self.session.execute(
                sqlite_insert(accounts).on_conflict_do_nothing(index_elements=["account_id"]),
                [{"account_id": a, "tier": None, "had_plan": False} for a in ordered],
            )
        else:  # pragma: no cover - the service runs on PostgreSQL (SQLite in tests)
            existing = set(
                self.session.execute(
                    select(accounts.c.account_id).where(accounts.c.account_id.in_(ordered))
                ).scalars()
            )
            missing = [
                {"account_id": a, "tier": None, "had_plan": False}
                for a in ordered
                if a not in existing
            ]
            if missing:
                self.session.execute(accounts.insert(), missing)

    # --- reads, in memory -------------------------------------------------------------

    def account(self, account_id: str) -> Account:
        """The account (loaded and locked for the batch)."""
        if account_id not in self._accounts:
            raise NotLoaded(f"account {account_id!r} was not preloaded")
        return self._accounts[account_id]

    def balance(self, account_id: str) -> int:
        """Σ of the account's ledger entries, including those booked earlier in the batch."""
        if account_id not in self._balances:
            raise NotLoaded(f"the balance of account {account_id!r} was not preloaded")
        return self._balances[account_id]

    def purchase(self, purchase_id: str) -> Purchase | None:
        if purchase_id not in self._purchases_loaded:
            raise NotLoaded(f"purchase {purchase_id!r} was not preloaded")
        return self._purchases.get(purchase_id)

    def plan(self, plan_id: str) -> Plan | None:
        if plan_id not in self._plans_loaded and plan_id not in self._plans:
            raise NotLoaded(f"plan {plan_id!r} was not preloaded")
        return self._plans.get(plan_id)

    def bonus_plan(self, purchase_id: str) -> Plan | None:
        """The purchase's plan that earned a first-plan bonus (> 0), if any.

        Loaded for the purchases refunded in the batch; plans created in the batch
        are found too.
        """
        if purchase_id not in self._bonus_loaded:
            raise NotLoaded(f"the plan of purchase {purchase_id!r} was not preloaded")
        return self._bonus_plans.get(purchase_id)

    def restoration(self, plan_id: str, cause_key: str) -> dict[str, Any] | None:
        """The plan's restoration row for ``cause_key`` (None: not applied yet)."""
        return self._restorations_of(plan_id).get(cause_key)

    def restored_total(self, plan_id: str) -> int:
        """Points given back for the plan so far (Σ of its restorations)."""
        return sum(row["restored"] for row in self._restorations_of(plan_id).values())

    def _restorations_of(self, plan_id: str) -> dict[str, dict[str, Any]]:
        if plan_id not in self._restorations:
            raise NotLoaded(f"the restorations of plan {plan_id!r} were not preloaded")
        return self._restorations[plan_id]

    # --- changes, in memory ----------------------------------------------------------

    def set_tier(self, account_id: str, tier: str) -> None:
        self.changes += 1
        account = self.account(account_id)
        account.tier = tier
        self._changed_accounts[account_id] = account

    def mark_first_plan(self, account_id: str, plan_id: str) -> None:
        self.changes += 1
        account = self.account(account_id)
        account.had_plan, account.first_plan_id = True, plan_id
        self._changed_accounts[account_id] = account

    def add_purchase(self, purchase: Purchase) -> None:
        self.changes += 1
        self._purchases_loaded.add(purchase.purchase_id)
        self._purchases[purchase.purchase_id] = purchase
        self._new_purchases[purchase.purchase_id] = purchase

    def record_refund(
        self, purchase_id: str, points_reversed: int, refunded_total: Decimal
    ) -> None:
        self.changes += 1
        purchase = self._purchases[purchase_id]
        purchase.points_reversed, purchase.refunded_total = points_reversed, refunded_total
        if purchase_id not in self._new_purchases:  # a new row is inserted as it ends up
            self._changed_purchases[purchase_id] = purchase

    def add_plan(self, plan: Plan) -> None:
        self.changes += 1
        self._plans_loaded.add(plan.plan_id)
        self._bonus_loaded.add(plan.purchase_id)
        self._plans[plan.plan_id] = plan
        self._new_plans[plan.plan_id] = plan
        if plan.bonus_points > 0:
            self._bonus_plans[plan.purchase_id] = plan

    def record_cancellation(self, plan_id: str, principal_returned: Decimal) -> None:
        """The principal refunds took off the plan, in all (partial ones by
        ``plan.adjusted``, the rest by ``plan.cancelled``)."""
        self.changes += 1
        plan = self._plans[plan_id]
        plan.principal_returned = principal_returned
        if plan_id not in self._new_plans:
            self._changed_plans[plan_id] = plan

    def record_bonus_reversal(self, plan_id: str, bonus_reversed: int) -> None:
        """The first-plan bonus reversed so far (by the purchase's refunds)."""
        self.changes += 1
        plan = self._plans[plan_id]
        plan.bonus_reversed = bonus_reversed
        if plan_id not in self._new_plans:  # a new row is inserted as it ends up
            self._changed_plans[plan_id] = plan

    def add_restoration(self, row: dict[str, Any]) -> None:
        """Record one restoration (``plan_id``, ``cause_key``, ``restored``, ...)."""
        self.changes += 1
        self._restorations_of(row["plan_id"])[row["cause_key"]] = row
        self._new_restorations.append(row)

    def append_entry(self, row: dict[str, Any]) -> None:
        """Append one ledger row (``balance_after`` computed by the caller)."""
        self.changes += 1
        self._entries.append(row)
        self._balances[row["account_id"]] = row["balance_after"]

    # --- one bulk write per table ----------------------------------------------------

    def save(self) -> None:
        conn = self.session.connection()
        self._update_many(
            accounts,
            "account_id",
            ("tier", "had_plan", "first_plan_id"),
            self._changed_accounts.values(),
        )
        bulk_insert(conn, purchases, [dict(vars(p)) for p in self._new_purchases.values()])
        self._update_many(
            purchases,
            "purchase_id",
            ("points_reversed", "refunded_total"),
            self._changed_purchases.values(),
        )
        bulk_insert(conn, plans, [dict(vars(p)) for p in self._new_plans.values()])
        self._update_many(
            plans, "plan_id", ("principal_returned", "bonus_reversed"), self._changed_plans.values()
        )
        bulk_insert(conn, restorations, self._new_restorations)
        bulk_insert(conn, ledger, self._entries)  # entry_id follows the booking order

    def _update_many(
        self, table: Table, key: str, columns: tuple[str, ...], changed: Iterable[Any]
    ) -> None:
        """Write ``columns`` of the changed rows by primary key (one statement)."""
        update_rows(self.session.connection(), table, (key,), columns, [vars(r) for r in changed])
