"""A failing statement's error text carries no parameter values (hide_parameters)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from shared.runtime.db import make_engine
from shared.runtime.settings import Settings

VALUE = "acc-4111_1111_1111_1111-jane@example.com"


def test_a_failing_statement_does_not_echo_its_parameters(tmp_path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/{{service}}.db", environment="test")
    engine = make_engine(settings, "errors")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id TEXT PRIMARY KEY)"))
        conn.execute(text("INSERT INTO t VALUES (:id)"), {"id": VALUE})
    with pytest.raises(IntegrityError) as caught, engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (:id)"), {"id": VALUE})
    message = str(caught.value)
    assert "UNIQUE constraint failed" in message
    assert "parameters hidden" in message
    assert VALUE not in message and "4111" not in message
    engine.dispose()
