"""A workaround for a kafka-python 3.0.12 group-join hang, applied once at import.

When a rebalance's JoinGroup/SyncGroup round trip outlives one ``poll(timeout_ms)``,
the join task is left in flight for the next poll to await. But the group leader
computes the assignment inside that task, which updates the metadata snapshots, so
``need_rejoin()`` turns False before the finished round trip is applied: the next
poll never awaits the task again, the assignment is never installed, and the member
stays "rebalancing" with heartbeats off and no partitions: the service consumes
nothing, for ever. (Seen here as services that "never get their partitions" under
load.) Keeping ``need_rejoin()`` true while a join task is pending lets the next poll
finish it. Harmless once upstream fixes it: a pending task is then always awaited.
"""

from __future__ import annotations

from kafka.coordinator.consumer import ConsumerCoordinator

_original_need_rejoin = ConsumerCoordinator.need_rejoin


def _need_rejoin_unless_join_pending(self: ConsumerCoordinator) -> bool:
    return getattr(self, "_join_task", None) is not None or _original_need_rejoin(self)


def apply() -> None:
    if ConsumerCoordinator.need_rejoin is not _need_rejoin_unless_join_pending:
        ConsumerCoordinator.need_rejoin = _need_rejoin_unless_join_pending  # type: ignore[method-assign]


apply()
