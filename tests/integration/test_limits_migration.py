"""Databases created before schemas.limits get the wider column types by migration.

A service schema is created on PostgreSQL with the OLD definitions (32-bit points
columns) and the migrations of that time; migrating it with today's list ends with the
types a fresh database gets from ``create_tables``, and a 64-bit value then fits.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Integer, MetaData, insert, inspect, text

from shared.runtime.db import Migration, create_tables, make_engine
from shared.runtime.settings import Settings
from shared.runtime.store import migrate

pytestmark = pytest.mark.integration

#: service -> (the migrations that existed before the limits, {table: [columns once INTEGER]})
BEFORE = {
    "offers": (1, {"plans": ["redeem_points"], "waivers": ["points"]}),
    "points": (
        3,
        {
            "purchases": ["points_earned", "points_reversed"],
            "plans": ["bonus_points", "bonus_reversed", "redeem_requested", "points_redeemed"],
            "ledger": ["points", "balance_after"],
        },
    ),
}


def _old_migrations(service: str) -> tuple[list[Migration], list[Migration], MetaData]:
    module = __import__(f"services.{service}.tables", fromlist=["MIGRATIONS", "metadata"])
    last_old, narrowed = BEFORE[service]
    old = MetaData()
    for table in module.metadata.tables.values():
        table.to_metadata(old)
    for table, columns in narrowed.items():
        for column in columns:
            old.tables[table].c[column].type = Integer()
    first = module.MIGRATIONS[0]
    steps = [Migration(first.version, first.name, create_tables(old))]
    steps += [m for m in module.MIGRATIONS if 1 < m.version <= last_old]
    return steps, module.MIGRATIONS, module.metadata


def _types(engine, service: str, table: str) -> dict[str, str]:
    with engine.connect() as conn:
        return {
            row.column_name: row.data_type
            for row in conn.execute(
                text(
                    "SELECT column_name, data_type FROM information_schema.columns"
                    " WHERE table_schema = :s AND table_name = :t"
                ),
                {"s": service, "t": table},
            )
        }


@pytest.mark.parametrize("service", sorted(BEFORE))
def test_an_old_database_is_migrated_to_64_bit_points(pg_database, service):
    settings = Settings(database_url=pg_database, environment="test")
    engine = make_engine(settings, service)
    old_steps, new_steps, metadata = _old_migrations(service)
    migrate(engine, old_steps)
    _, narrowed = BEFORE[service]
    for table, columns in narrowed.items():
        types = _types(engine, service, table)
        assert all(types[c] == "integer" for c in columns), (table, types)

    applied = migrate(engine, new_steps)
    assert applied and all(name.startswith("service:") for name in applied)
    assert migrate(engine, new_steps) == []  # once

    # the migrated schema is the schema a fresh database gets
    fresh = make_engine(settings, f"{service}_fresh")
    migrate(fresh, new_steps)
    for table in metadata.tables:
        assert _types(engine, service, table) == _types(fresh, f"{service}_fresh", table), table
    for table, columns in narrowed.items():
        types = _types(engine, service, table)
        assert all(types[c] == "bigint" for c in columns), (table, types)
    # and each reflected column matches today's definition
    with engine.connect() as conn:
        inspector = inspect(conn)
        for table, columns in narrowed.items():
            reflected = {c["name"]: c["type"] for c in inspector.get_columns(table, schema=service)}
            for column in columns:
                assert reflected[column].python_type is int
                assert type(reflected[column]).__name__ == "BIGINT", (table, column)
    fresh.dispose()
    engine.dispose()


def test_a_value_above_32_bits_is_stored_after_the_migration(pg_database):
    settings = Settings(database_url=pg_database, environment="test")
    engine = make_engine(settings, "offers")
    old_steps, new_steps, metadata = _old_migrations("offers")
    migrate(engine, old_steps)
    migrate(engine, new_steps)
    waivers = metadata.tables["waivers"]
    from decimal import Decimal

    with engine.begin() as conn:
        conn.execute(
            insert(waivers).values(
                event_id="e1", plan_id="plan-1", points=2**63 - 1, amount=Decimal("1.00")
            )
        )
        stored = conn.execute(text('SELECT points FROM "offers".waivers')).scalar_one()
    assert stored == 2**63 - 1
    engine.dispose()
