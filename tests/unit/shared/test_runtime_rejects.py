"""Rejections in a batch: dead-lettered in place when they changed nothing, else the
batch is split at them; either way the output equals one-record-at-a-time processing."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from shared.runtime import Context, NotLoaded, Reject, Service
from tests.builders import messages as f
from tests.builders.services import PURCHASES as PURCHASES_SERVICE
from tests.harness import Harness

PURCHASES = "card.purchases.v1"


class CountingRepository:
    """A repository that counts its changes (the runtime's ``changes`` protocol)."""

    def __init__(self, _session: Any) -> None:
        self.changes = 0
        self.noted: list[str] = []

    def load(self, _events: list[Any]) -> None:
        pass

    def note(self, purchase_id: str) -> None:
        self.changes += 1
        self.noted.append(purchase_id)

    def save(self) -> None:
        pass


def handler(ctx: Context, event: Any) -> None:
    pid = event.data.purchase_id
    if pid.startswith("reject-first"):
        raise Reject("refused before any change")
    ctx.repo.note(pid)
    if pid.startswith("reject-after"):
        raise Reject("refused after a change")


def service() -> Service:
    return Service(
        name="probe",
        handlers={"purchase.posted": handler},
        migrations=[],
        repository=CountingRepository,
    )


def transactions(h: Harness) -> list[int]:
    sizes: list[int] = []
    real = h.runner._transaction

    def counting(decoded: list[Any], *, isolated: bool) -> Any:
        sizes.append(len(decoded))
        return real(decoded, isolated=isolated)

    h.runner._transaction = counting  # type: ignore[method-assign]
    return sizes


def batch(ids: list[str]) -> list[dict[str, Any]]:
    return [f.purchase("acc-1", purchase_id=pid) for pid in ids]


def test_a_rejection_that_changed_nothing_stays_in_the_one_transaction(tmp_path):
    h = Harness(service(), tmp_path)
    try:
        sizes = transactions(h)
        ids = [f"p{i}" for i in range(50)]
        ids[10] = "reject-first-1"
        ids[30] = "reject-first-2"
        out = h.feed(PURCHASES, *batch(ids))
        assert sizes == [50]
        assert [e.headers["original.offset"] for e in out] == ["10", "30"]
        assert all(e.headers["error.reason"] == "refused before any change" for e in out)
    finally:
        h.close()


def test_a_rejection_after_a_change_splits_the_batch_and_keeps_nothing_of_it(tmp_path):
    h = Harness(service(), tmp_path)
    saved: list[list[str]] = []
    real_save = CountingRepository.save

    def recording_save(repo: CountingRepository) -> None:
        saved.append(list(repo.noted))
        real_save(repo)

    CountingRepository.save = recording_save  # type: ignore[method-assign]
    try:
        sizes = transactions(h)
        ids = [f"p{i}" for i in range(20)]
        ids[5] = "reject-after-1"
        out = h.feed(PURCHASES, *batch(ids))
        assert sizes == [20, 5, 1, 14]  # all; the five before it; it alone; the rest
        assert [e.headers["original.offset"] for e in out] == ["5"]
        # what was saved: the records before it, nothing of it (its transaction dropped
        # the repository), the records after it
        assert saved == [ids[:5], ids[6:]]
    finally:
        CountingRepository.save = real_save  # type: ignore[method-assign]
        h.close()


def test_purchases_rejected_refunds_do_not_split_the_batch(tmp_path):
    """The benchmark's case: refunds of purchases never recorded among purchases."""
    h = Harness(PURCHASES_SERVICE, tmp_path)
    one = Harness(PURCHASES_SERVICE, tmp_path / "one")
    try:
        sizes = transactions(h)
        messages: list[dict[str, Any]] = []
        for i in range(40):
            messages.append(f.purchase("acc-1", purchase_id=f"pur-{i}"))
            if i % 10 == 9:
                messages.append(f.refund("acc-1", f"pur-never-{i}", "10.00"))
        out = h.feed(PURCHASES, *messages)
        assert sizes == [len(messages)]
        singly = [e for m in messages for e in one.feed(PURCHASES, m)]
        assert [(e.topic, e.value) for e in out] == [(e.topic, e.value) for e in singly]
        assert sum(1 for e in out if e.topic == PURCHASES + ".dlq") == 4
    finally:
        h.close()
        one.close()


class BrokenRepository(CountingRepository):
    """A bug in the service's own code, outside any handler."""

    def save(self) -> None:
        raise TypeError("save() got an unexpected keyword argument")


def test_a_bug_outside_the_handlers_stops_the_batch_instead_of_dead_lettering_it(tmp_path):
    """Not one dead letter per record: the process stops (its supervisor restarts it and
    crash counting isolates a record that keeps causing it)."""
    broken = Service(
        name="probe",
        handlers={"purchase.posted": handler},
        migrations=[],
        repository=BrokenRepository,
    )
    h = Harness(broken, tmp_path)
    try:
        records = [h.publish(PURCHASES, m) for m in batch(["p1", "p2", "p3"])]
        with pytest.raises(TypeError):
            h.runner.process_batch(records)
    finally:
        h.close()


def test_a_key_the_preload_table_missed_is_a_bug_not_a_dead_letter(tmp_path):
    def needs_unloaded(ctx: Context, event: Any) -> None:
        raise NotLoaded("purchase p1 was not preloaded")

    h = Harness(
        Service(name="probe", handlers={"purchase.posted": needs_unloaded}, migrations=[]),
        tmp_path,
    )
    try:
        with pytest.raises(NotLoaded):
            h.runner.process_batch([h.publish(PURCHASES, batch(["p1"])[0])])
    finally:
        h.close()


def test_a_dead_letter_is_counted_under_its_event_type_when_readable(tmp_path):
    def dlq_count(event_type: str) -> float:
        labels = {"service": PURCHASES_SERVICE.name, "type": event_type, "outcome": "dlq"}
        return REGISTRY.get_sample_value("installments_events_total", labels) or 0.0

    h = Harness(PURCHASES_SERVICE, tmp_path)
    try:
        bad = f.purchase("acc-1")
        bad["data"]["amount"] = 12.5  # a JSON number in a money field: refused at decode
        before = (dlq_count("purchase.posted"), dlq_count("?"))
        out = h.feed(PURCHASES, bad, b"{not json")
        assert len(out) == 2
        assert (dlq_count("purchase.posted"), dlq_count("?")) == (before[0] + 1, before[1] + 1)
    finally:
        h.close()
