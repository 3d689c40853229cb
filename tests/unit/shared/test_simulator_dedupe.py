"""The simulator reads the pipeline's outputs at least once: a plan.created delivered
twice (re-published after a crash, same id) must not make the customer owe twice.
Found by the fault suite: a payment of 387.18 for one 193.59 installment in the chaos run."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal

from schemas import decode, encode, new_event
from schemas.payloads import PlanCreated
from shared.tools.simulator import Account, Simulator
from tests.builders.examples import PAYLOADS

T0 = datetime(2026, 1, 5, 21, 0, tzinfo=UTC)


def test_a_plan_created_delivered_twice_is_owed_once(monkeypatch):
    sim = object.__new__(Simulator)  # no broker: only learn_plans is exercised
    sim.accounts = [Account("acc-1", "standard", "silver", "good", 0)]
    sim.dues = defaultdict(list)
    sim.plans_seen = set()
    sim.owed = {}
    sim._plans = None
    data = PlanCreated.model_validate({**PAYLOADS["plan.created"], "account_id": "acc-1"})
    plan = new_event(
        "plan.created",
        subject="acc-1",
        data=data,
        source="offers",
        cause=None,
        rule="plan",
        time=T0,
    )
    again = decode("installments.plans.v1", b"acc-1", encode(plan))
    monkeypatch.setattr(sim, "_drain", lambda *_a: [plan, again])
    sim.learn_plans()
    owed: list[tuple[date, Decimal]] = sim.dues["acc-1"]
    assert len(owed) == len(data.schedule)
    assert sum(amount for _due, amount in owed) == sum(line.amount for line in data.schedule)
