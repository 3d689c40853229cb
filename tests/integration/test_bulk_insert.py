"""shared.runtime.db.bulk_insert: many rows in one go (COPY on PostgreSQL, executemany on
SQLite), with every column type the services write, one-column tables, JSON columns and
the values a hostile producer can make the schemas accept."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    select,
)
from sqlalchemy.exc import DBAPIError

from shared.runtime.db import Money, bulk_insert

pytestmark = pytest.mark.integration

metadata = MetaData()
wide = Table(
    "bulk_insert_wide",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("n", Integer, nullable=True),
    Column("big", BigInteger, nullable=True),
    Column("amount", Money, nullable=True),
    Column("flag", Boolean, nullable=True),
    Column("day", Date, nullable=True),
    Column("at", DateTime(timezone=True), nullable=True),
    Column("raw", LargeBinary, nullable=True),
    Column("headers", JSON, nullable=True),
)
narrow = Table("bulk_insert_narrow", metadata, Column("id", String(40), primary_key=True))


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request, tmp_path):
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_database")
    else:
        url = f"sqlite:///{tmp_path}/b.db"
    eng = create_engine(url)
    metadata.create_all(eng)
    yield eng
    eng.dispose()


ROWS = [
    {
        "id": "a" * 200,
        "n": -(2**31),
        "big": 2**63 - 1,
        "amount": Decimal("999999999999.99"),
        "flag": True,
        "day": date(9999, 12, 31),
        "at": datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
        "raw": b"\x00\x01\\\t\n\r\xff",
        "headers": [["error.reason", 'tab\there, newline\nthere, quote " and \\ backslash']],
    },
    {
        "id": "tab\tnewline\ncr\rbackslash\\ üñí €",
        "n": None,
        "big": None,
        "amount": Decimal("0.00"),
        "flag": False,
        "day": None,
        "at": None,
        "raw": None,
        "headers": [],
    },
    {
        "id": r"\N",  # COPY's NULL marker as a value: must stay a string
        "n": 0,
        "big": 0,
        "amount": None,
        "flag": None,
        "day": date(1, 1, 1),
        "at": datetime(2026, 3, 2, 12, 0, tzinfo=UTC),
        "raw": b"",
        "headers": None,
    },
]


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_every_value_comes_back_exactly(engine, binary):
    with engine.begin() as conn:
        bulk_insert(conn, wide, ROWS, binary=binary)
    with engine.connect() as conn:
        got = {r.id: r._asdict() for r in conn.execute(select(wide))}
    expected = {r["id"]: dict(r) for r in ROWS}
    if engine.dialect.name == "sqlite":  # SQLite keeps no time zone: UTC comes back naive
        for row in expected.values():
            if row["at"] is not None:
                row["at"] = row["at"].replace(tzinfo=None)
    assert got == expected
    assert got[ROWS[0]["id"]]["amount"].as_tuple() == Decimal("999999999999.99").as_tuple()


def test_rows_with_some_columns_and_one_column_tables(engine):
    with engine.begin() as conn:
        bulk_insert(conn, wide, [{"id": "x", "n": 7}, {"id": "y", "n": 8}])
        bulk_insert(conn, narrow, [{"id": "one"}, {"id": "two"}])
        bulk_insert(conn, narrow, [])
    with engine.connect() as conn:
        assert sorted(conn.execute(select(wide.c.id, wide.c.n, wide.c.amount)).all()) == [
            ("x", 7, None),
            ("y", 8, None),
        ]
        assert sorted(r.id for r in conn.execute(select(narrow))) == ["one", "two"]


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_a_value_the_database_refuses_fails_the_whole_insert(engine, binary):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores a NUL and enforces no VARCHAR length")
    for bad in ({"id": "nul\x00inside"}, {"id": "z" * 41}):
        with pytest.raises((DBAPIError, Exception)), engine.begin() as conn:
            bulk_insert(conn, narrow, [{"id": "fine"}, bad], binary=binary)
        with engine.connect() as conn:
            assert conn.execute(select(narrow)).all() == []
