"""The offers service's batch repository: one read per table per batch, one write per change.

``load(events)`` reads everything a batch of events touches, one query per table. What
each event needs is the ``PRELOAD`` table next to ``HANDLERS`` in ``handlers.py`` (event
type -> :class:`Keys`):

- the accounts named (their ``accounts`` row, their ``positions`` row, ALL their plans and
  their open installments: what eligibility, payments and plan creation need), plus the
  plans named whole (every installment: refunds, waivers);
- the offers named (``offer_id`` is ``off-<purchase_id>``; with each its purchase and its
  account, as above), the options of the offers accepted, the purchases named (dedupe,
  acceptance facts, refunds);
- the payment and refund ids already applied, the business dates already closed.

A getter asked for a key the batch did not load raises :class:`NotLoaded` (a programming
error: the preload table misses a key); a key that was loaded and does not exist answers
None (or False). Rows added during the batch count as loaded.

Handlers read and change this in-memory view (``ctx.repo``): reads return immutable
values, changes go through the methods below, so a later event of the same batch sees the
earlier ones' effects (read-your-writes) without a database round trip. ``save()`` writes
what changed: COPY (``bulk_insert``) for new rows, one UPDATE statement per table for
changed rows (sorted by key, so concurrent writers lock rows in one order). It can be called
more than once: each call writes what changed since the previous one (``flush``).

The end of day touches every account with something owed: it calls :meth:`flush` (the
database then holds the batch's changes), finds its accounts and offers with set-based
SQL, and pulls them into the view with :meth:`load_owing_accounts` /
:meth:`open_offers_expiring_by` (accounts already in the view are kept as they are),
so it reads and writes through the same view as every other handler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import and_, func, or_, select, union
from sqlalchemy.orm import Session

from services.offers import domain
from services.offers.tables import (
    accounts,
    business_days,
    fraud_reviews,
    installments,
    offer_options,
    offers,
    payments,
    plans,
    positions,
    purchases,
    refunds,
    waivers,
)
from shared.runtime.api import NotLoaded
from shared.runtime.db import Prebuilt, among, bulk_insert, update_rows
from shared.runtime.retention import hold_off_archiving

ZERO = Decimal(0)
Key = tuple[str, int]  # (plan_id, seq) of an installment


def _state_queries(
    accounts_where: Callable[[Any], Any], plans_among: Callable[[Any], Any] | None = None
) -> tuple[Any, Any, Any]:
    """``_load_state``'s three reads: the positions, every plan and the open installments
    of the accounts ``accounts_where(column)`` selects, plus the plans ``plans_among``
    selects with all their installments."""
    plan_filter = accounts_where(plans.c.account_id)
    inst_filter = and_(accounts_where(installments.c.account_id), installments.c.open.is_(True))
    if plans_among is not None:
        plan_filter = or_(plan_filter, plans_among(plans.c.plan_id))
        inst_filter = or_(inst_filter, plans_among(installments.c.plan_id))
    return (
        select(positions).where(accounts_where(positions.c.account_id)),
        select(plans).where(plan_filter).order_by(plans.c.plan_order),
        select(installments)
        .where(inst_filter)
        .order_by(installments.c.plan_id, installments.c.seq),
    )


# A batch's reads, built once (shared.runtime.db.Prebuilt); the ids bound as "ids".
_STATE = Prebuilt(lambda among: _state_queries(among))
_STATE_AND_PLANS = Prebuilt(lambda among: _state_queries(among, lambda c: among(c, "plans")))
_OFFERS = Prebuilt(lambda among: select(offers).where(among(offers.c.offer_id)))
_ACCOUNTS = Prebuilt(lambda among: select(accounts).where(among(accounts.c.account_id)))
_OPTIONS = Prebuilt(lambda among: select(offer_options).where(among(offer_options.c.offer_id)))
_PURCHASES = Prebuilt(lambda among: select(purchases).where(among(purchases.c.purchase_id)))
_PAYMENTS = Prebuilt(
    lambda among: select(payments.c.payment_id).where(among(payments.c.payment_id))
)
_REFUNDS = Prebuilt(lambda among: select(refunds.c.refund_id).where(among(refunds.c.refund_id)))
_CLOSED_DAYS = Prebuilt(
    lambda among: select(business_days.c.business_date).where(among(business_days.c.business_date))
)
_LAST_DAY = select(func.max(business_days.c.business_date))
_REVIEWS = Prebuilt(lambda among: select(fraud_reviews).where(among(fraud_reviews.c.purchase_id)))


def offer_id_for(purchase_id: str) -> str:
    return f"off-{purchase_id}"


def plan_id_for(purchase_id: str) -> str:
    return f"plan-{purchase_id}"


@dataclass(frozen=True)
class Keys:
    """What one event needs loaded (the values of ``handlers.PRELOAD``)."""

    #: account row, position, every plan and the open installments of each
    accounts: tuple[str, ...] = ()
    #: purchase rows
    purchases: tuple[str, ...] = ()
    #: offer rows (with each its purchase and its account, as ``accounts``)
    offers: tuple[str, ...] = ()
    #: the options of these offers
    options: tuple[str, ...] = ()
    #: plans loaded whole (the plan row and every installment, paid or not)
    plans: tuple[str, ...] = ()
    #: payment ids / refund ids already applied, business dates already closed
    payments: tuple[str, ...] = ()
    refunds: tuple[str, ...] = ()
    days: tuple[date, ...] = ()
    #: the fraud team's closed review of these purchases (purchase ids)
    reviews: tuple[str, ...] = ()


@dataclass
class _Wanted:
    """The union of a batch's :class:`Keys`."""

    accounts: set[str] = field(default_factory=set)
    purchases: set[str] = field(default_factory=set)
    offers: set[str] = field(default_factory=set)
    options: set[str] = field(default_factory=set)
    plans: set[str] = field(default_factory=set)
    payments: set[str] = field(default_factory=set)
    refunds: set[str] = field(default_factory=set)
    days: set[date] = field(default_factory=set)
    reviews: set[str] = field(default_factory=set)

    def add(self, keys: Keys) -> None:
        for name in _names(Keys):
            getattr(self, name).update(getattr(keys, name))


