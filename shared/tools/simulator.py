"""A card-system simulator: plays the card transaction system, the customer channel and
the fraud team.

It writes to the real topics, per the contract: a portfolio of accounts (segments,
tiers, limits, risk scores, some opted in to auto-conversion, some pre-approved),
purchases across merchants and MCCs (some promotional, some excluded, some refunded),
customers who accept or decline offers (some redeeming points), payments on time, late,
partial or never, and one ``business-day.closed`` per simulated day.

Second release (contract 5.1), each actor with its own random streams, so the first
release's choices (accounts, purchases, refunds, decisions, payments) stay as they were:

- fraud on some cards: bursts of 5-7 purchases on one card within 10 minutes
  (``velocity``), amount spikes (>= 5,000.00 and >= 10 x the median of the account's
  last 20 purchases: ``amount_spike``), card-not-present purchases >= 10,000.00 at a
  merchant the account never used (``cnp_new_merchant``);
- the fraud team: it reads ``purchase.flagged`` (once per purchase) and closes each
  review a day or two after the purchase (``purchase.review-closed`` on
  fraud.reviews.v1): most ``cleared``, some ``confirmed_fraud`` (half of the bursts);
- pre-approvals on some accounts (``account.upserted.pre_approval``), whose offers the
  customers accept more often;
- refunds of converted purchases after the plan exists, mostly partial (the plan is
  adjusted) and more often where points were redeemed (points restored); customers then
  pay the adjusted schedule (``plan.adjusted``) and stop paying a cancelled plan.

Seeded and reproducible: every choice comes from a random generator seeded with
(seed, what, whom), and every event id is derived from the seed and the fact, so
the same seed publishes the same events with the same ids (a re-run is a replay).

The simulator is reactive where the customer is: each day it publishes the day's
purchases, waits for the pipeline to go idle, answers the offers it made, waits
again, pays what each customer's behaviour says is paid today, then closes the day.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from schemas import decode
from shared.runtime.settings import Settings
from shared.runtime.topics import committed_offsets

SIM_NAMESPACE = uuid.UUID("8f1d2c34-5b6a-4e7f-9a0b-1c2d3e4f5a6b")

SEGMENTS = [
    ("standard", 45),
    ("young", 15),
    ("middle_class", 20),
    ("white_collar", 15),
    ("high_net_worth", 5),
]
TIERS = [("silver", 50), ("gold", 30), ("platinum", 15), ("diamond", 5)]
CHANNELS = [("sms", 50), ("email", 30), ("push", 20)]
BEHAVIOURS = [("on_time", 70), ("late", 15), ("partial", 8), ("never", 7)]

# (merchant_id, name, mcc, category, weight, amount range)
MERCHANTS = [
    ("m-electro", "Electro World", "5732", "electronics", 20, (150, 3000)),
    ("m-travel", "Sky Travel", "4722", "travel", 10, (300, 6000)),
    ("m-school", "Bright Academy", "8299", "education", 5, (400, 5000)),
    ("m-home", "Home Builders", "5211", "home_improvement", 8, (100, 4000)),
    ("m-auto", "City Motors Service", "7538", "auto", 5, (200, 3500)),
    ("m-grocer", "Fresh Market", "5411", None, 35, (10, 250)),
    ("m-atm", "ATM Cash", "6011", None, 6, (50, 1000)),
    ("m-casino", "Lucky Casino", "7995", None, 3, (100, 2000)),
    ("m-transfer", "Wire Transfer Co", "4829", None, 3, (100, 2500)),
]

#: Offers policy the demo runs with: one merchant-funded promotion (travel, 0 % fee).
DEMO_POLICY_YAML = """\
offers:
  promotions:
    - id: promo-sky-travel-0pct
      merchant_id: m-travel
      tenors: [3, 6]
      monthly_fee_rate: "0"
      valid_from: "2026-01-01"
      valid_to: "2026-12-31"
