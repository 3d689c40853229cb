"""The simulator's world: its configuration, the portfolio's vocabulary (segments, tiers,
merchants), what it remembers of each account and plan, and its plumbing (seeded random
streams, deterministic ids, publishing, reading the pipeline's topics).

:class:`SimWorld` is the base of the actors (:mod:`shared.tools.sim_release1`,
:mod:`shared.tools.sim_release2`, :mod:`shared.tools.sim_collections`) that
:class:`shared.tools.simulator.Simulator` joins.
"""

from __future__ import annotations

import json
import random
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
    # the collections team (contract 5.1): the day after a case is raised
    contact_rate: float = 0.6  # the team calls
    promise_share: float = 0.35  # of the calls: a promise to pay (if the case is not held)
    dispute_share: float = 0.06  # of the calls: a dispute (if the case is not held)
    promise_keep_rate: float = 0.6  # promises the customer keeps
    dispute_resolve_rate: float = 0.5  # disputes resolved (dispute_resolved) 4-20 days on
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
    contacts: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # by outcome
    promises: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # to_keep/break


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


class SimWorld:
    """The simulator's state and plumbing, shared by its actors."""

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
        self._escalations = self._reader("collections.escalations.v1")

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
