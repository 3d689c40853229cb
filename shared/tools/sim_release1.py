"""The simulator's first-release actors: the card system opens the accounts and posts
ordinary purchases, the customer channel answers the offers, and customers pay what
their plans say, each as their behaviour goes (on time, late, partial, never).
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from shared.tools.sim_world import (
    BEHAVIOURS,
    CHANNELS,
    MERCHANTS,
    SEGMENTS,
    TIERS,
    Account,
    Owed,
    SimWorld,
    _money,
    _pick,
    _ts,
)


class FirstReleaseActors(SimWorld):
    """Accounts, ordinary purchases, decisions on offers and payments."""

    def open_accounts(self) -> None:
        for i in range(self.c.accounts):
            acc_id = f"acc-{self.c.seed}-{i:06d}"
            rng = self._rng("account", acc_id)
            segment, tier = _pick(rng, SEGMENTS), _pick(rng, TIERS)
            limit = Decimal(rng.choice([2000, 5000, 8000, 12000, 20000, 50000]))
            if segment == "high_net_worth":
                limit *= 5
            status = "active" if rng.random() > 0.03 else "blocked"
            data: dict[str, Any] = {
                "account_id": acc_id,
                "status": status,
                "segment": segment,
                "tier": tier,
                "credit_limit": _money(limit),
                "risk_score": rng.randint(520, 900),
                "currency": "USD",
                "contact": {
                    "channel": _pick(rng, CHANNELS),
                    "locale": "en-US",
                    "contact_ref": f"cref-{acc_id}",
                },
            }
            if rng.random() < self.c.auto_convert_rate:
                data["auto_convert"] = {
                    "enabled": True,
                    "threshold": "1000.00",
                    "tenor_months": rng.choice([6, 12]),
                }
            pre = self._rng("pre-approval", acc_id)
            if pre.random() < self.c.pre_approval_rate:
                data["pre_approval"] = {
                    "limit": _money(Decimal(pre.choice([3000, 5000, 10000, 20000]))),
                    "valid_to": (self.c.start + timedelta(days=pre.randint(20, 120))).isoformat(),
                    "fee_discount": pre.choice(["0.10", "0.20", "0.25"]),
                }
                self.stats.pre_approved_accounts += 1
            self._send(
                "card.accounts.v1",
                "account.upserted",
                acc_id,
                data,
                _ts(self.c.start - timedelta(days=1), 3600),
                (acc_id,),
            )
            behaviour = _pick(rng, BEHAVIOURS)
            self.accounts.append(Account(acc_id, segment, tier, behaviour, rng.randint(5, 45)))
        self.stats.accounts = len(self.accounts)

    def post_ordinary_purchase(self, acc: Account, day: date) -> None:
        rng = self._rng("purchases", acc.account_id, day)
        if rng.random() >= self.c.purchases_per_account_day:
            return
        mid, name, mcc, category, _w, (lo, hi) = _pick(rng, [(m, m[4]) for m in MERCHANTS])
        amount = Decimal(rng.randint(lo * 100, hi * 100)) / 100
        merchant: dict[str, Any] = {"merchant_id": mid, "name": name, "mcc": mcc}
        if category:
            merchant["category"] = category
        last4 = f"{rng.randint(0, 9999):04d}"  # drawn in the first release's order
        channel = rng.choice(["pos", "ecommerce", "moto"])
        posted_at = _ts(day, rng.randint(8 * 3600, 20 * 3600))
        pid = self._ref("pur", acc.account_id, day)
        self._purchase(
            acc, day, pid, amount, merchant, channel=channel, posted_at=posted_at, last4=last4
        )

    def answer_offers(self, day: date) -> None:
        for event in self._drain(self._offers, "installments.offers.v1"):
            if event.type != "offer.made":
                continue
            offer = event.data
            rng = self._rng("decision", offer.offer_id)
            roll = rng.random()
            uplift = self.c.pre_approved_accept_uplift if offer.pre_approved else 0.0
            if roll < self.c.accept_rate + uplift:
                option = rng.choice(offer.options)
                data: dict[str, Any] = {
                    "offer_id": offer.offer_id,
                    "account_id": offer.account_id,
                    "tenor_months": option.tenor_months,
                }
                if rng.random() < self.c.redeem_rate:
                    data["redeem_points"] = rng.choice([200, 500, 1000, 5000])
                self._send(
                    "installments.decisions.v1",
                    "offer.accepted",
                    offer.account_id,
                    data,
                    _ts(day, 21 * 3600),
                    (offer.offer_id,),
                    source="customer-channel",
                )
                self.stats.decisions["accepted"] += 1
            elif roll < self.c.accept_rate + uplift + self.c.decline_rate:
                self._send(
                    "installments.decisions.v1",
                    "offer.declined",
                    offer.account_id,
                    {"offer_id": offer.offer_id, "account_id": offer.account_id},
                    _ts(day, 21 * 3600),
                    (offer.offer_id,),
                    source="customer-channel",
                )
                self.stats.decisions["declined"] += 1
            else:
                self.stats.decisions["ignored"] += 1

    def learn_plans(self) -> None:
        """What each customer owes: the schedule of each new plan, then its changes.

        Delivery is at least once: a plan.created published again after a crash (same id)
        must not be owed twice (the customer would pay double). A ``plan.adjusted`` sets the
        new amounts of the installments it lists, a ``plan.cancelled`` clears what is left
        (both idempotent, so a re-delivery changes nothing).
        """
        by_id = {a.account_id: a for a in self.accounts}
        for event in self._drain(self._plans, "installments.plans.v1"):
            plan = event.data
            if event.type == "plan.created" and plan.plan_id not in self.plans_seen:
                self.plans_seen.add(plan.plan_id)
                acc = by_id.get(plan.account_id)
                if acc is None:
                    continue
                owed = self.owed[plan.plan_id] = Owed(
                    acc.account_id,
                    plan.purchase_id,
                    plan.principal,
                    plan.redeem_points,
                    plan.schedule[0].due_date,
                )
                if acc.behaviour == "never":
                    continue
                for line in plan.schedule:
                    owed.lines[line.seq] = len(self.dues[acc.account_id])
                    self.dues[acc.account_id].append(
                        (self._pays_on(acc, line.due_date), self._pays(acc, line.amount))
                    )
            elif event.type in ("plan.adjusted", "plan.cancelled") and plan.plan_id in self.owed:
                owed = self.owed[plan.plan_id]
                dues = self.dues[owed.account_id]
                if event.type == "plan.adjusted":
                    acc = by_id[owed.account_id]
                    changes = {line.seq: self._pays(acc, line.amount) for line in plan.schedule}
                else:
                    changes = dict.fromkeys(owed.lines, Decimal(0))
                for seq, amount in changes.items():
                    if seq in owed.lines:
                        due, _old = dues[owed.lines[seq]]
                        dues[owed.lines[seq]] = (due, amount)

    @staticmethod
    def _pays_on(acc: Account, due: date) -> date:
        return due + timedelta(days=acc.late_days) if acc.behaviour == "late" else due

    @staticmethod
    def _pays(acc: Account, amount: Decimal) -> Decimal:
        if acc.behaviour == "partial":
            return (amount / 2).quantize(Decimal("0.01"))
        return amount

    def pay(self, day: date) -> None:
        for acc_id, dues in self.dues.items():
            today = [amt for due, amt in dues if due == day and amt > 0]
            if not today:
                continue
            total = sum(today, Decimal("0"))
            pay_id = self._ref("pay", acc_id, day)
            self._send(
                "card.payments.v1",
                "payment.received",
                acc_id,
                {
                    "payment_id": pay_id,
                    "account_id": acc_id,
                    "amount": _money(total),
                    "currency": "USD",
                    "received_at": _ts(day, 15 * 3600),
                },
                _ts(day, 15 * 3600),
                (pay_id,),
            )
            self.stats.payments += 1
