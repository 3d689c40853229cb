"""The collections service's batch repository: one read and one write per table per batch.

``load`` reads, with one query per table, everything a batch of events touches: the
accounts' positions (latest report), their cases with the levels raised on them (from
the append-only ``case_events``), the plans and the installments paid in the batch.
The one exception is a charge-off (once per case): ``open_installments`` reads that
account's plans and installments when first asked (two queries).
Handlers then read and change this in-memory view (``ctx.repo``): a second delinquency
report of one account in the batch sees the first one's position, case and levels,
exactly as one by one. ``save`` writes what changed: new rows (and every new
``case_events`` row, in the order appended) with ``bulk_insert`` (COPY on PostgreSQL),
changed rows with one ``UPDATE`` statement per table (``shared.runtime.db.update_rows``).

What each event needs is the ``PRELOAD`` table next to ``HANDLERS`` in ``handlers.py``
(event type -> :class:`Keys`). A getter asked for a key the batch did not load raises
:class:`NotLoaded` (the preload table misses it: a programming error); a key loaded and
not found answers None (or False). Rows added during the batch count as loaded.

If a handler refuses or fails, the runtime rolls the batch back and replays it one
record per transaction with a fresh repository, so handlers may change the view freely.
A rejection that changed nothing (``changes``, every change adds one) is dead-lettered
in the batch's transaction instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from services.collections.retention import FINISHED_CASES, FINISHED_PLANS
from services.collections.tables import (
    ACTIVE,
    CHARGED_OFF,
    OPEN,
    RAISED,
    case_events,
    cases,
    contacts,
    disputes,
    payments,
    plan_installments,
    plans,
    positions,
    promises,
)
from shared.runtime.api import NotLoaded
from shared.runtime.db import (
    Prebuilt,
    among,
    bulk_insert,
    key_params,
    restrict_to_keys,
    update_rows,
)
from shared.runtime.retention import hold_off_archiving, restore

Key = tuple[str, int]  # (plan_id, seq)


# A batch's reads, built once (shared.runtime.db.Prebuilt); the ids bound as "ids".
_PLANS = Prebuilt(lambda among: select(plans).where(among(plans.c.plan_id)))
_CONTACTS = Prebuilt(lambda among: select(contacts).where(among(contacts.c.contact_id)))
_PAYMENTS = Prebuilt(lambda among: select(payments).where(among(payments.c.account_id)))
_SCHEDULES = Prebuilt(
    lambda among: select(plan_installments).where(among(plan_installments.c.plan_id))
)
_POSITIONS = Prebuilt(lambda among: select(positions).where(among(positions.c.account_id)))
_CASES = Prebuilt(lambda among: select(cases).where(among(cases.c.account_id)))
_INSTALLMENTS = Prebuilt(
    lambda among: restrict_to_keys(
        select(
            plan_installments.c.plan_id,
            plan_installments.c.seq,
            plan_installments.c.paid,
            plan_installments.c.paid_on,
        ),
        plan_installments,
        ("plan_id", "seq"),
        None,
        among.dialect,
    )
)


@dataclass(frozen=True)
class Keys:
    """What one event needs loaded (the values of ``handlers.PRELOAD``)."""

    #: the account's position, every case and the levels raised on those in play
    accounts: tuple[str, ...] = ()
    plans: tuple[str, ...] = ()
    #: installments (paid, paid_on only) by (plan id, seq)
    installments: tuple[Key, ...] = ()
    #: plans whose every installment (full rows) a handler reads: plan.adjusted
    schedules: tuple[str, ...] = ()
    #: contact ids (``contacts`` rows, found or not: a repeated contact_id is ignored)
    contacts: tuple[str, ...] = ()
    #: accounts whose every known payment is read (a promise recorded in the batch);
    #: those of accounts with an open promise are read anyway
    payments: tuple[str, ...] = ()
    #: plans whose account is loaded as ``accounts`` is (installment.paid: a payment
    #: may keep the account's promises)
    payer_plans: tuple[str, ...] = ()


def account_of_case(case_id: str) -> str:
    """The account of a case id (``domain.case_id_for``: ``case:<account>:<date>``)."""
    return case_id.removeprefix("case:").rsplit(":", 1)[0]


@dataclass
class Position:
    """A ``positions`` row: the account's latest delinquency report applied."""

    account_id: str
    business_date: date
    days_past_due: int
    overdue_amount: Decimal
    currency: str
    oldest_unpaid_due_date: date | None
    event_id: str


