"""Ids bound at execution as one array parameter (shared.runtime.db.Prebuilt, among,
restrict_to_keys with key_params): every id a hostile producer can make the schemas
accept comes back exactly, and none matches another. On PostgreSQL the arrays go in the
binary format, as the services' engines send them (shared.runtime.db.binary_arrays)."""

from __future__ import annotations

from itertools import pairwise

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, select
from sqlalchemy.exc import DBAPIError

from shared.runtime.db import (
    Prebuilt,
    among,
    binary_arrays,
    delete_keys,
    key_params,
    make_engine,
    restrict_to_keys,
)

pytestmark = pytest.mark.integration

metadata = MetaData()
things = Table(
    "array_param_things",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("seq", Integer, primary_key=True),
)

HOSTILE = [
    "plain",
    'with "quotes"',
    "back\\slash",
    "trailing\\",
    "comma,inside",
    "{braces}",
    "NULL",
    "null",
    "",
    " spaces ",
    "tab\tnewline\n",
    "üñí €",
    "x" * 200,
]
#: pairs of two strings, as purchases' (account, merchant) read
pairs = Table(
    "array_param_pairs",
    metadata,
    Column("a", String(200), primary_key=True),
    Column("b", String(200), primary_key=True),
)
_BY_ID = Prebuilt(lambda among: select(things.c.id).where(among(things.c.id)))
_BY_KEY = Prebuilt(
    lambda among: restrict_to_keys(select(things), things, ("id", "seq"), None, among.dialect)
)
_BY_PAIR = Prebuilt(
    lambda among: restrict_to_keys(select(pairs), pairs, ("a", "b"), None, among.dialect)
)


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request, tmp_path):
    url = (
        request.getfixturevalue("pg_database")
        if request.param == "postgresql"
        else f"sqlite:///{tmp_path}/a.db"
    )
    eng = create_engine(url)
    if request.param == "postgresql":
        binary_arrays(eng)  # as make_engine: the services' path
    metadata.create_all(eng)
    with eng.begin() as conn:
        conn.execute(things.insert(), [{"id": i, "seq": n} for n, i in enumerate(HOSTILE)])
        conn.execute(pairs.insert(), [{"a": i, "b": j} for i, j in pairwise(HOSTILE)])
    yield eng
    eng.dispose()


def test_every_hostile_id_is_found_and_only_itself(engine):
    dialect = engine.dialect.name
    with engine.connect() as conn:
        for one in HOSTILE:
            assert conn.execute(_BY_ID(dialect), {"ids": [one]}).scalars().all() == [one]
            assert conn.execute(
                select(things.c.id).where(among(things.c.id, [one], dialect))
            ).scalars().all() == [one]
        found = conn.execute(_BY_ID(dialect), {"ids": HOSTILE + ["absent"]}).scalars().all()
        assert sorted(found) == sorted(HOSTILE)
        assert conn.execute(_BY_ID(dialect), {"ids": []}).scalars().all() == []


def test_pairs_of_a_hostile_id_and_a_number(engine):
    dialect = engine.dialect.name
    keys = {(i, n) for n, i in enumerate(HOSTILE)} | {("NULL", 99), ("plain", 1)}
    with engine.connect() as conn:
        rows = conn.execute(_BY_KEY(dialect), key_params(keys, dialect)).all()
    assert sorted(rows) == sorted((i, n) for n, i in enumerate(HOSTILE))


def test_pairs_of_two_hostile_ids(engine):
    dialect = engine.dialect.name
    stored = set(pairwise(HOSTILE))
    swapped = {(j, i) for i, j in stored}  # each half matches a row, the pair none
    with engine.connect() as conn:
        rows = conn.execute(_BY_PAIR(dialect), key_params(stored | swapped, dialect)).all()
        assert sorted(rows) == sorted(stored)
        for pair in stored:
            assert conn.execute(_BY_PAIR(dialect), key_params({pair}, dialect)).all() == [pair]


def test_deleting_pairs_of_two_hostile_ids_removes_only_them(engine):
    dialect = engine.dialect.name
    stored = set(pairwise(HOSTILE))
    gone = set(sorted(stored)[::2])
    swapped = {(j, i) for i, j in stored}  # each half matches a row, the pair none
    drop = Prebuilt(lambda among: delete_keys(pairs, ("a", "b"), among.dialect))
    with engine.begin() as conn:
        conn.execute(drop(dialect), key_params(gone | swapped, dialect))
        left = set(conn.execute(_BY_PAIR(dialect), key_params(stored, dialect)).all())
    assert left == stored - gone


def test_a_nul_in_an_id_is_refused_by_the_database_layer(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores a NUL")
    with pytest.raises((DBAPIError, ValueError)), engine.connect() as conn:
        conn.execute(_BY_ID("postgresql"), {"ids": ["nul\x00inside"]}).all()


def test_the_services_engines_send_arrays_in_the_binary_format(settings):
    """What the fixture above reproduces is what make_engine gives every service."""
    from psycopg.adapt import PyFormat
    from psycopg.types.array import ListBinaryDumper

    engine = make_engine(settings, "array_params")
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            raw = conn.connection.dbapi_connection
            assert issubclass(raw.adapters.get_dumper(list, PyFormat.AUTO), ListBinaryDumper)
            conn.execute(things.insert(), [{"id": i, "seq": n} for n, i in enumerate(HOSTILE)])
            found = conn.execute(_BY_ID("postgresql"), {"ids": HOSTILE}).scalars().all()
        assert sorted(found) == sorted(HOSTILE)
    finally:
        engine.dispose()
