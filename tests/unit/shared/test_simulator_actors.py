"""The simulator's second-release actors, without a broker: the fraud team reads each
flagged purchase once, and customers pay what a plan.adjusted / plan.cancelled leaves."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal

from schemas import decode, encode, new_event
from shared.tools.simulator import Account, SimConfig, SimStats, Simulator
from tests.builders.examples import PAYLOADS

T0 = datetime(2026, 1, 5, 21, 0, tzinfo=UTC)


def _simulator(behaviour: str = "on_time") -> Simulator:
    sim = object.__new__(Simulator)  # no broker: the readers are replaced by lists
    sim.c = SimConfig(seed=7)
    sim.stats = SimStats()
    sim.accounts = [Account("acc-1", "standard", "silver", behaviour, 10)]
    sim.dues = defaultdict(list)
    sim.plans_seen = set()
    sim.owed = {}
    sim.flags_seen = set()
    sim.reviews = defaultdict(list)
    sim._recorded = sim._plans = sim._escalations = None
    return sim


def _event(event_type: str, rule: str, **changes):
    data = {**PAYLOADS[event_type], **changes}
    return new_event(
        event_type, data=data, source="test", cause=None, rule=rule, time=T0, subject="acc-1"
    )


def test_the_fraud_team_closes_each_flagged_purchase_once(monkeypatch):
    sim = _simulator()
    flags = [
        _event(
            "purchase.flagged",
            f"flag-{pid}",
            purchase_id=pid,
            account_id="acc-1",
            flags=flags,
            posted_at="2026-01-05T02:00:00Z",
        )
        for pid, flags in (("p-1", ["velocity"]), ("p-2", ["amount_spike"]))
    ]
    again = decode("purchases.recorded.v1", b"acc-1", encode(flags[0]))
    monkeypatch.setattr(sim, "_drain", lambda *_a: [*flags, again])
    sim.read_flags()
    closing = [(day, pid, outcome) for day, rs in sim.reviews.items() for _a, pid, outcome in rs]
    assert sorted(pid for _d, pid, _o in closing) == ["p-1", "p-2"]
    assert all(day in (date(2026, 1, 6), date(2026, 1, 7)) for day, _p, _o in closing)
    assert {o for _d, _p, o in closing} <= {"cleared", "confirmed_fraud"}

    # the same seed decides the same way
    twin = _simulator()
    monkeypatch.setattr(twin, "_drain", lambda *_a: flags)
    twin.read_flags()
    assert twin.reviews == sim.reviews


def test_customers_pay_the_adjusted_schedule_and_nothing_after_a_cancellation(monkeypatch):
    sim = _simulator(behaviour="partial")  # pays half of each installment
    created = _event("plan.created", "plan", account_id="acc-1")
    lines = created.data.schedule
    adjusted = _event(
        "plan.adjusted",
        "adjusted",
        account_id="acc-1",
        schedule=[
            {
                "seq": 2,
                "due_date": str(lines[1].due_date),
                "principal": "200.00",
                "fee": "5.00",
                "amount": "205.00",
            },
            {
                "seq": 3,
                "due_date": str(lines[2].due_date),
                "principal": "200.00",
                "fee": "5.00",
                "amount": "205.00",
            },
        ],
    )
    monkeypatch.setattr(sim, "_drain", lambda *_a: [created, adjusted, adjusted])
    sim.learn_plans()
    assert [amount for _due, amount in sim.dues["acc-1"]] == [
        (lines[0].amount / 2).quantize(Decimal("0.01")),
        Decimal("102.50"),
        Decimal("102.50"),
    ]

    cancelled = _event("plan.cancelled", "cancelled")
    monkeypatch.setattr(sim, "_drain", lambda *_a: [cancelled])
    sim.learn_plans()
    assert [amount for _due, amount in sim.dues["acc-1"]] == [Decimal(0)] * 3


def _team(monkeypatch, **rates) -> tuple[Simulator, list[dict]]:
    sim = _simulator()
    sim.c = SimConfig(seed=7, **rates)
    sent: list[dict] = []
    monkeypatch.setattr(sim, "_send", lambda _t, _type, _s, data, *_a, **_k: sent.append(data))
    return sim, sent


def _raised(case: str, on: str, level: int = 1):
    return _event(
        "escalation.raised",
        f"raised-{case}-{level}",
        case_id=case,
        account_id="acc-1",
        level=level,
        overdue_amount="340.84",
        business_date=on,
    )


def test_the_collections_team_records_a_promise_once_and_the_customer_keeps_it(monkeypatch):
    sim, sent = _team(monkeypatch, contact_rate=1.0, promise_share=1.0, promise_keep_rate=1.0)
    raised = _raised("case-1", "2026-01-05")
    again = decode("collections.escalations.v1", b"acc-1", encode(raised))
    monkeypatch.setattr(sim, "_drain", lambda *_a: [raised, again])
    sim.work_cases(date(2026, 1, 5))
    assert sent == []  # raised at today's close: the team calls tomorrow
    monkeypatch.setattr(sim, "_drain", lambda *_a: [])
    sim.work_cases(date(2026, 1, 6))
    assert len(sent) == 1  # read twice, called once
    promise = sent[0]
    assert promise["outcome"] == "promise_to_pay"
    assert promise["contacted_on"] == "2026-01-06"
    assert promise["promised_amount"] == "340.84" and promise["currency"] == "USD"
    promised_date = date.fromisoformat(promise["promised_date"])
    assert date(2026, 1, 7) <= promised_date <= date(2026, 2, 5)
    for n in range(7, 20):
        sim.work_cases(date(2026, 1, n))
    assert sim.dues["acc-1"] == [(promised_date, Decimal("340.84"))]
    assert len(sent) == 1  # held: no second promise

    # the same seed records the same contact
    twin, twin_sent = _team(monkeypatch, contact_rate=1.0, promise_share=1.0)
    monkeypatch.setattr(twin, "_drain", lambda *_a: [raised])
    twin.work_cases(date(2026, 1, 6))
    assert twin_sent == sent


def test_the_team_never_contacts_a_resolved_case_nor_pays_its_promise(monkeypatch):
    sim, sent = _team(monkeypatch, contact_rate=1.0, promise_share=1.0, promise_keep_rate=1.0)
    resolved = _event("escalation.resolved", "resolved", case_id="case-1", account_id="acc-1")
    monkeypatch.setattr(sim, "_drain", lambda *_a: [_raised("case-1", "2026-01-05"), resolved])
    sim.work_cases(date(2026, 1, 6))
    assert sent == []

    monkeypatch.setattr(sim, "_drain", lambda *_a: [_raised("case-2", "2026-01-05")])
    sim.work_cases(date(2026, 1, 6))
    promised_date = date.fromisoformat(sent[0]["promised_date"])
    cured = _event("escalation.resolved", "cured", case_id="case-2", account_id="acc-1")
    monkeypatch.setattr(sim, "_drain", lambda *_a: [cured])
    sim.work_cases(promised_date)
    assert sim.dues["acc-1"] == []  # cured before the promised date: nothing more to pay


def test_a_dispute_and_its_resolution_later(monkeypatch):
    sim, sent = _team(
        monkeypatch,
        contact_rate=1.0,
        promise_share=0.0,
        dispute_share=1.0,
        dispute_resolve_rate=1.0,
    )
    monkeypatch.setattr(sim, "_drain", lambda *_a: [_raised("case-1", "2026-01-05")])
    sim.work_cases(date(2026, 1, 6))
    monkeypatch.setattr(sim, "_drain", lambda *_a: [])
    for n in range(7, 31):
        sim.work_cases(date(2026, 1, n))
    assert [c["outcome"] for c in sent] == ["dispute", "dispute_resolved"]
    assert all("promised_amount" not in c for c in sent)
    assert date.fromisoformat(sent[1]["contacted_on"]) <= date(2026, 1, 26)
    assert len({c["contact_id"] for c in sent}) == 2
