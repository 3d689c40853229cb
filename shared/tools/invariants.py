"""An independent checker of the pipeline's invariants, from what it emitted.

It reads the topics (inputs, outputs, dead letters) of a namespace and checks
what must hold whatever happened (crashes, duplicates, replays, rebalances):

- output event ids are unique: two records with one id carry the same bytes (a
  re-publish after a crash is allowed; two different events with one id are not);
- every valid input purchase, refund and payment has exactly one effect or one
  dead letter; every purchase is recorded at most once;
- at most one offer and at most one plan per purchase; Σ schedule principal of a
  plan = its principal = the recorded purchase amount; Σ fee = total fee;
- each installment is paid at most once;
- points: per account, each ``balance_after`` = the previous one ± points (the
  balance is the sum of the ledger), and a redemption never leaves it below zero;
- at most one reminder per (installment, days before due), and none dated after
  the installment was paid;
- escalation levels of a case are 1..k with no gap or repeat, at most one resolution.

It never reads a service's tables: it is a second opinion on their work.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from schemas import TOPICS, decode, dlq_topic
from shared.settings import Settings


@dataclass
class Raw:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]


@dataclass
class Report:
    checked: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checked[name] += 1
        if not ok:
            self.violations.append(f"{name}: {detail}")

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": dict(self.checked), "violations": self.violations}


def read_raw(settings: Settings, topic: str) -> list[Raw]:
    consumer = KafkaConsumer(
        **settings.kafka_client_config(),
        group_id=None,
        enable_auto_commit=False,
        client_id="invariants",
    )
    try:
        physical = settings.topic(topic)
        tps = [TopicPartition(physical, p) for p in consumer.partitions_for_topic(physical) or []]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[Raw] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for tp, records in consumer.poll(timeout_ms=500, max_records=10000).items():
                out.extend(
                    Raw(
                        topic,
                        r.partition,
                        r.offset,
                        r.key,
                        r.value,
                        {k: v.decode(errors="replace") for k, v in r.headers or []},
                    )
                    for r in records
                    if r.offset < ends[tp]
                )
        out.sort(key=lambda r: (r.partition, r.offset))
        return out
    finally:
        consumer.close()


def _events(raws: list[Raw]) -> list[Any]:
    """Decoded events, once per id (re-publishes collapsed), in partition order."""
    seen: set[str] = set()
    events = []
    for r in raws:
        try:
            e = decode(r.topic, r.key, r.value, max_bytes=1 << 20)
        except Exception:
            continue
        if e.id not in seen:
            seen.add(e.id)
            events.append(e)
    return events


def check(settings: Settings) -> Report:
    """Run every check over the namespace of ``settings``."""
    rep = Report()
    raw = {t: read_raw(settings, t) for t in TOPICS}
    dlq = {t: read_raw(settings, dlq_topic(t)) for t in TOPICS}
    ev = {t: _events(rs) for t, rs in raw.items()}

    # 1. ids are unique: one id, one content.
    for topic, records in raw.items():
        if TOPICS[topic].producer in ("card-system", "customer-channel"):
            continue
        by_id: dict[str, set[bytes]] = defaultdict(set)
        for r in records:
            try:
                by_id[decode(topic, r.key, r.value, max_bytes=1 << 20).id].add(r.value)
            except Exception:
                rep.check("output decodes", False, f"{topic}@{r.partition}:{r.offset}")
        for event_id, values in by_id.items():
            rep.check("output ids unique", len(values) == 1, f"{topic} id {event_id}")

    # 2. every valid input has one effect or one dead letter.
    dead = {
        (
            d.headers.get("original.topic"),
            int(d.headers.get("original.partition", -1)),
            int(d.headers.get("original.offset", -1)),
        )
        for recs in dlq.values()
        for d in recs
    }
    recorded = Counter(
        e.data.purchase_id for e in ev["purchases.recorded.v1"] if e.type == "purchase.recorded"
    )
    refunds_recorded = Counter(
        e.data.refund_id for e in ev["purchases.recorded.v1"] if e.type == "refund.recorded"
    )
    for pid, n in recorded.items():
        rep.check("purchase recorded once", n == 1, f"{pid} recorded {n} times")
    for rid, n in refunds_recorded.items():
        rep.check("refund recorded once", n == 1, f"{rid} recorded {n} times")
    causes = {e.causation_id for e in ev["purchases.recorded.v1"]}
    for r in raw["card.purchases.v1"]:
        try:
            e = decode("card.purchases.v1", r.key, r.value)
        except Exception:
            rep.check(
                "invalid input dead-lettered",
                ("card.purchases.v1", r.partition, r.offset) in dead,
                f"card.purchases.v1@{r.partition}:{r.offset}",
            )
            continue
        key = e.data.purchase_id if e.type == "purchase.posted" else e.data.refund_id
        effect = (
            e.id in causes
            or (recorded[key] if e.type == "purchase.posted" else refunds_recorded[key]) == 1
        )
        rep.check(
            "input has one effect or dead letter",
            effect or ("card.purchases.v1", r.partition, r.offset) in dead,
            f"{e.type} {key} has neither",
        )

    # 3. offers and plans.
    amounts = {
        e.data.purchase_id: e.data.amount
        for e in ev["purchases.recorded.v1"]
        if e.type == "purchase.recorded"
    }
    offers = Counter(
        e.data.purchase_id for e in ev["installments.offers.v1"] if e.type == "offer.made"
    )
    for pid, n in offers.items():
        rep.check("one offer per purchase", n == 1, f"{pid}: {n} offers")
    plans_per_purchase: Counter[str] = Counter()
    plan_lines: dict[str, dict[int, Decimal]] = {}
    paid: Counter[tuple[str, int]] = Counter()
    paid_on: dict[tuple[str, int], Any] = {}
    for e in ev["installments.plans.v1"]:
        d = e.data
        if e.type == "plan.created":
            plans_per_purchase[d.purchase_id] += 1
            principal = sum((line.principal for line in d.schedule), Decimal(0))
            fee = sum((line.fee for line in d.schedule), Decimal(0))
            rep.check(
                "Σ principal = plan principal",
                principal == d.principal,
                f"{d.plan_id}: {principal} != {d.principal}",
            )
            rep.check("Σ fee = total fee", fee == d.total_fee, f"{d.plan_id}: {fee}")
            if d.purchase_id in amounts:
                rep.check(
                    "plan principal = purchase amount",
                    d.principal == amounts[d.purchase_id],
                    f"{d.plan_id}: {d.principal} != {amounts[d.purchase_id]}",
                )
            plan_lines[d.plan_id] = {line.seq: line.amount for line in d.schedule}
        elif e.type == "installment.paid":
            paid[(d.plan_id, d.seq)] += 1
            paid_on[(d.plan_id, d.seq)] = d.paid_on
    for pid, n in plans_per_purchase.items():
        rep.check("one plan per purchase", n == 1, f"{pid}: {n} plans")
    for key, n in paid.items():
        rep.check("installment paid once", n == 1, f"{key}: paid {n} times")

    # 4. points: the balance is the sum of the ledger.
    balance: dict[str, int] = defaultdict(int)
    for e in ev["points.ledger.v1"]:
        d = e.data
        if e.type == "points.accrued":
            balance[d.account_id] += d.points
        elif e.type in ("points.reversed", "points.redeemed"):
            balance[d.account_id] -= d.points
        rep.check(
            "balance_after = Σ ledger",
            d.balance_after == balance[d.account_id],
            f"{d.account_id}: {d.balance_after} != {balance[d.account_id]}",
        )
        if e.type == "points.redeemed":
            rep.check("redemption never below zero", d.balance_after >= 0, d.account_id)

    # 5. reminders.
    reminders = Counter(
        (e.data.plan_id, e.data.seq, e.data.days_before_due) for e in ev["reminders.outbound.v1"]
    )
    for key, n in reminders.items():
        rep.check("one reminder per installment and offset", n == 1, f"{key}: {n}")
    for e in ev["reminders.outbound.v1"]:
        d = e.data
        sent_on = d.due_date - timedelta(days=d.days_before_due)
        when_paid = paid_on.get((d.plan_id, d.seq))
        rep.check(
            "no reminder for a paid installment",
            when_paid is None or when_paid >= sent_on,
            f"{d.plan_id}#{d.seq} paid {when_paid}, reminded for {sent_on}",
        )

    # 6. escalations.
    levels: dict[str, list[int]] = defaultdict(list)
    resolved: Counter[str] = Counter()
    for e in ev["collections.escalations.v1"]:
        if e.type == "escalation.raised":
            levels[e.data.case_id].append(e.data.level)
        else:
            resolved[e.data.case_id] += 1
    for case, seq in levels.items():
        rep.check("levels 1..k in order", seq == list(range(1, len(seq) + 1)), f"{case}: {seq}")
    for case, n in resolved.items():
        rep.check("one resolution per case", n == 1, f"{case}: {n}")
    return rep
