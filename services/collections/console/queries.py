"""Read models of the console over the collections service's tables (read only).

- :func:`work_queue`: one page of the open cases, filtered (level, bucket, minimum
  overdue amount, currency), sorted by days past due or overdue amount, with keyset
  pagination (``after`` / ``before`` cursors: the sort value and the case id of the
  last / first row shown): a page costs the same at page 1 and at page 2,000.
- :func:`case_timeline`: a case and its timeline (case events with their delinquency
  snapshot, the account's latest report, payments, contacts, promises and disputes).
- :func:`case_holds`: held-until and promise state of a page of cases.

Indexes: on PostgreSQL the queue reads ``cases`` through ``(status, days_past_due,
case_id)`` / ``(status, overdue_amount, case_id)`` when they exist
(:data:`QUEUE_INDEXES`; the benchmark creates them in its scratch schema and shows
the difference).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from sqlalchemy import Column, Engine, Numeric, String, cast, literal, select, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from services.collections.queries import OPEN_CASE_COLUMNS
from services.collections.tables import (
    OPEN,
    case_events,
    cases,
    contacts,
    disputes,
    payments,
    plan_installments,
    positions,
    promises,
)

PROMISE_OPEN, PROMISE_KEPT, PROMISE_BROKEN = "open", "kept", "broken"

Sort = Literal["dpd", "amount"]
Order = Literal["desc", "asc"]
SORTS: tuple[Sort, ...] = ("dpd", "amount")
ORDERS: tuple[Order, ...] = ("desc", "asc")
BUCKETS = ("M1", "M2", "M3", "M4+")
LEVELS = tuple(range(0, 7))

#: The indexes the queue wants on ``cases`` (name, columns) are the service's migration 4
#: (``services.collections.tables.QUEUE_INDEXES``); the benchmark creates them in its
#: scratch schema.


@dataclass(frozen=True)
class QueueFilter:
    level: int | None = None
    bucket: str | None = None
    min_amount: Decimal | None = None
    currency: str | None = None
    sort: Sort = "dpd"
    order: Order = "desc"

    def params(self) -> dict[str, str]:
        """The filter as query parameters (only those set)."""
        out: dict[str, str] = {"sort": self.sort, "order": self.order}
        if self.level is not None:
            out["level"] = str(self.level)
        if self.bucket:
            out["bucket"] = self.bucket
        if self.min_amount is not None:
            out["min_amount"] = str(self.min_amount)
        if self.currency:
            out["currency"] = self.currency
        return out


def parse_filter(params: Any) -> tuple[QueueFilter, list[str]]:
    """A :class:`QueueFilter` from query parameters, and the errors (bad values ignored)."""
    errors: list[str] = []
    level: int | None = None
    raw = (params.get("level") or "").strip()
    if raw:
        if raw.isdigit() and int(raw) in LEVELS:
            level = int(raw)
        else:
            errors.append("level must be 0 to 6")
    bucket = (params.get("bucket") or "").strip() or None
    if bucket is not None and bucket not in BUCKETS:
        errors.append(f"bucket must be one of {', '.join(BUCKETS)}")
        bucket = None
    min_amount: Decimal | None = None
    raw = (params.get("min_amount") or "").strip()
    if raw:
        try:
            min_amount = Decimal(raw)
            if not min_amount.is_finite() or min_amount < 0:
                raise InvalidOperation
        except InvalidOperation:
            errors.append("minimum amount must be a non-negative number like 100.00")
            min_amount = None
    currency = (params.get("currency") or "").strip().upper() or None
    if currency is not None and not (len(currency) == 3 and currency.isalpha()):
        errors.append("currency must be a 3-letter code")
        currency = None
    sort: Sort = "dpd"
    raw = params.get("sort") or "dpd"
    if raw == "amount":
        sort = "amount"
    elif raw != "dpd":
        errors.append("sort must be dpd or amount")
    order: Order = "desc"
    raw = params.get("order") or "desc"
    if raw == "asc":
        order = "asc"
    elif raw != "desc":
        errors.append("order must be desc or asc")
    return QueueFilter(level, bucket, min_amount, currency, sort, order), errors


@dataclass(frozen=True)
class QueueRow:
    case_id: str
    account_id: str
    level: int
    action: str | None
    bucket: str | None
    days_past_due: int
    overdue_amount: Decimal
    currency: str
    opened_on: date
    business_date: date
    held_until: date | None = None
    hold_reason: str | None = None
    promise: str | None = None  # status of the case's latest promise to pay
    promise_detail: str | None = None  # its amount and date


@dataclass(frozen=True)
class Page:
    rows: list[QueueRow]
    next_cursor: str | None  # pass as ``after`` for the next page
    prev_cursor: str | None  # pass as ``before`` for the previous page
    filter: QueueFilter = field(default_factory=QueueFilter)


def _money_expr(column: Column[Any], dialect: str) -> ColumnElement[Any]:
    # Money is text on SQLite (exact, never a float when stored); compare it as a number.
    return cast(column, Numeric) if dialect == "sqlite" else column


def _money_value(value: Decimal, dialect: str) -> ColumnElement[Any]:
    if dialect == "sqlite":
        return cast(literal(str(value), String), Numeric)
    return literal(value, cases.c.overdue_amount.type)


def _sort_key(sort: Sort, dialect: str) -> ColumnElement[Any]:
    if sort == "amount":
        return _money_expr(cases.c.overdue_amount, dialect)
    return cases.c.days_past_due


def encode_cursor(row: QueueRow, sort: Sort) -> str:
    value = row.overdue_amount if sort == "amount" else row.days_past_due
    return f"{value}~{row.case_id}"


def decode_cursor(cursor: str, sort: Sort) -> tuple[Any, str] | None:
    value, sep, case_id = cursor.partition("~")
    if not sep or not case_id:
        return None
    try:
        parsed: Any = Decimal(value) if sort == "amount" else int(value)
        if sort == "amount" and not parsed.is_finite():
            return None
    except (InvalidOperation, ValueError):
        return None
    return parsed, case_id


def work_queue(
    engine: Engine,
    filt: QueueFilter = QueueFilter(),
    *,
    after: str | None = None,
    before: str | None = None,
    limit: int = 50,
) -> Page:
    """One page of open cases (see the module docstring)."""
    dialect = engine.dialect.name
    key = _sort_key(filt.sort, dialect)
    where: list[ColumnElement[bool]] = [cases.c.status == OPEN]
    if filt.level is not None:
        where.append(cases.c.level == filt.level)
    if filt.bucket:
        where.append(cases.c.bucket == filt.bucket)
    if filt.min_amount is not None:
        where.append(
            _money_expr(cases.c.overdue_amount, dialect) >= _money_value(filt.min_amount, dialect)
        )
    if filt.currency:
        where.append(cases.c.currency == filt.currency)

    descending = filt.order == "desc"
    backwards = bool(before) and not after
    given = before if backwards else after
    cursor = decode_cursor(given, filt.sort) if given else None
    backwards = backwards and cursor is not None
    if cursor is not None:
        value, case_id = cursor
        bound = (
            _money_value(value, dialect) if filt.sort == "amount" else literal(value),
            literal(case_id),
        )
        forward_later = descending != backwards  # rows "after" = smaller keys when desc
        row_key = tuple_(key, cases.c.case_id)
        where.append(row_key < tuple_(*bound) if forward_later else row_key > tuple_(*bound))
    reverse = descending != backwards
    order_by = (key.desc(), cases.c.case_id.desc()) if reverse else (key, cases.c.case_id)
    query = select(*OPEN_CASE_COLUMNS).where(*where).order_by(*order_by).limit(limit + 1)
    with engine.connect() as conn:
        found = [dict(row._mapping) for row in conn.execute(query)]
        more = len(found) > limit
        found = found[:limit]
        if backwards:
            found.reverse()
        holds = case_holds(conn, [r["case_id"] for r in found])
    rows = [QueueRow(**r, **holds.get(r["case_id"], {})) for r in found]
    if not rows:
        return Page(rows, None, None, filt)
    if cursor is None:
        has_prev, has_next = False, more
    elif backwards:
        has_prev, has_next = more, True
    else:
        has_prev, has_next = True, more
    return Page(
        rows,
        encode_cursor(rows[-1], filt.sort) if has_next else None,
        encode_cursor(rows[0], filt.sort) if has_prev else None,
        filt,
    )


# --------------------------------------------------------------- holds and promises


def _latest_promises(conn: Connection, case_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """case id -> its latest promise row (by contacted_on, then contact id)."""
    rows = conn.execute(
        select(promises)
        .where(promises.c.case_id.in_(list(case_ids)))
        .order_by(promises.c.case_id, promises.c.contacted_on, promises.c.contact_id)
    ).mappings()
    return {row["case_id"]: dict(row) for row in rows}  # the last one per case wins


def case_holds(conn: Connection, case_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """case id -> {held_until, hold_reason, promise, promise_detail} for the cases given.

    ``held_until``: the last business date whose close is held (inclusive) by an open
    promise (``hold_until - 1``) or an unresolved dispute (``hold_through``), the later
    of the two; ``promise``: the status of the case's latest promise to pay (open, kept,
    broken, void). Two queries (promises, disputes) for the whole page.
    """
    if not case_ids:
        return {}
    out: dict[str, dict[str, Any]] = {}

    def hold(case_id: str, through: date, reason: str) -> None:
        entry = out.setdefault(case_id, {})
        if entry.get("held_until") is None or through > entry["held_until"]:
            entry.update(held_until=through, hold_reason=reason)

    for case_id, row in _latest_promises(conn, case_ids).items():
        entry = out.setdefault(case_id, {})
        entry["promise"] = row["status"]
        entry["promise_detail"] = (
            f"{row['promised_amount']} {row['currency']} by {row['promised_date']}"
        )
    open_promises = conn.execute(
        select(promises.c.case_id, promises.c.hold_until).where(
            promises.c.case_id.in_(list(case_ids)), promises.c.status == PROMISE_OPEN
        )
    )
    for case_id, hold_until in open_promises:
        hold(case_id, hold_until - timedelta(days=1), "promise")
    open_disputes = conn.execute(
        select(disputes.c.case_id, disputes.c.hold_through).where(
            disputes.c.case_id.in_(list(case_ids)), disputes.c.resolved_by.is_(None)
        )
    )
    for case_id, through in open_disputes:
        hold(case_id, through, "dispute")
    return out


# --------------------------------------------------------------- the case page


@dataclass(frozen=True)
class TimelineItem:
    on: date
    kind: str  # opened, raised, resolved, closed, snapshot, payment, contact, promise, hold
    title: str
    detail: dict[str, Any]
    order: int = 0  # tie-break within a date


@dataclass(frozen=True)
class CaseView:
    case: dict[str, Any]
    timeline: list[TimelineItem]
    position: dict[str, Any] | None
    holds: dict[str, Any]


def find_case(engine: Engine, case_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(cases).where(cases.c.case_id == case_id)).mappings().first()
    return dict(row) if row is not None else None


def case_timeline(engine: Engine, case_id: str) -> CaseView | None:
    """The case and its timeline, oldest first; None for an unknown case."""
    with engine.connect() as conn:
        found = conn.execute(select(cases).where(cases.c.case_id == case_id)).mappings().first()
        if found is None:
            return None
        case = dict(found)
        items: list[TimelineItem] = []
        events = conn.execute(
            select(case_events).where(case_events.c.case_id == case_id).order_by(case_events.c.seq)
        ).mappings()
        for n, ev in enumerate(events):
            kind = str(ev["kind"])
            if kind == "raised":
                title = f"Escalated to level {ev['level']} ({ev['action']})"
            elif kind == "resolved":
                title = f"Resolved: {ev['resolution']}"
            else:
                title = {"opened": "Case opened", "closed": "Case closed"}.get(kind, kind)
            items.append(
                TimelineItem(
                    ev["business_date"],
                    kind,
                    title,
                    {
                        "days past due": ev["days_past_due"],
                        "overdue": f"{ev['overdue_amount']} {ev['currency']}",
                        "bucket": ev["bucket"] or "-",
                        **(
                            {"written off": f"{ev['amount']} {ev['currency']}"}
                            if ev["amount"] is not None
                            else {}
                        ),  # fmt: skip
                    },
                    order=n,
                )
            )
        latest = (
            conn.execute(select(positions).where(positions.c.account_id == case["account_id"]))
            .mappings()
            .first()
        )
        position = dict(latest) if latest is not None else None
        if position is not None and position["business_date"] >= case["opened_on"]:
            items.append(
                TimelineItem(
                    position["business_date"],
                    "snapshot",
                    f"Delinquency report: {position['days_past_due']} days past due",
                    {
                        "overdue": f"{position['overdue_amount']} {position['currency']}",
                        "oldest unpaid due date": position["oldest_unpaid_due_date"] or "-",
                    },
                    order=10_000,
                )
            )
        items.extend(_payment_items(conn, case))
        items.extend(contact_items(conn, case_id))
        holds = case_holds(conn, [case_id]).get(case_id, {})
    items.sort(key=lambda item: (item.on, item.order))
    return CaseView(case, items, position, holds)


def _payment_items(conn: Connection, case: dict[str, Any]) -> list[TimelineItem]:
    """Installments paid on the account since the case opened: the ``payments`` table
    (amounts, second release), else ``plan_installments`` (paid before it existed)."""
    seen: set[tuple[str, int]] = set()
    items: list[TimelineItem] = []
    for row in conn.execute(
        select(payments)
        .where(payments.c.account_id == case["account_id"], payments.c.paid_on >= case["opened_on"])
        .order_by(payments.c.paid_on, payments.c.plan_id, payments.c.seq)
    ).mappings():
        seen.add((row["plan_id"], row["seq"]))
        items.append(
            TimelineItem(
                row["paid_on"],
                "payment",
                f"Payment: installment {row['seq']} of plan {row['plan_id']} paid",
                {"amount": f"{row['amount']} {row['currency']}"},
                order=5_000,
            )
        )
    for row in conn.execute(
        select(plan_installments)
        .where(
            plan_installments.c.account_id == case["account_id"],
            plan_installments.c.paid.is_(True),
            plan_installments.c.paid_on >= case["opened_on"],
        )
        .order_by(plan_installments.c.paid_on, plan_installments.c.plan_id)
    ).mappings():
        if (row["plan_id"], row["seq"]) in seen:
            continue
        items.append(
            TimelineItem(
                row["paid_on"],
                "payment",
                f"Payment: installment {row['seq']} of plan {row['plan_id']} paid",
                {"principal": str(row["principal"]), "due date": row["due_date"]},
                order=5_000,
            )
        )
    return items


def contact_items(conn: Connection, case_id: str) -> list[TimelineItem]:
    """The case's contacts, promises (made, kept, broken, void) and disputes."""
    items: list[TimelineItem] = []
    for row in conn.execute(
        select(contacts).where(contacts.c.case_id == case_id).order_by(contacts.c.contacted_on)
    ).mappings():
        items.append(
            TimelineItem(
                row["contacted_on"],
                "contact",
                f"Contact: {str(row['outcome']).replace('_', ' ')}",
                {"agent": row["agent_ref"], "contact id": row["contact_id"]},
                order=2_000,
            )
        )
    for row in conn.execute(
        select(promises).where(promises.c.case_id == case_id).order_by(promises.c.contacted_on)
    ).mappings():
        money = f"{row['promised_amount']} {row['currency']}"
        items.append(
            TimelineItem(
                row["contacted_on"],
                "promise",
                f"Promise to pay {money} by {row['promised_date']} ({row['status']})",
                {"holds the ladder through": row["hold_until"] - timedelta(days=1)},
                order=2_001,
            )
        )
        if row["status"] in (PROMISE_KEPT, PROMISE_BROKEN) and row["decided_on"] is not None:
            items.append(
                TimelineItem(
                    row["decided_on"],
                    f"promise-{row['status']}",
                    f"Promise {row['status']}: {row['paid_amount'] or '0'} of {money} paid",
                    {"contact id": row["contact_id"]},
                    order=6_000,
                )
            )
    for row in conn.execute(
        select(disputes).where(disputes.c.case_id == case_id).order_by(disputes.c.contacted_on)
    ).mappings():
        items.append(
            TimelineItem(
                row["contacted_on"],
                "dispute",
                "Dispute: the ladder is held",
                {"at most through": row["hold_through"]},
                order=2_002,
            )
        )
        if row["resolved_on"] is not None:
            items.append(
                TimelineItem(
                    row["resolved_on"], "dispute-resolved", "Dispute resolved", {}, order=2_003
                )
            )
    return items
