"""An independent checker of the pipeline's invariants, from what it emitted.

It reads the topics (inputs, outputs, dead letters) of a namespace and checks
what must hold whatever happened (crashes, duplicates, replays, rebalances):

- output event ids are unique: two records with one id carry the same bytes (a
  re-publish after a crash is allowed; two different events with one id are not);
- every valid input purchase, refund and payment has exactly one effect or one
  dead letter; every purchase is recorded at most once;
- at most one offer and at most one plan per purchase; Σ schedule principal of a
  plan = its principal = the recorded purchase amount; Σ fee = total fee;
- each installment is paid at most once, and never more than due: per installment of
  a plan never refunded, at most its schedule line; per plan, at most principal + fee
  minus waivers and what its cancellation returned (``check_money_paid``);
- money applied never exceeds money received: per account, Σ ``installment.paid`` up to
  each payment's effects ≤ Σ payments so far + Σ refunds;
- points: per account, each ``balance_after`` = the previous one ± points (the
  balance is the sum of the ledger), and a redemption never leaves it below zero;
  per plan, restoration creates no points: Σ ``points.restored`` ≤ Σ ``points.redeemed``
  at every restoration, and ≤ Σ ``points_to_restore`` the offers service asked for
  (``check_points_restored``);
- adjusted plans add up (``check_plan_adjustments``): each ``plan.adjusted`` is of a
  known plan and a recorded refund of its purchase, ``principal_reduced`` = that
  refund's amount (a partial refund is applied whole; one ≥ the unpaid principal
  cancels instead), its schedule lists only unpaid installments, Σ its principal = the
  previous unpaid principal − ``principal_reduced``, each ``amount`` = principal + fee;
- fraud holds (``check_fraud_holds``): a purchase recorded with ``risk_flags`` has one
  ``purchase.flagged`` with those flags; no offer and no plan for a purchase the fraud
  team confirmed as fraud; a flagged purchase is offered or converted (auto-converted
  included) only once the review cleared it, and then its plan's first installment is
  due one month after ``closed_on`` (the purchase is considered afresh as of that date);
- promises (``check_promises``): a ``promise.kept`` / ``promise.broken`` only for a
  recorded ``promise_to_pay`` contact (same case, account and amount), each promise
  decided once, a broken one no earlier than the close of promised_date + 3;
- at most one reminder per (installment, days before due), and none dated after
  the installment was paid;
- escalation levels of a case are 1..k with no gap or repeat, at most one resolution.

It never reads a service's tables: it is a second opinion on their work. The topics
are read by :mod:`shared.ops.topic_reader`. The one check that needs the system while
it runs, "stored offsets never move backwards", is
:class:`shared.ops.offset_watch.OffsetWatch` (used by the fault suite): it samples the
stored offsets and the Kafka-committed offsets during the run.

The second release's checks (``check_points_restored``, ``check_plan_adjustments``,
``check_fraud_holds``, ``check_promises``) live in :mod:`shared.ops.invariants_release2`, the
:class:`Report` in :mod:`shared.ops.invariants_report`; both are importable from here.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta
from decimal import Decimal
from typing import Any

from schemas import TOPICS, decode, dlq_topic
from schemas.registry import EXTERNAL_PRODUCERS
from shared.ops.invariants_release2 import (
    ZERO,
    check_fraud_holds,
    check_plan_adjustments,
    check_points_restored,
    check_promises,
)
from shared.ops.invariants_report import Report
from shared.ops.topic_reader import Raw, read_raw
from shared.runtime.settings import Settings

__all__ = [
    "ZERO",
    "Report",
    "check",
    "check_fraud_holds",
    "check_money_paid",
    "check_plan_adjustments",
    "check_points_restored",
    "check_promises",
]


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
        if TOPICS[topic].producer in EXTERNAL_PRODUCERS:
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
    check_money_paid(rep, ev)

    # 4. points: the balance is the sum of the ledger.
    balance: dict[str, int] = defaultdict(int)
    for e in ev["points.ledger.v1"]:
        d = e.data
        if e.type in ("points.accrued", "points.restored"):
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
    check_points_restored(rep, ev)
    check_plan_adjustments(rep, ev)
    check_fraud_holds(rep, ev)
    check_promises(rep, ev)

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
        elif e.type == "escalation.resolved":  # a promise kept / broken resolves nothing
            resolved[e.data.case_id] += 1
    for case, seq in levels.items():
        rep.check("levels 1..k in order", seq == list(range(1, len(seq) + 1)), f"{case}: {seq}")
    for case, n in resolved.items():
        rep.check("one resolution per case", n == 1, f"{case}: {n}")
    return rep


def check_money_paid(rep: Report, ev: dict[str, list[Any]]) -> None:
    """Payments never more than due, and never more than was received (from topics only).

    ``installment.paid.amount`` is everything paid on that installment (fee + principal,
    over every payment and credit that went into it); it is emitted once, when nothing
    is left to pay. So:

    - per plan: Σ installment.paid ≤ principal + total fee of ``plan.created`` − Σ
      ``fee.waived`` − the ``principal_returned + fee_returned`` of its ``plan.cancelled``
      (early payoff; for a refund only ``principal_returned``: its ``fee_returned`` may
      include fees paid early and given back as credit, still in ``installment.paid``).
      A partial refund lowers what is due without an event on the plans topic: ignoring
      it only makes the bound looser, never wrong;
    - per installment of a plan whose purchase was never refunded: paid ≤ the amount of
      that line of the schedule (waivers and payoffs only lower it; a refund re-splits
      the remaining principal, which may move principal onto a partly paid line);
    - per account: money comes only from payments and refunds (overpayments and refund
      excess become credit that later pays). ``installment.paid`` caused by a payment
      (``causation_id`` = the ``payment.received`` event) is emitted when the payments
      of that account up to this one (the offers service applies them in partition
      order) have been applied, so the account's running Σ installment.paid, in the
      plans topic's order, up to that event ≤ Σ distinct payments up to that payment
      + Σ its refunds; and in the end Σ installment.paid ≤ Σ payments + Σ refunds.
      (``installment.paid`` caused by other events, e.g. the end of day spending
      credit, count in the running Σ and in the final bound.) Fees a refund gives back
      as credit were already counted once when paid, so the bounds also add the
      ``fee_returned`` of the account's refund ``plan.cancelled`` (at most those fees).
    """
    zero = Decimal(0)
    # payments: running Σ of distinct payment ids per account, at each payment event
    received: dict[tuple[str, str], Decimal] = defaultdict(lambda: zero)
    seen_payments: set[str] = set()
    received_at_event: dict[str, tuple[tuple[str, str], Decimal]] = {}
    for e in ev.get("card.payments.v1", []):
        if e.type != "payment.received":
            continue
        d = e.data
        key = (d.account_id, d.currency)
        if d.payment_id not in seen_payments:
            seen_payments.add(d.payment_id)
            received[key] += d.amount
        received_at_event[e.id] = (key, received[key])
    refunded: dict[tuple[str, str], Decimal] = defaultdict(lambda: zero)
    refunded_purchases: set[str] = set()
    seen_refunds: set[str] = set()
    for e in ev.get("purchases.recorded.v1", []):
        if e.type == "refund.recorded" and e.data.refund_id not in seen_refunds:
            seen_refunds.add(e.data.refund_id)
            refunded[(e.data.account_id, e.data.currency)] += e.data.amount
            refunded_purchases.add(e.data.purchase_id)

    # fees a refund may give back as credit (a bound: fee_returned also has unpaid fees)
    owner: dict[str, str] = {}
    fees_back: dict[tuple[str, str], Decimal] = defaultdict(lambda: zero)
    for e in ev.get("installments.plans.v1", []):
        if e.type == "plan.created":
            owner.setdefault(e.data.plan_id, e.data.account_id)
        elif e.type == "plan.cancelled" and e.data.reason == "refund":
            if e.data.plan_id in owner:
                fees_back[(owner[e.data.plan_id], e.data.currency)] += e.data.fee_returned

    plans: dict[str, Any] = {}
    lines: dict[tuple[str, int], Decimal] = {}
    lowered: dict[str, Decimal] = defaultdict(lambda: zero)
    paid_per_plan: dict[str, Decimal] = defaultdict(lambda: zero)
    paid_per_account: dict[tuple[str, str], Decimal] = defaultdict(lambda: zero)
    for e in ev.get("installments.plans.v1", []):
        d = e.data
        if e.type == "plan.created":
            plans.setdefault(d.plan_id, d)
            for line in d.schedule:
                lines.setdefault((d.plan_id, line.seq), line.amount)
        elif e.type == "fee.waived":
            lowered[d.plan_id] += d.amount
        elif e.type == "plan.cancelled":
            lowered[d.plan_id] += d.principal_returned
            if d.reason != "refund":
                lowered[d.plan_id] += d.fee_returned
        elif e.type == "installment.paid":
            plan = plans.get(d.plan_id)
            rep.check(
                "installment.paid of a known plan",
                plan is not None,
                f"{d.plan_id}#{d.seq} paid before (or without) its plan.created",
            )
            if plan is None:
                continue
            paid_per_plan[d.plan_id] += d.amount
            if plan.purchase_id not in refunded_purchases:
                due = lines.get((d.plan_id, d.seq))
                rep.check(
                    "installment paid at most its scheduled amount",
                    due is not None and d.amount <= due,
                    f"{d.plan_id}#{d.seq}: paid {d.amount}, scheduled {due}",
                )
            account = (plan.account_id, d.currency)
            paid_per_account[account] += d.amount
            if e.causation_id in received_at_event:
                key, so_far = received_at_event[e.causation_id]
                bound = so_far + refunded[key] + fees_back[key]
                rep.check(
                    "payment never applies more than received",
                    key == account and paid_per_account[account] <= bound,
                    f"{plan.account_id}: {paid_per_account[account]} paid on installments"
                    f" by payment event {e.causation_id}, only {bound} received"
                    f" ({so_far} paid in + {refunded[key]} refunded"
                    f" + {fees_back[key]} fees returned)",
                )
    for plan_id, total in paid_per_plan.items():
        plan = plans[plan_id]
        due = plan.principal + plan.total_fee - lowered[plan_id]
        rep.check(
            "plan paid at most what it was due",
            total <= due,
            f"{plan_id}: paid {total}, due at most {due}"
            f" ({plan.principal} + fee {plan.total_fee} - {lowered[plan_id]} waived/returned)",
        )
    for account, total in paid_per_account.items():
        bound = received[account] + refunded[account] + fees_back[account]
        rep.check(
            "account paid at most what it received",
            total <= bound,
            f"{account[0]}: {total} paid on installments, {received[account]} received"
            f" + {refunded[account]} refunded + {fees_back[account]} fees returned",
        )
