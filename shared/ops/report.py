"""The business report: the pipeline's performance indicators, rebuilt from its topics.

The report reads every output topic from the beginning and folds the events into
figures, so it works against any running system with nothing but Kafka access,
and it is an independent view: it never reads a service's tables.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from rich.table import Table

from schemas import TOPICS, decode
from services.collections.domain import risk_reserve
from shared.runtime.settings import Settings

ZERO = Decimal("0")


@dataclass
class _Plan:
    account_id: str
    principal: Decimal
    principal_by_seq: dict[int, Decimal]
    created: datetime | None = None  # the plan.created event's time
    paid: set[int] = field(default_factory=set)
    closed: bool = False  # completed, cancelled or written off by a charge-off
    returned: Decimal = ZERO

    def adjust(self, principal_reduced: Decimal, schedule: list[Any]) -> None:
        """A partial refund: ``principal_reduced`` comes off, the unpaid lines re-split."""
        self.returned += principal_reduced
        for line in schedule:
            self.principal_by_seq[line.seq] = line.principal

    @property
    def outstanding(self) -> Decimal:
        if self.closed:
            return ZERO
        paid = sum((self.principal_by_seq.get(s, ZERO) for s in self.paid), ZERO)
        return max(ZERO, self.principal - paid - self.returned)


def read_topic(settings: Settings, topic: str, max_bytes: int = 1 << 20) -> list[Any]:
    """Every event of a topic, from the beginning to the current end."""
    consumer = KafkaConsumer(
        **settings.kafka_client_config(),
        group_id=None,
        enable_auto_commit=False,
        client_id="report",
    )
    try:
        physical = settings.topic(topic)
        parts = consumer.partitions_for_topic(physical) or set()
        tps = [TopicPartition(physical, p) for p in parts]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        events: list[Any] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=500, max_records=10000).values():
                for r in records:
                    try:
                        events.append(decode(topic, r.key, r.value, max_bytes=max_bytes))
                    except Exception:  # a foreign message on our topic: not ours to count
                        continue
        events.sort(key=lambda e: e.time)
        return events
    finally:
        consumer.close()


#: What the report reads: every topic the services emit, and the customers' decisions.
REPORT_TOPICS = [
    t
    for t, spec in TOPICS.items()
    if not spec.producer.startswith("card") and spec.producer != "customer-channel"
] + ["installments.decisions.v1"]


def build_report(settings: Settings) -> dict[str, Any]:
    """All the figures, as a JSON-ready dict (money as strings), from the topics."""
    return figures_from_events({t: read_topic(settings, t) for t in REPORT_TOPICS})


def figures_from_events(ev: Mapping[str, list[Any]]) -> dict[str, Any]:
    """The report's figures from decoded events by topic (each list in time order).

    A charge-off (``escalation.resolved`` ``charged_off``) writes off the account's plans
    created before it: they leave the installment balance and the risk reserve (the
    amount is in ``written_off``), as they leave the collections service's reserve.

    Second release: a ``plan.adjusted`` (partial refund) lowers its plan's outstanding
    principal by ``principal_reduced`` and re-splits its unpaid lines; ``fraud`` counts the
    flagged purchases (by flag) and the fraud team's reviews (a purchase still flagged
    with no review closed is ``under_review``; ``cleared_then_converted`` are the plans of
    cleared purchases); ``pre_approval`` compares the offers made under a pre-approval
    (``pre_approved: true``) with ordinary ones: offers made, plans accepted from them and
    the conversion rate of each; ``collections`` adds the collections team's contacts,
    its promises kept / broken / still open and the cases held (:func:`_promises`).
    """
    ev = defaultdict(list, ev)
    decisions = ev["installments.decisions.v1"]

    recorded = [e for e in ev["purchases.recorded.v1"] if e.type == "purchase.recorded"]
    refunds = [e for e in ev["purchases.recorded.v1"] if e.type == "refund.recorded"]
    offers = Counter(e.type for e in ev["installments.offers.v1"])
    reasons: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    pre_approved_offer: dict[str, bool] = {}
    for e in ev["installments.offers.v1"]:
        if e.type == "offer.not-eligible":
            reasons.update(e.data.reasons)
        elif e.type == "offer.rejected":
            rejected[e.data.reason] += 1
        elif e.type == "offer.made":
            pre_approved_offer[e.data.offer_id] = bool(getattr(e.data, "pre_approved", False))

    plans: dict[str, _Plan] = {}
    auto = accepted = 0
    accepted_from: Counter[bool] = Counter()  # plans accepted, by the offer's pre_approved
    purchase_of_plan: dict[str, str] = {}
    cancelled: Counter[str] = Counter()
    waived = ZERO
    adjusted = 0
    principal_reduced = ZERO
    latest_dpd: dict[str, int] = {}
    for e in ev["installments.plans.v1"]:
        d = e.data
        if e.type == "plan.created":
            plans[d.plan_id] = _Plan(
                d.account_id,
                d.principal,
                {line.seq: line.principal for line in d.schedule},
                created=e.time,
            )
            auto += d.auto_converted
            accepted += not d.auto_converted
            purchase_of_plan[d.plan_id] = d.purchase_id
            if not d.auto_converted and d.offer_id in pre_approved_offer:
                accepted_from[pre_approved_offer[d.offer_id]] += 1
        elif e.type == "plan.adjusted" and d.plan_id in plans:
            adjusted += 1
            principal_reduced += d.principal_reduced
            plans[d.plan_id].adjust(d.principal_reduced, d.schedule)
        elif e.type == "installment.paid" and d.plan_id in plans:
            plans[d.plan_id].paid.add(d.seq)
        elif e.type == "plan.completed" and d.plan_id in plans:
            plans[d.plan_id].closed = True
        elif e.type == "plan.cancelled" and d.plan_id in plans:
            cancelled[d.reason] += 1
            plans[d.plan_id].closed = True
        elif e.type == "fee.waived":
            waived += d.amount
        elif e.type == "account.delinquency":
            latest_dpd[d.account_id] = d.days_past_due

    points: Counter[str] = Counter()
    for e in ev["points.ledger.v1"]:
        points[e.type] += e.data.points

    flags: Counter[str] = Counter()
    flagged: set[str] = set()
    for e in ev["purchases.recorded.v1"]:
        if e.type == "purchase.flagged" and e.data.purchase_id not in flagged:
            flagged.add(e.data.purchase_id)
            flags.update(e.data.flags)
    outcome: dict[str, str] = {}
    for e in ev["fraud.reviews.v1"]:
        if e.type == "purchase.review-closed" and e.data.purchase_id in flagged:
            outcome.setdefault(e.data.purchase_id, e.data.outcome)
    review_outcomes = Counter(outcome.values())
    cleared = {pid for pid, o in outcome.items() if o == "cleared"}

    reminders = Counter(e.data.channel for e in ev["reminders.outbound.v1"])
    levels: Counter[int] = Counter()
    resolutions: Counter[str] = Counter()
    written_off = ZERO
    charged_off_at: dict[str, list[datetime]] = defaultdict(list)
    for e in ev["collections.escalations.v1"]:
        if e.type == "escalation.raised":
            levels[e.data.level] += 1
        elif e.type == "escalation.resolved":
            resolutions[e.data.resolution] += 1
            if e.data.resolution == "charged_off" and e.data.amount is not None:
                written_off += e.data.amount
                charged_off_at[e.data.account_id].append(e.time)
    for plan in plans.values():
        if plan.created is not None and any(
            plan.created <= at for at in charged_off_at.get(plan.account_id, ())
        ):
            plan.closed = True  # written off: no longer receivable, nothing to reserve

    outstanding_by_account: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for plan in plans.values():
        outstanding_by_account[plan.account_id] += plan.outstanding
    balance = sum(outstanding_by_account.values(), ZERO)
    converted = sum((p.principal for p in plans.values()), ZERO)
    accounts_with_plans = {p.account_id for p in plans.values()}
    overdue = [a for a in accounts_with_plans if latest_dpd.get(a, 0) > 0]
    reserve = _risk_reserve(
        [(latest_dpd.get(a) or None, amt) for a, amt in outstanding_by_account.items()]
    )
    made = offers.get("offer.made", 0)
    made_pre_approved = sum(pre_approved_offer.values())
    made_ordinary = len(pre_approved_offer) - made_pre_approved
    return {
        "purchases": {
            "recorded": len(recorded),
            "refunds": len(refunds),
            "amount": _s(sum((e.data.amount for e in recorded), ZERO)),
        },
        "offers": {
            "made": made,
            "not_eligible": offers.get("offer.not-eligible", 0),
            "not_eligible_by_reason": dict(reasons.most_common()),
            "expired": offers.get("offer.expired", 0),
            "rejected_by_reason": dict(rejected),
            "decisions": dict(Counter(e.type for e in decisions)),
        },
        "fraud": {
            "flagged": len(flagged),
            "flagged_by_flag": dict(flags.most_common()),
            "cleared": review_outcomes.get("cleared", 0),
            "confirmed_fraud": review_outcomes.get("confirmed_fraud", 0),
            "under_review": len(flagged) - len(outcome),
            "cleared_then_converted": sum(1 for pid in purchase_of_plan.values() if pid in cleared),
        },
        "pre_approval": {
            "offers_pre_approved": made_pre_approved,
            "plans_pre_approved": accepted_from[True],
            "conversion_pre_approved": _rate(accepted_from[True], made_pre_approved),
            "offers_ordinary": made_ordinary,
            "plans_ordinary": accepted_from[False],
            "conversion_ordinary": _rate(accepted_from[False], made_ordinary),
        },
        "plans": {
            "created": len(plans),
            "accepted": accepted,
            "auto_converted": auto,
            "conversion_rate": _rate(accepted, made),
            "cancelled_by_reason": dict(cancelled),
            "adjusted": adjusted,
            "principal_reduced": _s(principal_reduced),
            "completed": sum(1 for e in ev["installments.plans.v1"] if e.type == "plan.completed"),
            "converted_principal": _s(converted),
            "installment_balance": _s(balance),
            "fees_waived": _s(waived),
        },
        "points": {
            "issued": points.get("points.accrued", 0),
            "redeemed": points.get("points.redeemed", 0),
            "reversed": points.get("points.reversed", 0),
            "restored": points.get("points.restored", 0),
            "redemptions_rejected": sum(
                1 for e in ev["points.ledger.v1"] if e.type == "points.redemption-rejected"
            ),
        },
        "reminders": {"by_channel": dict(reminders), "total": sum(reminders.values())},
        "collections": {
            "escalations_by_level": {str(k): v for k, v in sorted(levels.items())},
            "cured": resolutions.get("cured", 0),
            "charged_off": resolutions.get("charged_off", 0),
            "written_off": _s(written_off),
            **_promises(ev["collections.outcomes.v1"], ev["collections.escalations.v1"]),
        },
        "risk": {
            "overdue_rate": _rate(len(overdue), len(accounts_with_plans)),
            "bad_debt_rate": _rate(written_off, converted),
            "risk_reserve": {k: _s(v) for k, v in reserve.items()},
            "risk_reserve_total": _s(sum(reserve.values(), ZERO)),
        },
    }


def _promises(outcomes: list[Any], escalations: list[Any]) -> dict[str, Any]:
    """The collections team's contacts and what came of its promises (contract 5.1).

    Contacts count once each (by ``contact_id``) and only on a case the collections
    service raised. ``cases_held`` are the cases the ladder was held on at some time: a
    promise to pay or a dispute was recorded. A promise is decided once: the first
    ``promise.kept`` / ``promise.broken`` for its contact counts; one with neither is
    ``promises_open``.
    """
    raised = {e.data.case_id for e in escalations if e.type == "escalation.raised"}
    contacts: dict[str, Any] = {}
    for e in outcomes:
        if e.type == "contact.recorded" and e.data.case_id in raised:
            contacts.setdefault(e.data.contact_id, e.data)
    by_outcome = Counter(c.outcome for c in contacts.values())
    decided: dict[str, str] = {}
    for e in escalations:
        if e.type in ("promise.kept", "promise.broken"):
            decided.setdefault(e.data.contact_id, e.type.removeprefix("promise."))
    promises = {cid for cid, c in contacts.items() if c.outcome == "promise_to_pay"}
    kept = sum(1 for cid, how in decided.items() if how == "kept")
    broken = len(decided) - kept
    holds = ("promise_to_pay", "dispute")
    return {
        "contacts_by_outcome": dict(by_outcome.most_common()),
        "promises_made": len(promises),
        "promises_kept": kept,
        "promises_broken": broken,
        "promises_open": len(promises - set(decided)),
        "promise_kept_rate": _rate(kept, kept + broken),
        "disputes": by_outcome.get("dispute", 0),
        "disputes_resolved": by_outcome.get("dispute_resolved", 0),
        "cases_held": len({c.case_id for c in contacts.values() if c.outcome in holds}),
    }


def _risk_reserve(exposures: list[tuple[int | None, Decimal]]) -> dict[str, Decimal]:
    """The collections service's own rule (its domain module), over these exposures."""
    return dict(risk_reserve(exposures))


def _s(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


def _rate(part: Decimal | int, whole: Decimal | int) -> str:
    if not whole:
        return "0.00%"
    return f"{(Decimal(part) * 100 / Decimal(whole)).quantize(Decimal('0.01'))}%"


def render_report(report: dict[str, Any], console: Any) -> None:
    """Print the report as readable tables."""
    for section, figures in report.items():
        if section == "lag":
            lag = Table("consumer group", "topic", "lag", title="Lag", title_justify="left")
            for group, topics in figures.items():
                for topic, value in topics.items():
                    lag.add_row(group, topic, str(value))
            console.print(lag)
            continue
        table = Table(
            title=section.replace("_", " ").title(),
            show_header=False,
            title_justify="left",
            min_width=60,
        )
        table.add_column("figure", style="bold")
        table.add_column("value", justify="right")
        for name, value in figures.items():
            if isinstance(value, dict):
                value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
            table.add_row(name.replace("_", " "), str(value))
        console.print(table)
