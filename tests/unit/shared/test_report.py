"""The business report's figures, folded from events (no Kafka: `figures_from_events`)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from schemas import new_event, topic_for
from schemas.registry import EVENT_TYPES
from shared.ops.report import figures_from_events
from tests.builders.examples import PAYLOADS

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


class Story:
    """Events by topic, in time order, built from the contract's example payloads."""

    def __init__(self) -> None:
        self.events: dict[str, list[Any]] = {}
        self.minutes = 0

    def add(self, event_type: str, **changes: Any) -> None:
        data = copy.deepcopy(PAYLOADS[event_type])
        data.update(changes)
        self.minutes += 1
        env = new_event(
            event_type,
            data=EVENT_TYPES[event_type].model_validate(data),
            source="test",
            cause=None,
            rule=f"{event_type}:{self.minutes}",
            time=T0 + timedelta(minutes=self.minutes),
            subject=data.get("account_id", "acc-000123"),
        )
        self.events.setdefault(topic_for(event_type), []).append(env)


def _plan(story: Story, plan_id: str, account: str, purchase: str) -> None:
    story.add("plan.created", plan_id=plan_id, account_id=account, purchase_id=purchase)


def test_kpis_from_a_small_story():
    s = Story()
    for i, acc in enumerate(("acc-1", "acc-2", "acc-3")):
        s.add("purchase.recorded", purchase_id=f"p{i}", account_id=acc)
    s.add("offer.made", purchase_id="p0", account_id="acc-1", offer_id="o0")
    s.add("offer.made", purchase_id="p1", account_id="acc-2", offer_id="o1")
    s.add(
        "offer.not-eligible", purchase_id="p2", account_id="acc-3", reasons=["risk_score_too_low"]
    )
    _plan(s, "plan-a", "acc-1", "p0")  # 1000.00 over 3 (333.34 first)
    s.add("installment.paid", plan_id="plan-a", seq=1)
    s.add("points.accrued", account_id="acc-1", points=1000, balance_after=1000)
    s.add("reminder.requested", account_id="acc-1")
    s.add("account.delinquency", account_id="acc-1", days_past_due=8)

    r = figures_from_events(s.events)

    assert r["purchases"]["recorded"] == 3
    assert r["offers"]["made"] == 2
    assert r["offers"]["not_eligible_by_reason"] == {"risk_score_too_low": 1}
    assert r["plans"]["created"] == 1 and r["plans"]["accepted"] == 1
    assert r["plans"]["conversion_rate"] == "50.00%"  # 1 plan of 2 offers
    assert r["plans"]["installment_balance"] == "666.66"  # 1000.00 - 333.34 paid
    assert r["points"]["issued"] == 1000
    assert r["reminders"]["by_channel"] == {"sms": 1}
    assert r["risk"]["overdue_rate"] == "100.00%"  # acc-1 at DPD 8, the only one with a plan
    # M1 (DPD 8) reserves 5 % of 666.66
    assert r["risk"]["risk_reserve_total"] == "33.33"


def test_a_charged_off_account_leaves_the_balance_and_the_reserve():
    s = Story()
    _plan(s, "plan-a", "acc-1", "p0")
    _plan(s, "plan-b", "acc-2", "p1")
    s.add("account.delinquency", account_id="acc-1", days_past_due=180)
    s.add("escalation.resolved", account_id="acc-1", resolution="charged_off", amount="1022.50")

    r = figures_from_events(s.events)

    assert r["collections"]["charged_off"] == 1
    assert r["collections"]["written_off"] == "1022.50"
    # only acc-2's plan is still receivable, and reserved as current (1 %)
    assert r["plans"]["installment_balance"] == "1000.00"
    assert r["risk"]["risk_reserve_total"] == "10.00"
    # 1022.50 of 2000.00 converted: 51.125 %, rounded half even
    assert r["risk"]["bad_debt_rate"] == "51.12%"


def test_a_plan_created_after_the_charge_off_stays_receivable():
    s = Story()
    _plan(s, "plan-a", "acc-1", "p0")
    s.add("escalation.resolved", account_id="acc-1", resolution="charged_off", amount="1000.00")
    _plan(s, "plan-c", "acc-1", "p9")

    r = figures_from_events(s.events)

    assert r["plans"]["installment_balance"] == "1000.00"  # plan-c only