# ---------------------------------------------------------------- rows, as values


@cache
def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _from_row(cls: Any, row: Any) -> Any:
    m = row._mapping
    return cls(**{name: m[name] for name in _names(cls)})


def _as_row(value: Any) -> dict[str, Any]:
    cls: type = type(value)
    return {name: getattr(value, name) for name in _names(cls)}


@dataclass(frozen=True, slots=True)
class Account:
    """The local view of an account (the ``accounts`` row)."""

    account_id: str
    status: str
    segment: str
    tier: str
    credit_limit: Decimal
    installment_limit: Decimal | None
    risk_score: int
    currency: str
    auto_convert_enabled: bool
    auto_convert_threshold: Decimal | None
    auto_convert_tenor: int | None
    event_id: str
    pre_approval_limit: Decimal | None = None
    pre_approval_valid_to: date | None = None
    pre_approval_fee_discount: str | None = None  # decimal text

    def view(self) -> domain.AccountView:
        line = None
        if (
            self.pre_approval_limit is not None
            and self.pre_approval_valid_to is not None
            and self.pre_approval_fee_discount is not None
        ):
            line = domain.PreApproval(
                self.pre_approval_limit,
                self.pre_approval_valid_to,
                Decimal(self.pre_approval_fee_discount),
            )
        return domain.AccountView(
            account_id=self.account_id,
            status=self.status,
            segment=self.segment,
            tier=self.tier,
            credit_limit=self.credit_limit,
            risk_score=self.risk_score,
            installment_limit=self.installment_limit,
            pre_approval=line,
        )

    def auto_convert(self) -> domain.AutoConvertSettings:
        return domain.AutoConvertSettings(
            enabled=self.auto_convert_enabled,
            threshold=self.auto_convert_threshold,
            tenor_months=self.auto_convert_tenor,
        )


@dataclass(frozen=True, slots=True)
class Position:
    """The account's credit with us and its delinquency flag (see ``tables.positions``)."""

    credit: Decimal = ZERO
    overdue_as_of: date | None = None


@dataclass(frozen=True, slots=True)
class Purchase:
    purchase_id: str
    account_id: str
    amount: Decimal
    currency: str
    mcc: str
    merchant_id: str
    category: str | None
    posted_on: date
    refunded_total: Decimal
    outcome: str
    event_id: str
    considered_on: date | None = None  # a cleared fraud review's closed_on

    def facts(self) -> domain.PurchaseFacts:
        """The offer rules' facts, as of the date the purchase is considered (its posting
        date, or the closed_on of the fraud review that cleared it)."""
        return domain.PurchaseFacts(
            amount=self.amount,
            mcc=self.mcc,
            posted_on=self.considered_on or self.posted_on,
            merchant_id=self.merchant_id,
            category=self.category,
        )


