"""Workarounds for two kafka-python 3.0.12 bugs, applied once at import.

1. A group-join hang.

When a rebalance's JoinGroup/SyncGroup round trip outlives one ``poll(timeout_ms)``,
the join task is left in flight for the next poll to await. But the group leader
computes the assignment inside that task, which updates the metadata snapshots, so
``need_rejoin()`` turns False before the finished round trip is applied: the next
poll never awaits the task again, the assignment is never installed, and the member
stays "rebalancing" with heartbeats off and no partitions: the service consumes
nothing, for ever. (Seen here as services that "never get their partitions" under
load.) Keeping ``need_rejoin()`` true while a join task is pending lets the next poll
finish it. Harmless once upstream fixes it: a pending task is then always awaited.

2. A paused partition that is never fetched again after ``resume()``. When a
partition is paused while its parsed records are next in line, the fetcher parks
them (``_paused_partition_records``) and stops fetching that partition until they
are restored. ``fetched_records()`` restores them only when
``_next_partition_records is None``; but a fully drained ``PartitionRecords`` stays
in that slot as a falsy object that is not None, so the parked records are never
restored and the partition is never fetched again: the consumer silently stops
reading it for ever (seen here as a service whose deferred partition never moved;
reproduced by tests/integration/test_kafka_compat.py). Clearing a drained slot
before each call lets the restore happen; a drained slot holds nothing to lose.
"""

from __future__ import annotations

from typing import Any

from kafka.consumer.fetcher import Fetcher
from kafka.coordinator.consumer import ConsumerCoordinator

_original_need_rejoin = ConsumerCoordinator.need_rejoin


def _need_rejoin_unless_join_pending(self: ConsumerCoordinator) -> bool:
    return getattr(self, "_join_task", None) is not None or _original_need_rejoin(self)


_original_fetched_records = Fetcher.fetched_records


def _fetched_records_restoring_parked(self: Fetcher, *args: Any, **kwargs: Any) -> Any:
    current = self._next_partition_records
    if current is not None and not current:  # drained: free the slot for parked records
        self._next_partition_records = None
    return _original_fetched_records(self, *args, **kwargs)


def apply() -> None:
    if ConsumerCoordinator.need_rejoin is not _need_rejoin_unless_join_pending:
        ConsumerCoordinator.need_rejoin = _need_rejoin_unless_join_pending  # type: ignore[method-assign]
    if Fetcher.fetched_records is not _fetched_records_restoring_parked:
        Fetcher.fetched_records = _fetched_records_restoring_parked  # type: ignore[method-assign]


apply()