def test_second_release_sections_fraud_pre_approval_adjustments_restored_points():
    s = Story()
    # three flagged purchases: one cleared then auto-converted, one confirmed, one open
    for pid, flags in (("p1", ["velocity"]), ("p2", ["velocity", "amount_spike"])):
        s.add("purchase.flagged", purchase_id=pid, flags=flags)
    s.add("purchase.flagged", purchase_id="p3", flags=["cnp_new_merchant"])
    s.add("purchase.flagged", purchase_id="p3", flags=["cnp_new_merchant"])  # re-delivered
    s.add("purchase.review-closed", purchase_id="p1", outcome="cleared")
    s.add("purchase.review-closed", purchase_id="p2", outcome="confirmed_fraud")
    s.add("plan.created", plan_id="plan-c", purchase_id="p1", offer_id=None, auto_converted=True)
    # two pre-approved offers (one accepted), three ordinary offers (one accepted)
    for n, pre in enumerate((True, True, False, False, False)):
        s.add("offer.made", offer_id=f"o{n}", purchase_id=f"q{n}", pre_approved=pre)
    s.add("plan.created", plan_id="plan-a", purchase_id="q0", offer_id="o0")
    s.add("plan.created", plan_id="plan-b", purchase_id="q2", offer_id="o2")
    # plan-a: #1 paid, then a refund of 200.00 re-splits #2 and #3 (666.66 -> 466.66)
    s.add("installment.paid", plan_id="plan-a", seq=1)
    adjusted_lines = [
        {"seq": 2, "due_date": "2027-01-28", "principal": "233.33", "fee": "5.00"},
        {"seq": 3, "due_date": "2027-02-28", "principal": "233.33", "fee": "5.00"},
    ]
    s.add(
        "plan.adjusted",
        plan_id="plan-a",
        schedule=[
            {**line, "amount": str(Decimal(line["principal"]) + 5)} for line in adjusted_lines
        ],
    )
    s.add("points.redeemed", plan_id="plan-a", points=500, balance_after=500)
    s.add("points.restored", plan_id="plan-a", points=300, balance_after=800)

    r = figures_from_events(s.events)

    assert r["fraud"] == {
        "flagged": 3,
        "flagged_by_flag": {"velocity": 2, "amount_spike": 1, "cnp_new_merchant": 1},
        "cleared": 1,
        "confirmed_fraud": 1,
        "under_review": 1,
        "cleared_then_converted": 1,
    }
    assert r["pre_approval"] == {
        "offers_pre_approved": 2,
        "plans_pre_approved": 1,
        "conversion_pre_approved": "50.00%",
        "offers_ordinary": 3,
        "plans_ordinary": 1,
        "conversion_ordinary": "33.33%",
    }
    assert r["plans"]["adjusted"] == 1
    assert r["plans"]["principal_reduced"] == "200.00"
    # plan-a: 1000.00 - 333.34 paid - 200.00 refunded; plan-b and plan-c untouched
    assert r["plans"]["installment_balance"] == str(Decimal("466.66") + 2000)
    assert r["points"]["restored"] == 300
    assert r["points"]["redeemed"] == 500


def test_an_adjusted_line_paid_later_counts_at_its_new_principal():
    s = Story()
    _plan(s, "plan-a", "acc-1", "p0")
    s.add(
        "plan.adjusted",
        plan_id="plan-a",
        principal_reduced="400.00",
        schedule=[
            {"seq": n, "due_date": d, "principal": p, "fee": "0.00", "amount": p}
            for n, d, p in (
                (1, "2026-12-28", "200.00"),
                (2, "2027-01-28", "200.00"),
                (3, "2027-02-28", "200.00"),
            )
        ],
    )
    s.add("installment.paid", plan_id="plan-a", seq=1)

    r = figures_from_events(s.events)

    assert r["plans"]["installment_balance"] == "400.00"  # 600.00 left, 200.00 paid


def test_promises_kept_broken_open_and_cases_held():
    s = Story()
    for case in ("case-1", "case-2", "case-3", "case-4"):
        s.add("escalation.raised", case_id=case)

    def contact(contact_id: str, case: str, outcome: str) -> None:
        extra: dict[str, Any] = {}
        if outcome != "promise_to_pay":
            extra = {"promised_amount": None, "currency": None, "promised_date": None}
        s.add("contact.recorded", contact_id=contact_id, case_id=case, outcome=outcome, **extra)

    contact("c-1", "case-1", "promise_to_pay")
    contact("c-1", "case-1", "promise_to_pay")  # delivered twice: one contact
    contact("c-2", "case-2", "promise_to_pay")
    contact("c-3", "case-3", "promise_to_pay")
    contact("c-4", "case-4", "dispute")
    contact("c-5", "case-4", "dispute_resolved")
    contact("c-6", "case-4", "no_answer")
    contact("c-7", "case-unknown", "promise_to_pay")  # not a case raised: dead-lettered
    s.add("promise.kept", case_id="case-1", contact_id="c-1")
    s.add("promise.kept", case_id="case-1", contact_id="c-1")  # decided once
    s.add("promise.broken", case_id="case-2", contact_id="c-2")
    s.add("escalation.resolved", case_id="case-2")

    c = figures_from_events(s.events)["collections"]
    assert c["promises_made"] == 3
    assert (c["promises_kept"], c["promises_broken"], c["promises_open"]) == (1, 1, 1)
    assert c["promise_kept_rate"] == "50.00%"
    assert (c["disputes"], c["disputes_resolved"]) == (1, 1)
    assert c["cases_held"] == 4  # three promises and a dispute
    assert c["contacts_by_outcome"] == {
        "promise_to_pay": 3,
        "dispute": 1,
        "dispute_resolved": 1,
        "no_answer": 1,
    }
    assert c["cured"] + c["charged_off"] == 1  # promise events are not resolutions
