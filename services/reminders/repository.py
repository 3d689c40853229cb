"""The reminders service's batch repository: one read and one write per table per batch.

``load`` reads, with one query per table, everything a batch of events touches: the
accounts (contact), the installments and the reminders already handled for them
(by (plan id, seq)), the plans' status, and the business clock (the newest
``business-day.closed``) with the batch's own day closes. Handlers then read and
change this in-memory view (``ctx.repo``): a second due-soon for the same installment
in the batch sees the first one's ``last_business_date`` and handled offsets, exactly
as one by one. ``save`` writes what changed: new rows with ``bulk_insert`` (COPY on
PostgreSQL), changed rows with one ``UPDATE`` statement per table (``update_rows``).

What each event needs is the ``PRELOAD`` table next to ``HANDLERS`` in ``handlers.py``
(event type -> :class:`Keys`). A getter asked for a key the batch did not load raises
:class:`NotLoaded` (the preload table misses it: a programming error); a key loaded and
not found answers None (or False, or no offsets). Rows added during the batch count as
loaded.

If a handler refuses or fails, the runtime rolls the batch back and replays it one
record per transaction with a fresh repository, so handlers may change the view freely
(a rejection that changed nothing, ``changes`` unchanged, is dead-lettered in the
batch's transaction instead). A handler that defers (``Defer``) does so before it
changes anything here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from services.reminders.retention import CLOSED_PLANS
from services.reminders.tables import (
    accounts,
    business_days,
    installments,
    plans,
    reminders,
    schedule_lines,
)
from shared.runtime.api import NotLoaded
from shared.runtime.db import Prebuilt, bulk_insert, key_params, restrict_to_keys, update_rows
from shared.runtime.retention import hold_off_archiving, restore

Key = tuple[str, int]  # (plan_id, seq)

# A batch's reads, built once (shared.runtime.db.Prebuilt); the ids bound as "ids".
_ACCOUNTS = Prebuilt(lambda among: select(accounts).where(among(accounts.c.account_id)))
_PLANS = Prebuilt(lambda among: select(plans).where(among(plans.c.plan_id)))
_SCHEDULES = Prebuilt(lambda among: select(schedule_lines).where(among(schedule_lines.c.plan_id)))
_DAYS = Prebuilt(
    lambda among: select(business_days.c.business_date).where(among(business_days.c.business_date))
)
_CLOCK = select(func.max(business_days.c.business_date))
_INSTALLMENTS = Prebuilt(
    lambda among: restrict_to_keys(
        select(installments), installments, ("plan_id", "seq"), None, among.dialect
    )
)
_REMINDERS = Prebuilt(
    lambda among: restrict_to_keys(
        select(reminders), reminders, ("plan_id", "seq"), None, among.dialect
    )
)


@dataclass(frozen=True)
class Keys:
    """What one event needs loaded (the values of ``handlers.PRELOAD``)."""

    accounts: tuple[str, ...] = ()  # contact rows
    installments: tuple[Key, ...] = ()  # with the reminder offsets already handled
    plans: tuple[str, ...] = ()  # plan status rows
    days: tuple[date, ...] = ()  # business dates already recorded
    clock: bool = False  # the newest business date closed
    schedules: tuple[str, ...] = ()  # plans whose adjusted schedule a handler reads


@dataclass
class Account:
    """An ``accounts`` row: the latest contact of the account."""

    account_id: str
    channel: str
    locale: str
    contact_ref: str
    status: str
    event_id: str


@dataclass
class Installment:
    """An ``installments`` row."""

    plan_id: str
    seq: int
    account_id: str
    due_date: date | None = None
    amount_outstanding: Decimal | None = None
    currency: str | None = None
    paid: bool = False
    paid_on: date | None = None
    last_business_date: date | None = None


@dataclass
class Plan:
    """A ``plans`` row."""

    plan_id: str
    account_id: str
    status: str
    event_id: str


@dataclass
class _Changes:
    """New rows (inserted as they end up) and changed rows (updated), per key."""

    new: dict[Any, Any] = field(default_factory=dict)
    changed: dict[Any, Any] = field(default_factory=dict)

    def touch(self, key: Any, row: Any) -> None:
        if key not in self.new:
            self.changed[key] = row


class RemindersRepository:
    def __init__(self, session: Session, preload: Mapping[str, Callable[[Any], Keys]]) -> None:
        #: event type -> the :class:`Keys` its handler needs: ``handlers.PRELOAD``, the
        #: table next to HANDLERS (``bootstrap.build`` passes it).
        self.preload = preload
        self.session = session
        self.dialect = session.get_bind().dialect.name
        self._accounts: dict[str, Account] = {}
        self._installments: dict[Key, Installment] = {}
        self._handled: dict[Key, set[int]] = {}
        self._plans: dict[str, Plan] = {}
        self._days: set[date] = set()
        self._clock: date | None = None
        self._account_changes = _Changes()
        self._installment_changes = _Changes()
        self._plan_changes = _Changes()
        self._new_reminders: list[dict[str, Any]] = []
        self._new_days: list[dict[str, Any]] = []
        self._schedules: dict[str, dict[int, dict[str, Any]]] = {}  # plan -> seq -> row
        self._schedule_changes = _Changes()
        # keys loaded (found or not): a getter refuses the others
        self._accounts_loaded: set[str] = set()
        self._installments_loaded: set[Key] = set()
        self._plans_loaded: set[str] = set()
        self._days_loaded: set[date] = set()
        self._clock_loaded = False
        #: Changes made in memory (every change adds one): the runtime dead-letters a
        #: rejection that changed nothing without splitting the batch.
        self.changes = 0

    # --- one read per table ---------------------------------------------------------

    def load(self, events: list[Any]) -> None:
        """Bulk-read what ``events`` need (:attr:`preload`; one query per table)."""
        assert self.preload, "bootstrap.build passes handlers.PRELOAD"
        account_ids: set[str] = set()
        keys: set[Key] = set()
        plan_ids: set[str] = set()
        days: set[date] = set()
        schedule_ids: set[str] = set()
        clock = False
        for e in events:
            preload = self.preload.get(e.type)
            if preload is None:
                continue
            wanted = preload(e)
            account_ids.update(wanted.accounts)
            keys.update(wanted.installments)
            plan_ids.update(wanted.plans)
            days.update(wanted.days)
            schedule_ids.update(wanted.schedules)
            clock = clock or wanted.clock
        self._accounts_loaded.update(account_ids)
        self._installments_loaded.update(keys)
        self._plans_loaded.update(plan_ids)
        self._days_loaded.update(days)
        self._clock_loaded = clock
        # retention: nothing moves to the archive until this batch commits, and a plan
        # the batch names comes back from it first (handled as if it never left)
        conn = self.session.connection()
        hold_off_archiving(conn)
        restore(conn, CLOSED_PLANS, plan_ids | {k[0] for k in keys} | schedule_ids)
        if account_ids:
            rows = _ACCOUNTS.rows(self.session, self.dialect, account_ids)
            self._accounts = {r.account_id: Account(**r._mapping) for r in rows}
        if keys:
            self._load_installments(keys)
        if plan_ids:
            rows = _PLANS.rows(self.session, self.dialect, plan_ids)
            self._plans = {r.plan_id: Plan(**r._mapping) for r in rows}
        if schedule_ids:
            self._schedules.update({plan_id: {} for plan_id in schedule_ids})
            rows = _SCHEDULES.rows(self.session, self.dialect, schedule_ids)
            for r in rows:
                self._schedules[r.plan_id][r.seq] = dict(r._mapping)
        if clock:
            self._clock = self.session.execute(_CLOCK).scalar()
        if days:
            rows = _DAYS.rows(self.session, self.dialect, days)
            self._days = {r[0] for r in rows}

    def _load_installments(self, keys: set[Key]) -> None:
        """The installments and their handled reminder offsets, by (plan id, seq)."""
        self._handled = {k: set() for k in keys}
        params = key_params(keys, self.dialect)
        for table, query in ((installments, _INSTALLMENTS), (reminders, _REMINDERS)):
            for r in self.session.execute(query(self.dialect), params).all():
                key = (r.plan_id, r.seq)
                if table is installments:
                    self._installments[key] = Installment(**r._mapping)
                else:
                    self._handled[key].add(r.offset_days)

    # --- reads, in memory -----------------------------------------------------------

    def account(self, account_id: str) -> Account | None:
        if account_id not in self._accounts_loaded:
            raise NotLoaded(f"account {account_id!r} was not preloaded")
        return self._accounts.get(account_id)

    def installment(self, plan_id: str, seq: int) -> Installment | None:
        if (plan_id, seq) not in self._installments_loaded:
            raise NotLoaded(f"installment {plan_id!r} #{seq} was not preloaded")
        return self._installments.get((plan_id, seq))

    def handled_offsets(self, plan_id: str, seq: int) -> set[int]:
        if (plan_id, seq) not in self._installments_loaded:
            raise NotLoaded(f"the reminders of installment {plan_id!r} #{seq} were not preloaded")
        return set(self._handled.get((plan_id, seq), ()))

    def plan_closed(self, plan_id: str, active: str) -> bool:
        if plan_id not in self._plans_loaded:
            raise NotLoaded(f"plan {plan_id!r} was not preloaded")
        plan = self._plans.get(plan_id)
        return plan is not None and plan.status != active

    def adjusted_schedule(self, plan_id: str) -> dict[int, Decimal] | None:
        """The plan's latest adjusted schedule (seq -> amount); None: never adjusted."""
        if plan_id not in self._schedules:
            raise NotLoaded(f"the schedule of plan {plan_id!r} was not preloaded")
        lines = self._schedules[plan_id]
        if not lines:
            return None
        return {seq: row["amount"] for seq, row in lines.items() if row["in_schedule"]}

    def business_clock(self) -> date | None:
        """The newest business date closed (None before the first ``business-day.closed``)."""
        if not self._clock_loaded:
            raise NotLoaded("the business clock was not preloaded")
        return self._clock

    def has_business_day(self, business_date: date) -> bool:
        if business_date not in self._days_loaded:
            raise NotLoaded(f"business date {business_date.isoformat()} was not preloaded")
        return business_date in self._days

    # --- changes, in memory ---------------------------------------------------------

    def put_account(self, account: Account) -> None:
        """Latest wins: insert or replace the account's contact."""
        key = account.account_id
        if key not in self._accounts_loaded:  # stored or not decides insert or update
            raise NotLoaded(f"account {key!r} was not preloaded")
        self.changes += 1
        changes = self._account_changes
        if key in self._accounts and key not in changes.new:
            changes.changed[key] = account
        else:  # not stored yet (or inserted by this batch: inserted as it ends up)
            changes.new[key] = account
        self._accounts[key] = account

    def add_installment(self, installment: Installment) -> None:
        self.changes += 1
        key = (installment.plan_id, installment.seq)
        self._installments_loaded.add(key)
        self._installments[key] = installment
        self._installment_changes.new[key] = installment

    def installment_changed(self, installment: Installment) -> None:
        """Note that a loaded (or new) installment was changed in place."""
        self.changes += 1
        key = (installment.plan_id, installment.seq)
        self._installment_changes.touch(key, installment)

    def add_reminder(self, row: dict[str, Any]) -> None:
        self.changes += 1
        self._handled.setdefault((row["plan_id"], row["seq"]), set()).add(row["offset_days"])
        self._new_reminders.append(row)

    def set_plan_status(self, plan_id: str, account_id: str, status: str, event_id: str) -> None:
        if plan_id not in self._plans_loaded:  # stored or not decides insert or update
            raise NotLoaded(f"plan {plan_id!r} was not preloaded")
        self.changes += 1
        plan = self._plans.get(plan_id)
        if plan is None:
            plan = self._plans[plan_id] = Plan(plan_id, account_id, status, event_id)
            self._plan_changes.new[plan_id] = plan
        else:
            plan.status, plan.event_id = status, event_id
            self._plan_changes.touch(plan_id, plan)

    def replace_schedule(self, plan_id: str, lines: list[dict[str, Any]]) -> None:
        """The plan's unpaid installments are now ``lines`` (``seq``, ``account_id``,
        ``due_date``, ``amount``, ``currency``, ``event_id``); the ones it used to list
        and ``lines`` leaves out are no longer in the schedule."""
        if plan_id not in self._schedules:
            raise NotLoaded(f"the schedule of plan {plan_id!r} was not preloaded")
        self.changes += 1
        known = self._schedules[plan_id]
        listed = {line["seq"] for line in lines}
        for seq, row in known.items():
            if seq not in listed and row["in_schedule"]:
                row["in_schedule"] = False
                self._schedule_changes.touch((plan_id, seq), row)
        for line in lines:
            row = {**line, "plan_id": plan_id, "in_schedule": True}
            key = (plan_id, line["seq"])
            if line["seq"] in known:
                known[line["seq"]].update(row)
                self._schedule_changes.touch(key, known[line["seq"]])
            else:
                known[line["seq"]] = row
                self._schedule_changes.new[key] = row

    def add_business_day(self, business_date: date, event_id: str) -> None:
        self.changes += 1
        self._days_loaded.add(business_date)
        self._days.add(business_date)
        self._new_days.append({"business_date": business_date, "event_id": event_id})
        if self._clock is None or business_date > self._clock:
            self._clock = business_date

    # --- one bulk write per table ---------------------------------------------------

    def save(self) -> None:
        conn = self.session.connection()
        bulk_insert(conn, business_days, self._new_days)
        bulk_insert(conn, accounts, [vars(a) for a in self._account_changes.new.values()])
        self._update_many(accounts, ("account_id",),
                          ("channel", "locale", "contact_ref", "status", "event_id"),
                          self._account_changes.changed.values())  # fmt: skip
        bulk_insert(conn, plans, [vars(p) for p in self._plan_changes.new.values()])
        self._update_many(plans, ("plan_id",), ("status", "event_id"),
                          self._plan_changes.changed.values())  # fmt: skip
        bulk_insert(conn, installments,
                    [vars(i) for i in self._installment_changes.new.values()])  # fmt: skip
        self._update_many(installments, ("plan_id", "seq"),
                          ("due_date", "amount_outstanding", "currency", "paid", "paid_on",
                           "last_business_date"),
                          self._installment_changes.changed.values())  # fmt: skip
        bulk_insert(conn, reminders, self._new_reminders)
        bulk_insert(conn, schedule_lines, list(self._schedule_changes.new.values()))
        update_rows(conn, schedule_lines, ("plan_id", "seq"),
                    ("account_id", "due_date", "amount", "currency", "in_schedule", "event_id"),
                    list(self._schedule_changes.changed.values()))  # fmt: skip

    def _update_many(self, table: Table, keys: tuple[str, ...], columns: tuple[str, ...],
                     changed: Iterable[Any]) -> None:  # fmt: skip
        """Write ``columns`` of the changed rows by primary key (one statement)."""
        update_rows(self.session.connection(), table, keys, columns, [vars(r) for r in changed])