"""


@dataclass
class SimConfig:
    accounts: int = 1000
    days: int = 90
    seed: int = 42
    start: date = date(2026, 1, 5)
    purchases_per_account_day: float = 0.06
    refund_rate: float = 0.05
    accept_rate: float = 0.55
    decline_rate: float = 0.20
    redeem_rate: float = 0.25
    auto_convert_rate: float = 0.10
    # second release (contract 5.1)
    pre_approval_rate: float = 0.15  # accounts with a pre-approval
    pre_approved_accept_uplift: float = 0.15  # added to accept_rate for pre-approved offers
    burst_rate: float = 0.0008  # per account and day: a fraud burst on the card
    spike_rate: float = 0.002  # per account and day (>= 5 earlier purchases): a spike
    cnp_rate: float = 0.0006  # per account and day: a big card-not-present purchase
    confirm_rate: float = 0.15  # reviews closed confirmed_fraud (bursts: 0.5)
    plan_refund_rate: float = 0.05  # converted purchases refunded once the plan exists
    redeemed_plan_refund_rate: float = 0.30  # the same, for plans that redeemed points
    full_plan_refund_share: float = 0.25  # of those refunds, the whole purchase
    idle_timeout_s: float = 120.0


@dataclass
class Account:
    account_id: str
    segment: str
    tier: str
    behaviour: str
    late_days: int


@dataclass
class Owed:
    """A plan the customer pays: where its installments sit in ``Simulator.dues``."""

    account_id: str
    purchase_id: str
    principal: Decimal
    redeem_points: int
    first_due: date
    lines: dict[int, int] = field(default_factory=dict)  # seq -> index in dues[account]


@dataclass
class SimStats:
    accounts: int = 0
    purchases: int = 0
    refunds: int = 0
    decisions: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    payments: int = 0
    days: int = 0
    events: int = 0
    pre_approved_accounts: int = 0
    fraud_bursts: int = 0
    amount_spikes: int = 0
    cnp_purchases: int = 0
    reviews: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    plan_refunds: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def _pick(rng: random.Random, weighted: list[tuple[Any, int]]) -> Any:
    return rng.choices([w[0] for w in weighted], weights=[w[1] for w in weighted])[0]


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_DOWN))


def _median(amounts: list[Decimal]) -> Decimal:
    ordered = sorted(amounts)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _ts(day: date, seconds: int) -> str:
    return (datetime(day.year, day.month, day.day) + timedelta(seconds=seconds)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


class Simulator:
    """Publishes one simulated portfolio, day by day, and answers the pipeline."""

    def __init__(
        self,
        settings: Settings,
        config: SimConfig,
        wait_idle: Callable[[float], None],
        progress: Callable[[int, str], None] | None = None,
    ) -> None:
        self.s = settings
        self.c = config
        self.wait_idle = wait_idle
        self.progress = progress or (lambda _day, _msg: None)
        self.stats = SimStats()
        self.producer = KafkaProducer(
            **settings.kafka_client_config(),
            acks="all",
            enable_idempotence=True,
            linger_ms=20,
            client_id="card-system-simulator",
        )
        self.accounts: list[Account] = []
        self.purchases: list[tuple[str, str, Decimal, date]] = []  # (acc, purchase, amount, day)
        self.refunded: set[str] = set()
        # account -> list of (due_date, amount) installments to pay
        self.dues: dict[str, list[tuple[date, Decimal]]] = defaultdict(list)
        self.plans_seen: set[str] = set()  # plan ids already learnt (dedupe)
        self.owed: dict[str, Owed] = {}  # plan id -> its installments in dues
        self.history: dict[str, list[Decimal]] = defaultdict(list)  # account -> amounts
        self.flags_seen: set[str] = set()  # flagged purchase ids already read (dedupe)
        self.reviews: dict[date, list[tuple[str, str, str]]] = defaultdict(list)
        self._offers = self._reader("installments.offers.v1")
        self._plans = self._reader("installments.plans.v1")
        self._recorded = self._reader("purchases.recorded.v1")

    # --- plumbing ------------------------------------------------------------

    def _rng(self, *what: object) -> random.Random:
        return random.Random(f"{self.c.seed}:" + ":".join(map(str, what)))

    def _id(self, *what: object) -> str:
        return str(uuid.uuid5(SIM_NAMESPACE, f"{self.c.seed}:" + ":".join(map(str, what))))

    def _ref(self, prefix: str, *what: object) -> str:
        """A business id made of letters only, so it can never look like a card number."""
        digest = uuid.uuid5(SIM_NAMESPACE, f"{self.c.seed}:{prefix}:" + ":".join(map(str, what)))
        return f"{prefix}-" + "".join("abcdefghijklmnop"[int(c, 16)] for c in digest.hex[:14])

    def _send(
        self,
        topic: str,
        event_type: str,
        subject: str,
        data: dict[str, Any],
        at: str,
        event_key: tuple[object, ...],
        source: str = "card-system",
    ) -> None:
        envelope = {
            "id": self._id(event_type, *event_key),
            "type": event_type,
            "source": source,
            "time": at,
            "subject": subject,
            "schema_version": 1,
            "data": data,
        }
        self.producer.send(
            self.s.topic(topic),
            key=subject.encode(),
            value=json.dumps(envelope, separators=(",", ":")).encode(),
        )
        self.stats.events += 1

    def _reader(self, topic: str) -> KafkaConsumer:
        consumer = KafkaConsumer(
            **self.s.kafka_client_config(),
            group_id=None,
            enable_auto_commit=False,
            client_id="simulator-reader",
        )
        physical = self.s.topic(topic)
        parts = consumer.partitions_for_topic(physical) or set()
        tps = [TopicPartition(physical, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        return consumer

    def _drain(self, consumer: KafkaConsumer, topic: str) -> list[Any]:
        events: list[Any] = []
        while True:
            batch = consumer.poll(timeout_ms=200, max_records=5000)
            if not batch:
                return events
            for records in batch.values():
                for r in records:
                    events.append(decode(topic, r.key, r.value, max_bytes=1 << 20))

    # --- the story -------------------------------------------------------------

    def run(self) -> SimStats:
        self.open_accounts()
        self.producer.flush()
        self.wait_idle(self.c.idle_timeout_s)
        for n in range(self.c.days):
            day = self.c.start + timedelta(days=n)
            self.progress(n, f"{day} purchases")
            self.post_purchases(day)
            self.producer.flush()
            self.wait_idle(self.c.idle_timeout_s)
            self.progress(n, f"{day} decisions")
            self.read_flags()
            self.answer_offers(day)
            self.producer.flush()
            self.wait_idle(self.c.idle_timeout_s)
            self.progress(n, f"{day} payments + end of day")
            self.learn_plans()
            self.pay(day)
            self.producer.flush()
            self._send(
                "card.business-days.v1",
                "business-day.closed",
                "business-day",
                {"business_date": day.isoformat()},
                _ts(day, 86000),
                (day,),
            )
            self.producer.flush()
            self.wait_idle(self.c.idle_timeout_s)
            self.stats.days += 1
        self.learn_plans()
        self.producer.close()
        self._offers.close()
        self._plans.close()
        self._recorded.close()
        return self.stats

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

    def post_purchases(self, day: date) -> None:
        for acc in self.accounts:
            self.post_ordinary_purchase(acc, day)
            self.post_fraud(acc, day)
        self.close_reviews(day)
        # refunds of earlier purchases (some partial)
        for acc_id, pid, amount, posted in self.purchases:
            if pid in self.refunded or (day - posted).days not in (3, 10):
                continue
            rng = self._rng("refund", pid, day)
            if rng.random() >= self.c.refund_rate:
                continue
            part = amount if rng.random() < 0.6 else (amount / 2).quantize(Decimal("0.01"))
            rid = self._ref("ref", pid)
            self._send(
                "card.purchases.v1",
                "purchase.refunded",
                acc_id,
                {
                    "refund_id": rid,
                    "purchase_id": pid,
                    "account_id": acc_id,
                    "amount": _money(part),
                    "currency": "USD",
                    "refunded_at": _ts(day, 12 * 3600),
                },
                _ts(day, 12 * 3600),
                (rid,),
            )
            self.refunded.add(pid)
            self.stats.refunds += 1
        self.refund_converted(day)

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

    def _purchase(
        self,
        acc: Account,
        day: date,
        pid: str,
        amount: Decimal,
        merchant: dict[str, Any],
        *,
        channel: str,
        posted_at: str,
        last4: str,
    ) -> None:
        self._send(
            "card.purchases.v1",
            "purchase.posted",
            acc.account_id,
            {
                "purchase_id": pid,
                "account_id": acc.account_id,
                "card_token": f"tok-{acc.account_id}",
                "card_last4": last4,
                "amount": _money(amount),
                "currency": "USD",
                "merchant": merchant,
                "channel": channel,
                "posted_at": posted_at,
            },
            _ts(day, 0),
            (pid,),
        )
        self.purchases.append((acc.account_id, pid, amount, day))
        self.history[acc.account_id].append(amount)
        self.stats.purchases += 1

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


def wait_groups_idle(
    settings: Settings, groups: dict[str, list[str]], timeout_s: float, poll_s: float = 0.1
) -> None:
    """Block until every group has committed up to the log end of each of its topics."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(**settings.kafka_client_config(), client_id="idle-check")
    consumer = KafkaConsumer(**settings.kafka_client_config(), group_id=None)
    try:
        tps = []
        for topics in groups.values():
            for t in topics:
                parts = consumer.partitions_for_topic(settings.topic(t)) or set()
                tps += [TopicPartition(settings.topic(t), p) for p in parts]
        deadline = time.monotonic() + timeout_s
        while True:
            # Committed offsets FIRST, then log ends: a group commits only after it has
            # published its output, so this order can never see a false "idle".
            committed = committed_offsets(admin, list(groups))
            ends = consumer.end_offsets(list(set(tps)))
            behind = 0
            where: list[str] = []
            for group, topics in groups.items():
                for t in topics:
                    for tp, end in ends.items():
                        if tp.topic != settings.topic(t):
                            continue
                        om = committed.get(group, {}).get(tp)
                        lag = end - (om.offset if om is not None and om.offset >= 0 else 0)
                        if lag:
                            behind += lag
                            where.append(f"{group} {t}[{tp.partition}]: {lag}")
            if behind == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"pipeline still {behind} message(s) behind after {timeout_s:.0f}s: "
                    + "; ".join(where[:10])
                )
            time.sleep(poll_s)
    finally:
        admin.close()
        consumer.close()
