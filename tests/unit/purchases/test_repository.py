"""The purchases batch repository: what each handler needs sits in PRELOAD (next to
HANDLERS); a getter refuses a key never preloaded; every change counts (``changes``)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
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
from shared.runtime.store import migrate

READS = {"purchase", "has_refund", "card_times", "amount_history", "merchant_seen"}
MUTATES = {"add_purchase", "add_refund", "remember_screening"}
LIFECYCLE = {"load", "save"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def repo(request, tmp_path) -> Iterator[PurchasesRepository]:
    """On SQLite, and on PostgreSQL (the writes there are arrays joined through unnest)."""
    url = (
        request.getfixturevalue("pg_database")
        if request.param == "postgresql"
        else f"sqlite:///{tmp_path}/purchases.sqlite3"
    )
    engine = create_engine(url)
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


def test_screening_state_is_refused_for_an_account_or_merchant_never_preloaded(repo):
    repo.load(
        [ev("purchase.posted", purchase_id="p1", account_id="acc-1", merchant=NS(merchant_id="m1"))]
    )
    assert repo.card_times("acc-1", "tok") == ()
    assert repo.amount_history("acc-1") == ()
    assert repo.merchant_seen("acc-1", "m1") is False
    with pytest.raises(NotLoaded):
        repo.card_times("acc-2", "tok")
    with pytest.raises(NotLoaded):
        repo.amount_history("acc-2")
    with pytest.raises(NotLoaded):
        repo.merchant_seen("acc-1", "m2")


T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


def test_each_mutating_method_counts_a_change_and_its_key_counts_as_loaded(repo):
    repo.load(
        [ev("purchase.posted", purchase_id="p0", account_id="acc-1", merchant=NS(merchant_id="m0"))]
    )
    calls = {
        "add_purchase": lambda: repo.add_purchase(
            RecordedPurchase("p1", "acc-1", D("10"), "EUR"), {"purchase_id": "p1"}
        ),
        "add_refund": lambda: repo.add_refund("p1", D("1"), {"refund_id": "r1"}),
        "remember_screening": lambda: repo.remember_screening(
            "acc-1", "tok", "p1", T0, D("10"), "m1", keep_times_from=T0, keep_amounts=20
        ),
    }
    assert set(calls) == MUTATES
    for name, call in calls.items():
        before = repo.changes
        call()
        assert repo.changes > before, name
    assert repo.purchase("p1") is not None and repo.has_refund("r1")
    assert repo.merchant_seen("acc-1", "m1") and repo.amount_history("acc-1") == (D("10"),)


def _reopen(repo: PurchasesRepository, accounts: list[str]) -> PurchasesRepository:
    repo.save()
    repo.session.commit()
    fresh = PurchasesRepository(repo.session, PRELOAD)
    fresh.load(
        [
            ev("purchase.posted", purchase_id="x", account_id=a, merchant=NS(merchant_id="m1"))
            for a in accounts
        ]
    )
    return fresh


def test_screening_state_is_pruned_in_memory_and_in_the_database(repo):
    """Card times older than keep_times_from and amounts beyond keep_amounts go, from the
    batch view and (deleted) from the tables, whether written in this batch or before."""
    repo.load(
        [ev("purchase.posted", purchase_id="p0", account_id="acc-1", merchant=NS(merchant_id="m1"))]
    )
    for i in range(3):
        at = T0 + timedelta(minutes=i)
        repo.remember_screening(
            "acc-1",
            "tok",
            f"p{i}",
            at,
            D(i + 1),
            "m1",
            keep_times_from=at - timedelta(minutes=1),
            keep_amounts=2,
        )
    assert repo.card_times("acc-1", "tok") == (T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))
    assert repo.amount_history("acc-1") == (D(2), D(3))
    repo = _reopen(repo, ["acc-1"])
    assert repo.card_times("acc-1", "tok") == (T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))
    assert repo.amount_history("acc-1") == (D(2), D(3))
    assert repo.merchant_seen("acc-1", "m1")
    at = T0 + timedelta(minutes=30)
    repo.remember_screening(
        "acc-1", "tok", "p9", at, D(9), "m1", keep_times_from=at, keep_amounts=2
    )
    repo = _reopen(repo, ["acc-1"])
    assert repo.card_times("acc-1", "tok") == (at,)
    assert repo.amount_history("acc-1") == (D(3), D(9))
