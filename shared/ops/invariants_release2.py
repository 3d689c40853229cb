"""The invariant checks of the second release (contract 5.1): points restored, adjusted
plans, fraud holds and promises to pay. Run by :func:`shared.ops.invariants.check` with
the others."""

from __future__ import annotations

import calendar
from collections import Counter, defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

from shared.ops.invariants_report import Report

ZERO = Decimal(0)


def check_points_restored(rep: Report, ev: dict[str, list[Any]]) -> None:
    """Restoration never creates points (contract 5.1, "Points restored").

    Per plan, in the ledger's order (one account, one partition): at each
    ``points.restored``, Σ restored so far ≤ Σ ``points.redeemed`` so far; and in the end
    Σ restored ≤ Σ ``points_to_restore`` of the plan's ``plan.cancelled`` / ``plan.adjusted``
    (the points service gives back only what the offers service said the removed fees
    had cost).
    """
    asked: Counter[str] = Counter()
    for e in ev.get("installments.plans.v1", []):
        if e.type in ("plan.cancelled", "plan.adjusted"):
            asked[e.data.plan_id] += e.data.points_to_restore
    redeemed: Counter[str] = Counter()
    restored: Counter[str] = Counter()
    for e in ev.get("points.ledger.v1", []):
        d = e.data
        if e.type == "points.redeemed":
            redeemed[d.plan_id] += d.points
        elif e.type == "points.restored":
            restored[d.plan_id] += d.points
            rep.check(
                "points restored never more than redeemed",
                restored[d.plan_id] <= redeemed[d.plan_id],
                f"{d.plan_id}: {restored[d.plan_id]} restored, {redeemed[d.plan_id]} redeemed",
            )
    for plan_id, points in restored.items():
        rep.check(
            "points restored only as the plan asked",
            points <= asked[plan_id],
            f"{plan_id}: {points} restored, points_to_restore {asked[plan_id]}",
        )


def check_plan_adjustments(rep: Report, ev: dict[str, list[Any]]) -> None:
    """Each ``plan.adjusted`` agrees with its refund and with the plan before it.

    The plan's installments are followed in the plans topic's order (one account, one
    partition): ``plan.created`` gives each installment's principal, ``installment.paid``
    marks it paid, an earlier ``plan.adjusted`` replaces the principal of the lines it
    lists. The unpaid principal before an adjustment is Σ principal of the installments
    not yet paid (a line's principal includes what was already paid on it, as in
    ``plan.created``). Then:

    - the plan is known, the refund is a recorded refund of the plan's purchase and
      ``principal_reduced`` = its amount (a partial refund below the unpaid principal is
      applied whole; a refund ≥ it cancels the plan instead of adjusting it);
    - the schedule lists only installments of the plan not yet paid;
    - Σ schedule principal = unpaid principal before − ``principal_reduced``;
    - each line's ``amount`` = its principal + its fee.
    """
    refunds = {
        e.data.refund_id: e.data
        for e in ev.get("purchases.recorded.v1", [])
        if e.type == "refund.recorded"
    }
    purchase_of: dict[str, str] = {}
    principal: dict[str, dict[int, Decimal]] = {}
    paid: dict[str, set[int]] = defaultdict(set)
    for e in ev.get("installments.plans.v1", []):
        d = e.data
        if e.type == "plan.created":
            if d.plan_id not in principal:
                purchase_of[d.plan_id] = d.purchase_id
                principal[d.plan_id] = {line.seq: line.principal for line in d.schedule}
        elif e.type == "installment.paid":
            paid[d.plan_id].add(d.seq)
        elif e.type == "plan.adjusted":
            lines = principal.get(d.plan_id)
            rep.check(
                "plan.adjusted of a known plan",
                lines is not None,
                f"{d.plan_id} adjusted before (or without) its plan.created",
            )
            if lines is None:
                continue
            refund = refunds.get(d.refund_id)
            rep.check(
                "plan.adjusted by a refund of its purchase",
                refund is not None and refund.purchase_id == purchase_of[d.plan_id],
                f"{d.plan_id}: refund {d.refund_id} is not a recorded refund of"
                f" {purchase_of[d.plan_id]}",
            )
            if refund is not None:
                rep.check(
                    "principal_reduced = the refund's amount",
                    d.principal_reduced == refund.amount,
                    f"{d.plan_id}: principal_reduced {d.principal_reduced},"
                    f" refund {d.refund_id} of {refund.amount}",
                )
            unpaid = sum((p for seq, p in lines.items() if seq not in paid[d.plan_id]), ZERO)
            after = sum((line.principal for line in d.schedule), ZERO)
            rep.check(
                "adjusted schedule lists unpaid installments only",
                all(line.seq in lines and line.seq not in paid[d.plan_id] for line in d.schedule),
                f"{d.plan_id}: schedule seqs {[line.seq for line in d.schedule]},"
                f" paid {sorted(paid[d.plan_id])} of {sorted(lines)}",
            )
            rep.check(
                "adjusted Σ principal = unpaid principal - principal_reduced",
                after == unpaid - d.principal_reduced and d.principal_reduced < unpaid,
                f"{d.plan_id}: schedule principal {after}, unpaid before {unpaid},"
                f" principal_reduced {d.principal_reduced}",
            )
            for line in d.schedule:
                rep.check(
                    "adjusted amount = principal + fee",
                    line.amount == line.principal + line.fee,
                    f"{d.plan_id}#{line.seq}: {line.amount} != {line.principal} + {line.fee}",
                )
                lines[line.seq] = line.principal


