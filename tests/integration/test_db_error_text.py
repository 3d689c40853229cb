"""PostgreSQL error text: SQLAlchemy hides the parameters; what psycopg copies from the
server (DETAIL "Failing row contains (...)", COPY CONTEXT with the value) is masked by
the log redaction."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from schemas.guard import contains_pan
from shared.runtime.db import make_engine
from shared.runtime.logging import redact_text
from shared.runtime.settings import Settings

pytestmark = pytest.mark.integration

PAN = "_".join(["4111", "1111", "1111", "1111"])  # underscores: the issue #11 form


def test_postgres_errors_hide_parameters_and_row_values_are_redacted(pg_database):
    engine = make_engine(Settings(database_url=pg_database, environment="test"), "errors")
    try:
        with engine.begin() as conn:
            conn.execute(
                text("CREATE TABLE t (id text PRIMARY KEY, name varchar(5), n text CHECK (n = ''))")
            )
        messages = []
        for statement in (
            "INSERT INTO t VALUES ('a', :v, '')",  # StringDataRightTruncation
            "INSERT INTO t VALUES ('b', 'ok', :v)",  # CheckViolation: DETAIL has the row
        ):
            with pytest.raises(DBAPIError) as caught, engine.begin() as conn:
                conn.execute(text(statement), {"v": PAN})
            messages.append(str(caught.value))
        with pytest.raises(psycopg.Error) as copy_failed, engine.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor.copy("COPY t (id, name, n) FROM STDIN") as copy:
                copy.write_row(("c", PAN, ""))
        messages.append(str(copy_failed.value))
    finally:
        engine.dispose()
    assert "parameters hidden" in messages[0] and PAN not in messages[0]
    assert "Failing row contains" in messages[1] and PAN in messages[1]  # the server's text
    assert "COPY t, line 1" in messages[2] and PAN in messages[2]
    for message in messages:
        assert not contains_pan(redact_text(message))
