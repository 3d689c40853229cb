"""The collections batch repository: what each handler needs sits in PRELOAD (next to
HANDLERS); a getter refuses a key never preloaded; every change counts (``changes``)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from datetime import date
from decimal import Decimal as D
from types import SimpleNamespace as NS
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from services.collections.handlers import HANDLERS, PRELOAD
from services.collections.repository import Case, CollectionsRepository, NotLoaded, Position
from services.collections.tables import MIGRATIONS
from shared.runtime.store import migrate

READS = {"position", "current_case", "levels_raised", "case_exists", "has_plan",
         "open_installments", "active_plans", "unpaid_seqs", "case", "contact_exists",
         "contact_outcomes", "promises", "open_promises", "disputes", "payments",
         "plan_account", "is_paid"}  # fmt: skip
MUTATES = {"put_position", "add_case", "update_case", "append_case_event", "add_plan",
           "mark_paid", "set_plan_status", "adjust_installments", "add_contact",
           "add_promise", "update_promise", "add_dispute", "resolve_dispute",
           "add_payment"}  # fmt: skip
LIFECYCLE = {"load", "save"}
DAY = date(2026, 1, 31)


@pytest.fixture
def repo(tmp_path) -> Iterator[CollectionsRepository]:
    engine = create_engine(f"sqlite:///{tmp_path}/collections.sqlite3")
    migrate(engine, MIGRATIONS)
    with Session(engine) as session:
        yield CollectionsRepository(session, PRELOAD)
    engine.dispose()


def ev(kind: str, **data: Any) -> Any:
    return NS(type=kind, subject="acc-1", data=NS(**data))


def test_every_handled_event_has_its_preload_entry():
    assert set(PRELOAD) == set(HANDLERS)


def test_every_public_method_is_known_as_reading_or_mutating():
    public = {n for n, _ in inspect.getmembers(CollectionsRepository, inspect.isfunction)}
    assert {n for n in public if not n.startswith("_")} == READS | MUTATES | LIFECYCLE


def test_a_key_never_preloaded_is_refused_a_preloaded_missing_one_answers_none(repo):
    repo.load([ev("account.delinquency", account_id="acc-1"),
               ev("plan.created", plan_id="p", account_id="acc-1")])  # fmt: skip
    assert repo.position("acc-1") is None
    assert repo.case("case:acc-1:2026-01-31") is None
    assert repo.plan_account("p") is None
    assert repo.current_case("acc-1") is None
    assert repo.case_exists("case:acc-1:2026-01-31") is False
    assert repo.has_plan("p") is False
    for call in (
        lambda: repo.position("acc-2"),
        lambda: repo.current_case("acc-2"),
        lambda: repo.case_exists("case:acc-2:2026-01-31"),
        lambda: repo.levels_raised("case:acc-1:2026-01-31"),
        lambda: repo.has_plan("q"),
        lambda: repo.mark_paid("p", 1, DAY),
        lambda: repo.active_plans("acc-1", "EUR"),
        lambda: repo.contact_exists("c-1"),
        lambda: repo.contact_outcomes("case:acc-1:2026-01-31"),
        lambda: repo.promises("case:acc-1:2026-01-31"),
        lambda: repo.disputes("case:acc-1:2026-01-31"),
        lambda: repo.open_promises("acc-2"),
        lambda: repo.payments("acc-1"),
        lambda: repo.is_paid("p", 1),
    ):
        with pytest.raises(NotLoaded):
            call()
    assert repo.open_installments("acc-1", "EUR") == []  # reads the account's plans itself
    assert repo.active_plans("acc-1", "EUR") == []


def test_each_mutating_method_counts_a_change(repo):
    repo.load([ev("account.delinquency", account_id="acc-1"), ev("plan.adjusted", plan_id="p")])
    case_id = "case:acc-1:2026-01-31"
    plan = {"plan_id": "p", "account_id": "acc-1", "currency": "EUR", "principal": D("9"),
            "status": "active", "event_id": "e"}  # fmt: skip
    line = {"plan_id": "p", "seq": 1, "account_id": "acc-1", "due_date": DAY,
            "principal": D("9"), "paid": False, "paid_on": None}  # fmt: skip
    calls = {
        "put_position": lambda: repo.put_position(
            Position("acc-1", DAY, 1, D("9"), "EUR", DAY, "e")
        ),
        "add_case": lambda: repo.add_case(
            Case(case_id, "acc-1", "open", DAY, 0, 1, D("9"), "EUR", DAY)
        ),
        "update_case": lambda: repo.update_case(case_id, level=1),
        "append_case_event": lambda: repo.append_case_event({"case_id": case_id, "kind": "x"}),
        "add_plan": lambda: repo.add_plan(plan, [line]),
        "mark_paid": lambda: repo.mark_paid("p", 1, DAY),
        "set_plan_status": lambda: repo.set_plan_status("p", "completed"),
        "adjust_installments": lambda: repo.adjust_installments(
            "p", [{"seq": 1, "due_date": DAY, "principal": D("5")}], []
        ),
        "add_contact": lambda: repo.add_contact({"contact_id": "c-1", "case_id": case_id}),
        "add_promise": lambda: repo.add_promise(
            {"contact_id": "c-1", "case_id": case_id, "account_id": "acc-1", "status": "open"}
        ),
        "update_promise": lambda: repo.update_promise("c-1", status="kept"),
        "add_dispute": lambda: repo.add_dispute({"contact_id": "c-2", "case_id": case_id}),
        "resolve_dispute": lambda: repo.resolve_dispute("c-2", "c-3", DAY),
        "add_payment": lambda: repo.add_payment(
            {"plan_id": "p", "seq": 1, "account_id": "acc-1"}
        ),
    }
    assert set(calls) == MUTATES
    for name, call in calls.items():
        before = repo.changes
        call()
        assert repo.changes > before, name
    assert repo.case_exists(case_id) and repo.levels_raised(case_id) == []