def check_fraud_holds(rep: Report, ev: dict[str, list[Any]]) -> None:
    """Flagged purchases wait for the fraud team (contract 5.1, "Fraud and velocity").

    - a purchase recorded with ``risk_flags`` has exactly one ``purchase.flagged``, with the
      same flags; a clean one has none;
    - no ``offer.made`` and no ``plan.created`` for a purchase whose review closed
      ``confirmed_fraud``;
    - a flagged purchase gets an ``offer.made`` or a ``plan.created`` (auto-converted or
      not) only when its review closed ``cleared``; its plan then counts from
      ``closed_on``: the first installment is due one calendar month after it (clamped to
      the end of a shorter month).

    Reviews come from another topic, so this checks outcomes, not the order of topics.
    """
    flags: dict[str, list[str]] = {}
    announced: dict[str, list[list[str]]] = defaultdict(list)
    for e in ev.get("purchases.recorded.v1", []):
        if e.type == "purchase.recorded":
            flags.setdefault(e.data.purchase_id, list(getattr(e.data, "risk_flags", [])))
        elif e.type == "purchase.flagged":
            announced[e.data.purchase_id].append(list(e.data.flags))
    for pid, recorded_flags in flags.items():
        expected = [recorded_flags] if recorded_flags else []
        rep.check(
            "flagged purchase announced once with its flags",
            announced.get(pid, []) == expected,
            f"{pid}: risk_flags {recorded_flags}, purchase.flagged {announced.get(pid, [])}",
        )
    reviews: dict[str, Any] = {}
    for e in ev.get("fraud.reviews.v1", []):
        if e.type == "purchase.review-closed":
            reviews.setdefault(e.data.purchase_id, e.data)

    def held(pid: str, what: str) -> None:
        review = reviews.get(pid)
        fraud = review is not None and review.outcome == "confirmed_fraud"
        rep.check(f"no {what} for a confirmed-fraud purchase", not fraud, f"{pid}: {what}")
        if flags.get(pid) and not fraud:
            rep.check(
                f"flagged purchase's {what} only once cleared",
                review is not None,
                f"{pid} flagged {flags[pid]}, {what} with its review still open",
            )

    for e in ev.get("installments.offers.v1", []):
        if e.type == "offer.made":
            held(e.data.purchase_id, "offer")
    for e in ev.get("installments.plans.v1", []):
        if e.type != "plan.created":
            continue
        d = e.data
        held(d.purchase_id, "auto-conversion" if d.auto_converted else "plan")
        review = reviews.get(d.purchase_id)
        if flags.get(d.purchase_id) and review is not None and review.outcome == "cleared":
            first = min(d.schedule, key=lambda line: line.seq)
            rep.check(
                "cleared purchase's plan counts from closed_on",
                first.due_date == _add_months(review.closed_on, 1),
                f"{d.plan_id}: first due {first.due_date}, review closed {review.closed_on}",
            )


def _add_months(start: date, months: int) -> date:
    """``start`` plus calendar months, the day clamped to the end of a shorter month."""
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def check_promises(rep: Report, ev: dict[str, list[Any]]) -> None:
    """Promise events only for recorded promises, each decided once (contract 5.1,
    "Contact outcomes and promises to pay").

    Each ``promise.kept`` / ``promise.broken`` names a ``contact.recorded`` with outcome
    ``promise_to_pay`` on the same case and account, for the same amount; a contact gets
    at most one of them; a broken promise is decided no earlier than the close of
    promised_date + 3.
    """
    promises = {
        e.data.contact_id: e.data
        for e in ev.get("collections.outcomes.v1", [])
        if e.type == "contact.recorded" and e.data.outcome == "promise_to_pay"
    }
    decided: Counter[str] = Counter()
    for e in ev.get("collections.escalations.v1", []):
        if e.type not in ("promise.kept", "promise.broken"):
            continue
        d = e.data
        decided[d.contact_id] += 1
        p = promises.get(d.contact_id)
        rep.check(
            "promise event only for a recorded promise",
            p is not None
            and (p.case_id, p.account_id, p.promised_amount)
            == (d.case_id, d.account_id, d.promised_amount),
            f"{e.type} {d.contact_id} on case {d.case_id}",
        )
        if e.type == "promise.broken" and p is not None and p.promised_date is not None:
            rep.check(
                "promise broken only at the close of promised date + 3",
                (d.business_date - p.promised_date).days >= 3,
                f"{d.contact_id}: promised {p.promised_date}, broken {d.business_date}",
            )
    for contact_id, n in decided.items():
        rep.check("each promise decided once", n == 1, f"{contact_id} decided {n} times")
