"""The collections console (issue #14) through Starlette's TestClient on SQLite, with a
fake publisher: sign-in, CSRF, the work queue (filter, sort, keyset pages), the case
page and the contact form publishing ``contact.recorded``. No broker."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert
from starlette.testclient import TestClient

from schemas import decode
from services.collections.console.agents import (
    AgentDirectory,
    add_agent,
    hash_password,
    load_agents,
    verify_password,
)
from services.collections.console.app import create_app
from services.collections.console.settings import ConsoleSettings
from services.collections.tables import case_events, cases, metadata, plan_installments
from shared.runtime.db import make_engine

PASSWORD = "correct horse battery staple"
CHEAP = {"n": 2**10, "r": 8, "p": 1}  # fast hashes for tests; the default is 2^15


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.fail = False

    def publish(self, topic: str, key: bytes, value: bytes) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.append((topic, key, value))


def case_row(n: int, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "case_id": f"case-{n:05d}",
        "account_id": f"acc-{n:05d}",
        "status": "open",
        "opened_on": date(2026, 1, 1),
        "level": 1 + n % 6,
        "action": "sms",
        "bucket": ("M1", "M2", "M3", "M4+")[n % 4],
        "days_past_due": 1 + (n * 7) % 170,
        "overdue_amount": Decimal(f"{(n * 37) % 5000}.{n % 100:02d}"),
        "currency": "USD",
        "business_date": date(2026, 3, 1),
    }
    row.update(over)
    return row


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    settings = ConsoleSettings(database_url=f"sqlite:///{tmp_path}/{{service}}.sqlite3")
    eng = make_engine(settings, "collections")
    metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "agents.yaml"
    add_agent(path, "alice", PASSWORD, "agent-alice", **CHEAP)
    add_agent(path, "bob", "another secret", None, **CHEAP)
    return path


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def client(
    engine: Engine, users_file: Path, publisher: FakePublisher, tmp_path: Path
) -> Iterator[TestClient]:
    settings = ConsoleSettings(
        database_url=f"sqlite:///{tmp_path}/{{service}}.sqlite3",
        console_users_file=str(users_file),
        console_secret="test-secret-" + "x" * 32,
        console_page_size=10,
        topic_prefix="t1.",
    )
    app = create_app(settings, engine=engine, publisher=publisher)
    with TestClient(app, base_url="http://testserver") as c:
        yield c


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def sign_in(client: TestClient, username: str = "alice", password: str = PASSWORD) -> Any:
    page = client.get("/signin")
    return client.post(
        "/signin",
        data={"username": username, "password": password, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )


def seed(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        conn.execute(insert(cases), rows)


def case_ids(html: str) -> list[str]:
    return re.findall(r'<tr class="case-row" data-case-id="([^"]+)"', html)


def attr(html: str, name: str) -> list[str]:
    return re.findall(rf'{name}="([^"]*)"', html)


# ----------------------------------------------------------------------- passwords


def test_password_hashes_are_salted_scrypt_and_verify() -> None:
    one, two = hash_password("pw", **CHEAP), hash_password("pw", **CHEAP)
    assert one.startswith("scrypt$1024$8$1$") and one != two  # a salt per hash
    assert verify_password("pw", one) and verify_password("pw", two)
    assert not verify_password("PW", one)
    assert not verify_password("pw", "plain-text") and not verify_password("pw", "md5$x$y$z$a$b")


def test_add_agent_writes_an_owner_only_file_and_replaces_a_password(users_file: Path) -> None:
    assert users_file.stat().st_mode & 0o777 == 0o600
    agents = load_agents(users_file)
    assert agents["alice"].agent_ref == "agent-alice" and agents["bob"].agent_ref == "bob"
    assert PASSWORD not in users_file.read_text()
    add_agent(users_file, "alice", "new password", "agent-alice", **CHEAP)
    directory = AgentDirectory(users_file)
    assert directory.authenticate("alice", "new password") is not None
    assert directory.authenticate("alice", PASSWORD) is None


def test_an_agent_ref_must_be_opaque(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="opaque"):
        add_agent(tmp_path / "a.yaml", "carol", "pw", "carol@example.com", **CHEAP)


def test_the_cli_adds_an_agent(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from services.collections.cli import app

    path = tmp_path / "agents.json"
    result = CliRunner().invoke(
        app, ["add-agent", "dave", "--users-file", str(path), "--password-stdin"],
        input="s3cret\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert AgentDirectory(path).authenticate("dave", "s3cret") is not None


# ----------------------------------------------------------------------- settings


def test_production_refuses_to_start_without_a_session_secret() -> None:
    prod = {
        "environment": "production",
        "database_url": "postgresql+psycopg://u:p@db/x?sslmode=verify-full",
        "kafka_security_protocol": "SASL_SSL",
    }
    with pytest.raises(ValueError, match="INSTALLMENTS_CONSOLE_SECRET"):
        ConsoleSettings(**prod)
    with pytest.raises(ValueError, match="INSTALLMENTS_CONSOLE_SECRET"):
        ConsoleSettings(**prod, console_secret="short")
    assert ConsoleSettings(**prod, console_secret="s" * 40).session_secret() == ("s" * 40, True)


# ----------------------------------------------------------------------- sign-in


@pytest.mark.parametrize("path", ["/", "/cases/case-00001", "/nowhere"])
def test_every_page_needs_sign_in(client: TestClient, path: str) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/signin?next=")


def test_health_readiness_and_metrics_need_no_sign_in(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "ok"
    assert "installments_console_signins_total" in client.get("/metrics").text


def test_readyz_fails_when_the_database_does_not_answer(client: TestClient, engine: Engine) -> None:
    cases.drop(engine)
    assert client.get("/readyz").status_code == 503


def test_sign_in_then_the_queue_shows_the_agent(client: TestClient) -> None:
    response = sign_in(client)
    assert response.status_code == 303 and response.headers["location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    assert 'id="signed-in-agent" data-agent-ref="agent-alice"' in page.text
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie


def test_a_bad_password_or_unknown_user_is_refused(client: TestClient) -> None:
    for username, password in (("alice", "wrong"), ("mallory", PASSWORD), ("alice", "")):
        response = sign_in(client, username, password)
        assert response.status_code == 401
        assert 'id="signin-error"' in response.text
        assert client.get("/", follow_redirects=False).status_code == 303


def test_sign_in_without_the_csrf_token_is_refused(client: TestClient) -> None:
    client.get("/signin")
    response = client.post(
        "/signin", data={"username": "alice", "password": PASSWORD}, follow_redirects=False
    )
    assert response.status_code == 403
    assert client.get("/", follow_redirects=False).status_code == 303


def test_sign_in_returns_to_the_page_asked_only_on_this_site(client: TestClient) -> None:
    page = client.get("/signin?next=/cases/case-00001")
    assert 'name="next" value="/cases/case-00001"' in page.text
    response = client.post(
        "/signin",
        data={
            "username": "alice",
            "password": PASSWORD,
            "csrf_token": csrf_of(page.text),
            "next": "//evil.example/",
        },  # fmt: skip
        follow_redirects=False,
    )
    assert response.headers["location"] == "/"


def test_sign_out_needs_csrf_and_ends_the_session(client: TestClient) -> None:
    sign_in(client)
    assert client.post("/signout", data={}, follow_redirects=False).status_code == 403
    token = csrf_of(client.get("/").text)
    response = client.post("/signout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_removed_agent_is_signed_out(client: TestClient, users_file: Path) -> None:
    sign_in(client)
    assert client.get("/", follow_redirects=False).status_code == 200
    users_file.write_text("agents: []\n")
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_forged_cookie_is_not_a_session(client: TestClient) -> None:
    client.cookies.set("collections_console", "eyJhZ2VudCI6ICJhbGljZSJ9.forged.sig")
    assert client.get("/", follow_redirects=False).status_code == 303


# ----------------------------------------------------------------------- the queue


def test_only_open_cases_with_their_columns(client: TestClient, engine: Engine) -> None:
    seed(engine, [case_row(1), case_row(2, status="cured"), case_row(3, status="charged_off")])
    sign_in(client)
    html = client.get("/").text
    assert case_ids(html) == ["case-00001"]
    assert 'data-dpd="8"' in html and 'data-bucket="M2"' in html
    assert "37.01 USD" in html


def test_filters_by_level_bucket_and_minimum_amount(client: TestClient, engine: Engine) -> None:
    rows = [case_row(n) for n in range(1, 61)]
    seed(engine, rows)
    sign_in(client)
    html = client.get("/", params={"level": "3", "bucket": "M3", "min_amount": "1000"}).text
    expected = sorted(
        (
            r
            for r in rows
            if r["level"] == 3 and r["bucket"] == "M3" and r["overdue_amount"] >= 1000
        ),  # fmt: skip
        key=lambda r: (-r["days_past_due"], r["case_id"]),
    )
    got = case_ids(html)
    assert got and set(got) == {r["case_id"] for r in expected}
    assert all(level == "3" for level in attr(html, "data-level"))
    # the amount filter compares numbers, not text ("999.00" < "1000" as text is false)
    seed(engine, [case_row(100, overdue_amount=Decimal("999.00"), level=3, bucket="M3")])
    narrow = {"level": "3", "bucket": "M3"}
    assert "case-00100" not in client.get("/", params={**narrow, "min_amount": "1000"}).text
    assert "case-00100" in client.get("/", params={**narrow, "min_amount": "999"}).text


def test_bad_filter_values_are_reported_and_ignored(client: TestClient, engine: Engine) -> None:
    seed(engine, [case_row(1)])
    sign_in(client)
    html = client.get("/", params={"level": "9", "min_amount": "lots", "sort": "x"}).text
    assert 'id="filter-errors"' in html and case_ids(html) == ["case-00001"]


@pytest.mark.parametrize(
    ("sort", "order"), [("dpd", "desc"), ("dpd", "asc"), ("amount", "desc"), ("amount", "asc")]
)
def test_sort_and_keyset_pages_walk_every_case_once(
    client: TestClient, engine: Engine, sort: str, order: str
) -> None:
    rows = [case_row(n) for n in range(1, 36)]  # ties on DPD: case id breaks them
    seed(engine, rows)
    sign_in(client)
    field = "days_past_due" if sort == "dpd" else "overdue_amount"
    expected = [r["case_id"] for r in sorted(rows, key=lambda r: (r[field], r["case_id"]),
                                             reverse=order == "desc")]  # fmt: skip
    seen: list[str] = []
    pages: list[str] = []
    url: str | None = "/?" + f"sort={sort}&order={order}"
    while url:
        html = client.get(url.replace("&amp;", "&")).text
        pages.append(html)
        seen.extend(case_ids(html))
        match = re.search(r'id="next-page" rel="next" href="([^"]+)"', html)
        url = match.group(1) if match else None
    assert seen == expected
    assert len(pages) == 4 and 'id="prev-page"' not in pages[0]
    # back from the last page: the previous page is the third one again
    prev = re.search(r'id="prev-page" rel="prev" href="([^"]+)"', pages[-1])
    assert prev
    assert case_ids(client.get(prev.group(1).replace("&amp;", "&")).text) == case_ids(pages[2])


# ----------------------------------------------------------------------- a case


def test_the_case_page_shows_the_timeline(client: TestClient, engine: Engine) -> None:
    seed(engine, [case_row(1, level=2, action="sms_push", days_past_due=9)])
    with engine.begin() as conn:
        conn.execute(insert(case_events), [
            {"case_id": "case-00001", "account_id": "acc-00001", "kind": kind,
             "business_date": date(2026, 1, 1) + timedelta(days=d), "level": lv,
             "action": act, "bucket": "M1", "days_past_due": dpd,
             "overdue_amount": Decimal("37.01"), "currency": "USD", "cause_event_id": f"e{d}"}
            for kind, d, lv, act, dpd in (
                ("opened", 0, None, None, 1), ("raised", 0, 1, "sms", 1),
                ("raised", 7, 2, "sms_push", 8),
            )
        ])  # fmt: skip
        conn.execute(insert(plan_installments), [{
            "plan_id": "plan-1", "seq": 1, "account_id": "acc-00001",
            "due_date": date(2025, 12, 31), "principal": Decimal("20.00"), "paid": True,
            "paid_on": date(2026, 1, 5), "removed": False,
        }])  # fmt: skip
    sign_in(client)
    html = client.get("/cases/case-00001").text
    kinds = attr(html, "data-kind")
    assert kinds == ["opened", "raised", "payment", "raised"]
    assert 'id="case-title" data-case-id="case-00001"' in html
    assert 'id="contact-form"' in html


def test_an_unknown_case_is_404(client: TestClient) -> None:
    sign_in(client)
    response = client.get("/cases/nope")
    assert response.status_code == 404 and 'id="not-found"' in response.text


# ----------------------------------------------------------------------- the form


def form_of(client: TestClient, case_id: str = "case-00001") -> dict[str, str]:
    html = client.get(f"/cases/{case_id}").text
    contact_id = re.search(r'name="contact_id" value="([^"]+)"', html)
    assert contact_id
    return {"csrf_token": csrf_of(html), "contact_id": contact_id.group(1)}


def test_the_form_publishes_contact_recorded(
    client: TestClient, engine: Engine, publisher: FakePublisher
) -> None:
    seed(engine, [case_row(1)])
    sign_in(client)
    form = form_of(client)
    response = client.post(
        "/cases/case-00001",
        data={**form, "outcome": "promise_to_pay", "contacted_on": "2026-03-02",
              "promised_amount": "37.01", "currency": "usd", "promised_date": "2026-03-20"},
        follow_redirects=False,
    )  # fmt: skip
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/cases/case-00001?recorded={form['contact_id']}"
    [(topic, key, value)] = publisher.sent
    assert topic == "t1.collections.outcomes.v1" and key == b"acc-00001"
    event = decode("collections.outcomes.v1", key, value, strict=True)
    assert event.type == "contact.recorded" and event.subject == "acc-00001"
    data = event.data
    assert (data.contact_id, data.case_id, data.account_id, data.agent_ref) == (
        form["contact_id"],
        "case-00001",
        "acc-00001",
        "agent-alice",
    )
    assert (data.outcome, data.contacted_on) == ("promise_to_pay", date(2026, 3, 2))
    assert (data.promised_amount, data.currency, data.promised_date) == (
        Decimal("37.01"),
        "USD",
        date(2026, 3, 20),
    )
    shown = client.get(response.headers["location"]).text
    assert f'id="flash-recorded" class="flash" data-contact-id="{form["contact_id"]}"' in shown


def test_a_resubmitted_form_publishes_the_same_event_id(
    client: TestClient, engine: Engine, publisher: FakePublisher
) -> None:
    seed(engine, [case_row(1)])
    sign_in(client)
    form = {**form_of(client), "outcome": "no_answer", "contacted_on": "2026-03-02"}
    client.post("/cases/case-00001", data=form, follow_redirects=False)
    client.post("/cases/case-00001", data=form, follow_redirects=False)
    ids = {decode("collections.outcomes.v1", k, v).id for _, k, v in publisher.sent}
    assert len(publisher.sent) == 2 and len(ids) == 1  # the service's inbox applies it once


def test_the_form_without_csrf_is_refused_and_publishes_nothing(
    client: TestClient, engine: Engine, publisher: FakePublisher
) -> None:
    seed(engine, [case_row(1)])
    sign_in(client)
    form = form_of(client)
    for token in (None, "forged"):
        data = {"contact_id": form["contact_id"], "outcome": "reached",
                "contacted_on": "2026-03-02"}  # fmt: skip
        if token:
            data["csrf_token"] = token
        response = client.post("/cases/case-00001", data=data, follow_redirects=False)
        assert response.status_code == 403
    assert publisher.sent == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"outcome": "", "contacted_on": "2026-03-02"}, "outcome"),
        ({"outcome": "reached", "contacted_on": "yesterday"}, "contacted_on"),
        ({"outcome": "promise_to_pay", "contacted_on": "2026-03-02"}, "promised_amount"),
        (
            {
                "outcome": "promise_to_pay",
                "contacted_on": "2026-03-02",
                "promised_amount": "-5",
                "currency": "USD",
                "promised_date": "2026-03-10",
            },
            "promised_amount",
        ),
        (
            {
                "outcome": "promise_to_pay",
                "contacted_on": "2026-03-02",
                "promised_amount": "5.00",
                "currency": "USD",
                "promised_date": "2026-05-10",
            },
            "promised_date",
        ),
        (
            {
                "outcome": "promise_to_pay",
                "contacted_on": "2026-03-02",
                "promised_amount": "5.00",
                "currency": "USD",
                "promised_date": "2026-03-01",
            },
            "promised_date",
        ),
    ],
)
def test_invalid_contacts_are_shown_and_not_published(
    client: TestClient, engine: Engine, publisher: FakePublisher, fields: dict[str, str],
    field: str,
) -> None:  # fmt: skip
    seed(engine, [case_row(1)])
    sign_in(client)
    response = client.post("/cases/case-00001", data={**form_of(client), **fields})
    assert response.status_code == 400
    assert f'data-field="{field}"' in response.text
    assert f'id="error-{field}"' in response.text
    assert publisher.sent == []


def test_promise_fields_on_another_outcome_are_left_out(
    client: TestClient, engine: Engine, publisher: FakePublisher
) -> None:
    seed(engine, [case_row(1)])
    sign_in(client)
    data = {**form_of(client), "outcome": "reached", "contacted_on": "2026-03-02",
            "currency": "USD", "promised_amount": "", "promised_date": ""}  # fmt: skip
    assert client.post("/cases/case-00001", data=data, follow_redirects=False).status_code == 303
    event = decode("collections.outcomes.v1", publisher.sent[0][1], publisher.sent[0][2])
    assert event.data.currency is None and event.data.promised_amount is None


def test_no_contact_on_a_resolved_case(
    client: TestClient, engine: Engine, publisher: FakePublisher
) -> None:
    seed(engine, [case_row(1, status="cured", resolution="cured")])
    sign_in(client)
    data = {**form_of(client), "outcome": "reached", "contacted_on": "2026-03-02"}
    assert client.post("/cases/case-00001", data=data).status_code == 409
    assert publisher.sent == []


def test_a_broker_failure_is_shown_and_the_form_kept(
    client: TestClient, engine: Engine, publisher: FakePublisher
) -> None:
    seed(engine, [case_row(1)])
    sign_in(client)
    publisher.fail = True
    form = form_of(client)
    response = client.post(
        "/cases/case-00001", data={**form, "outcome": "reached", "contacted_on": "2026-03-02"}
    )
    assert response.status_code == 503 and "could not be published" in response.text
    assert f'value="{form["contact_id"]}"' in response.text  # a retry is the same event


def test_the_log_names_agent_case_and_outcome_only(client: TestClient, engine: Engine) -> None:
    import io

    import structlog

    from shared.runtime.logging import configure_logging

    out = io.StringIO()
    configure_logging("INFO", "json", stream=out, hooks=False)
    try:
        seed(engine, [case_row(1)])
        sign_in(client)
        data = {**form_of(client), "outcome": "wrong_party", "contacted_on": "2026-03-02"}
        client.post("/cases/case-00001", data=data, follow_redirects=False)
    finally:
        structlog.reset_defaults()
    text = out.getvalue()
    line = next(line for line in text.splitlines() if "contact recorded" in line)
    assert '"agent": "agent-alice"' in line and '"case_id": "case-00001"' in line
    assert '"outcome": "wrong_party"' in line
    assert PASSWORD not in text


# ----------------------------------------------------------------------- holds


def test_held_until_and_promise_state_in_queue_and_timeline(
    client: TestClient, engine: Engine
) -> None:
    from services.collections.tables import contacts, disputes, payments, promises

    seed(engine, [case_row(1), case_row(2), case_row(3)])
    with engine.begin() as conn:
        conn.execute(
            insert(contacts),
            [
                {
                    "contact_id": "k1",
                    "case_id": "case-00001",
                    "account_id": "acc-00001",
                    "outcome": "promise_to_pay",
                    "contacted_on": date(2026, 3, 2),
                    "agent_ref": "agent-alice",
                    "event_id": "e1",
                },
                {
                    "contact_id": "k2",
                    "case_id": "case-00002",
                    "account_id": "acc-00002",
                    "outcome": "dispute",
                    "contacted_on": date(2026, 3, 2),
                    "agent_ref": "agent-alice",
                    "event_id": "e2",
                },
                {
                    "contact_id": "k3",
                    "case_id": "case-00003",
                    "account_id": "acc-00003",
                    "outcome": "promise_to_pay",
                    "contacted_on": date(2026, 2, 1),
                    "agent_ref": "bob",
                    "event_id": "e3",
                },
            ],
        )
        conn.execute(
            insert(promises),
            [
                {
                    "contact_id": "k1",
                    "case_id": "case-00001",
                    "account_id": "acc-00001",
                    "contacted_on": date(2026, 3, 2),
                    "promised_date": date(2026, 3, 20),
                    "promised_amount": Decimal("37.01"),
                    "currency": "USD",
                    "hold_until": date(2026, 3, 23),
                    "status": "open",
                    "paid_amount": None,
                    "decided_on": None,
                },
                {
                    "contact_id": "k3",
                    "case_id": "case-00003",
                    "account_id": "acc-00003",
                    "contacted_on": date(2026, 2, 1),
                    "promised_date": date(2026, 2, 10),
                    "promised_amount": Decimal("50.00"),
                    "currency": "USD",
                    "hold_until": date(2026, 2, 13),
                    "status": "kept",
                    "paid_amount": Decimal("50.00"),
                    "decided_on": date(2026, 2, 9),
                },
            ],
        )
        conn.execute(
            insert(disputes),
            [
                {
                    "contact_id": "k2",
                    "case_id": "case-00002",
                    "account_id": "acc-00002",
                    "contacted_on": date(2026, 3, 2),
                    "hold_through": date(2026, 4, 1),
                },
            ],
        )
        conn.execute(insert(payments), [
            {"plan_id": "p3", "seq": 1, "account_id": "acc-00003", "amount": Decimal("50.00"),
             "currency": "USD", "paid_on": date(2026, 2, 9), "event_id": "e9"},
        ])  # fmt: skip
    sign_in(client)
    html = client.get("/").text
    rows = dict(
        zip(
            case_ids(html),
            zip(attr(html, "data-held-until"), attr(html, "data-promise"), strict=True),
            strict=True,
        )
    )
    assert rows == {
        "case-00001": ("2026-03-22", "open"),  # held at the closes before promised + 3
        "case-00002": ("2026-04-01", ""),
        "case-00003": ("", "kept"),
    }  # fmt: skip
    case3 = client.get("/cases/case-00003").text
    assert attr(case3, "data-kind") == ["contact", "promise", "payment", "promise-kept"]
    assert 'data-promise="kept"' in case3
