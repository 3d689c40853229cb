"""Lag status rules: the data of a snapshot and the Burrow-like evaluator (pure, no I/O).

:class:`PartitionLag` / :class:`GroupSnapshot` are what the collector measures,
:func:`explain` turns a group's recent snapshots into a :class:`Status` and a reason,
:func:`prune_history` bounds the history a long-running monitor keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

DEFAULT_WINDOW_S = 60.0
DEFAULT_STOP_WINDOW_S = 300.0
DEFAULT_GROWTH_POINTS = 3


class Status(IntEnum):
    """Group status; the value is the ``kafka_consumergroup_status`` gauge (worse = higher)."""

    OK = 0
    WARNING = 1
    STALLED = 2
    STOPPED = 3
    REWIND = 4


@dataclass(frozen=True)
class PartitionLag:
    """One partition of one group at one moment."""

    topic: str
    partition: int
    log_end: int
    committed: int | None  # None: the group never committed on this partition
    lag: int  # log_end - committed; with no commit yet: log_end - log_start
    lag_seconds: float | None = None  # age of the oldest unconsumed message; 0 when lag == 0
    log_start: int = 0
    last_commit: float | None = None  # epoch s the monitor saw the committed offset change
    committed_since: float | None = None  # epoch s since which the value is known unchanged

    @property
    def key(self) -> tuple[str, int]:
        return (self.topic, self.partition)

    @property
    def no_commit(self) -> bool:
        return self.committed is None


@dataclass(frozen=True)
class GroupSnapshot:
    """One consumer group at one moment (``at``: epoch seconds)."""

    group: str
    at: float
    members: int
    partitions: list[PartitionLag] = field(default_factory=list)
    state: str = ""  # the broker's group state (Stable, Empty, Dead, ...)

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def max_lag_seconds(self) -> float | None:
        known = [p.lag_seconds for p in self.partitions if p.lag_seconds is not None]
        return max(known) if known else (0.0 if self.total_lag == 0 else None)

    @property
    def last_commit(self) -> float | None:
        seen = [p.last_commit for p in self.partitions if p.last_commit is not None]
        return max(seen) if seen else None

    def committed_map(self) -> dict[tuple[str, int], int | None]:
        return {p.key: p.committed for p in self.partitions}


@dataclass(frozen=True)
class GroupReport:
    """A group's latest snapshot with its evaluated status and the reason for it."""

    snapshot: GroupSnapshot
    status: Status
    reason: str

    @property
    def group(self) -> str:
        return self.snapshot.group


def _label(key: tuple[str, int]) -> str:
    return f"{key[0]}[{key[1]}]"


def evaluate(
    history: Sequence[GroupSnapshot],
    *,
    window_s: float = DEFAULT_WINDOW_S,
    stop_window_s: float = DEFAULT_STOP_WINDOW_S,
    growth_points: int = DEFAULT_GROWTH_POINTS,
) -> Status:
    """The status of a group from its snapshots (oldest first). Rules: :func:`explain`."""
    return explain(
        history, window_s=window_s, stop_window_s=stop_window_s, growth_points=growth_points
    )[0]


