"""Issue #11, "no single message can stop a service", on the real broker and PostgreSQL.

``test_poison_messages_never_stop_a_service``: purchases, offers and points run (threads,
one start each); every poison message (schema-valid or near-valid extremes) is sent
between two valid purchases of the same account (same key, so the same partition). Each
poison is either applied correctly or dead-lettered exactly once with a reason (the ones
the contract says cannot be applied must be dead-lettered); the same runners keep running;
the purchase after it gets its offer outcome and its points.

``test_a_record_that_kills_the_process_is_dead_lettered``: the purchases service as a real
process that SIGKILLs itself on one record (``INSTALLMENTS_FAULT_POISON``), restarted by a
small supervisor each time it dies: the record ends in the DLQ (``poison: ...``) after a
bounded number of deaths and the valid purchases around it are recorded once each.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

from schemas.registry import dlq_topic
from shared.runtime.logging import configure_logging
from shared.runtime.settings import Settings
from tests.builders import messages as f
from tests.builders.services import OFFERS as OFFERS_SERVICE
from tests.builders.services import POINTS as POINTS_SERVICE
from tests.builders.services import PURCHASES as PURCHASES_SERVICE
from tests.support import Collector, Producer, ServiceThread, start_process, wait_until

try:  # the contract's size limits, defined once (schemas/limits.py)
    from schemas import limits as _limits

    ID_MAX: int = _limits.ID_MAX
    AMOUNT_MAX: Decimal | None = _limits.AMOUNT_MAX
except ImportError:  # an older tree without the limits module
    ID_MAX, AMOUNT_MAX = 128, None

pytestmark = pytest.mark.integration

ACCOUNTS = "card.accounts.v1"
PURCHASES = "card.purchases.v1"
DAYS = "card.business-days.v1"
DECISIONS = "installments.decisions.v1"
RECORDED = "purchases.recorded.v1"
OFFERS = "installments.offers.v1"
PLANS = "installments.plans.v1"
LEDGER = "points.ledger.v1"
#: Every topic the three services consume: where their dead letters can land.
CONSUMED = sorted(
    {t for s in (PURCHASES_SERVICE, OFFERS_SERVICE, POINTS_SERVICE) for t in s.consumes}
)
PAN_DIGITS = "4111111111111111"  # a test card number (passes Luhn)
PAN_UNDERSCORES = "4111_1111_1111_1111"
POSTED = "2026-01-15T10:00:00Z"


def _partition(key: str, partitions: int) -> int:
    """The partition the producers' default partitioner (murmur2) picks for ``key``."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def _headers(rec: Any) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in (rec.headers or [])}


def _json(rec: Any) -> dict[str, Any]:
    return json.loads(rec.value)


@dataclass
class Sent:
    """Where one message landed (to find its dead letter by its original coordinates)."""

    topic: str
    partition: int
    offset: int
    size: int


@dataclass
class Case:
    name: str
    must_dead_letter: bool
    poison: Sent
    valid_after: str = ""  # purchase_id of the valid purchase sent after the poison
    purchase_id: str | None = None  # the poison's own purchase_id, when it has one
    outcome: str = ""
    notes: list[str] = field(default_factory=list)


class Topics:
    """Reads several topics of the test's namespace from the beginning with one consumer
    (one poll for all: a :class:`Collector` per topic would cost a poll timeout each)."""

    def __init__(self, settings: Settings, topics: list[str]) -> None:
        self.settings = settings
        self.consumer = KafkaConsumer(
            **settings.kafka_client_config(), enable_auto_commit=False, group_id=None
        )
        self.by_physical = {settings.topic(t): t for t in topics}
        tps = []
        for physical in self.by_physical:
            parts = None
            deadline = time.monotonic() + 30
            while not parts and time.monotonic() < deadline:
                parts = self.consumer.partitions_for_topic(physical)
            assert parts, f"topic {physical} not found"
            tps += [TopicPartition(physical, n) for n in parts]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.records: dict[str, list[Any]] = {t: [] for t in topics}

    def poll(self, timeout_ms: int = 50) -> int:
        got = 0
        for tp, recs in self.consumer.poll(timeout_ms=timeout_ms).items():
            self.records[self.by_physical[tp.topic]].extend(recs)
            got += len(recs)
        return got

    def settle(self, quiet_s: float) -> None:
        """Poll until nothing new arrives for ``quiet_s`` (to check 'no more')."""
        since = time.monotonic()
        while time.monotonic() - since < quiet_s:
            if self.poll(100):
                since = time.monotonic()

    def close(self) -> None:
        self.consumer.close()


