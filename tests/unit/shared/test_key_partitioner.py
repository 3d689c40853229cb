"""shared.runtime.base.KeyPartitioner: the partition of kafka-python's default
partitioner (murmur2 of the key, as the Java client) for every key, remembered."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import DefaultPartitioner

from shared.runtime import base
from shared.runtime.base import KeyPartitioner


class FakeCluster:
    """The three calls a partitioner makes of kafka-python's ClusterMetadata."""

    def __init__(self, partitions: dict[str, int]) -> None:
        self.partitions = partitions

    def topics(self) -> set[str]:
        return set(self.partitions)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        n = self.partitions.get(topic)
        return None if n is None else set(range(n))

    def available_partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions_for_topic(topic)


def _default(topic: str, key: bytes | None, cluster: FakeCluster) -> int:
    return DefaultPartitioner().partition(topic, key, key, b"v", b"v", cluster)


@given(
    keys=st.lists(st.binary(max_size=300), min_size=1, max_size=30),
    count=st.integers(min_value=1, max_value=200),
)
def test_every_key_lands_where_the_default_puts_it_first_and_again(keys, count):
    cluster = FakeCluster({"t": count})
    memo = KeyPartitioner()
    for _ in range(2):  # the second time from the memo
        for key in keys:
            assert memo.partition("t", key, key, b"v", b"v", cluster) == _default("t", key, cluster)


def test_a_topic_that_gains_partitions_is_hashed_again():
    cluster = FakeCluster({"t": 6})
    memo = KeyPartitioner()
    keys = [f"acct-{i}".encode() for i in range(200)]
    before = [memo.partition("t", k, k, None, None, cluster) for k in keys]
    cluster.partitions["t"] = 12
    after = [memo.partition("t", k, k, None, None, cluster) for k in keys]
    assert after == [_default("t", k, cluster) for k in keys]
    assert after != before  # some keys moved: the memo did not answer with the old count


def test_the_same_key_on_two_topics_is_two_entries():
    cluster = FakeCluster({"a": 3, "b": 7})
    memo = KeyPartitioner()
    key = b"acct-42"
    assert memo.partition("a", key, key, None, None, cluster) == _default("a", key, cluster)
    assert memo.partition("b", key, key, None, None, cluster) == _default("b", key, cluster)


def test_the_memo_is_bounded(monkeypatch):
    monkeypatch.setattr(base, "PARTITION_MEMO_KEYS", 10)
    cluster = FakeCluster({"t": 6})
    memo = KeyPartitioner()
    for i in range(35):
        key = f"k{i}".encode()
        assert memo.partition("t", key, key, None, None, cluster) == _default("t", key, cluster)
        assert len(memo._memo) <= 10


def test_no_key_goes_to_an_available_partition_and_is_not_remembered():
    cluster = FakeCluster({"t": 4})
    memo = KeyPartitioner()
    assert {memo.partition("t", None, None, b"v", b"v", cluster) for _ in range(50)} <= {0, 1, 2, 3}
    assert memo._memo == {}
