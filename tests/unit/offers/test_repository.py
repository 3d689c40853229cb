"""The offers batch repository: what each handler needs sits in PRELOAD (next to HANDLERS);
a getter refuses a key never preloaded; every change counts (``changes``)."""

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

from services.offers import domain
from services.offers.handlers import HANDLERS, PRELOAD
from services.offers.repository import (
    Account,
    NotLoaded,
    Offer,
    OffersRepository,
    Plan,
    Position,
    Purchase,
    Review,
)
from services.offers.tables import MIGRATIONS
from shared.runtime.store import migrate

READS = {
    "account", "position", "plan", "plan_count", "account_currency", "open_installments",
    "plan_installments", "offer", "offer_option", "open_offers_expiring_by", "purchase",
    "has_payment", "has_refund", "business_day_closed", "last_business_date",
    "load_owing_accounts", "review",
}  # fmt: skip
MUTATES = {
    "put_account", "set_position", "update_plan", "add_plan", "save_installments",
    "add_offer", "close_offer", "add_purchase", "set_refunded_total", "add_payment",
    "add_refund", "add_waiver", "close_business_day", "set_purchase_outcome", "add_review",
}  # fmt: skip
LIFECYCLE = {"load", "load_keys", "save", "flush"}
DAY = date(2026, 1, 31)


@pytest.fixture
def repo(tmp_path) -> Iterator[OffersRepository]:
    engine = create_engine(f"sqlite:///{tmp_path}/offers.sqlite3")
    migrate(engine, MIGRATIONS)
    with Session(engine) as session:
        yield OffersRepository(session, PRELOAD)
    engine.dispose()


def ev(kind: str, subject: str = "acc-1", **data: Any) -> Any:
    return NS(type=kind, subject=subject, data=NS(**data))


def _account(account_id: str = "acc-1") -> Account:
    return Account(account_id, "active", "standard", "gold", D("5000"), None, 700, "EUR",
                   False, None, None, "e-1")  # fmt: skip


def _plan() -> Plan:
    return Plan("plan-p1", "p1", "off-p1", "acc-1", D("900"), "EUR", 3, D("0"), "0", False,
                0, DAY, 1, "active", D("0"), D("0"), "e-2")  # fmt: skip


def test_every_handled_event_has_its_preload_entry():
    assert set(PRELOAD) == set(HANDLERS)


def test_every_public_method_is_known_as_reading_or_mutating():
    public = {n for n, _ in inspect.getmembers(OffersRepository, inspect.isfunction)}
    public = {n for n in public if not n.startswith("_")}
    assert public == READS | MUTATES | LIFECYCLE, "classify the new method in this test"
    assert not READS & MUTATES


def test_a_key_never_preloaded_is_refused_a_preloaded_missing_one_answers_none(repo):
    repo.load([ev("purchase.recorded", account_id="acc-1", purchase_id="p1")])
    assert repo.purchase("p1") is None
    assert repo.account("acc-1") is None
    assert repo.position("acc-1") == Position()
    assert repo.open_installments("acc-1") == []
    for call in (
        lambda: repo.purchase("p2"),
        lambda: repo.account("acc-2"),
        lambda: repo.position("acc-2"),
        lambda: repo.open_installments("acc-2"),
        lambda: repo.offer("off-p1"),
        lambda: repo.offer_option("off-p1", 3),
        lambda: repo.has_payment("pay-1"),
        lambda: repo.has_refund("r-1"),
        lambda: repo.business_day_closed(DAY),
    ):
        with pytest.raises(NotLoaded):
            call()


def test_plans_are_known_by_id_or_through_their_purchases_account(repo):
    repo.load([
        ev("purchase.recorded", account_id="acc-1", purchase_id="p1"),
        ev("points.redeemed", account_id="acc-1", plan_id="plan-zz", points=1),
    ])  # fmt: skip
    assert repo.plan("plan-zz") is None  # asked for by id
    with pytest.raises(NotLoaded):
        repo.plan("plan-p1")  # purchase p1 not recorded: its account is not known
    repo.add_purchase(Purchase("p1", "acc-1", D("900"), "EUR", "5411", "m", None, DAY, D("0"),
                               "offered", "e"))  # fmt: skip
    assert repo.plan("plan-p1") is None  # acc-1's plans are all loaded


def test_keys_added_during_the_batch_count_as_loaded(repo):
    repo.load([ev("account.upserted", account_id="acc-1")])
    repo.add_payment({"payment_id": "pay-1"})
    repo.add_refund({"refund_id": "r-1"})
    repo.close_business_day(DAY, "e")
    assert repo.has_payment("pay-1") and repo.has_refund("r-1")
    assert repo.business_day_closed(DAY)


def test_each_mutating_method_counts_a_change(repo):
    repo.load([
        ev("account.upserted", account_id="acc-1"),
        ev("purchase.recorded", account_id="acc-1", purchase_id="p1"),
    ])  # fmt: skip
    option = domain.OfferOption(3, "flat_monthly", D("0"), D("0"), D("300"), D("300"), D("0"))
    offer = Offer("off-p1", "p1", "acc-1", D("900"), "EUR", DAY, None, "open", True, "e")
    schedule = domain.build_schedule(D("900"), D("0"), 3, DAY)
    calls = {
        "put_account": lambda: repo.put_account(_account()),
        "add_purchase": lambda: repo.add_purchase(
            Purchase("p1", "acc-1", D("900"), "EUR", "5411", "m", None, DAY, D("0"), "x", "e")
        ),
        "set_refunded_total": lambda: repo.set_refunded_total("p1", D("1")),
        "set_purchase_outcome": lambda: repo.set_purchase_outcome("p1", "fraud_confirmed"),
        "add_review": lambda: repo.add_review(Review("p1", "acc-1", "cleared", DAY, "e")),
        "add_offer": lambda: repo.add_offer(offer, [option]),
        "close_offer": lambda: repo.close_offer("off-p1", "declined"),
        "add_plan": lambda: repo.add_plan(_plan(), schedule),
        "update_plan": lambda: repo.update_plan("plan-p1", status="completed"),
        "save_installments": lambda: repo.save_installments(
            repo.open_installments("acc-1"),
            [domain.InstallmentState("plan-p1", 1, DAY, D("300"), D("0"), D("300"))],
        ),
        "set_position": lambda: repo.set_position("acc-1", Position(D("1"), None)),
        "add_payment": lambda: repo.add_payment({"payment_id": "pay-1"}),
        "add_refund": lambda: repo.add_refund({"refund_id": "r-1"}),
        "add_waiver": lambda: repo.add_waiver({"plan_id": "plan-p1"}),
        "close_business_day": lambda: repo.close_business_day(DAY, "e"),
    }
    assert set(calls) == MUTATES
    for name, call in calls.items():
        before = repo.changes
        call()
        assert repo.changes > before, name
