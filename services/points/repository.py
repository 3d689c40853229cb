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

If a handler refuses or fails, the runtime rolls the batch back and replays it one
record per transaction with a fresh repository, so handlers may change the view freely.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import String, Table, bindparam, false, func, null, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from services.points.tables import accounts, ledger, plans, purchases
from shared.runtime.db import among, bulk_insert, update_rows


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


def _account_of(event: Any) -> str | None:
    """The account an event of the points service touches (None: not one of ours)."""
    if event.type in ("account.upserted", "purchase.recorded", "refund.recorded", "plan.created"):
        return event.data.account_id
    if event.type == "plan.cancelled":
        return event.subject  # the subject is the account id (contract section 2)
    return None


class PointsRepository:
    def __init__(self, session: Session) -> None:
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

    # --- one read per table ---------------------------------------------------------

    def load(self, events: list[Any]) -> None:
        account_ids: set[str] = set()
        balance_ids: set[str] = set()  # accounts whose balance a handler may need
        purchase_ids: set[str] = set()
        plan_ids: set[str] = set()
        refunded_ids: set[str] = set()  # purchases whose bonus plan a refund may reverse
        for e in events:
            account_id = _account_of(e)
            if account_id is None:
                continue
            account_ids.add(account_id)
            if e.type != "account.upserted":
                balance_ids.add(account_id)
            if e.type in ("purchase.recorded", "refund.recorded", "plan.created"):
                purchase_ids.add(e.data.purchase_id)
            if e.type in ("plan.created", "plan.cancelled"):
                plan_ids.add(e.data.plan_id)
            if e.type == "refund.recorded":
                refunded_ids.add(e.data.purchase_id)
        if not account_ids:
            return
        ordered = sorted(account_ids)
        self._create_missing_accounts(ordered)
        # One lock for the whole batch, taken in account id order (no deadlock between
        # processes): one account's events arrive on three topics whose partitions may
        # be owned by different processes.
        rows = self.session.execute(
            select(
                accounts.c.account_id,
                accounts.c.tier,
                accounts.c.had_plan,
                accounts.c.first_plan_id,
            )
            .where(among(accounts.c.account_id, ordered, self.dialect))
            .order_by(accounts.c.account_id)
            .with_for_update()
        )
        self._accounts = {r[0]: Account(*r) for r in rows}
        if balance_ids:
            self._balances = dict.fromkeys(balance_ids, 0)
            rows = self.session.execute(
                select(ledger.c.account_id, func.sum(ledger.c.points))
                .where(among(ledger.c.account_id, sorted(balance_ids), self.dialect))
                .group_by(ledger.c.account_id)
            )
            self._balances.update({r[0]: int(r[1]) for r in rows})
        if purchase_ids:
            rows = self.session.execute(
                select(purchases).where(among(purchases.c.purchase_id, purchase_ids, self.dialect))
            )
            self._purchases = {r.purchase_id: Purchase(**r._mapping) for r in rows}
        if plan_ids:
            rows = self.session.execute(
                select(plans).where(among(plans.c.plan_id, plan_ids, self.dialect))
            )
            self._plans = {r.plan_id: Plan(**r._mapping) for r in rows}
        if refunded_ids:
            rows = self.session.execute(
                select(plans).where(
                    among(plans.c.purchase_id, refunded_ids, self.dialect),
                    plans.c.bonus_points > 0,
                )
            )
            for r in rows:
                self._plans.setdefault(r.plan_id, Plan(**r._mapping))
        for plan in self._plans.values():
            if plan.bonus_points > 0:
                self._bonus_plans[plan.purchase_id] = plan

    def _create_missing_accounts(self, ordered: list[str]) -> None:
        """``INSERT ... ON CONFLICT DO NOTHING`` of the batch's accounts (sorted)."""
        if self.dialect == "postgresql":
            ids = bindparam("ids", ordered, type_=ARRAY(String))
            self.session.execute(
                pg_insert(accounts)
                .from_select(
                    ["account_id", "tier", "had_plan"], select(func.unnest(ids), null(), false())
                )
                .on_conflict_do_nothing(index_elements=["account_id"])
            )
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
        return self._accounts[account_id]

    def balance(self, account_id: str) -> int:
        """Σ of the account's ledger entries, including those booked earlier in the batch."""
        return self._balances[account_id]

    def purchase(self, purchase_id: str) -> Purchase | None:
        return self._purchases.get(purchase_id)

    def plan(self, plan_id: str) -> Plan | None:
        return self._plans.get(plan_id)

    def bonus_plan(self, purchase_id: str) -> Plan | None:
        """The purchase's plan that earned a first-plan bonus (> 0), if any.

        Loaded for the purchases refunded in the batch; plans created in the batch
        are found too.
        """
        return self._bonus_plans.get(purchase_id)

    # --- changes, in memory ----------------------------------------------------------

    def set_tier(self, account_id: str, tier: str) -> None:
        account = self._accounts[account_id]
        account.tier = tier
        self._changed_accounts[account_id] = account

    def mark_first_plan(self, account_id: str, plan_id: str) -> None:
        account = self._accounts[account_id]
        account.had_plan, account.first_plan_id = True, plan_id
        self._changed_accounts[account_id] = account

    def add_purchase(self, purchase: Purchase) -> None:
        self._purchases[purchase.purchase_id] = purchase
        self._new_purchases[purchase.purchase_id] = purchase

    def record_refund(
        self, purchase_id: str, points_reversed: int, refunded_total: Decimal
    ) -> None:
        purchase = self._purchases[purchase_id]
        purchase.points_reversed, purchase.refunded_total = points_reversed, refunded_total
        if purchase_id not in self._new_purchases:  # a new row is inserted as it ends up
            self._changed_purchases[purchase_id] = purchase

    def add_plan(self, plan: Plan) -> None:
        self._plans[plan.plan_id] = plan
        self._new_plans[plan.plan_id] = plan
        if plan.bonus_points > 0:
            self._bonus_plans[plan.purchase_id] = plan

    def record_cancellation(self, plan_id: str, principal_returned: Decimal) -> None:
        plan = self._plans[plan_id]
        plan.principal_returned = principal_returned
        if plan_id not in self._new_plans:
            self._changed_plans[plan_id] = plan

    def record_bonus_reversal(self, plan_id: str, bonus_reversed: int) -> None:
        """The first-plan bonus reversed so far (by the purchase's refunds)."""
        plan = self._plans[plan_id]
        plan.bonus_reversed = bonus_reversed
        if plan_id not in self._new_plans:  # a new row is inserted as it ends up
            self._changed_plans[plan_id] = plan

    def append_entry(self, row: dict[str, Any]) -> None:
        """Append one ledger row (``balance_after`` computed by the caller)."""
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
        bulk_insert(conn, ledger, self._entries)  # entry_id follows the booking order

    def _update_many(
        self, table: Table, key: str, columns: tuple[str, ...], changed: Iterable[Any]
    ) -> None:
        """Write ``columns`` of the changed rows by primary key (one statement)."""
        update_rows(self.session.connection(), table, (key,), columns, [vars(r) for r in changed])