def explain(
    history: Sequence[GroupSnapshot],
    *,
    window_s: float = DEFAULT_WINDOW_S,
    stop_window_s: float = DEFAULT_STOP_WINDOW_S,
    growth_points: int = DEFAULT_GROWTH_POINTS,
) -> tuple[Status, str]:
    """Status and a one-line reason for a group, from its snapshots (oldest first).

    A pure function of the snapshots (Burrow-like). Definitions, with L the latest
    snapshot and only the partitions present in L considered:

    - the *window* W: the snapshots taken at most ``window_s`` before L (L included),
      and at least the one before L when there is one;
    - a partition *lags* when its lag in L is > 0 (with no commit yet, the lag counts
      the messages in the log, so an empty never-committed partition does not lag);
    - a partition *moved* when its committed offset in L differs from its committed
      offset in the oldest snapshot of W that has it (``None`` -> a number is a move);
    - *unchanged for*: L.at minus the time of the oldest snapshot of the unbroken run,
      ending at L, of snapshots whose committed offsets (of L's partitions, a missing
      partition counting as no commit) all equal L's. Only the given history counts, so
      this is a lower bound.

    The first rule that matches wins:

    1. REWIND: some committed offset decreased between two consecutive snapshots of W
       (both numbers). Shown while the decrease is inside the window, caught up or not.
    2. OK: no partition lags (total lag 0 in L).
    3. STOPPED: some partition lags and either (a) the group's committed offsets have
       been unchanged for at least ``stop_window_s``, or (b) the group has no active
       members and no lagging partition moved in W (with a single snapshot: no members
       and lag > 0) -- nobody is consuming and its lag stays visible.
    4. STALLED: W has at least two snapshots and some lagging partition present in at
       least two of them did not move in W (committed offset not moving while lag > 0).
    5. WARNING: some lagging partition (moving, else rule 3 or 4 matched) has at least
       ``growth_points`` points in W and its lag strictly increased at every step.
    6. OK otherwise (consuming; with a single snapshot and members present there is not
       enough history to say more, so OK).
    """
    if not history:
        raise ValueError("evaluate() needs at least one snapshot")
    latest = history[-1]
    window = [s for s in history if s.at >= latest.at - window_s]
    if len(window) < 2 and len(history) >= 2:
        window = list(history[-2:])

    # (topic, partition) -> [(committed, lag)] over the window, oldest first
    series: dict[tuple[str, int], list[tuple[int | None, int]]] = {}
    for snap in window:
        for p in snap.partitions:
            series.setdefault(p.key, []).append((p.committed, p.lag))
    keys = [p.key for p in latest.partitions]

    # 1. REWIND
    for key in keys:
        points = series.get(key, [])
        for (before, _), (after, _) in zip(points, points[1:], strict=False):
            if before is not None and after is not None and after < before:
                why = f"committed offset of {_label(key)} went back {before}->{after}"
                return Status.REWIND, why

    # 2. caught up
    lagging = [p for p in latest.partitions if p.lag > 0]
    if not lagging:
        return Status.OK, "no lag"
    total = latest.total_lag

    def moved(key: tuple[str, int]) -> bool:
        points = series.get(key, [])
        return len(points) >= 2 and points[0][0] != points[-1][0]

    # 3. STOPPED
    current = latest.committed_map()
    since = latest.at
    for snap in reversed(history[:-1]):
        older = snap.committed_map()
        if any(older.get(key) != value for key, value in current.items()):
            break
        since = snap.at
    unchanged_for = latest.at - since
    if unchanged_for >= stop_window_s:
        return Status.STOPPED, f"no commit for {unchanged_for:.0f}s with lag {total}"
    if latest.members == 0 and not any(moved(p.key) for p in lagging):
        return Status.STOPPED, f"no active members and offsets not moving, lag {total}"

    # 4. STALLED
    if len(window) >= 2:
        stuck = [p for p in lagging if len(series.get(p.key, [])) >= 2 and not moved(p.key)]
        if stuck:
            where = ", ".join(f"{_label(p.key)} lag {p.lag}" for p in stuck[:3])
            more = f" (+{len(stuck) - 3} more)" if len(stuck) > 3 else ""
            return Status.STALLED, f"committed offset not moving: {where}{more}"

    # 5. WARNING
    for p in lagging:
        lags = [lag for _, lag in series.get(p.key, [])]
        if len(lags) >= max(2, growth_points) and all(
            b > a for a, b in zip(lags, lags[1:], strict=False)
        ):
            return Status.WARNING, f"lag growing on {_label(p.key)}: {lags[0]}->{lags[-1]}"

    # 6.
    if len(window) < 2:
        return Status.OK, f"lag {total}; one snapshot, members {latest.members}"
    return Status.OK, f"consuming, lag {total}"


def prune_history(
    history: list[GroupSnapshot], keep_s: float, *, min_snapshots: int = 2
) -> list[GroupSnapshot]:
    """Drop old snapshots, keeping the newest one at or before ``latest - keep_s``
    (so a span of ``keep_s`` stays provable) and at least ``min_snapshots``."""
    if not history:
        return history
    cutoff = history[-1].at - keep_s
    start = 0
    while (
        start + 1 < len(history)
        and history[start + 1].at <= cutoff
        and len(history) - start > min_snapshots
    ):
        start += 1
    return history[start:]