class Pipeline:
    """The producer, the collectors of every output and DLQ topic, and the threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = Producer(settings)
        self.topics = Topics(settings, [RECORDED, OFFERS, PLANS, LEDGER, *map(dlq_topic, CONSUMED)])
        self.out = {t: self.topics.records[t] for t in (RECORDED, OFFERS, PLANS, LEDGER)}
        self.dlq = {t: self.topics.records[dlq_topic(t)] for t in CONSUMED}
        self.threads: list[ServiceThread] = []
        self.timings: list[str] = []

    def send(self, topic: str, value: dict[str, Any] | bytes, key: str) -> Sent:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        meta = self.producer._producer.send(
            self.settings.topic(topic), key=key.encode(), value=raw
        ).get(timeout=30)
        return Sent(topic, meta.partition, meta.offset, len(raw))

    def poll(self) -> None:
        self.topics.poll()

    def settle(self, quiet_s: float = 1.0) -> None:
        self.topics.settle(quiet_s)

    # --- what came out -------------------------------------------------------------

    def events(self, topic: str, event_type: str | None = None) -> list[dict[str, Any]]:
        evs = [_json(r) for r in self.out[topic]]
        return [e for e in evs if event_type is None or e["type"] == event_type]

    def letters_of(self, sent: Sent) -> list[Any]:
        """Dead letters of the record ``sent`` (matched by its original coordinates)."""
        found = []
        for c in self.dlq.values():
            for rec in c:
                h = _headers(rec)
                where = (h.get("original.topic"), h.get("original.partition"))
                if where == (sent.topic, str(sent.partition)) and h.get("original.offset") == str(
                    sent.offset
                ):
                    found.append(rec)
        return found

    def downstream_letters(self, topic: str, marker: str, service: str) -> list[Any]:
        """Dead letters by ``service`` of records of ``topic`` whose value holds ``marker``."""
        needle = json.dumps(marker)[1:-1].encode()
        return [
            r
            for r in self.dlq[topic]
            if _headers(r).get("error.service") == service and needle in (r.value or b"")
        ]

    def offer_outcomes(self, purchase_id: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events(OFFERS)
            if e["type"] in ("offer.made", "offer.not-eligible")
            and e["data"]["purchase_id"] == purchase_id
        ]

    def accruals(self, purchase_id: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events(LEDGER, "points.accrued")
            if e["data"].get("reason") == "purchase" and e["data"].get("purchase_id") == purchase_id
        ]

    def recorded(self, purchase_id: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events(RECORDED, "purchase.recorded")
            if e["data"]["purchase_id"] == purchase_id
        ]

    def purchase_done(self, purchase_id: str) -> bool:
        """Offers and points have both reacted to the recorded purchase (or dead-lettered it)."""
        offers = self.offer_outcomes(purchase_id) or self.downstream_letters(
            RECORDED, purchase_id, "offers"
        )
        points = self.accruals(purchase_id) or self.downstream_letters(
            RECORDED, purchase_id, "points"
        )
        return bool(offers and points)

    def wait(self, predicate: Any, what: str, timeout: float = 60.0) -> None:
        def check() -> bool:
            self.poll()
            return bool(predicate())

        t0 = time.monotonic()
        wait_until(check, timeout, what)
        self.timings.append(f"{what}: {time.monotonic() - t0:.1f} s")

    def alive(self) -> None:
        for t in self.threads:
            assert t.thread.is_alive() and t.error is None, (
                f"the {t.runner.service.name} service stopped: {t.error!r}"
            )

    def start(self) -> None:
        """Start the three services; a start whose consumer got no partitions is retried
        (before any poison is sent: see ``tests/integration/test_offers.py``)."""
        t0 = time.monotonic()
        for service in (PURCHASES_SERVICE, OFFERS_SERVICE, POINTS_SERVICE):
            wanted = self.settings.topic_partitions * len(service.consumes)
            for _attempt in range(3):
                thread = ServiceThread(service, self.settings).start()
                deadline = time.monotonic() + 20
                while len(thread.runner.assigned) < wanted and time.monotonic() < deadline:
                    time.sleep(0.1)
                if len(thread.runner.assigned) >= wanted:
                    self.threads.append(thread)
                    break
                thread.stop()
            else:
                raise AssertionError(f"the {service.name} service never got its partitions")
            self.timings.append(f"{service.name} started: {time.monotonic() - t0:.1f} s")

    def close(self) -> None:
        errors = []
        for t in self.threads:
            try:
                t.stop()
            except BaseException as exc:  # report every one
                errors.append(exc)
        self.topics.close()
        self.producer.close()
        if errors:
            raise errors[0]


def _usd_max() -> str:
    """The largest USD amount the schema accepts (2 decimal places)."""
    top = AMOUNT_MAX if AMOUNT_MAX is not None else Decimal("999999999999.99")
    return str(top.quantize(Decimal("0.01"), rounding=ROUND_DOWN))


def _long_id(prefix: str, length: int) -> str:
    return (prefix + uuid.uuid4().hex * 8)[:length]


def test_poison_messages_never_stop_a_service(settings, record_property):
    started = time.monotonic()
    p = Pipeline(settings)
    logs = io.StringIO()
    configure_logging("INFO", "json", stream=logs)
    account = f.new_id("acc")
    cases: list[Case] = []
    try:
        p.start()
        p.send(ACCOUNTS, f.account(account), account)
        first = f.purchase(account, posted_at=POSTED)
        p.send(PURCHASES, first, account)
        first_id = first["data"]["purchase_id"]
        p.wait(lambda: p.purchase_done(first_id), "the first purchase's offer and points")
        [made] = p.offer_outcomes(first_id)
        assert made["type"] == "offer.made", made["data"]
        offer_id, tenor = made["data"]["offer_id"], made["data"]["options"][0]["tenor_months"]

        def valid() -> dict[str, Any]:
            return f.purchase(account, posted_at=POSTED)

        def pair(name: str, topic: str, poison: Any, key: str, *, must: bool) -> Case:
            """The poison, then a valid purchase of the same account."""
            case = Case(name, must, p.send(topic, poison, key))
            if isinstance(poison, dict) and poison.get("type") == "purchase.posted":
                case.purchase_id = poison["data"]["purchase_id"]
            after = valid()
            p.send(PURCHASES, after, account)
            case.valid_after = after["data"]["purchase_id"]
            cases.append(case)
            return case

        # 1. ids: 100 characters, and the longest the schema accepts
        pair(
            "purchase_id of 100 characters",
            PURCHASES,
            f.purchase(account, purchase_id=_long_id("pur-", 100), posted_at=POSTED),
            account,
            must=ID_MAX < 100,
        )
        pair(
            f"purchase_id of {ID_MAX} characters (the longest accepted)",
            PURCHASES,
            f.purchase(account, purchase_id=_long_id("pur-", ID_MAX), posted_at=POSTED),
            account,
            must=False,
        )
        # 2. NUL in the account id / subject (and key), on the same partition as `account`
        nul_account = account + "\u0000"
        while _partition(nul_account, settings.topic_partitions) != _partition(
            account, settings.topic_partitions
        ):
            nul_account = f.new_id("acc") + "\u0000x"
        pair(
            "account_id and subject holding U+0000",
            PURCHASES,
            f.purchase(nul_account, posted_at=POSTED),
            nul_account,
            must=True,
        )
        nul_upsert = pair(
            "account.upserted with U+0000 in account_id and subject",
            ACCOUNTS,
            f.account(nul_account),
            nul_account,
            must=True,
        )
        # 3. amounts: 3,000,000,000.00 and the largest the schema accepts
        pair(
            "amount 3000000000.00",
            PURCHASES,
            f.purchase(account, "3000000000.00", posted_at=POSTED),
            account,
            must=False,
        )
        pair(
            f"amount {_usd_max()} (the largest accepted)",
            PURCHASES,
            f.purchase(account, _usd_max(), posted_at=POSTED),
            account,
            must=False,
        )
        # 4. accepting the first offer, redeeming 3,000,000,000 points
        redeem = pair(
            "offer.accepted with redeem_points 3000000000",
            DECISIONS,
            f.offer_accepted(account, offer_id, tenor, redeem_points=3_000_000_000),
            account,
            must=False,
        )
        # 5. values near 1 MiB: under the broker's limit, far over the 64 KiB contract limit
        near = f.purchase(account, posted_at=POSTED)
        near["data"]["padding"] = ""
        base = len(json.dumps(near).encode())
        near["data"]["padding"] = "p" * (1_040_000 - base)
        near_case = pair("value of 1,040,000 bytes", PURCHASES, near, account, must=True)
        assert near_case.poison.size == 1_040_000
        # ... and one at the producer's limit: its dead letter cannot hold it and is cut
        at_limit = f.purchase(account, posted_at=POSTED)
        at_limit["data"]["padding"] = ""
        target = settings.kafka_max_request_bytes - 400  # what the test producer still sends
        base = len(json.dumps(at_limit).encode())
        at_limit["data"]["padding"] = "q" * (target - base)
        limit_name = f"value of {target:,} bytes (the producer's limit)"
        limit_case = pair(limit_name, PURCHASES, at_limit, account, must=True)
        # 6. dates at the end of the calendar
        pair(
            "purchase posted in year 9999",
            PURCHASES,
            f.purchase(account, posted_at="9999-12-31T23:59:59Z"),
            account,
            must=True,
        )
        pair(
            "purchase posted in year 0001",
            PURCHASES,
            f.purchase(account, posted_at="0001-01-01T00:00:00Z"),
            account,
            must=True,
        )
        # 7. an event id applied before, sent again with other content
        original = valid()
        p.send(PURCHASES, original, account)
        conflict = f.purchase(account, "999.00", posted_at=POSTED, event_id=original["id"])
        dup = pair("the same event id with other content", PURCHASES, conflict, account, must=True)
        # 8. a card number with underscores between the digit groups
        pan = f.purchase(account, posted_at=POSTED)
        pan["data"]["merchant"]["name"] = f"Shop {PAN_UNDERSCORES}"
        pan_name = "PAN with underscores in the merchant name"
        pan_case = pair(pan_name, PURCHASES, pan, account, must=True)
        p.producer.flush()

        # Every valid purchase after a poison: its offer outcome and its points.
        last = cases[-1].valid_after
        p.wait(lambda: p.purchase_done(last), "the last purchase's offer and points", 90)
        must = [c for c in cases if c.must_dead_letter]
        p.wait(lambda: all(p.letters_of(c.poison) for c in must), "the must-DLQ poisons' letters")
        # The NUL account upsert: both consumers of card.accounts.v1 dead-letter it.
        p.wait(lambda: len(p.letters_of(nul_upsert.poison)) >= 2, "both services' dead letters")
        # The offer acceptance: a plan (or a rejection, or a dead letter), then the points
        # service's answer to the plan's redemption (or its dead letter).
        plan_id: list[str] = []

        def decided() -> bool:
            plans = [e for e in p.events(PLANS, "plan.created") if _of_offer(e, offer_id)]
            if plans:
                plan_id[:] = [plans[0]["data"]["plan_id"]]
                return True
            rejected = [e for e in p.events(OFFERS, "offer.rejected") if _of_offer(e, offer_id)]
            if rejected:
                redeem.notes.append("offer.rejected")
            return bool(rejected or p.letters_of(redeem.poison))

        p.wait(decided, "the acceptance's outcome")
        if plan_id:

            def answers() -> list[str]:
                got = [
                    e["type"]
                    for e in p.events(LEDGER)
                    if e["type"] in ("points.redeemed", "points.redemption-rejected")
                    and e["data"].get("plan_id") == plan_id[0]
                ]
                return got + ["DLQ"] * len(p.downstream_letters(PLANS, plan_id[0], "points"))

            p.wait(answers, "the points service's answer to the redemption")
            p.settle(0.5)
            assert len(answers()) == 1, answers()
            redeem.notes.append(f"plan.created; points: {answers()[0]}")
        p.settle(1.0)
        p.alive()

        # --- per case ------------------------------------------------------------------
        for case in cases:
            letters = p.letters_of(case.poison)
            reasons = [_headers(r).get("error.reason", "") for r in letters]
            assert all(reasons), f"{case.name}: a dead letter without error.reason"
            services = [_headers(r).get("error.service") for r in letters]
            assert len(services) == len(set(services)), (
                f"{case.name}: dead-lettered more than once by one service: {services}"
            )
            if case is nul_upsert:
                assert sorted(services) == ["offers", "points"], services
            else:
                assert len(letters) <= 1, f"{case.name}: {len(letters)} dead letters"
            if case.must_dead_letter:
                assert letters, f"{case.name}: must be dead-lettered, was not"
                expected_dlq = p.settings.topic(dlq_topic(case.poison.topic))
                assert all(r.topic == expected_dlq for r in letters), case.name
            if letters:
                case.outcome = f"DLQ {dlq_topic(case.poison.topic)} by {','.join(services)}"
                case.notes.append(reasons[0][:120])
            else:
                case.outcome = "applied"
            if case.purchase_id is not None:
                recorded = p.recorded(case.purchase_id)
                if letters:
                    assert not recorded, f"{case.name}: dead-lettered and also recorded"
                else:
                    # applied: recorded once, then exactly one answer from offers and from
                    # points (their outcome, or their own dead letter)
                    assert len(recorded) == 1, f"{case.name}: recorded {len(recorded)} times"
                    offers = p.offer_outcomes(case.purchase_id)
                    offers_dlq = p.downstream_letters(RECORDED, case.purchase_id, "offers")
                    points = p.accruals(case.purchase_id)
                    points_dlq = p.downstream_letters(RECORDED, case.purchase_id, "points")
                    assert len(offers) + len(offers_dlq) == 1, (case.name, offers, offers_dlq)
                    assert len(points) + len(points_dlq) == 1, (case.name, points, points_dlq)
                    offer_note = offers[0]["type"] if offers else "DLQ"
                    points_note = f"accrued {points[0]['data']['points']}" if points else "DLQ"
                    case.notes.append(f"offers: {offer_note}; points: {points_note}")
            # the valid purchase after the poison: its offer outcome and its points
            assert len(p.recorded(case.valid_after)) == 1, f"after {case.name}: not recorded once"
            offers_after = p.offer_outcomes(case.valid_after)
            assert len(offers_after) == 1, f"after {case.name}: {len(offers_after)} offer outcomes"
            assert len(p.accruals(case.valid_after)) == 1, f"after {case.name}: no points once"

        # specifics
        [near_letter] = p.letters_of(near_case.poison)
        h = _headers(near_letter)
        assert _is_too_large(h["error.reason"]), h["error.reason"]
        assert len(near_letter.value) < 1_048_576
        [cut] = p.letters_of(limit_case.poison)
        h = _headers(cut)
        assert _is_too_large(h["error.reason"]), h["error.reason"]
        assert h.get("error.truncated") == "true", "the dead letter at the limit was not cut"
        assert h["original.size"] == str(limit_case.poison.size)
        assert len(h["original.sha256"]) == 64
        assert len(cut.value) < 1_048_576 and len(cut.value) < limit_case.poison.size
        [conflict_letter] = p.letters_of(dup.poison)
        assert _headers(conflict_letter)["error.reason"].startswith("duplicate_id_conflict")
        assert len(p.recorded(original["data"]["purchase_id"])) == 1
        assert not p.recorded(conflict["data"]["purchase_id"])
        [pan_letter] = p.letters_of(pan_case.poison)
        assert pan_letter.topic == settings.topic(dlq_topic(PURCHASES))
        for form in (PAN_DIGITS, PAN_UNDERSCORES):
            assert all(form.encode() not in rec.value for rec in p.out[RECORDED])
            assert form not in (pan_letter.key or b"").decode("utf-8", "replace")
            assert all(form not in v for v in _headers(pan_letter).values())
        for form in (PAN_DIGITS, PAN_UNDERSCORES):
            assert form not in logs.getvalue(), "the card number was logged"

        # 9. last: a business day far in the future (after a plausible first one)
        _far_future_business_day(p, account, cases)
        p.alive()
    finally:
        configure_logging("INFO", "json")
        table = "\n".join(f"  {c.name}: {c.outcome} {'; '.join(c.notes)}" for c in cases)
        record_property("poison_outcomes", table)
        print(f"\npoison outcomes ({time.monotonic() - started:.1f} s):\n{table}")
        print("timings: " + "; ".join(p.timings))
        p.close()


def _of_offer(event: dict[str, Any], offer_id: str) -> bool:
    return bool(event["data"].get("offer_id") == offer_id)


def _is_too_large(reason: str) -> bool:
    """The contract's reason code is ``too_large``; the codec says "over the N-byte limit"."""
    return reason.startswith("too_large") or "-byte limit" in reason


