"""Kafka offset commits are asynchronous; a failed one is retried unless a newer
commit of that partition was asked for meanwhile (committed offsets never go back)."""

from __future__ import annotations

from typing import Any

from kafka import TopicPartition
from kafka.errors import RebalanceInProgressError

from shared.runtime import Runner
from shared.runtime.settings import Settings
from tests.builders.services import PURCHASES as SERVICE

TP = TopicPartition("card.purchases.v1", 0)


class FakeConsumer:
    def __init__(self) -> None:
        self.async_commits: list[tuple[dict[TopicPartition, Any], Any]] = []
        self.sync_commits: list[dict[TopicPartition, Any]] = []

    def commit_async(self, offsets: dict[TopicPartition, Any], callback: Any) -> None:
        self.async_commits.append((offsets, callback))

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.sync_commits.append(offsets)


def _runner(tmp_path) -> tuple[Runner, FakeConsumer]:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/{{service}}.db", environment="test")
    runner = Runner(SERVICE, settings)
    consumer = FakeConsumer()
    runner._consumer = consumer  # type: ignore[assignment]
    runner.assigned = {TP}
    return runner, consumer


def test_a_failed_commit_is_retried_on_the_next_commit(tmp_path):
    runner, consumer = _runner(tmp_path)
    runner._commit_kafka({TP: 10})
    ((offsets, callback),) = consumer.async_commits
    assert offsets[TP].offset == 10 and consumer.sync_commits == []
    callback(offsets, RebalanceInProgressError())
    runner._commit_kafka({})  # the idle poll's retry
    assert consumer.async_commits[-1][0][TP].offset == 10


def test_a_failed_commit_never_overrides_a_newer_one(tmp_path):
    runner, consumer = _runner(tmp_path)
    runner._commit_kafka({TP: 10})
    runner._commit_kafka({TP: 20})
    (old, old_callback), (_new, _) = consumer.async_commits
    old_callback(old, RebalanceInProgressError())  # 10 failed after 20 was asked for
    runner._commit_kafka({})
    assert len(consumer.async_commits) == 2  # nothing re-sent: 10 would move it back


def test_shutdown_commits_synchronously(tmp_path):
    runner, consumer = _runner(tmp_path)
    runner._commit_kafka({TP: 5}, sync=True)
    assert consumer.sync_commits[0][TP].offset == 5 and consumer.async_commits == []


def test_an_older_offset_asked_after_a_newer_one_is_not_committed(tmp_path):
    """#16: with the overlap, the writer may report a batch's offsets after the loop sought
    the partition and committed the (newer) stored offset: Kafka's never goes back."""
    runner, consumer = _runner(tmp_path)
    runner._commit_kafka({TP: 20})
    runner._commit_kafka({TP: 12})
    assert [c[0][TP].offset for c in consumer.async_commits] == [20]
    runner._commit_kafka({TP: 20})  # the same again is harmless
    runner._commit_kafka({TP: 25})
    assert [c[0][TP].offset for c in consumer.async_commits] == [20, 20, 25]
