"""The points batch repository: what each handler needs sits in PRELOAD (next to HANDLERS);
a getter refuses a key never preloaded; every change counts (``changes``)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from decimal import Decimal as D
from types import SimpleNamespace as NS
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from services.points.handlers import HANDLERS, PRELOAD
from services.points.repository import NotLoaded, Plan, PointsRepository, Purchase
from services.points.tables import MIGRATIONS
from shared.runtime.store import migrate

READS = {"account", "balance", "purchase", "plan", "bonus_plan", "restoration",
         "restored_total"}  # fmt: skip
MUTATES = {
    "set_tier", "mark_first_plan", "add_purchase", "record_refund", "add_plan",
    "record_cancellation", "record_bonus_reversal", "append_entry", "add_restoration",
}  # fmt: skip
LIFECYCLE = {"load", "save"}


@pytest.fixture
def repo(tmp_path) -> Iterator[PointsRepository]:
    engine = create_engine(f"sqlite:///{tmp_path}/points.sqlite3")
    migrate(engine, MIGRATIONS)
    with Session(engine) as session:
        yield PointsRepository(session, PRELOAD)
    engine.dispose()


def ev(kind: str, subject: str = "acc-1", **data: Any) -> Any:
    return NS(type=kind, subject=subject, data=NS(**data))


def test_every_handled_event_has_its_preload_entry():
    assert set(PRELOAD) == set(HANDLERS)


def test_every_public_method_is_known_as_reading_or_mutating():
    public = {n for n, _ in inspect.getmembers(PointsRepository, inspect.isfunction)}
    assert {n for n in public if not n.startswith("_")} == READS | MUTATES | LIFECYCLE


def test_a_key_never_preloaded_is_refused_a_preloaded_missing_one_answers_none(repo):
    repo.load([ev("refund.recorded", account_id="acc-1", purchase_id="p1")])
    assert repo.account("acc-1").tier is None
    assert repo.balance("acc-1") == 0
    assert repo.purchase("p1") is None
    assert repo.bonus_plan("p1") is None
    for call in (
        lambda: repo.account("acc-2"),
        lambda: repo.balance("acc-2"),
        lambda: repo.purchase("p2"),
        lambda: repo.plan("plan-p1"),
        lambda: repo.bonus_plan("p2"),
    ):
        with pytest.raises(NotLoaded):
            call()


def _purchase() -> Purchase:
    return Purchase("p1", "acc-1", D("100"), "EUR", "gold", False, 120, 0, D("0"), "e")


def _plan() -> Plan:
    return Plan("plan-p1", "acc-1", "p1", D("100"), D("2"), "EUR", 120, "purchase", 0, D("0"),
                0, 0, D("0"), "e")  # fmt: skip


def test_keys_added_during_the_batch_count_as_loaded(repo):
    repo.load([ev("account.upserted", account_id="acc-1")])
    repo.add_purchase(_purchase())
    repo.add_plan(_plan())
    assert repo.purchase("p1") is not None and repo.plan("plan-p1") is not None
    assert repo.bonus_plan("p1") is not None


def test_restorations_are_read_only_for_preloaded_plans(repo):
    repo.load([ev("plan.adjusted", plan_id="plan-p1")])
    assert repo.restoration("plan-p1", "adjusted:r1") is None
    assert repo.restored_total("plan-p1") == 0
    repo.add_restoration({"plan_id": "plan-p1", "cause_key": "adjusted:r1", "restored": 7})
    assert repo.restored_total("plan-p1") == 7
    with pytest.raises(NotLoaded):
        repo.restored_total("plan-p2")


def test_each_mutating_method_counts_a_change(repo):
    repo.load([ev("purchase.recorded", account_id="acc-1", purchase_id="p1"),
               ev("plan.cancelled", plan_id="plan-p1")])  # fmt: skip
    calls = {
        "set_tier": lambda: repo.set_tier("acc-1", "gold"),
        "add_purchase": lambda: repo.add_purchase(_purchase()),
        "record_refund": lambda: repo.record_refund("p1", 10, D("10")),
        "add_plan": lambda: repo.add_plan(_plan()),
        "mark_first_plan": lambda: repo.mark_first_plan("acc-1", "plan-p1"),
        "record_cancellation": lambda: repo.record_cancellation("plan-p1", D("10")),
        "record_bonus_reversal": lambda: repo.record_bonus_reversal("plan-p1", 12),
        "append_entry": lambda: repo.append_entry({"account_id": "acc-1", "balance_after": 5}),
        "add_restoration": lambda: repo.add_restoration(
            {"plan_id": "plan-p1", "cause_key": "cancelled", "restored": 0}
        ),
    }
    assert set(calls) == MUTATES
    for name, call in calls.items():
        before = repo.changes
        call()
        assert repo.changes > before, name
