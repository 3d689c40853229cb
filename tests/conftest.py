"""Fixtures: the real stack once per session; a fresh namespace per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from shared.runtime.settings import Settings


@pytest.fixture(scope="session")
def stack() -> Iterator[tuple[str, str]]:
    """Kafka bootstrap servers and the PostgreSQL URL.

    ``INSTALLMENTS_TEST_STACK=local`` (default): the project's own broker and PostgreSQL
    processes, started if needed (or KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL).
    ``containers``: both as containers through testcontainers (:mod:`tests.containers`).
    """
    from tests import containers

    if containers.wanted():
        with containers.container_stack() as (bootstrap, db_url):
            yield bootstrap, db_url
        return
    from shared.localstack.stack import ensure_stack

    bootstrap, db_url = ensure_stack(need_postgres=True)
    assert db_url, "PostgreSQL is required for integration tests"
    yield bootstrap, db_url


@pytest.fixture(scope="session", autouse=True)
def _service_log_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Service processes log into the session's temp folder: the log scan reads it."""
    from tests import support

    support.LOG_DIR = str(tmp_path_factory.mktemp("service-logs"))


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    """A failed test must not leave a service process behind."""
    yield
    from tests.support import kill_leftovers

    kill_leftovers()


@pytest.fixture
def pg_database(stack: tuple[str, str]) -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    _, admin_url = stack
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, _ = admin_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def settings(stack: tuple[str, str], pg_database: str) -> Iterator[Settings]:
    """Settings for one test: its own topics (prefix) and its own database.

    The test's topics are deleted afterwards, so a long-lived dev broker does not
    collect thousands of partitions.
    """
    from shared.runtime.topics import delete_namespace, ensure_topics

    bootstrap, _ = stack
    s = Settings(
        kafka_bootstrap_servers=bootstrap,
        database_url=pg_database,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        topic_partitions=3,
        poll_timeout_ms=100,
        session_timeout_ms=6000,
        environment="test",
        log_format="json",
    )
    ensure_topics(s)
    yield s
    from tests.support import kill_leftovers

    kill_leftovers()
    delete_namespace(s)


# --- the log scan of the whole run (tests/log_scan.py) ---------------------------------

_LOG_FINDINGS: list[str] = []
_SCANNED = {"sections": 0}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    from tests.log_scan import find_personal_data

    for name, captured in report.sections:  # captured stdout, stderr and log records
        _SCANNED["sections"] += 1
        _LOG_FINDINGS.extend(find_personal_data(captured, f"{item.nodeid} [{name}]"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Scan every log file the run wrote; any card number, e-mail or phone fails the run."""
    from tests.log_scan import scan_log_files

    files, found = scan_log_files(session.config._tmp_path_factory.getbasetemp())  # type: ignore[attr-defined]
    findings = _LOG_FINDINGS + found
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"log scan: {_SCANNED['sections']} captured sections and {files} log files, "
            f"{len(findings)} finding(s) of card numbers, e-mails or phone numbers"
        )
        for finding in findings[:20]:
            reporter.write_line(f"  {finding}", red=True)
    if findings and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
