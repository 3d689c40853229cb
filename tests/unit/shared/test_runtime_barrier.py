"""``Context.wait_for`` / ``Context.unread``: the runtime's barrier on another topic.

A handler waits until every record of a topic published before its event has been
applied by the consumer group; the snapshot of the topic's end offsets is taken when the
event is first looked at and kept across retries; a snapshot taken in the current batch
and found satisfied lets the rest of the batch skip the look-up.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from schemas import Envelope
from shared.runtime import Context, Defer, Service
from tests.builders import messages as f
from tests.harness import FakeRecord, Harness

ACCOUNTS = "card.accounts.v1"
PURCHASES = "card.purchases.v1"


class Probe:
    """A service whose purchase handler waits for the accounts topic."""

    def __init__(self) -> None:
        self.applied: list[str] = []  # the account or purchase ids applied, in order
        self.defers: list[Defer] = []
        self.unread: list[int] = []
        self.caught_up: list[set[str]] = []

    def account(self, ctx: Context, event: Envelope) -> None:
        self.applied.append(event.data.account_id)

    def purchase(self, ctx: Context, event: Envelope) -> None:
        self.unread.append(ctx.unread(ACCOUNTS))
        try:
            ctx.wait_for(ACCOUNTS, "accounts")
        except Defer as exc:
            self.defers.append(exc)
            raise
        self.caught_up.append(set(ctx.caught_up))
        self.applied.append(event.data.purchase_id)


class Barrier:
    def __init__(self, harness: Harness, probe: Probe) -> None:
        self.h, self.probe = harness, probe
        self.end_offset_calls = 0
        real = harness.runner.consumer.end_offsets  # type: ignore[union-attr]

        def counting(tps: list[Any]) -> dict[Any, int]:
            self.end_offset_calls += 1
            return real(tps)

        harness.runner.consumer.end_offsets = counting  # type: ignore[union-attr]

    def account(self, account_id: str, partition: int = 0) -> FakeRecord:
        return self.h.publish(ACCOUNTS, f.account(account_id), partition=partition)

    def purchase(self, purchase_id: str, partition: int = 0) -> FakeRecord:
        return self.h.publish(
            PURCHASES, f.purchase("acc-1", purchase_id=purchase_id), partition=partition
        )

    def process(self, *records: FakeRecord) -> None:
        self.h.process(*records)
        self.h.runner.deferred_until.clear()  # the runtime re-seeks after the delay


@pytest.fixture
def b(tmp_path) -> Iterator[Barrier]:
    probe = Probe()
    service = Service(
        name="barrier",
        handlers={"account.upserted": probe.account, "purchase.posted": probe.purchase},
        migrations=[],
    )
    harness = Harness(service, tmp_path)
    yield Barrier(harness, probe)
    harness.close()


def test_nothing_published_before_the_event_means_no_wait(b):
    b.process(b.purchase("p1"))
    assert b.probe.applied == ["p1"] and b.probe.defers == [] and b.probe.unread == [0]


def test_an_unapplied_record_defers_until_it_is_applied(b):
    upsert = b.account("a1")
    purchase = b.purchase("p1")
    b.process(purchase)
    [defer] = b.probe.defers
    assert defer.reason == "waiting for accounts to catch up (1 not yet applied)"
    assert defer.retry_after_s == pytest.approx(0.1001)
    assert b.probe.applied == []
    assert len(b.h.runner.barriers) == 1  # the snapshot, kept for the retry
    b.process(upsert)
    b.process(purchase)
    assert b.probe.applied == ["a1", "p1"]
    assert b.probe.unread == [1, 0]  # wait_for gave the same answer as unread each time


def test_the_wait_is_for_records_published_before_the_first_look_only(b):
    first = b.account("a1")
    purchase = b.purchase("p1")
    b.process(purchase)  # deferred; snapshot: a1
    b.account("a2")  # published after the first look: not waited for
    b.process(first)
    b.process(purchase)
    assert b.probe.applied == ["a1", "p1"]


def test_the_same_batch_can_apply_what_the_event_waits_for(b):
    """The accounts partition comes later in the batch: the purchase's partition is
    deferred, the rest of the batch is applied, and the retry goes through."""
    purchase, later = b.purchase("p1"), b.purchase("p2")
    upsert = b.account("a1", partition=1)
    b.process(purchase, later, upsert)
    assert b.probe.applied == ["a1"] and len(b.probe.defers) == 1  # p2 skipped, not run
    b.process(purchase, later)
    assert b.probe.applied == ["a1", "p1", "p2"]


def test_a_fresh_snapshot_found_satisfied_covers_the_rest_of_the_batch(b):
    b.process(b.account("a1"), b.account("a2", partition=1))
    calls = b.end_offset_calls
    b.process(*(b.purchase(f"p{i}", partition=i % 2) for i in range(6)))
    assert b.probe.applied[2:] == [f"p{i}" for i in (0, 2, 4, 1, 3, 5)]
    assert b.end_offset_calls == calls + 1  # one look-up for the whole batch
    assert all(b.h.settings.topic(ACCOUNTS) in seen for seen in b.probe.caught_up)


def test_an_old_snapshot_found_satisfied_does_not_cover_the_batch(b):
    """p1's snapshot predates a2, which was published before p2: p1 may go, p2 waits."""
    a1 = b.account("a1")
    p1 = b.purchase("p1")
    b.process(p1)  # deferred; snapshot: a1
    b.process(a1)
    a2 = b.account("a2")
    p2 = b.purchase("p2", partition=1)
    b.process(p1, p2)
    assert b.probe.applied == ["a1", "p1"]
    assert b.probe.caught_up == [set()]  # p1 passed on its old snapshot: no shortcut
    assert len(b.probe.defers) == 2
    b.process(a2)
    b.process(p2)
    assert b.probe.applied == ["a1", "p1", "a2", "p2"]


def test_one_snapshot_per_waiting_partition_and_the_delay_grows_with_the_backlog(b):
    for i in range(3000):
        b.h.log_end[(b.h.settings.topic(ACCOUNTS), 0)] += 1  # a long unread backlog
        del i
    b.process(b.purchase("p1"))
    b.process(b.purchase("p2"))  # (as if p1 had been dead-lettered meanwhile)
    assert len(b.h.runner.barriers) == 1
    [(event_id, ends)] = b.h.runner.barriers.values()
    assert ends == {0: 3000}
    assert [d.retry_after_s for d in b.probe.defers] == pytest.approx([0.4, 0.4])
    b.h.log_end[(b.h.settings.topic(ACCOUNTS), 0)] += 50_000
    b.process(b.purchase("p3", partition=1))
    assert b.probe.defers[-1].retry_after_s == 2.0  # capped
    assert len(b.h.runner.barriers) == 2
