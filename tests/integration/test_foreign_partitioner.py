"""A producer that does not partition by murmur2 costs speed, never correctness (#15).

Contract section 2: producers use the Java client's default partitioner (murmur2 of the
key); librdkafka clients must set ``murmur2_random``, but "a producer that partitions
differently may cost speed, never a wrong or double effect".

Here the outside systems (card system, customer channel) publish with librdkafka's
default partitioner, ``consistent_random`` (CRC-32 of the key modulo the partition
count; :class:`Crc32Partitioner`), while the project's side (the purchases service's
``purchase.recorded`` / ``refund.recorded``) keeps murmur2. Each account is chosen so
the two put it in different partitions: its ``account.upserted`` and its
``offer.accepted`` sit in one partition, its purchases in another, so with two offers
processes in the group an account's purchase and its acceptance are mostly handled by
different processes. And every purchase, acceptance and refund is published twice
with the same event id, once by each partitioner (a re-drive with kcat's defaults): the
two copies sit in different partitions, so both processes may apply the same event at
once. The offers service must still make exactly one offer per purchase, one plan per
accepted offer, one cancellation per refunded plan, emit no event id twice, and
dead-letter nothing.
"""

from __future__ import annotations

import json
import time
import zlib
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.partitioner import Partitioner, murmur2

from schemas import decode
from schemas.registry import dlq_topic
from shared.ops.invariants import check
from shared.runtime.db import make_engine
from shared.runtime.store import stored_offsets
from tests.builders import messages as f
from tests.builders.offers import (
    ACCOUNTS,
    DECISIONS,
    OFFERS,
    PLANS,
    RECORDED,
    purchase_recorded,
    refund_recorded,
)
from tests.builders.services import OFFERS as SERVICE
from tests.support import Collector, start_process, wait_until

pytestmark = pytest.mark.integration

ACCOUNT_COUNT = 6
#: Per account: (amount, tenor accepted or None, refunded after conversion).
PURCHASES = [("1200.00", 6, False), ("900.00", 3, True), ("100.00", None, False)]


class Crc32Partitioner(Partitioner):
    """librdkafka's default partitioner, ``consistent_random``: CRC-32 of the key bytes
    modulo the partition count (a random partition for a null key; none here)."""

    def partition(self, topic, key, serialized_key, value, serialized_value, cluster):  # type: ignore[no-untyped-def]
        partitions = sorted(cluster.partitions_for_topic(topic))
        return partitions[zlib.crc32(serialized_key) % len(partitions)]


