"""The reminders batch repository: what each handler needs sits in PRELOAD (next to
HANDLERS); a getter refuses a key never preloaded; every change counts (``changes``)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from datetime import date
from types import SimpleNamespace as NS
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from services.reminders.handlers import HANDLERS, PRELOAD
from services.reminders.repository import (
    Account,
    Installment,
    NotLoaded,
    RemindersRepository,
)
from services.reminders.tables import MIGRATIONS
from shared.runtime.store import migrate

READS = {"account", "installment", "handled_offsets", "plan_closed", "business_clock",
         "has_business_day", "adjusted_schedule"}  # fmt: skip
MUTATES = {"put_account", "add_installment", "installment_changed", "add_reminder",
           "set_plan_status", "add_business_day", "replace_schedule"}  # fmt: skip
LIFECYCLE = {"load", "save"}
DAY = date(2026, 1, 31)


@pytest.fixture
def repo(tmp_path) -> Iterator[RemindersRepository]:
    engine = create_engine(f"sqlite:///{tmp_path}/reminders.sqlite3")
    migrate(engine, MIGRATIONS)
    with Session(engine) as session:
        yield RemindersRepository(session, PRELOAD)
    engine.dispose()


def ev(kind: str, subject: str = "acc-1", **data: Any) -> Any:
    return NS(type=kind, subject=subject, data=NS(**data))


def test_every_handled_event_has_its_preload_entry():
    assert set(PRELOAD) == set(HANDLERS)


def test_every_public_method_is_known_as_reading_or_mutating():
    public = {n for n, _ in inspect.getmembers(RemindersRepository, inspect.isfunction)}
    assert {n for n in public if not n.startswith("_")} == READS | MUTATES | LIFECYCLE


def test_a_key_never_preloaded_is_refused_a_preloaded_missing_one_answers_none(repo):
    repo.load([ev("installment.due-soon", plan_id="plan-1", seq=1)])
    assert repo.account("acc-1") is None
    assert repo.installment("plan-1", 1) is None
    assert repo.handled_offsets("plan-1", 1) == set()
    assert repo.plan_closed("plan-1", "active") is False
    assert repo.business_clock() is None
    for call in (
        lambda: repo.account("acc-2"),
        lambda: repo.installment("plan-1", 2),
        lambda: repo.handled_offsets("plan-2", 1),
        lambda: repo.plan_closed("plan-2", "active"),
        lambda: repo.has_business_day(DAY),
    ):
        with pytest.raises(NotLoaded):
            call()


def test_the_business_clock_is_refused_when_no_event_asked_for_it(repo):
    repo.load([ev("plan.completed", plan_id="plan-1")])
    with pytest.raises(NotLoaded):
        repo.business_clock()


def test_each_mutating_method_counts_a_change(repo):
    repo.load([
        ev("installment.due-soon", plan_id="plan-1", seq=1),
        ev("business-day.closed", business_date=DAY),
    ])  # fmt: skip
    row = Installment("plan-1", 1, "acc-1")
    contact = Account("acc-1", "sms", "en", "ref", "active", "e")
    reminder = {"plan_id": "plan-1", "seq": 1, "offset_days": 7}
    calls = {
        "put_account": lambda: repo.put_account(contact),
        "add_installment": lambda: repo.add_installment(row),
        "installment_changed": lambda: repo.installment_changed(row),
        "add_reminder": lambda: repo.add_reminder(reminder),
        "set_plan_status": lambda: repo.set_plan_status("plan-1", "acc-1", "completed", "e"),
        "add_business_day": lambda: repo.add_business_day(DAY, "e"),
        "replace_schedule": lambda: repo.replace_schedule("plan-1", []),
    }
    assert set(calls) == MUTATES
    for name, call in calls.items():
        before = repo.changes
        call()
        assert repo.changes > before, name
    assert repo.has_business_day(DAY) and repo.handled_offsets("plan-1", 1) == {7}
