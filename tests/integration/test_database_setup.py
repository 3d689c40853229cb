"""Several processes of a service starting at once on a fresh database."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import create_engine

from shared.runtime.db import make_engine
from shared.runtime.settings import Settings
from shared.runtime.store import migrate

pytestmark = pytest.mark.integration
STARTERS = 8


def _race(target, n: int = STARTERS) -> list[BaseException]:
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            target()
        except BaseException as exc:  # collected: the caller asserts on them
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


def test_concurrent_starts_create_each_schema_without_error(pg_database):
    settings = Settings(database_url=pg_database, environment="test")
    # warm connections first, so the starters reach CREATE SCHEMA together
    create_engine(pg_database).connect().close()
    for i in range(10):
        errors = _race(lambda i=i: make_engine(settings, f"race_{i}").dispose())
        assert errors == [], f"schema race_{i}: {errors[:1]}"


def test_concurrent_starts_migrate_once(pg_database):
    settings = Settings(database_url=pg_database, environment="test")
    from tests.builders.services import PURCHASES as SERVICE

    applied: list[list[str]] = []

    def start() -> None:
        engine = make_engine(settings, "purchases")
        applied.append(migrate(engine, SERVICE.migrations))
        engine.dispose()

    assert _race(start) == []
    assert sum(1 for names in applied if names) == 1  # one process applied the migrations
