"""The simulator's second-release actors (contract 5.1): fraud on some cards (velocity
bursts, amount spikes, big card-not-present purchases at new merchants), the fraud team
closing each flagged purchase's review, and refunds of converted purchases once their
plan exists.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from shared.tools.sim_world import MERCHANTS, Account, SimWorld, _median, _money, _ts


class SecondReleaseActors(SimWorld):
    """Fraud, the fraud team's reviews and refunds of converted purchases."""

    def post_fraud(self, acc: Account, day: date) -> None:
        """The account's suspicious purchases of the day, if any (contract 5.1's flags)."""
        acc_id = acc.account_id
        rng = self._rng("burst", acc_id, day)
        if rng.random() < self.c.burst_rate:
            # 5-7 purchases on the card 45-110 s apart: the 5th onwards are within 10 min
            at = rng.randint(1 * 3600, 5 * 3600)
            for i in range(rng.randint(5, 7)):
                self._purchase(
                    acc,
                    day,
                    self._ref("pur-burst", acc_id, day, i),
                    Decimal(rng.randint(100_00, 1500_00)) / 100,
                    {"merchant_id": "m-electro", "name": "Electro World", "mcc": "5732"},
                    channel="ecommerce",
                    posted_at=_ts(day, at),
                    last4="0000",
                )
                at += rng.randint(45, 110)
            self.stats.fraud_bursts += 1
        rng = self._rng("spike", acc_id, day)
        previous = self.history[acc_id][-20:]
        if len(previous) >= 5 and rng.random() < self.c.spike_rate:
            floor = max(Decimal(5000), 10 * _median(previous))
            amount = (floor * Decimal(rng.randint(105, 150)) / 100).quantize(Decimal("0.01"))
            mid, name, mcc, category, _w, _range = rng.choice(
                [m for m in MERCHANTS if m[3] in ("travel", "electronics", "home_improvement")]
            )
            self._purchase(
                acc,
                day,
                self._ref("pur-spike", acc_id, day),
                amount,
                {"merchant_id": mid, "name": name, "mcc": mcc, "category": category},
                channel="pos",
                posted_at=_ts(day, rng.randint(20 * 3600 + 1800, 21 * 3600 + 1800)),
                last4="0000",
            )
            self.stats.amount_spikes += 1
        rng = self._rng("cnp", acc_id, day)
        if rng.random() < self.c.cnp_rate:
            # a merchant id of its own: the account never bought there before
            self._purchase(
                acc,
                day,
                self._ref("pur-cnp", acc_id, day),
                Decimal(rng.randint(10_000_00, 25_000_00)) / 100,
                {
                    "merchant_id": self._ref("mer", acc_id, day),
                    "name": "Online Store",
                    "mcc": "5732",
                    "category": "electronics",
                },
                channel=rng.choice(["ecommerce", "moto"]),
                posted_at=_ts(day, rng.randint(9 * 3600, 19 * 3600)),
                last4="0000",
            )
            self.stats.cnp_purchases += 1

    def read_flags(self) -> None:
        """The fraud team reads the flagged purchases (once each: delivery is at least once)
        and decides each review, to close it a day or two after the purchase."""
        for event in self._drain(self._recorded, "purchases.recorded.v1"):
            if event.type != "purchase.flagged" or event.data.purchase_id in self.flags_seen:
                continue
            flag = event.data
            self.flags_seen.add(flag.purchase_id)
            rng = self._rng("review", flag.purchase_id)
            confirm = 0.5 if "velocity" in flag.flags else self.c.confirm_rate
            outcome = "confirmed_fraud" if rng.random() < confirm else "cleared"
            closed_on = flag.posted_at.date() + timedelta(days=rng.randint(1, 2))
            self.reviews[closed_on].append((flag.account_id, flag.purchase_id, outcome))

    def close_reviews(self, day: date) -> None:
        for acc_id, pid, outcome in self.reviews.pop(day, []):
            self._send(
                "fraud.reviews.v1",
                "purchase.review-closed",
                acc_id,
                {
                    "purchase_id": pid,
                    "account_id": acc_id,
                    "outcome": outcome,
                    "closed_on": day.isoformat(),
                },
                _ts(day, 7 * 3600),
                (pid,),
                source="fraud-team",
            )
            self.stats.reviews[outcome] += 1

    def refund_converted(self, day: date) -> None:
        """Refunds of converted purchases once their plan exists (13 to 68 days after the
        first installment's due date minus a month): mostly partial, more often where
        points paid fees; a purchase is refunded at most once by the simulator."""
        for plan_id, owed in self.owed.items():
            if owed.purchase_id in self.refunded:
                continue
            rng = self._rng("plan-refund", plan_id)
            rate = (
                self.c.redeemed_plan_refund_rate if owed.redeem_points else self.c.plan_refund_rate
            )
            if rng.random() >= rate or owed.first_due + timedelta(rng.randint(-15, 40)) != day:
                continue
            whole = rng.random() < self.c.full_plan_refund_share
            share = Decimal(1) if whole else Decimal(rng.randint(10, 50)) / 100
            rid = self._ref("ref-plan", plan_id)
            self._send(
                "card.purchases.v1",
                "purchase.refunded",
                owed.account_id,
                {
                    "refund_id": rid,
                    "purchase_id": owed.purchase_id,
                    "account_id": owed.account_id,
                    "amount": _money(owed.principal * share),
                    "currency": "USD",
                    "refunded_at": _ts(day, 13 * 3600),
                },
                _ts(day, 13 * 3600),
                (rid,),
            )
            self.refunded.add(owed.purchase_id)
            self.stats.refunds += 1
            self.stats.plan_refunds["full" if whole else "partial"] += 1
