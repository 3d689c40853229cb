"""The fault suite, reduced for CI: one seeded story run calm and under faults
(SIGKILL mid-batch, crashes between the database commit and the Kafka commit and
between publish and mark-sent, SIGSTOP past the session timeout, rebalance storms,
the services' database connections terminated, PostgreSQL restarted). The invariant
checker finds no violation, no stored or committed offset ever moved backwards, and
both runs emitted exactly the same events. `installments faults` runs a bigger story
by hand.

Seed 1's first round deals the crash points first (they need work to reach them), then
storm, sigkill, pg_drop, pg_restart, pause. The story itself is over in about half a
minute; the schedule goes on until every kind was injected once (`Chaos.finish_round`).
The PostgreSQL restart is the test stack's own server and takes well under a second
(tests run one at a time)."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import create_engine, text

from shared.localstack.postgres import is_local_postgres
from shared.runtime.settings import Settings
from shared.tools.chaos import run_chaos

pytestmark = pytest.mark.integration


def test_faults_change_nothing(stack, tmp_path):
    bootstrap, admin_url = stack
    run = uuid.uuid4().hex[:8]
    created: list[str] = []

    def database(name: str) -> str:
        db = f"faults_{run}_{name}"
        with create_engine(admin_url, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{db}"'))
        created.append(db)
        return f"{admin_url.rpartition('/')[0]}/{db}"

    base = Settings(
        kafka_bootstrap_servers=bootstrap,
        database_url=admin_url,
        topic_prefix=f"f{run}.",
        session_timeout_ms=6000,
        environment="test",
    )
    try:
        result = run_chaos(
            base,
            accounts=16,
            days=10,
            seed=1,
            every_s=1.5,
            workdir=tmp_path,
            database_url_for=database,
        )
    finally:
        from shared.runtime.topics import delete_namespace

        for name in ("calm", "chaos"):
            delete_namespace(base.model_copy(update={"topic_prefix": f"f{run}.{name}."}))
        with create_engine(admin_url, isolation_level="AUTOCOMMIT").connect() as conn:
            for db in created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    kinds = set(result.kinds)
    assert {"storm", "pg_drop", "sigkill"} <= kinds, result.as_dict()
    if is_local_postgres(admin_url):
        assert "pg_restart" in kinds, result.as_dict()
    assert kinds >= {"after_db_commit", "after_publish", "pause"}, result.as_dict()
    # A crash point fires only when work reaches the service before the window ends, so
    # whether one fires in this small story is timing (the first round puts them first;
    # `installments faults` fired all six in its last run). The crash points themselves
    # are asserted deterministically in tests/integration/test_purchases.py.
    assert len(result.faults) >= 6, result.as_dict()
    # the storms' extra members really joined their group and took partitions
    assert sum(assigned for _, _, assigned in result.storms) >= 1, result.as_dict()
    assert result.offset_samples > 20, result.as_dict()
    watched = result.offsets_watched
    assert watched.get("database", 0) > 20 and watched.get("kafka", 0) > 20, result.as_dict()
    assert result.checks > 0 and result.events_out > 0
    assert result.violations == [], result.as_dict()
    assert result.differences == [], result.as_dict()
    print(json.dumps(result.as_dict(), indent=1))  # the figures, with -s
