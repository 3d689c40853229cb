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
  pay the adjusted schedule (``plan.adjusted``) and stop paying a cancelled plan;
- the collections team: it reads the cases raised (``escalation.raised``, once each)
  and, the next day, records contacts on some open ones (``contact.recorded`` on
  collections.outcomes.v1): reached / no answer, promises to pay the overdue amount
  (some kept: the customer pays on the promised date; some broken) and a few disputes,
  some resolved later; never for a resolved case.

Seeded and reproducible: every choice comes from a random generator seeded with
(seed, what, whom), and every event id is derived from the seed and the fact, so
the same seed publishes the same events with the same ids (a re-run is a replay).

The simulator is reactive where the customer is: each day it publishes the day's
purchases, waits for the pipeline to go idle, answers the offers it made, waits
again, pays what each customer's behaviour says is paid today, then closes the day.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from decimal import Decimal

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from shared.runtime.settings import Settings
from shared.runtime.topics import committed_offsets
from shared.tools.sim_collections import CollectionsTeam
from shared.tools.sim_release1 import FirstReleaseActors
from shared.tools.sim_release2 import SecondReleaseActors
from shared.tools.sim_world import (
    DEMO_POLICY_YAML,
    Account,
    Owed,
    SimConfig,
    SimStats,
    _money,
    _ts,
)

__all__ = [
    "DEMO_POLICY_YAML",
    "Account",
    "Owed",
    "SimConfig",
    "SimStats",
    "Simulator",
    "wait_groups_idle",
]


class Simulator(FirstReleaseActors, SecondReleaseActors, CollectionsTeam):
    """Publishes one simulated portfolio, day by day, and answers the pipeline.

    Its state and plumbing are :class:`shared.tools.sim_world.SimWorld`'s, its actors
    those of :mod:`shared.tools.sim_release1`, :mod:`shared.tools.sim_release2` and
    :mod:`shared.tools.sim_collections`; the
    story of a day is told here.
    """

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
            self.work_cases(day)
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
        self._escalations.close()
        return self.stats

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


def wait_groups_idle(
    settings: Settings, groups: dict[str, list[str]], timeout_s: float, poll_s: float = 0.1
) -> None:
    """Block until every group has committed up to the log end of each of its topics."""
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