@dataclass(frozen=True, slots=True)
class Offer:
    offer_id: str
    purchase_id: str
    account_id: str
    principal: Decimal
    currency: str
    expires_on: date
    promotion: str | None
    status: str
    open: bool
    event_id: str

    def view(self) -> domain.OfferView:
        return domain.OfferView(
            offer_id=self.offer_id,
            purchase_id=self.purchase_id,
            account_id=self.account_id,
            principal=self.principal,
            status=self.status,
        )


@dataclass(frozen=True, slots=True)
class Plan:
    plan_id: str
    purchase_id: str
    offer_id: str | None
    account_id: str
    principal: Decimal
    currency: str
    tenor_months: int
    total_fee: Decimal
    apr: str
    auto_converted: bool
    redeem_points: int
    posted_on: date
    plan_order: int
    status: str
    principal_returned: Decimal
    fee_returned: Decimal
    event_id: str
    points_redeemed: int = 0
    points_restored: int = 0


@dataclass(frozen=True, slots=True)
class Review:
    """The fraud team's closed review of a purchase (``purchase.review-closed``)."""

    purchase_id: str
    account_id: str
    outcome: str  # cleared | confirmed_fraud
    closed_on: date
    event_id: str


def _option(row: Any) -> domain.OfferOption:
    return domain.OfferOption(
        tenor_months=row.tenor_months,
        fee_model=row.fee_model,
        monthly_fee_rate=Decimal(row.monthly_fee_rate),
        total_fee=row.total_fee,
        first_installment=row.first_installment,
        regular_installment=row.regular_installment,
        apr=Decimal(row.apr),
    )


def _installment_row(item: domain.InstallmentState, account_id: str) -> dict[str, Any]:
    return {
        "plan_id": item.plan_id,
        "seq": item.seq,
        "account_id": account_id,
        "due_date": item.due_date,
        "principal": item.principal,
        "fee": item.fee,
        "principal_paid": item.principal_paid,
        "fee_paid": item.fee_paid,
        "fee_waived": item.fee_waived,
        "open": not item.is_paid,
    }


_NOT_LOADED: Any = object()