def _murmur2_partition(key: str, partitions: int) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def _crc32_partition(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


def _split_accounts(count: int, partitions: int) -> list[str]:
    """Accounts that the two partitioners put in different partitions."""
    found: list[str] = []
    while len(found) < count:
        acc = f.new_id("acc")
        if _crc32_partition(acc, partitions) != _murmur2_partition(acc, partitions):
            found.append(acc)
    return found


class _Publisher:
    """Two producers: librdkafka's default partitioning (``foreign``) and murmur2."""

    def __init__(self, settings) -> None:  # type: ignore[no-untyped-def]
        self.settings = settings
        common = {**settings.kafka_client_config(), "acks": "all", "enable_idempotence": True}
        self.foreign = KafkaProducer(**common, partitioner=Crc32Partitioner())
        self.murmur2 = KafkaProducer(**common)  # kafka-python's default: murmur2

    def send(self, producer: KafkaProducer, topic: str, *messages: dict[str, Any]) -> None:
        for message in messages:
            producer.send(
                self.settings.topic(topic),
                key=message["subject"].encode(),
                value=json.dumps(message).encode(),
            )
        producer.flush(timeout=30)

    def twice(self, first: KafkaProducer, topic: str, *messages: dict[str, Any]) -> None:
        """Each message by ``first``, then the same bytes (same event id) by the other."""
        self.send(first, topic, *messages)
        self.send(self.murmur2 if first is self.foreign else self.foreign, topic, *messages)

    def close(self) -> None:
        self.foreign.close()
        self.murmur2.close()


def _caught_up(settings, topics: list[str]) -> bool:  # type: ignore[no-untyped-def]
    """The offers group has applied every record of ``topics`` (offsets in its database)."""
    consumer = KafkaConsumer(**settings.kafka_client_config(), enable_auto_commit=False)
    engine = make_engine(settings, "offers")
    try:
        with engine.connect() as conn:
            for topic in topics:
                physical = settings.topic(topic)
                parts = consumer.partitions_for_topic(physical) or set()
                ends = consumer.end_offsets([TopicPartition(physical, p) for p in parts])
                done = stored_offsets(conn, settings.consumer_group(SERVICE.name), physical)
                if any(done.get(tp.partition, 0) < end for tp, end in ends.items()):
                    return False
        return True
    except Exception:  # the service has not created its tables yet
        return False
    finally:
        consumer.close()
        engine.dispose()


def _owners(settings) -> dict[tuple[str, int], str]:  # type: ignore[no-untyped-def]
    """(contract topic, partition) -> member id, once the group is stable with 2 members."""
    admin = KafkaAdminClient(**settings.kafka_client_config())
    try:
        group = settings.consumer_group(SERVICE.name)
        description = admin.describe_groups([group])[group]
    finally:
        admin.close()
    members = description.get("members") or []
    if description.get("group_state") != "Stable" or len(members) != 2:
        return {}
    owners: dict[tuple[str, int], str] = {}
    for member in members:
        for assigned in (member.get("member_assignment") or {}).get("assigned_partitions", []):
            for partition in assigned["partitions"]:
                owners[(settings.contract_topic(assigned["topic"]), partition)] = member[
                    "member_id"
                ]
    return owners


def _distinct(records: list[Any], topic: str) -> tuple[list[Any], Counter[str]]:
    """The events of ``records`` once per id, and how many records each id had."""
    events = [decode(topic, r.key, r.value) for r in records]
    per_id = Counter(e.id for e in events)
    unique = list({e.id: e for e in events}.values())
    return unique, per_id


def test_a_foreign_partitioner_costs_speed_never_a_wrong_or_double_effect(settings):
    partitions = settings.topic_partitions
    accounts = _split_accounts(ACCOUNT_COUNT, partitions)
    publisher = _Publisher(settings)
    offers_out, plans_out = Collector(settings, OFFERS), Collector(settings, PLANS)
    dead = {topic: Collector(settings, dlq_topic(topic)) for topic in SERVICE.consumes}
    started = time.monotonic()

    procs = [start_process("offers", settings), start_process("offers", settings)]
    owners: dict[tuple[str, int], str] = {}

    def stable() -> bool:
        nonlocal owners
        owners = _owners(settings)
        return len(owners) == partitions * len(SERVICE.consumes)

    wait_until(stable, 90, "two offers processes sharing every partition")
    group_s = time.monotonic() - started

    # 1. the card system publishes the accounts (CRC-32 partitions)
    publisher.send(publisher.foreign, ACCOUNTS, *(f.account(acc) for acc in accounts))
    wait_until(lambda: _caught_up(settings, [ACCOUNTS]), 60, "accounts applied")

    # 2. purchases recorded (murmur2, as the purchases service writes them), each re-driven
    #    once with the CRC-32 partitioner: the same event in two partitions
    recorded: dict[str, list[dict[str, Any]]] = {
        acc: [purchase_recorded(acc, amount) for amount, _, _ in PURCHASES] for acc in accounts
    }
    all_recorded = [m for ms in recorded.values() for m in ms]
    publisher.twice(publisher.murmur2, RECORDED, *all_recorded)
    offers_out.wait_for(
        lambda rs: len({r.value for r in rs}) >= len(all_recorded), 120, "an offer per purchase"
    )
    offers, _ = _distinct(offers_out.records, OFFERS)
    offer_of = {e.data.purchase_id: e for e in offers}

    # 3. the customer channel accepts (CRC-32), each acceptance re-driven by murmur2
    acceptances, cross_process = [], 0
    for acc, messages in recorded.items():
        for message, (_, tenor, _) in zip(messages, PURCHASES, strict=True):
            if tenor is None:
                continue
            offer = offer_of[message["data"]["purchase_id"]]
            acceptances.append(f.offer_accepted(acc, offer.data.offer_id, tenor))
        decision_owner = owners[(DECISIONS, _crc32_partition(acc, partitions))]
        purchase_owner = owners[(RECORDED, _murmur2_partition(acc, partitions))]
        cross_process += decision_owner != purchase_owner
    publisher.twice(publisher.foreign, DECISIONS, *acceptances)
    plans_out.wait_for(
        lambda rs: len({r.value for r in rs}) >= len(acceptances), 120, "a plan per acceptance"
    )

    # 4. refunds of converted purchases (murmur2, from the purchases service), re-driven
    refunds = [
        refund_recorded(acc, messages[i]["data"]["purchase_id"], amount, fully_refunded=True)
        for acc, messages in recorded.items()
        for i, (amount, _, refunded) in enumerate(PURCHASES)
        if refunded
    ]
    publisher.twice(publisher.murmur2, RECORDED, *refunds)
    plans_out.wait_for(
        lambda rs: len({r.value for r in rs}) >= len(acceptances) + len(refunds),
        120,
        "a cancellation per refunded plan",
    )
    wait_until(lambda: _caught_up(settings, list(SERVICE.consumes)), 120, "every input applied")
    offers_out.settle(2.0)
    plans_out.settle(2.0)
    elapsed = time.monotonic() - started

    offers, offer_records = _distinct(offers_out.records, OFFERS)
    plans, plan_records = _distinct(plans_out.records, PLANS)
    dead_letters = {topic: c.settle(0.5) for topic, c in dead.items()}
    report = check(settings)
    print(
        f"\n[foreign partitioner] {len(accounts)} accounts, {len(all_recorded)} purchases "
        f"(each twice), {len(acceptances)} acceptances, {len(refunds)} refunds; "
        f"{cross_process} accounts with purchase and acceptance on different processes; "
        f"group ready in {group_s:.1f}s, all effects in {elapsed - group_s:.1f}s"
    )

    # no event id twice, and none with two contents
    assert max(offer_records.values()) == 1, offer_records.most_common(3)
    assert max(plan_records.values()) == 1, plan_records.most_common(3)
    # exactly one offer per purchase: offer.made, or not-eligible for the small one
    assert Counter(e.data.purchase_id for e in offers) == Counter(
        m["data"]["purchase_id"] for m in all_recorded
    )
    for messages in recorded.values():
        for message, (amount, tenor, _) in zip(messages, PURCHASES, strict=True):
            offer = offer_of[message["data"]["purchase_id"]]
            if tenor is None:
                assert offer.type == "offer.not-eligible", offer
                assert list(offer.data.reasons) == ["amount_below_minimum"]
            else:
                assert offer.type == "offer.made", offer
                assert offer.data.principal == Decimal(amount)
    assert [e.type for e in offers if e.type not in ("offer.made", "offer.not-eligible")] == []
    # one plan per acceptance, at the tenor chosen, adding up; one cancellation per refund
    created = [e for e in plans if e.type == "plan.created"]
    cancelled = [e for e in plans if e.type == "plan.cancelled"]
    assert sorted(e.type for e in plans) == sorted(
        ["plan.created"] * len(acceptances) + ["plan.cancelled"] * len(refunds)
    )
    expected = {
        m["data"]["purchase_id"]: (Decimal(amount), tenor)
        for messages in recorded.values()
        for m, (amount, tenor, _) in zip(messages, PURCHASES, strict=True)
        if tenor is not None
    }
    assert {e.data.purchase_id: (e.data.principal, e.data.tenor_months) for e in created} == (
        expected
    )
    for plan in created:
        assert sum(line.principal for line in plan.data.schedule) == plan.data.principal
        assert plan.data.offer_id == offer_of[plan.data.purchase_id].data.offer_id
    refunded_plans = {
        e.data.plan_id
        for e in created
        if any(r["data"]["purchase_id"] == e.data.purchase_id for r in refunds)
    }
    assert {e.data.plan_id for e in cancelled} == refunded_plans
    assert {e.data.reason for e in cancelled} == {"refund"}
    # the scenario did put accounts' purchases and acceptances on different processes
    assert cross_process >= 1
    # nothing dead-lettered, and the independent checker agrees
    assert {topic: len(rs) for topic, rs in dead_letters.items() if rs} == {}
    assert report.ok, report.violations[:10]

    for proc in procs:
        proc.terminate()
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    publisher.close()
    offers_out.close()
    plans_out.close()
    for c in dead.values():
        c.close()