def _far_future_business_day(p: Pipeline, account: str, cases: list[Case]) -> None:
    p.send(DAYS, f.business_day("2026-01-15"), "business-day")  # the first: accepted as it comes
    far = p.send(DAYS, f.business_day("2099-01-01"), "business-day")
    case = Case("business-day.closed 2099-01-01", True, far)
    after = f.purchase(account, posted_at=POSTED)
    p.send(PURCHASES, after, account)
    case.valid_after = after["data"]["purchase_id"]
    cases.append(case)
    p.wait(lambda: p.letters_of(case.poison), "the far-future business day's dead letter")
    p.wait(lambda: p.purchase_done(case.valid_after), "the purchase after it")
    p.settle(1.0)
    [letter] = p.letters_of(case.poison)
    h = _headers(letter)
    assert letter.topic == p.settings.topic(dlq_topic(DAYS)) and h["error.service"] == "offers"
    assert h["error.reason"].startswith("business_date_jump"), h["error.reason"]
    assert len(p.offer_outcomes(case.valid_after)) == 1
    assert len(p.accruals(case.valid_after)) == 1
    case.outcome = f"DLQ {dlq_topic(DAYS)} by offers"
    case.notes.append(h["error.reason"][:120])


# --- a record that kills the process ------------------------------------------------