class OffersRepository:
    """The in-memory view of what one batch touches (see the module docstring)."""

    def __init__(self, session: Session, preload: Mapping[str, Callable[[Any], Keys]]) -> None:
        #: event type -> the :class:`Keys` its handler needs: ``handlers.PRELOAD``, the
        #: table next to HANDLERS (``bootstrap.build`` passes it).
        self.preload = preload
        self.session = session
        self.dialect = session.get_bind().dialect.name
        # accounts: loaded value (None: not in the database) and what changed
        self._accounts: dict[str, Account | None] = {}
        self._accounts_stored: set[str] = set()
        self._accounts_changed: set[str] = set()
        # per-account state: positions, plans and open installments
        self._state_loaded: set[str] = set()
        self._positions: dict[str, Position] = {}
        self._positions_stored: set[str] = set()
        self._positions_changed: set[str] = set()
        self._plans: dict[str, Plan] = {}
        self._plans_of: dict[str, list[str]] = {}  # account -> plan ids (loaded accounts)
        self._plans_new: set[str] = set()
        self._plans_changed: set[str] = set()
        self._installments: dict[Key, domain.InstallmentState] = {}
        self._installment_account: dict[Key, str] = {}
        self._installments_of: dict[str, dict[Key, None]] = {}  # account -> keys, in order
        self._installments_new: set[Key] = set()
        self._installments_changed: set[Key] = set()
        # offers, their options, purchases
        self._offers: dict[str, Offer | None] = {}
        self._offers_new: set[str] = set()
        self._offers_changed: set[str] = set()
        self._options: dict[str, dict[int, domain.OfferOption]] = {}
        self._options_new: list[dict[str, Any]] = []
        self._purchases: dict[str, Purchase | None] = {}
        self._purchases_new: set[str] = set()
        self._purchases_changed: set[str] = set()
        self._reviews: dict[str, Review | None] = {}
        self._reviews_new: list[Review] = []
        # append-only tables
        self._payment_ids: set[str] = set()
        self._payments_new: list[dict[str, Any]] = []
        self._refund_ids: set[str] = set()
        self._refunds_new: list[dict[str, Any]] = []
        self._waivers_new: list[dict[str, Any]] = []
        self._closed_days: set[date] = set()
        self._days_new: list[dict[str, Any]] = []
        self._last_day: date | None = _NOT_LOADED
        # keys loaded (found or not) beyond the dicts above: a getter refuses others
        self._plans_loaded: set[str] = set()  # plans asked for by id (found or not)
        self._options_loaded: set[str] = set()
        self._payments_loaded: set[str] = set()
        self._refunds_loaded: set[str] = set()
        self._days_loaded: set[date] = set()
        #: Changes made in memory (every change adds one): the runtime dead-letters a
        #: rejection that changed nothing without splitting the batch.
        self.changes = 0

    # ------------------------------------------------------------ loading

    def _among(self, column: Any, values: Iterable[Any]) -> Any:
        return among(column, values, self.dialect)

    def load(self, events: list[Any]) -> None:
        """Bulk-read what ``events`` need (:attr:`preload`; one query per table)."""
        assert self.preload, "bootstrap.build passes handlers.PRELOAD"
        # retention: no archive chunk moves a schedule until this batch commits
        hold_off_archiving(self.session.connection())
        wanted = _Wanted()
        for e in events:
            preload = self.preload.get(e.type)
            if preload is not None:
                wanted.add(preload(e))
        self.load_keys(wanted)

    def load_keys(self, wanted: _Wanted) -> None:
        """Bulk-read the union of a batch's :class:`Keys`."""
        account_ids, purchase_ids = set(wanted.accounts), set(wanted.purchases)
        if wanted.offers:
            self._load_offers(_OFFERS(self.dialect), {"ids": list(wanted.offers)})
            for offer_id in wanted.offers:
                self._offers.setdefault(offer_id, None)
            named = [self._offers[o] for o in wanted.offers]
            purchase_ids.update(o.purchase_id for o in named if o is not None)
            account_ids.update(o.account_id for o in named if o is not None)
        if account_ids:
            rows = _ACCOUNTS.rows(self.session, self.dialect, account_ids)
            for row in rows:
                self._accounts[row.account_id] = _from_row(Account, row)
                self._accounts_stored.add(row.account_id)
            for account_id in account_ids:
                self._accounts.setdefault(account_id, None)
        if account_ids or wanted.plans:
            self._load_state(account_ids, whole_plans=wanted.plans)
            self._plans_loaded.update(wanted.plans)
        if wanted.options:
            rows = _OPTIONS.rows(self.session, self.dialect, wanted.options)
            for row in rows:
                self._options.setdefault(row.offer_id, {})[row.tenor_months] = _option(row)
            self._options_loaded.update(wanted.options)
        if purchase_ids:
            rows = _PURCHASES.rows(self.session, self.dialect, purchase_ids)
            for row in rows:
                self._purchases[row.purchase_id] = _from_row(Purchase, row)
            for purchase_id in purchase_ids:
                self._purchases.setdefault(purchase_id, None)
        if wanted.payments:
            rows = _PAYMENTS.rows(self.session, self.dialect, wanted.payments)
            self._payment_ids.update(r[0] for r in rows)
            self._payments_loaded.update(wanted.payments)
        if wanted.refunds:
            rows = _REFUNDS.rows(self.session, self.dialect, wanted.refunds)
            self._refund_ids.update(r[0] for r in rows)
            self._refunds_loaded.update(wanted.refunds)
        if wanted.days:
            rows = _CLOSED_DAYS.rows(self.session, self.dialect, wanted.days)
            self._closed_days.update(r[0] for r in rows)
            self._days_loaded.update(wanted.days)
        if wanted.reviews:
            rows = _REVIEWS.rows(self.session, self.dialect, wanted.reviews)
            for row in rows:
                self._reviews.setdefault(row.purchase_id, _from_row(Review, row))
            for purchase_id in wanted.reviews:
                self._reviews.setdefault(purchase_id, None)

    def _load_state(
        self,
        account_ids: set[str],
        accounts_where: Callable[[Any], Any] | None = None,
        whole_plans: set[str] | None = None,
    ) -> None:
        """Positions, every plan and the open installments of ``account_ids`` (selected in
        SQL by ``accounts_where(column)`` when given, else by the ids), plus the plans named
        in ``whole_plans`` with all their installments. Accounts already loaded are kept as
        they are in the view (it is ahead of the database until saved)."""
        fresh = account_ids - self._state_loaded
        if not fresh and not whole_plans:
            return
        whole = whole_plans or set()
        if accounts_where is None:
            params: dict[str, Any] = {"ids": sorted(fresh)}
            if whole:
                params["plans"] = sorted(whole)
            queries = (_STATE_AND_PLANS if whole else _STATE)(self.dialect)
        else:
            params = {}
            queries = _state_queries(
                accounts_where, (lambda column: self._among(column, whole)) if whole else None
            )
        positions_query, plans_query, installments_query = queries
        for account_id in fresh:
            self._plans_of.setdefault(account_id, [])
            self._installments_of.setdefault(account_id, {})

        for row in self.session.execute(positions_query, params).all():
            if row.account_id in fresh:
                self._positions[row.account_id] = Position(row.credit, row.overdue_as_of)
                self._positions_stored.add(row.account_id)
        for row in self.session.execute(plans_query, params).all():
            if row.plan_id not in self._plans and (row.account_id in fresh or row.plan_id in whole):
                self._plans[row.plan_id] = _from_row(Plan, row)
                self._plans_of.setdefault(row.account_id, []).append(row.plan_id)
        for row in self.session.execute(installments_query, params).all():
            key = (row.plan_id, row.seq)
            if key in self._installments or (
                row.account_id not in fresh and row.plan_id not in whole
            ):
                continue
            self._add_installment(
                domain.InstallmentState(
                    plan_id=row.plan_id,
                    seq=row.seq,
                    due_date=row.due_date,
                    principal=row.principal,
                    fee=row.fee,
                    principal_paid=row.principal_paid,
                    fee_paid=row.fee_paid,
                    fee_waived=row.fee_waived,
                    plan_order=self._plans[row.plan_id].plan_order,
                ),
                row.account_id,
            )
        self._state_loaded.update(fresh)

    def _load_offers(self, query: Any, params: Mapping[str, Any] | None = None) -> list[Offer]:
        """Offers from ``query``, added to the view unless already there; returns the
        view's value of each (in the query's order)."""
        found = []
        for row in self.session.execute(query, params).all():
            current = self._offers.get(row.offer_id)
            if current is None:
                current = self._offers[row.offer_id] = _from_row(Offer, row)
            found.append(current)
        return found

    def _add_installment(self, item: domain.InstallmentState, account_id: str) -> None:
        key = (item.plan_id, item.seq)
        self._installments[key] = item
        self._installment_account[key] = account_id
        self._installments_of.setdefault(account_id, {})[key] = None

    # ------------------------------------------------------------ accounts and positions

    def _require_account(self, account_id: str) -> None:
        if account_id not in self._accounts:
            raise NotLoaded(f"account {account_id!r} was not preloaded")

    def _require_state(self, account_id: str) -> None:
        if account_id not in self._state_loaded:
            raise NotLoaded(f"the plans and position of account {account_id!r} were not preloaded")

    def account(self, account_id: str) -> Account | None:
        self._require_account(account_id)
        return self._accounts[account_id]

    def put_account(self, account: Account) -> None:
        self._require_account(account.account_id)  # stored or not decides insert or update
        self.changes += 1
        self._accounts[account.account_id] = account
        self._accounts_changed.add(account.account_id)

    def position(self, account_id: str) -> Position:
        self._require_state(account_id)
        return self._positions.get(account_id) or Position()

    def set_position(self, account_id: str, position: Position) -> None:
        self._require_state(account_id)
        self.changes += 1
        if self._positions.get(account_id) == position and account_id in self._positions_stored:
            return
        self._positions[account_id] = position
        self._positions_changed.add(account_id)

    # ------------------------------------------------------------ plans and installments

    def plan(self, plan_id: str | None) -> Plan | None:
        """The plan; None when it does not exist. Known: plans loaded whole or by their
        account (every plan of it), and plans created in the batch; a plan id
        ``plan-<purchase_id>`` not in the view is known absent when that purchase's account
        has its plans loaded (a purchase converts into at most that one plan)."""
        if plan_id is None:
            return None
        plan = self._plans.get(plan_id)
        if plan is not None or plan_id in self._plans_loaded:
            return plan
        purchase = self._purchases.get(plan_id.removeprefix("plan-"))
        if purchase is not None and purchase.account_id in self._state_loaded:
            return None
        raise NotLoaded(f"plan {plan_id!r} was not preloaded (nor its purchase's account)")

    def update_plan(self, plan_id: str, **values: Any) -> Plan:
        self.changes += 1
        plan = self._plans[plan_id] = replace(self._plans[plan_id], **values)
        if plan_id not in self._plans_new:
            self._plans_changed.add(plan_id)
        return plan

    def plan_count(self, account_id: str) -> int:
        self._require_state(account_id)
        return len(self._plans_of.get(account_id, ()))

    def add_plan(self, plan: Plan, schedule: list[domain.Installment]) -> None:
        self.changes += 1
        self._plans[plan.plan_id] = plan
        self._plans_of.setdefault(plan.account_id, []).append(plan.plan_id)
        self._plans_new.add(plan.plan_id)
        for line in schedule:
            item = domain.InstallmentState(
                plan_id=plan.plan_id,
                seq=line.seq,
                due_date=line.due_date,
                principal=line.principal,
                fee=line.fee,
                plan_order=plan.plan_order,
            )
            self._add_installment(item, plan.account_id)
            self._installments_new.add((plan.plan_id, line.seq))

    def account_currency(self, account_id: str) -> str:
        """The currency of the account's plans (an account owing or flagged has one)."""
        self._require_state(account_id)
        for key in self._installments_of.get(account_id, ()):
            if not self._installments[key].is_paid:
                return self._plans[key[0]].currency
        return self._plans[self._plans_of[account_id][0]].currency

    def open_installments(self, account_id: str) -> list[domain.InstallmentState]:
        """Every installment of the account with something left to pay (all its plans)."""
        self._require_state(account_id)
        items = self._installments
        return [
            i
            for i in map(items.__getitem__, self._installments_of.get(account_id, ()))
            if not i.is_paid
        ]

    def plan_installments(self, plan_id: str) -> list[domain.InstallmentState]:
        """The plan's installments by seq: all of them for a plan loaded whole (refunds),
        the unpaid ones otherwise (which is what waivers use)."""
        if plan_id not in self._plans:
            raise NotLoaded(f"plan {plan_id!r} is not in the view")
        account_id = self._plans[plan_id].account_id
        found = [
            self._installments[k]
            for k in self._installments_of.get(account_id, ())
            if k[0] == plan_id
        ]
        return sorted(found, key=lambda i: i.seq)

    def save_installments(
        self, before: list[domain.InstallmentState], after: list[domain.InstallmentState]
    ) -> None:
        """Record the installments the domain changed."""
        self.changes += 1
        old = {(i.plan_id, i.seq): i for i in before}
        for item in after:
            key = (item.plan_id, item.seq)
            if old.get(key) == item:
                continue
            self._installments[key] = item
            if key not in self._installments_new:
                self._installments_changed.add(key)

    # ------------------------------------------------------------ offers and purchases

    def offer(self, offer_id: str) -> Offer | None:
        if offer_id not in self._offers:
            raise NotLoaded(f"offer {offer_id!r} was not preloaded")
        return self._offers[offer_id]

    def add_offer(self, offer: Offer, options: list[domain.OfferOption]) -> None:
        self.changes += 1
        self._offers[offer.offer_id] = offer
        self._options_loaded.add(offer.offer_id)
        self._offers_new.add(offer.offer_id)
        self._options[offer.offer_id] = {o.tenor_months: o for o in options}
        self._options_new.extend(
            {
                "offer_id": offer.offer_id,
                "tenor_months": o.tenor_months,
                "fee_model": o.fee_model,
                "monthly_fee_rate": str(o.monthly_fee_rate),
                "total_fee": o.total_fee,
                "first_installment": o.first_installment,
                "regular_installment": o.regular_installment,
                "apr": str(o.apr),
            }
            for o in options
        )

    def close_offer(self, offer_id: str, status: str) -> None:
        self.changes += 1
        offer = self._offers[offer_id]
        assert offer is not None, f"close_offer({offer_id!r}): no such offer"
        self._offers[offer_id] = replace(offer, status=status, open=False)
        if offer_id not in self._offers_new:
            self._offers_changed.add(offer_id)

    def offer_option(self, offer_id: str, tenor_months: int) -> domain.OfferOption | None:
        if offer_id not in self._options_loaded:
            raise NotLoaded(f"the options of offer {offer_id!r} were not preloaded")
        return self._options.get(offer_id, {}).get(tenor_months)

    def open_offers_expiring_by(self, day: date) -> list[Offer]:
        """Open offers with ``expires_on`` <= ``day``, by account then offer id (flushes)."""
        self.flush()
        return self._load_offers(
            select(offers)
            .where(offers.c.open.is_(True), offers.c.expires_on <= day)
            .order_by(offers.c.account_id, offers.c.offer_id)
        )

    def purchase(self, purchase_id: str) -> Purchase | None:
        if purchase_id not in self._purchases:
            raise NotLoaded(f"purchase {purchase_id!r} was not preloaded")
        return self._purchases[purchase_id]

    def add_purchase(self, purchase: Purchase) -> None:
        self.changes += 1
        self._purchases[purchase.purchase_id] = purchase
        self._purchases_new.add(purchase.purchase_id)

    def set_refunded_total(self, purchase_id: str, refunded_total: Decimal) -> None:
        purchase = self.purchase(purchase_id)
        self.changes += 1
        if purchase is None:  # not a purchase this service saw: nothing to update
            return
        self._purchases[purchase_id] = replace(purchase, refunded_total=refunded_total)
        if purchase_id not in self._purchases_new:
            self._purchases_changed.add(purchase_id)

    def set_purchase_outcome(
        self, purchase_id: str, outcome: str, considered_on: date | None = None
    ) -> None:
        """What became of a purchase held for fraud review (and the date it was considered
        as of, when cleared)."""
        purchase = self.purchase(purchase_id)
        assert purchase is not None, f"set_purchase_outcome({purchase_id!r}): no such purchase"
        self.changes += 1
        self._purchases[purchase_id] = replace(
            purchase, outcome=outcome, considered_on=considered_on or purchase.considered_on
        )
        if purchase_id not in self._purchases_new:
            self._purchases_changed.add(purchase_id)

    # ------------------------------------------------------------ fraud reviews

    def review(self, purchase_id: str) -> Review | None:
        if purchase_id not in self._reviews:
            raise NotLoaded(f"the fraud review of purchase {purchase_id!r} was not preloaded")
        return self._reviews[purchase_id]

    def add_review(self, review: Review) -> None:
        self.changes += 1
        self._reviews[review.purchase_id] = review
        self._reviews_new.append(review)

    # ------------------------------------------------------------ payments, refunds, waivers

    def has_payment(self, payment_id: str) -> bool:
        if payment_id not in self._payments_loaded:
            raise NotLoaded(f"payment {payment_id!r} was not preloaded")
        return payment_id in self._payment_ids

    def add_payment(self, row: dict[str, Any]) -> None:
        self.changes += 1
        self._payment_ids.add(row["payment_id"])
        self._payments_loaded.add(row["payment_id"])
        self._payments_new.append(row)

    def has_refund(self, refund_id: str) -> bool:
        if refund_id not in self._refunds_loaded:
            raise NotLoaded(f"refund {refund_id!r} was not preloaded")
        return refund_id in self._refund_ids

    def add_refund(self, row: dict[str, Any]) -> None:
        self.changes += 1
        self._refund_ids.add(row["refund_id"])
        self._refunds_loaded.add(row["refund_id"])
        self._refunds_new.append(row)

    def add_waiver(self, row: dict[str, Any]) -> None:
        self.changes += 1
        self._waivers_new.append(row)

    # ------------------------------------------------------------ business days

    def business_day_closed(self, day: date) -> bool:
        if day not in self._days_loaded:
            raise NotLoaded(f"business date {day.isoformat()} was not preloaded")
        return day in self._closed_days

    def last_business_date(self) -> date | None:
        if self._last_day is _NOT_LOADED:
            self._last_day = self.session.execute(_LAST_DAY).scalar()
        return self._last_day

    def close_business_day(self, day: date, event_id: str) -> None:
        self.changes += 1
        last = self.last_business_date()
        self._days_loaded.add(day)
        self._last_day = day if last is None else max(day, last)
        self._closed_days.add(day)
        self._days_new.append({"business_date": day, "event_id": event_id})

    def load_owing_accounts(self) -> list[str]:
        """Every account with an unpaid installment or flagged overdue, pulled into the view
        (flushes first, so the database and the view agree); sorted."""
        self.flush()
        owing = union(
            select(installments.c.account_id).where(installments.c.open.is_(True)),
            select(positions.c.account_id).where(positions.c.overdue_as_of.is_not(None)),
        ).subquery()
        ids = {r[0] for r in self.session.execute(select(owing.c.account_id))}
        self._load_state(ids, lambda column: column.in_(select(owing.c.account_id)))
        return sorted(ids)

    # ------------------------------------------------------------ writing

    def flush(self) -> None:
        """Write the changes made since the last flush (see :meth:`save`)."""
        self.save()

    @staticmethod
    def _known(cache: dict[str, Any], key: str) -> Any:
        """A cached row that must exist (it was changed in this batch)."""
        value = cache[key]
        assert value is not None, f"{key!r} changed but not loaded"
        return value

    def save(self) -> None:
        """Write what changed: new rows with COPY, changed rows with one UPDATE statement
        per table (``update_rows``, sorted by key). Then the view is clean again."""
        conn = self.session.connection()

        new_accounts = sorted(self._accounts_changed - self._accounts_stored)
        bulk_insert(conn, accounts, [_as_row(self._accounts[a]) for a in new_accounts])
        account_columns = tuple(c.name for c in accounts.columns if c.name != "account_id")
        update_rows(
            conn,
            accounts,
            ("account_id",),
            account_columns,
            [
                _as_row(self._accounts[a])
                for a in sorted(self._accounts_changed - set(new_accounts))
            ],
        )
        self._accounts_stored.update(new_accounts)
        self._accounts_changed.clear()

        new_positions = sorted(self._positions_changed - self._positions_stored)
        position_rows = {
            a: {
                "account_id": a,
                "credit": self._positions[a].credit,
                "overdue_as_of": self._positions[a].overdue_as_of,
            }
            for a in sorted(self._positions_changed)
        }
        bulk_insert(conn, positions, [position_rows[a] for a in new_positions])
        update_rows(
            conn,
            positions,
            ("account_id",),
            ("credit", "overdue_as_of"),
            [row for a, row in position_rows.items() if a in self._positions_stored],
        )
        self._positions_stored.update(new_positions)
        self._positions_changed.clear()

        bulk_insert(
            conn, purchases, [_as_row(self._purchases[p]) for p in sorted(self._purchases_new)]
        )
        update_rows(
            conn,
            purchases,
            ("purchase_id",),
            ("refunded_total", "outcome", "considered_on"),
            [_as_row(self._known(self._purchases, p)) for p in sorted(self._purchases_changed)],
        )
        self._purchases_new.clear()
        self._purchases_changed.clear()

        bulk_insert(conn, offers, [_as_row(self._offers[o]) for o in sorted(self._offers_new)])
        bulk_insert(conn, offer_options, self._options_new)
        update_rows(
            conn,
            offers,
            ("offer_id",),
            ("status", "open"),
            [
                {"offer_id": o, "status": offer.status, "open": offer.open}
                for o in sorted(self._offers_changed)
                for offer in [self._known(self._offers, o)]
            ],
        )
        self._offers_new.clear()
        self._offers_changed.clear()
        self._options_new = []

        bulk_insert(conn, plans, [_as_row(self._plans[p]) for p in sorted(self._plans_new)])
        update_rows(
            conn,
            plans,
            ("plan_id",),
            (
                "status",
                "principal_returned",
                "fee_returned",
                "points_redeemed",
                "points_restored",
            ),
            [_as_row(self._plans[p]) for p in sorted(self._plans_changed)],
        )
        self._plans_new.clear()
        self._plans_changed.clear()

        bulk_insert(
            conn,
            installments,
            [
                _installment_row(self._installments[k], self._installment_account[k])
                for k in sorted(self._installments_new)
            ],
        )
        update_rows(
            conn,
            installments,
            ("plan_id", "seq"),
            ("principal", "fee", "principal_paid", "fee_paid", "fee_waived", "open"),
            [
                _installment_row(self._installments[k], self._installment_account[k])
                for k in sorted(self._installments_changed)
            ],
        )
        self._installments_new.clear()
        self._installments_changed.clear()

        bulk_insert(conn, payments, self._payments_new)
        bulk_insert(conn, refunds, self._refunds_new)
        bulk_insert(conn, waivers, self._waivers_new)
        bulk_insert(conn, business_days, self._days_new)
        bulk_insert(conn, fraud_reviews, [_as_row(r) for r in self._reviews_new])
        self._reviews_new = []
        self._payments_new, self._refunds_new, self._waivers_new, self._days_new = [], [], [], []