@dataclass
class Case:
    """A ``cases`` row."""

    case_id: str
    account_id: str
    status: str
    opened_on: date
    level: int
    days_past_due: int
    overdue_amount: Decimal
    currency: str
    business_date: date
    action: str | None = None
    bucket: str | None = None
    resolution: str | None = None
    resolved_on: date | None = None
    written_off: Decimal | None = None


_CASE_CHANGES = (
    "status", "level", "action", "bucket", "days_past_due", "overdue_amount", "currency",
    "business_date", "resolution", "resolved_on", "written_off",
)  # fmt: skip


@dataclass
class _Changes:
    """New rows (inserted as they end up) and changed rows (updated), per key."""

    new: dict[Any, Any] = field(default_factory=dict)
    changed: dict[Any, Any] = field(default_factory=dict)

    def put(self, key: Any, row: Any, *, stored: bool) -> None:
        if stored and key not in self.new:
            self.changed[key] = row
        else:
            self.new[key] = row


class CollectionsRepository:
    def __init__(self, session: Session, preload: Mapping[str, Callable[[Any], Keys]]) -> None:
        #: event type -> the :class:`Keys` its handler needs: ``handlers.PRELOAD``, the
        #: table next to HANDLERS (``bootstrap.build`` passes it).
        self.preload = preload
        self.session = session
        self.dialect = session.get_bind().dialect.name
        self._positions: dict[str, Position] = {}
        self._cases: dict[str, Case] = {}
        self._raised: dict[str, list[tuple[int, date]]] = {}
        self._plans: dict[str, dict[str, Any]] = {}  # plan_id -> row
        self._installments: dict[Key, dict[str, Any]] = {}  # paid-in-batch + new ones
        self._position_changes = _Changes()
        self._case_changes = _Changes()
        self._plan_changes = _Changes()
        self._installment_changes = _Changes()
        self._case_events: list[dict[str, Any]] = []
        # second release: contact outcomes (rows as dicts, by contact id / (plan, seq))
        self._contacts: dict[str, dict[str, Any]] = {}
        self._promises: dict[str, dict[str, Any]] = {}
        self._disputes: dict[str, dict[str, Any]] = {}
        self._payments: dict[Key, dict[str, Any]] = {}
        self._contact_changes = _Changes()
        self._promise_changes = _Changes()
        self._dispute_changes = _Changes()
        self._payment_changes = _Changes()
        self._contacts_loaded: set[str] = set()
        self._case_contacts_loaded: set[str] = set()  # cases whose contacts are in the view
        self._payments_loaded: set[str] = set()  # accounts
        self._accounts_with_plans_loaded: set[str] = set()
        self._schedules_loaded: set[str] = set()
        # keys loaded (found or not): a getter refuses the others
        self._accounts_loaded: set[str] = set()
        self._plans_loaded: set[str] = set()
        self._installments_loaded: set[Key] = set()
        #: Changes made in memory (every change adds one): the runtime dead-letters a
        #: rejection that changed nothing without splitting the batch.
        self.changes = 0

    # --- one read per table ---------------------------------------------------------

    def load(self, events: list[Any]) -> None:
        """Bulk-read what ``events`` need (:attr:`preload`; one query per table)."""
        assert self.preload, "bootstrap.build passes handlers.PRELOAD"
        account_ids: set[str] = set()
        plan_ids: set[str] = set()
        keys: set[Key] = set()
        schedule_ids: set[str] = set()
        contact_ids: set[str] = set()
        payer_accounts: set[str] = set()
        payer_plans: set[str] = set()
        for e in events:
            preload = self.preload.get(e.type)
            if preload is None:
                continue
            wanted = preload(e)
            account_ids.update(wanted.accounts)
            plan_ids.update(wanted.plans)
            keys.update(wanted.installments)
            schedule_ids.update(wanted.schedules)
            contact_ids.update(wanted.contacts)
            payer_accounts.update(wanted.payments)
            payer_plans.update(wanted.payer_plans)
        plan_ids |= payer_plans
        # retention: nothing moves to the archive until this batch commits, and what the
        # batch names comes back from it first (handled as if it never left)
        conn = self.session.connection()
        hold_off_archiving(conn)
        restore(conn, FINISHED_PLANS, plan_ids | {k[0] for k in keys} | schedule_ids)
        restore(conn, FINISHED_CASES,
                {e.data.case_id for e in events if e.type == "contact.recorded"})  # fmt: skip
        self._plans_loaded.update(plan_ids)
        self._installments_loaded.update(keys)
        if plan_ids:
            rows = _PLANS.rows(self.session, self.dialect, plan_ids)
            self._plans = {r.plan_id: dict(r._mapping) for r in rows}
        account_ids.update(self._plans[p]["account_id"] for p in payer_plans if p in self._plans)
        self._accounts_loaded.update(account_ids)
        if account_ids:
            self._load_cases(account_ids)
        if contact_ids:
            self._contacts_loaded.update(contact_ids)
            rows = _CONTACTS.rows(self.session, self.dialect, contact_ids)
            for r in rows:
                self._contacts.setdefault(r.contact_id, dict(r._mapping))
        payer_accounts |= {p["account_id"] for p in self._promises.values()
                           if p["status"] == "open"}  # fmt: skip
        if payer_accounts:
            self._payments_loaded.update(payer_accounts)
            rows = _PAYMENTS.rows(self.session, self.dialect, payer_accounts)
            for r in rows:
                self._payments.setdefault((r.plan_id, r.seq), dict(r._mapping))
        if keys:
            self._load_installments(keys)
        if schedule_ids:
            self._load_schedules(schedule_ids)

    def _load_schedules(self, plan_ids: set[str]) -> None:
        """Every installment (full row) of the plans, under the batch's changes."""
        for r in _SCHEDULES.rows(self.session, self.dialect, plan_ids):
            line = self._installments.setdefault((r.plan_id, r.seq), dict(r._mapping))
            self._installments_loaded.add((r.plan_id, r.seq))
            for name, value in r._mapping.items():  # complete partial rows, keep paid
                line.setdefault(name, value)
        self._schedules_loaded.update(plan_ids)

    def _load_cases(self, account_ids: set[str]) -> None:
        rows = _POSITIONS.rows(self.session, self.dialect, account_ids)
        self._positions = {r.account_id: Position(**r._mapping) for r in rows}
        rows = _CASES.rows(self.session, self.dialect, account_ids)
        self._cases = {r.case_id: Case(**r._mapping) for r in rows}
        in_play = [c.case_id for c in self._cases.values() if c.status in (OPEN, CHARGED_OFF)]
        self._raised = {case_id: [] for case_id in in_play}
        if in_play:
            rows = self.session.execute(
                select(case_events.c.case_id, case_events.c.level, case_events.c.business_date)
                .where(
                    among(case_events.c.case_id, in_play, self.dialect),
                    case_events.c.kind == RAISED,
                )
                .order_by(case_events.c.seq)
            )
            for case_id, level, raised_on in rows:
                self._raised[case_id].append((level, raised_on))
            self._load_contact_outcomes(in_play)

    def _load_contact_outcomes(self, case_ids: list[str]) -> None:
        """The contacts, promises and disputes of the cases in play."""
        self._case_contacts_loaded.update(case_ids)
        for table, view in ((contacts, self._contacts), (promises, self._promises),
                            (disputes, self._disputes)):  # fmt: skip
            rows = self.session.execute(
                select(table).where(among(table.c.case_id, case_ids, self.dialect))
            )
            for r in rows:
                view.setdefault(r.contact_id, dict(r._mapping))

    def _load_account_plans(self, account_id: str) -> None:
        """Every plan and installment of the account, under the batch's changes: a plan
        or installment already in the view keeps its in-memory state."""
        rows = self.session.execute(select(plans).where(plans.c.account_id == account_id))
        for r in rows:
            self._plans.setdefault(r.plan_id, dict(r._mapping))
            self._plans_loaded.add(r.plan_id)
        t = plan_installments
        for r in self.session.execute(select(t).where(t.c.account_id == account_id)):
            line = self._installments.setdefault((r.plan_id, r.seq), dict(r._mapping))
            self._installments_loaded.add((r.plan_id, r.seq))
            for name, value in r._mapping.items():  # rows loaded for installment.paid are
                line.setdefault(name, value)  # partial: complete them, keep paid / paid_on
        self._accounts_with_plans_loaded.add(account_id)

    def _load_installments(self, keys: set[Key]) -> None:
        query = _INSTALLMENTS(self.dialect)
        for r in self.session.execute(query, key_params(keys, self.dialect)).all():
            self._installments[(r.plan_id, r.seq)] = dict(r._mapping)

    # --- reads, in memory -----------------------------------------------------------

    def _require_account(self, account_id: str) -> None:
        if account_id not in self._accounts_loaded:
            raise NotLoaded(f"account {account_id!r} was not preloaded")

    def position(self, account_id: str) -> Position | None:
        self._require_account(account_id)
        return self._positions.get(account_id)

    def current_case(self, account_id: str) -> Case | None:
        """The account's case still in play: open, or charged off and not closed."""
        self._require_account(account_id)
        in_play = [c for c in self._cases.values()
                   if c.account_id == account_id and c.status in (OPEN, CHARGED_OFF)]  # fmt: skip
        return max(in_play, key=lambda c: c.opened_on, default=None)

    def levels_raised(self, case_id: str) -> list[tuple[int, date]]:
        """``(level, business_date)`` of the case, in the order raised."""
        if case_id not in self._cases:
            raise NotLoaded(f"case {case_id!r} is not in the view")
        return list(self._raised.get(case_id, ()))

    def case_exists(self, case_id: str) -> bool:
        """Every case of a loaded account is in the view (and the cases added since)."""
        if case_id not in self._cases:
            self._require_account(account_of_case(case_id))
        return case_id in self._cases

    def case(self, case_id: str) -> Case | None:
        """The case (None: no such case); its account must be loaded."""
        return self._cases[case_id] if self.case_exists(case_id) else None

    def contact_exists(self, contact_id: str) -> bool:
        if contact_id not in self._contacts_loaded and contact_id not in self._contacts:
            raise NotLoaded(f"contact {contact_id!r} was not preloaded")
        return contact_id in self._contacts

    def _require_case_contacts(self, case_id: str) -> None:
        if case_id not in self._case_contacts_loaded:
            raise NotLoaded(f"the contacts of case {case_id!r} were not preloaded")

    def contact_outcomes(self, case_id: str) -> list[tuple[str, date]]:
        """``(outcome, contacted_on)`` of the contacts recorded on the case."""
        self._require_case_contacts(case_id)
        return [(c["outcome"], c["contacted_on"]) for c in self._contacts.values()
                if c["case_id"] == case_id]  # fmt: skip

    def promises(self, case_id: str) -> list[dict[str, Any]]:
        """The case's promises (``promises`` rows), by contact id."""
        self._require_case_contacts(case_id)
        return [dict(p) for _, p in sorted(self._promises.items()) if p["case_id"] == case_id]

    def open_promises(self, account_id: str) -> list[dict[str, Any]]:
        """The account's open promises (of its cases in play), by contact id."""
        self._require_account(account_id)
        return [dict(p) for _, p in sorted(self._promises.items())
                if p["account_id"] == account_id and p["status"] == "open"]  # fmt: skip

    def disputes(self, case_id: str) -> list[dict[str, Any]]:
        """The case's disputes (``disputes`` rows), by contact id."""
        self._require_case_contacts(case_id)
        return [dict(d) for _, d in sorted(self._disputes.items()) if d["case_id"] == case_id]

    def payments(self, account_id: str) -> list[dict[str, Any]]:
        """Every payment known for the account (``payments`` rows)."""
        if account_id not in self._payments_loaded:
            raise NotLoaded(f"the payments of account {account_id!r} were not preloaded")
        return [dict(p) for _, p in sorted(self._payments.items())
                if p["account_id"] == account_id]  # fmt: skip

    def plan_account(self, plan_id: str) -> str | None:
        """The account of a plan (None: unknown plan)."""
        plan = self._plans.get(plan_id) if self.has_plan(plan_id) else None
        return None if plan is None else plan["account_id"]

    def is_paid(self, plan_id: str, seq: int) -> bool | None:
        """Whether the installment is paid already (None: unknown)."""
        if (plan_id, seq) not in self._installments_loaded:
            raise NotLoaded(f"installment {plan_id!r} #{seq} was not preloaded")
        line = self._installments.get((plan_id, seq))
        return None if line is None else bool(line["paid"])

    def has_plan(self, plan_id: str) -> bool:
        if plan_id not in self._plans_loaded and plan_id not in self._plans:
            raise NotLoaded(f"plan {plan_id!r} was not preloaded")
        return plan_id in self._plans

    def open_installments(self, account_id: str, currency: str) -> list[dict[str, Any]]:
        """The unpaid installments of the account's active plans in ``currency``
        (``plan_id``, ``seq``, ``due_date``, ``principal``, ...), with the batch's changes;
        by plan and seq."""
        if account_id not in self._accounts_with_plans_loaded:
            self._load_account_plans(account_id)
        active = set(self.active_plans(account_id, currency))
        return [dict(line) for key, line in sorted(self._installments.items())
                if key[0] in active and not line["paid"]
                and not line.get("removed")]  # fmt: skip

    def unpaid_seqs(self, plan_id: str) -> list[int]:
        """The seqs of the plan's unpaid installments still in its schedule."""
        if plan_id not in self._schedules_loaded:
            raise NotLoaded(f"the installments of plan {plan_id!r} were not preloaded")
        return sorted(seq for (pid, seq), line in self._installments.items()
                      if pid == plan_id and not line["paid"]
                      and not line.get("removed"))  # fmt: skip

    def active_plans(self, account_id: str, currency: str) -> list[str]:
        """Ids of the account's active plans in ``currency`` known to the view (all of
        them once ``open_installments`` has read the account's)."""
        if account_id not in self._accounts_with_plans_loaded:
            raise NotLoaded(f"the plans of account {account_id!r} were not read")
        return sorted(plan_id for plan_id, plan in self._plans.items()
                      if plan["account_id"] == account_id and plan["currency"] == currency
                      and plan["status"] == ACTIVE)  # fmt: skip

    # --- changes, in memory ---------------------------------------------------------

    def put_position(self, position: Position) -> None:
        self._require_account(position.account_id)  # stored or not decides insert or update
        self.changes += 1
        stored = position.account_id in self._positions
        self._positions[position.account_id] = position
        self._position_changes.put(position.account_id, position, stored=stored)

    def add_case(self, case: Case) -> None:
        self.changes += 1
        self._cases[case.case_id] = case
        self._case_contacts_loaded.add(case.case_id)  # a new case has none yet
        self._raised[case.case_id] = []
        self._case_changes.put(case.case_id, case, stored=False)

    def update_case(self, case_id: str, **values: Any) -> None:
        self.changes += 1
        case = self._cases[case_id]
        for name, value in values.items():
            setattr(case, name, value)
        self._case_changes.put(case_id, case, stored=True)

    def append_case_event(self, row: dict[str, Any]) -> None:
        """One row of the append-only case history (written in the order appended)."""
        self.changes += 1
        self._case_events.append(row)
        if row["kind"] == RAISED:
            self._raised.setdefault(row["case_id"], []).append((row["level"], row["business_date"]))

    def add_plan(self, plan: dict[str, Any], schedule: list[dict[str, Any]]) -> None:
        self.changes += 1
        self._plans_loaded.add(plan["plan_id"])
        self._installments_loaded.update((line["plan_id"], line["seq"]) for line in schedule)
        self._plans[plan["plan_id"]] = plan
        self._plan_changes.put(plan["plan_id"], plan, stored=False)
        for line in schedule:
            key = (line["plan_id"], line["seq"])
            self._installments[key] = line
            self._installment_changes.put(key, line, stored=False)

    def add_contact(self, row: dict[str, Any]) -> None:
        self.changes += 1
        self._contacts_loaded.add(row["contact_id"])
        self._contacts[row["contact_id"]] = row
        self._contact_changes.put(row["contact_id"], row, stored=False)

    def add_promise(self, row: dict[str, Any]) -> None:
        self.changes += 1
        self._promises[row["contact_id"]] = row
        self._promise_changes.put(row["contact_id"], row, stored=False)

    def update_promise(self, contact_id: str, **values: Any) -> None:
        self.changes += 1
        row = self._promises[contact_id]
        row.update(values)
        self._promise_changes.put(contact_id, row, stored=True)

    def add_dispute(self, row: dict[str, Any]) -> None:
        self.changes += 1
        self._disputes[row["contact_id"]] = row
        self._dispute_changes.put(row["contact_id"], row, stored=False)

    def resolve_dispute(self, contact_id: str, resolved_by: str, resolved_on: date) -> None:
        self.changes += 1
        row = self._disputes[contact_id]
        row.update(resolved_by=resolved_by, resolved_on=resolved_on)
        self._dispute_changes.put(contact_id, row, stored=True)

    def add_payment(self, row: dict[str, Any]) -> None:
        """A payment (``installment.paid``) of the account: what keeps its promises."""
        self.changes += 1
        key = (row["plan_id"], row["seq"])
        self._payments[key] = row
        self._payment_changes.put(key, row, stored=False)

    def mark_paid(self, plan_id: str, seq: int, paid_on: date) -> bool:
        """False: the installment is unknown (nothing changed)."""
        if (plan_id, seq) not in self._installments_loaded:
            raise NotLoaded(f"installment {plan_id!r} #{seq} was not preloaded")
        self.changes += 1
        line = self._installments.get((plan_id, seq))
        if line is None:
            return False
        line["paid"], line["paid_on"] = True, paid_on
        self._installment_changes.put((plan_id, seq), line, stored=True)
        return True

    def adjust_installments(
        self, plan_id: str, lines: list[dict[str, Any]], removed: Iterable[int]
    ) -> None:
        """``plan.adjusted``: the listed installments (``seq``, ``due_date``,
        ``principal``) take their new principal (a seq never tracked is added); the
        ``removed`` seqs are no longer outstanding."""
        if plan_id not in self._schedules_loaded:
            raise NotLoaded(f"the installments of plan {plan_id!r} were not preloaded")
        self.changes += 1
        account_id = self._plans[plan_id]["account_id"]
        for line in lines:
            key = (plan_id, line["seq"])
            row = self._installments.get(key)
            if row is None:
                row = {"plan_id": plan_id, "seq": line["seq"], "account_id": account_id,
                       "due_date": line["due_date"], "principal": line["principal"],
                       "paid": False, "paid_on": None, "removed": False}  # fmt: skip
                self._installments[key] = row
                self._installments_loaded.add(key)
                self._installment_changes.put(key, row, stored=False)
                continue
            row.update(due_date=line["due_date"], principal=line["principal"], removed=False)
            self._installment_changes.put(key, row, stored=True)
        for seq in removed:
            row = self._installments[(plan_id, seq)]
            row["removed"] = True
            self._installment_changes.put((plan_id, seq), row, stored=True)

    def set_plan_status(self, plan_id: str, status: str) -> bool:
        """False: the plan is unknown (nothing changed)."""
        if plan_id not in self._plans_loaded and plan_id not in self._plans:
            raise NotLoaded(f"plan {plan_id!r} was not preloaded")
        self.changes += 1
        plan = self._plans.get(plan_id)
        if plan is None:
            return False
        plan["status"] = status
        self._plan_changes.put(plan_id, plan, stored=True)
        return True

    # --- one bulk write per table ---------------------------------------------------

    def save(self) -> None:
        conn = self.session.connection()
        pos = self._position_changes
        bulk_insert(conn, positions, [vars(p) for p in pos.new.values()])
        self._update_many(positions, ("account_id",),
                          ("business_date", "days_past_due", "overdue_amount", "currency",
                           "oldest_unpaid_due_date", "event_id"),
                          [vars(p) for p in pos.changed.values()])  # fmt: skip
        bulk_insert(conn, cases, [vars(c) for c in self._case_changes.new.values()])
        self._update_many(cases, ("case_id",), _CASE_CHANGES,
                          [vars(c) for c in self._case_changes.changed.values()])  # fmt: skip
        bulk_insert(conn, case_events, self._case_events)  # seq follows the append order
        bulk_insert(conn, contacts, list(self._contact_changes.new.values()))
        bulk_insert(conn, promises, list(self._promise_changes.new.values()))
        self._update_many(promises, ("contact_id",),
                          ("status", "paid_amount", "decided_on", "event_id"),
                          list(self._promise_changes.changed.values()))  # fmt: skip
        bulk_insert(conn, disputes, list(self._dispute_changes.new.values()))
        self._update_many(disputes, ("contact_id",), ("resolved_by", "resolved_on"),
                          list(self._dispute_changes.changed.values()))  # fmt: skip
        bulk_insert(conn, payments, list(self._payment_changes.new.values()))
        bulk_insert(conn, plans, list(self._plan_changes.new.values()))
        self._update_many(plans, ("plan_id",), ("status",),
                          list(self._plan_changes.changed.values()))  # fmt: skip
        bulk_insert(conn, plan_installments, list(self._installment_changes.new.values()))
        changed = list(self._installment_changes.changed.values())
        adjusted = [row for row in changed if "removed" in row]  # full rows (plan.adjusted)
        self._update_many(plan_installments, ("plan_id", "seq"), ("paid", "paid_on"),
                          [row for row in changed if "removed" not in row])  # fmt: skip
        self._update_many(plan_installments, ("plan_id", "seq"),
                          ("paid", "paid_on", "due_date", "principal", "removed"),
                          adjusted)  # fmt: skip

    def _update_many(self, table: Table, keys: tuple[str, ...], columns: tuple[str, ...],
                     rows: Iterable[dict[str, Any]]) -> None:  # fmt: skip
        """Write ``columns`` of the changed rows by primary key (one statement)."""
        update_rows(self.session.connection(), table, keys, columns, list(rows))
