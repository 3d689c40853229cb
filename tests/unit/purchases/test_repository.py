"""The purchases batch repository: what each handler needs sits in PRELOAD (next to
HANDLERS); a getter refuses a key never preloaded; every change counts (``changes``)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from decimal import Decimal as D
from types import SimpleNamespace as NS
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from services.purchases.domain import RecordedPurchase
from services.purchases.handlers import HANDLERS, PRELOAD
from services.purchases.repository import NotLoaded, PurchasesRepository
from services.purchases.tables import MIGRATIONS
from shared.runtime.db import migrate

READS = {"purchase", "has_refund"}
MUTATES = {"add_purchase", "add_refund"}
LIFECYCLE = {"load", "save"}


@pytest.fixture
def repo(tmp_path) -> Iterator[PurchasesRepository]:
    engine = create_engine(f"sqlite:///{tmp_path}/purchases.sqlite3")
    migrate(engine, MIGRATIONS)
    with Session(engine) as session:
        yield PurchasesRepository(session, PRELOAD)
    engine.dispose()


def ev(kind: str, **data: Any) -> Any:
    return NS(type=kind, subject="acc-1", data=NS(**data))


def test_every_handled_event_has_its_preload_entry():
    assert set(PRELOAD) == set(HANDLERS)


def test_every_public_method_is_known_as_reading_or_mutating():
    public = {n for n, _ in inspect.getmembers(PurchasesRepository, inspect.isfunction)}
    assert {n for n in public if not n.startswith("_")} == READS | MUTATES | LIFECYCLE


def test_a_key_never_preloaded_is_refused_a_preloaded_missing_one_answers_none(repo):
    repo.load([ev("purchase.refunded", purchase_id="p1", refund_id="r1")])
    assert repo.purchase("p1") is None
    assert repo.has_refund("r1") is False
    with pytest.raises(NotLoaded):
        repo.purchase("p2")
    with pytest.raises(NotLoaded):
        repo.has_refund("r2")


def test_each_mutating_method_counts_a_change_and_its_key_counts_as_loaded(repo):
    repo.load([])
    calls = {
        "add_purchase": lambda: repo.add_purchase(
            RecordedPurchase("p1", "acc-1", D("10"), "EUR"), {"purchase_id": "p1"}
        ),
        "add_refund": lambda: repo.add_refund("p1", D("1"), {"refund_id": "r1"}),
    }
    assert set(calls) == MUTATES
    for name, call in calls.items():
        before = repo.changes
        call()
        assert repo.changes > before, name
    assert repo.purchase("p1") is not None and repo.has_refund("r1")