def test_a_record_that_kills_the_process_is_dead_lettered(settings, record_property):
    started = time.monotonic()
    max_attempts = 2
    marker = f"POISON{uuid.uuid4().hex[:12]}"
    env = {
        "INSTALLMENTS_FAULT_POISON": marker,
        "INSTALLMENTS_POISON_MAX_ATTEMPTS": str(max_attempts),
    }
    producer = Producer(settings)
    recorded, dlq = Collector(settings, RECORDED), Collector(settings, dlq_topic(PURCHASES))
    account = f.new_id("acc")
    before, after = f.purchase(account, posted_at=POSTED), f.purchase(account, posted_at=POSTED)
    poison = f.purchase(account, posted_at=POSTED)
    poison["data"]["merchant"]["name"] = f"Shop {marker}"
    ids = [before["data"]["purchase_id"], after["data"]["purchase_id"]]

    proc = start_process("purchases", settings, env)
    starts, deaths, exit_codes = 1, 0, []
    producer.send_all(PURCHASES, [before, poison, after])

    def done() -> bool:
        recorded.poll()
        dlq.poll()
        got = {_json(r)["data"]["purchase_id"] for r in recorded.records}
        return set(ids) <= got and bool(dlq.records)

    deadline = time.monotonic() + 120
    try:
        while not done():
            assert time.monotonic() < deadline, (
                f"not done after {starts} starts and {deaths} deaths (exit codes {exit_codes})"
            )
            code = proc.poll()
            if code is not None:  # the supervisor: count the death, start it again
                deaths += 1
                exit_codes.append(code)
                assert deaths <= max_attempts + 2, f"crash loop: {deaths} deaths {exit_codes}"
                proc = start_process("purchases", settings, env)
                starts += 1
        recorded.settle(1.5)
        dlq.settle(0.5)
        assert proc.poll() is None, "the service died after dead-lettering the poison"
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        producer.close()
    got = [_json(r)["data"]["purchase_id"] for r in recorded.records]
    assert sorted(got) == sorted(ids), "each valid purchase recorded exactly once"
    [letter] = dlq.records
    h = _headers(letter)
    assert h["error.reason"].startswith("poison:"), h["error.reason"]
    assert h["error.service"] == "purchases"
    assert marker.encode() in letter.value
    assert all(c == -9 for c in exit_codes), exit_codes  # SIGKILL, nothing else
    # The first death is not counted (no note yet, or a note at an earlier offset): the
    # record is dead-lettered at the start after `max_attempts` counted deaths.
    assert max_attempts <= deaths <= max_attempts + 1, deaths
    summary = (
        f"deaths={deaths} starts={starts} max_attempts={max_attempts}"
        f" elapsed={time.monotonic() - started:.1f}s"
    )
    record_property("crash_loop", summary)
    print(f"\ncrash loop: {summary}")
    recorded.close()
    dlq.close()
