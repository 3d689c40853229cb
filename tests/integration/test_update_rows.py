"""shared.runtime.db.update_rows: one UPDATE for many rows by a (composite) key, on PostgreSQL
(unnest of arrays, money exact) and SQLite (executemany)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    select,
)

from shared.runtime.db import Money, binary_arrays, update_rows

pytestmark = pytest.mark.integration

metadata = MetaData()
items = Table(
    "update_rows_items",
    metadata,
    Column("plan_id", String(40), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("amount", Money, nullable=False),
    Column("paid", Boolean, nullable=False),
    Column("paid_on", Date, nullable=True),
)


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request, tmp_path):
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_database")
    else:
        url = f"sqlite:///{tmp_path}/u.db"
    eng = create_engine(url)
    if request.param == "postgresql":
        binary_arrays(eng)  # as make_engine: the services' path
    metadata.create_all(eng)
    yield eng
    eng.dispose()


def test_updates_exactly_the_keyed_rows(engine):
    rows = [
        {"plan_id": p, "seq": s, "amount": Decimal("100.00"), "paid": False, "paid_on": None}
        for p in ("a", "b")
        for s in (1, 2, 3)
    ]
    with engine.begin() as conn:
        conn.execute(items.insert(), rows)
        update_rows(
            conn,
            items,
            ("plan_id", "seq"),
            ("amount", "paid", "paid_on"),
            [
                {"plan_id": "a", "seq": 2, "amount": Decimal("0.01"), "paid": True,
                 "paid_on": date(2026, 2, 28)},
                {"plan_id": "b", "seq": 3, "amount": Decimal("12345678.99"), "paid": False,
                 "paid_on": None},
            ],
        )  # fmt: skip
        update_rows(conn, items, ("plan_id", "seq"), ("paid",), [])  # nothing: no statement
        got = {
            (r.plan_id, r.seq): (r.amount, r.paid, r.paid_on) for r in conn.execute(select(items))
        }
    assert got.pop(("a", 2)) == (Decimal("0.01"), True, date(2026, 2, 28))
    assert got.pop(("b", 3)) == (Decimal("12345678.99"), False, None)
    assert set(got.values()) == {(Decimal("100.00"), False, None)}  # the other four untouched


def test_restrict_to_keys_selects_exactly_the_pairs(engine):
    from shared.runtime.db import restrict_to_keys

    rows = [
        {"plan_id": p, "seq": s, "amount": Decimal("1.00"), "paid": False, "paid_on": None}
        for p in ("a", "b")
        for s in (1, 2)
    ]
    with engine.begin() as conn:
        conn.execute(items.insert(), rows)
        query = restrict_to_keys(
            select(items.c.plan_id, items.c.seq), items, ("plan_id", "seq"),
            {("a", 2), ("b", 1), ("c", 1)}, engine.dialect.name,
        )  # fmt: skip
        assert sorted(tuple(r) for r in conn.execute(query)) == [("a", 2), ("b", 1)]


def test_hostile_values_go_through_exactly(engine):
    """The longest key, quotes and braces, the largest amounts, year 9999, None."""
    hostile = ["x" * 40, 'q"uo\\te', "{a,b}", "NULL", "", "üñí €"]
    rows = [
        {"plan_id": p, "seq": s, "amount": Decimal("1.00"), "paid": False, "paid_on": None}
        for p in hostile
        for s in (-(2**31), 0, 2**31 - 1)
    ]
    amounts = [Decimal("999999999999.99"), Decimal("-0.01"), Decimal("0.000001")]
    with engine.begin() as conn:
        conn.execute(items.insert(), rows)
        update_rows(
            conn,
            items,
            ("plan_id", "seq"),
            ("amount", "paid", "paid_on"),
            [
                {**r, "amount": amounts[n % 3], "paid": n % 2 == 0,
                 "paid_on": date(9999, 12, 31) if n % 2 else None}
                for n, r in enumerate(rows)
            ],
        )  # fmt: skip
        got = {
            (r.plan_id, r.seq): (r.amount, r.paid, r.paid_on) for r in conn.execute(select(items))
        }
    assert got == {
        (r["plan_id"], r["seq"]): (
            amounts[n % 3], n % 2 == 0, date(9999, 12, 31) if n % 2 else None
        )
        for n, r in enumerate(rows)
    }  # fmt: skip
