"""Consumer-group lag monitor: a CLI view and a long-running Prometheus exporter.

For every consumer group of the pipeline (``installments-<service>``), including
groups with **no active members** (a dead consumer must not make its lag vanish), it
reports per partition:

- ``lag`` in messages: log end offset - committed offset (the ecosystem's meaning,
  as in kafka_exporter and Burrow). A partition the group never committed on is
  shown as "no commit yet" and its lag counts every message still in the log
  (log end - log start), which is what a consumer starting from ``earliest`` reads;
- ``lag_seconds``: the age of the oldest unconsumed message, i.e. now minus the
  timestamp of the record at the committed offset (0 when the lag is 0; ``None``
  when that record could not be read within the fetch deadline);
- ``last_commit``: Kafka's OffsetFetch does **not** return commit times, so the
  monitor tracks them itself: the time it first saw the committed offset at its
  current value after seeing it change (accurate to one poll interval). Before the
  monitor has seen a change it is ``None`` and ``committed_since`` says since when
  the value is known to be unchanged;
- a status per group (:class:`Status`), from :func:`evaluate` over the group's
  recent snapshots, in the spirit of Burrow's evaluator (rules in :func:`explain`).

Layout: the pure part (dataclasses, :func:`evaluate`/:func:`explain`, rendering of the
table, JSON and Prometheus text) imports no Kafka; the Kafka part is
:class:`LagMonitor` / :func:`collect`; the CLI is :data:`lag_app` (commands ``show``,
the default, and ``exporter``), also usable as the plain functions
:func:`lag_command` and :func:`exporter_command`.

Prometheus names are the ones kafka_exporter made common:
``kafka_consumergroup_lag{consumergroup,topic,partition}``,
``kafka_consumergroup_lag_sum{consumergroup}``,
``kafka_consumergroup_current_offset{consumergroup,topic,partition}`` (omitted for a
partition with no commit yet), ``kafka_consumergroup_members{consumergroup}``, plus
``kafka_consumergroup_lag_seconds{consumergroup,topic,partition}``,
``kafka_consumergroup_status{consumergroup}`` (0=OK 1=WARNING 2=STALLED 3=STOPPED
4=REWIND), ``kafka_consumergroup_exporter_up`` and
``kafka_consumergroup_exporter_last_success_timestamp_seconds``.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:  # the pure part must not need Kafka
    from rich.table import Table

    from shared.runtime.settings import Settings

DEFAULT_GROUP_PREFIX = "installments-"
DEFAULT_WINDOW_S = 60.0
DEFAULT_STOP_WINDOW_S = 300.0
DEFAULT_GROWTH_POINTS = 3
DEFAULT_EXPORTER_PORT = 9308  # kafka_exporter's port, by convention
DEFAULT_EXPORTER_INTERVAL_S = 15.0
NO_COMMIT = "no commit yet"


# =========================================================================== pure part


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


# --------------------------------------------------------------------------- rendering


def _fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 1:
        return f"{seconds:.2f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _fmt_last_commit(p: PartitionLag, now: float) -> str:
    if p.committed is None:
        return "never"
    if p.last_commit is not None:
        return f"{_fmt_age(max(0.0, now - p.last_commit))} ago"
    if p.committed_since is not None and now - p.committed_since >= 1:
        return f">{_fmt_age(now - p.committed_since)} ago"  # unchanged since first seen
    return "unknown"  # Kafka does not tell; the monitor has not seen it change yet


_STATUS_STYLE = {
    Status.OK: "green",
    Status.WARNING: "yellow",
    Status.STALLED: "red",
    Status.STOPPED: "bold red",
    Status.REWIND: "magenta",
}


def build_table(reports: Sequence[GroupReport], *, now: float | None = None) -> Table:
    """The rich table of the CLI: one row per partition, the group's cells on its first."""
    from rich.table import Column, Table

    now = time.time() if now is None else now
    table = Table(
        Column("group", no_wrap=True),
        Column("status", no_wrap=True),
        "members",
        Column("topic", no_wrap=True),
        "partition",
        "log end",
        Column("committed", no_wrap=True),
        "lag",
        "lag (s)",
        Column("last commit", no_wrap=True),
        title=f"consumer group lag at {time.strftime('%H:%M:%S', time.localtime(now))}",
    )
    for report in reports:
        snap = report.snapshot
        style = _STATUS_STYLE[report.status]
        head = [snap.group, f"[{style}]{report.status.name}[/]", str(snap.members)]
        if not snap.partitions:
            table.add_row(*head, "-", "-", "-", "-", "-", "-", "-")
        for i, p in enumerate(sorted(snap.partitions, key=lambda x: x.key)):
            lag_s = "0" if p.lag == 0 else "?" if p.lag_seconds is None else f"{p.lag_seconds:.1f}"
            table.add_row(
                *(head if i == 0 else ["", "", ""]),
                p.topic,
                str(p.partition),
                str(p.log_end),
                NO_COMMIT if p.committed is None else str(p.committed),
                str(p.lag),
                lag_s,
                _fmt_last_commit(p, now),
            )
        table.add_section()
    return table


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def report_to_dict(report: GroupReport) -> dict[str, Any]:
    """The JSON shape of one group (``--json``)."""
    snap = report.snapshot
    return {
        "group": snap.group,
        "status": report.status.name,
        "status_code": int(report.status),
        "reason": report.reason,
        "members": snap.members,
        "state": snap.state,
        "at": _round(snap.at),
        "lag": snap.total_lag,
        "lag_seconds": _round(snap.max_lag_seconds),
        "last_commit": _round(snap.last_commit),
        "partitions": [
            {
                "topic": p.topic,
                "partition": p.partition,
                "log_start": p.log_start,
                "log_end": p.log_end,
                "committed": p.committed,
                "no_commit_yet": p.committed is None,
                "lag": p.lag,
                "lag_seconds": _round(p.lag_seconds),
                "last_commit": _round(p.last_commit),
                "committed_since": _round(p.committed_since),
            }
            for p in sorted(snap.partitions, key=lambda x: x.key)
        ],
    }


def reports_to_json(reports: Sequence[GroupReport], *, indent: int | None = 2) -> str:
    return json.dumps([report_to_dict(r) for r in reports], indent=indent)


def metric_families(
    reports: Sequence[GroupReport], *, up: bool = True, last_success: float | None = None
) -> list[Any]:
    """Prometheus metric families for the reports (kafka_exporter names, see the module)."""
    from prometheus_client.core import GaugeMetricFamily

    tp_labels = ["consumergroup", "topic", "partition"]
    lag = GaugeMetricFamily(
        "kafka_consumergroup_lag",
        "Lag in messages: log end offset - committed offset (no commit yet: log end - log start)",
        labels=tp_labels,
    )
    lag_sum = GaugeMetricFamily(
        "kafka_consumergroup_lag_sum",
        "Lag in messages over all partitions",
        labels=["consumergroup"],
    )
    current = GaugeMetricFamily(
        "kafka_consumergroup_current_offset",
        "Committed offset (omitted when the group has no commit on the partition)",
        labels=tp_labels,
    )
    members = GaugeMetricFamily(
        "kafka_consumergroup_members", "Active members of the group", labels=["consumergroup"]
    )
    lag_seconds = GaugeMetricFamily(
        "kafka_consumergroup_lag_seconds",
        "Age of the oldest unconsumed message (0 when caught up)",
        labels=tp_labels,
    )
    status = GaugeMetricFamily(
        "kafka_consumergroup_status",
        "Group status: 0=OK 1=WARNING 2=STALLED 3=STOPPED 4=REWIND",
        labels=["consumergroup"],
    )
    for report in reports:
        snap = report.snapshot
        g = snap.group
        lag_sum.add_metric([g], snap.total_lag)
        members.add_metric([g], snap.members)
        status.add_metric([g], int(report.status))
        for p in snap.partitions:
            labels = [g, p.topic, str(p.partition)]
            lag.add_metric(labels, p.lag)
            if p.committed is not None:
                current.add_metric(labels, p.committed)
            if p.lag_seconds is not None:
                lag_seconds.add_metric(labels, p.lag_seconds)
    up_family = GaugeMetricFamily(
        "kafka_consumergroup_exporter_up", "1 when the last collection from Kafka succeeded"
    )
    up_family.add_metric([], 1 if up else 0)
    families = [lag, lag_sum, current, members, lag_seconds, status, up_family]
    if last_success is not None:
        ok = GaugeMetricFamily(
            "kafka_consumergroup_exporter_last_success_timestamp_seconds",
            "When the last successful collection finished",
        )
        ok.add_metric([], last_success)
        families.append(ok)
    return families


class _Families:
    """A prometheus_client collector over a function returning metric families."""

    def __init__(self, produce: Any) -> None:
        self._produce = produce

    def collect(self) -> Iterator[Any]:
        yield from self._produce()


def render_metrics(
    reports: Sequence[GroupReport], *, up: bool = True, last_success: float | None = None
) -> bytes:
    """Prometheus text exposition of the reports (what ``/metrics`` serves)."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(lambda: metric_families(reports, up=up, last_success=last_success)))
    return generate_latest(registry)


# =========================================================================== Kafka part


class LagMonitor:
    """Collects snapshots from Kafka, keeps each group's history, evaluates statuses.

    ``groups``: groups always reported (even if unknown to the broker);
    ``expected``: group -> physical topics always reported for it (so a partition the
    group never committed on shows "no commit yet"); with ``discover`` every group
    whose name starts with ``group_prefix`` is reported too (a discovered group with no
    partition left after filtering is dropped). With ``settings.topic_prefix`` set, only
    topics starting with it count (tests, shared clusters). Topics that no longer exist
    are skipped. Clients are created on first use and reused; :meth:`close` them.
    """

    def __init__(
        self,
        settings: Settings,
        groups: Iterable[str] | None = None,
        *,
        expected: Mapping[str, Iterable[str]] | None = None,
        discover: bool = True,
        group_prefix: str = DEFAULT_GROUP_PREFIX,
        window_s: float = DEFAULT_WINDOW_S,
        stop_window_s: float = DEFAULT_STOP_WINDOW_S,
        growth_points: int = DEFAULT_GROWTH_POINTS,
        fetch_timeout_s: float = 3.0,
        request_timeout_s: float = 15.0,
    ) -> None:
        self.settings = settings
        self.groups = list(dict.fromkeys(groups or []))
        self.expected = {g: list(ts) for g, ts in (expected or {}).items()}
        self.discover = discover
        # groups are namespaced by the topic prefix, like the runtime names them
        self.group_prefix = settings.topic_prefix + group_prefix
        self.window_s = window_s
        self.stop_window_s = stop_window_s
        self.growth_points = growth_points
        self.fetch_timeout_s = fetch_timeout_s
        self.request_timeout_s = request_timeout_s
        self.history: dict[str, list[GroupSnapshot]] = {}
        self.reports: list[GroupReport] = []
        self.last_success: float | None = None
        self.last_error: str | None = None
        self._commits: dict[tuple[str, str, int], tuple[int | None, float, float | None]] = {}
        self._timestamps: dict[tuple[str, int, int], float | None] = {}
        self._admin: Any = None
        self._consumer: Any = None
        self._lock = threading.Lock()

    # -- clients ----------------------------------------------------------

    def _clients(self) -> tuple[Any, Any]:
        from kafka import KafkaConsumer
        from kafka.admin import KafkaAdminClient

        timeout_ms = int(self.request_timeout_s * 1000)
        if self._admin is None:
            self._admin = KafkaAdminClient(
                **self.settings.kafka_client_config(),
                client_id="installments-lag-monitor",
                request_timeout_ms=timeout_ms,
            )
        if self._consumer is None:
            self._consumer = KafkaConsumer(
                **self.settings.kafka_client_config(),
                client_id="installments-lag-monitor",
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=max(timeout_ms, 31000),
                max_partition_fetch_bytes=self.settings.max_message_bytes,
                fetch_max_wait_ms=100,
            )
        return self._admin, self._consumer

    def close(self) -> None:
        for client in (self._consumer, self._admin):
            if client is not None:
                try:
                    client.close()
                except Exception:  # closing is best effort
                    pass
        self._admin = self._consumer = None

    def __enter__(self) -> LagMonitor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- collection -------------------------------------------------------

    def _wanted_topic(self, topic: str) -> bool:
        prefix = self.settings.topic_prefix
        return not topic.startswith("__") and (not prefix or topic.startswith(prefix))

    def collect(self) -> list[GroupSnapshot]:
        """One snapshot of every group (see the class docstring for which groups)."""
        from kafka import TopicPartition

        admin, consumer = self._clients()
        names = list(self.groups) + [g for g in self.expected if g not in self.groups]
        must_report = set(names)
        if self.discover:
            listed = sorted(g["group_id"] for g in admin.list_groups())
            names += [g for g in listed if g.startswith(self.group_prefix) and g not in must_report]
        if not names:
            return []
        descriptions = admin.describe_groups(names)
        offsets = self._group_offsets(admin, names, must_report)
        names = [g for g in names if g in offsets]
        existing = consumer.topics()

        group_tps: dict[str, list[Any]] = {}
        for g in names:
            topics = {tp.topic for tp in offsets.get(g, {})}
            topics.update(self.expected.get(g, []))
            for member in (descriptions.get(g) or {}).get("members") or []:
                topics.update(_member_topics(member))
            tps = [
                TopicPartition(t, p)
                for t in sorted(topics)
                if t in existing and self._wanted_topic(t)
                for p in sorted(consumer.partitions_for_topic(t) or ())
            ]
            if tps or g in must_report:
                group_tps[g] = tps
        all_tps = sorted({tp for tps in group_tps.values() for tp in tps})
        timeout_ms = int(self.request_timeout_s * 1000)
        ends = consumer.end_offsets(all_tps, timeout_ms=timeout_ms) if all_tps else {}
        starts = consumer.beginning_offsets(all_tps, timeout_ms=timeout_ms) if all_tps else {}
        at = time.time()  # the snapshot's time: lag seconds are ages at this moment

        # committed / lag, and the positions whose record timestamp gives the lag in seconds
        rows: dict[str, list[tuple[Any, int, int, int | None, int, int | None]]] = {}
        wanted: set[tuple[Any, int]] = set()
        for g, tps in group_tps.items():
            committed_by_tp = offsets.get(g, {})
            for tp in tps:
                end, start = int(ends.get(tp, 0)), int(starts.get(tp, 0))
                meta = committed_by_tp.get(tp)
                committed = meta.offset if meta is not None and meta.offset >= 0 else None
                lag = max(0, end - (start if committed is None else committed))
                position = None
                if lag > 0:
                    position = start if committed is None else max(committed, start)
                    if position < end:
                        wanted.add((tp, position))
                    else:
                        position = None
                rows.setdefault(g, []).append((tp, start, end, committed, lag, position))
        stamps = self._record_timestamps(consumer, wanted)

        snapshots = []
        for g in group_tps:
            parts = []
            for tp, start, end, committed, lag, position in rows.get(g, []):
                if lag == 0:
                    lag_s: float | None = 0.0
                else:
                    ts = stamps.get((tp, position)) if position is not None else None
                    lag_s = None if ts is None else max(0.0, at - ts)
                last, since = self._track_commit(g, tp.topic, tp.partition, committed, at)
                parts.append(
                    PartitionLag(
                        topic=tp.topic,
                        partition=tp.partition,
                        log_end=end,
                        committed=committed,
                        lag=lag,
                        lag_seconds=lag_s,
                        log_start=start,
                        last_commit=last,
                        committed_since=since,
                    )
                )
            desc = descriptions.get(g) or {}
            snapshots.append(
                GroupSnapshot(
                    group=g,
                    at=at,
                    members=len(desc.get("members") or []),
                    partitions=parts,
                    state=str(desc.get("group_state") or ""),
                )
            )
        return sorted(snapshots, key=lambda s: s.group)

    @staticmethod
    def _group_offsets(
        admin: Any, names: list[str], must_report: set[str]
    ) -> dict[str, dict[Any, Any]]:
        """Committed offsets of each group (one OffsetFetch per coordinator). If that
        fails, group by group: a discovered group that errors (being deleted, say) is
        left out of this snapshot; a group asked for by name re-raises."""
        from kafka.errors import KafkaError

        try:
            return admin.list_group_offsets({g: None for g in names})
        except KafkaError:
            pass
        offsets: dict[str, dict[Any, Any]] = {}
        for g in names:
            try:
                offsets.update(admin.list_group_offsets({g: None}))
            except KafkaError:
                if g in must_report:
                    raise
        return offsets

    def _track_commit(
        self, group: str, topic: str, partition: int, committed: int | None, at: float
    ) -> tuple[float | None, float | None]:
        """(last_commit, committed_since) for a partition, remembering what was seen."""
        key = (group, topic, partition)
        seen = self._commits.get(key)
        if seen is None:
            self._commits[key] = (committed, at, None)
            return None, (at if committed is not None else None)
        value, since, changed = seen
        if value != committed:
            self._commits[key] = (committed, at, at if committed is not None else None)
            return (at, at) if committed is not None else (None, None)
        return changed, (since if committed is not None else None)

    def _record_timestamps(
        self, consumer: Any, wanted: set[tuple[Any, int]]
    ) -> dict[tuple[Any, int], float | None]:
        """Epoch-seconds timestamp of the first record at or after each (tp, offset).

        Reads with assign + seek + poll under one deadline (``fetch_timeout_s``); a
        position that could not be read in time maps to ``None``. Results are cached by
        (topic, partition, offset), so a stalled group costs no fetch.
        """
        found: dict[tuple[Any, int], float | None] = {}
        todo: dict[Any, list[int]] = {}
        for tp, offset in wanted:
            cache_key = (tp.topic, tp.partition, offset)
            if cache_key in self._timestamps:
                found[(tp, offset)] = self._timestamps[cache_key]
            else:
                todo.setdefault(tp, []).append(offset)
        deadline = time.monotonic() + self.fetch_timeout_s
        while todo and time.monotonic() < deadline:
            batch = {tp: offsets.pop() for tp, offsets in todo.items()}  # one position per tp
            todo = {tp: offsets for tp, offsets in todo.items() if offsets}
            consumer.assign(list(batch))
            consumer.resume(*batch)
            for tp, offset in batch.items():
                consumer.seek(tp, offset)
            pending = dict(batch)
            while pending and time.monotonic() < deadline:
                remaining_ms = max(1, int((deadline - time.monotonic()) * 1000))
                records = consumer.poll(timeout_ms=min(200, remaining_ms), max_records=500)
                for tp, recs in records.items():
                    if tp in pending and recs:
                        stamp = recs[0].timestamp
                        found[(tp, pending.pop(tp))] = stamp / 1000.0 if stamp >= 0 else None
                        consumer.pause(tp)
        if wanted:  # nothing may fetch in the background between collections
            consumer.pause(*consumer.assignment())
        self._timestamps = {  # keep only what this round used
            (tp.topic, tp.partition, offset): stamp for (tp, offset), stamp in found.items()
        }
        return found

    # -- monitoring -------------------------------------------------------

    def poll(self) -> list[GroupReport]:
        """Collect, append to each group's history, evaluate; the reports (also kept in
        :attr:`reports`). Raises what the collection raised (and records it)."""
        with self._lock:
            try:
                snapshots = self.collect()
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                raise
            keep = max(self.window_s, self.stop_window_s)
            reports = []
            for snap in snapshots:
                history = self.history.setdefault(snap.group, [])
                history.append(snap)
                history[:] = prune_history(history, keep)
                status, reason = explain(
                    history,
                    window_s=self.window_s,
                    stop_window_s=self.stop_window_s,
                    growth_points=self.growth_points,
                )
                reports.append(GroupReport(snap, status, reason))
            current = {s.group for s in snapshots}
            for gone in set(self.history) - current:
                del self.history[gone]
            self.reports = reports
            self.last_success = time.time()
            self.last_error = None
            return reports

    def render(self) -> bytes:
        """Prometheus text of the latest reports (``up`` is 0 after a failed poll)."""
        return render_metrics(
            self.reports,
            up=self.last_error is None and self.last_success is not None,
            last_success=self.last_success,
        )


def _member_topics(member: Mapping[str, Any]) -> set[str]:
    """Topics an active member subscribes to or is assigned (decoded by kafka-python)."""
    topics: set[str] = set()
    meta = member.get("member_metadata")
    if isinstance(meta, Mapping):
        topics.update(meta.get("topics") or [])
    assignment = member.get("member_assignment")
    if isinstance(assignment, Mapping):
        for item in assignment.get("assigned_partitions") or []:
            if isinstance(item, Mapping) and item.get("topic"):
                topics.add(item["topic"])
    return topics


def collect(
    settings: Settings,
    groups: list[str] | None = None,
    *,
    expected: Mapping[str, Iterable[str]] | None = None,
    discover: bool = True,
    fetch_timeout_s: float = 3.0,
) -> list[GroupSnapshot]:
    """One snapshot of the groups (see :class:`LagMonitor`), with short-lived clients."""
    with LagMonitor(
        settings, groups, expected=expected, discover=discover, fetch_timeout_s=fetch_timeout_s
    ) as monitor:
        return monitor.collect()


def pipeline_expectations(settings: Settings) -> dict[str, list[str]]:
    """group -> physical input topics of every service whose code is present.

    Loaded through the CLI's service registry (a dynamic import, so ``shared`` still
    never imports a service statically); a service that fails to load is left out.
    """
    from shared.cli import available_services, load_service

    expected: dict[str, list[str]] = {}
    try:
        names = available_services()
    except Exception:
        return expected
    for name in names:
        try:
            service = load_service(name)
        except Exception:
            continue
        group = settings.topic_prefix + service.consumer_group  # as the runtime names it
        expected[group] = [settings.topic(t) for t in service.consumes]
    return expected


# =========================================================================== HTTP exporter


def serve_metrics(monitor: LagMonitor, host: str = "0.0.0.0", port: int = 0) -> ThreadingHTTPServer:
    """Serve ``/metrics`` (the monitor's latest reports) and ``/healthz`` in a daemon
    thread; ``server.server_address[1]`` is the port (useful with ``port=0``)."""
    from prometheus_client import CONTENT_TYPE_LATEST

    class _Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, monitor.render(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200, b'{"status":"alive"}', "application/json")
            else:
                self._send(404, b"not found", "text/plain")

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer((host, port), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="lag-exporter").start()
    return server


def run_exporter(
    monitor: LagMonitor,
    *,
    host: str = "0.0.0.0",
    port: int = DEFAULT_EXPORTER_PORT,
    interval_s: float = DEFAULT_EXPORTER_INTERVAL_S,
    stop: threading.Event | None = None,
    install_signal_handlers: bool = True,
    log: Any = None,
) -> None:
    """Serve metrics and poll the monitor every ``interval_s`` until ``stop`` is set
    (SIGTERM / SIGINT set it when ``install_signal_handlers``). Failed polls keep the
    last reports and set ``kafka_consumergroup_exporter_up`` to 0."""
    stop = stop or threading.Event()
    if install_signal_handlers:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    server = serve_metrics(monitor, host, port)
    if log is not None:
        log.info("lag exporter listening", host=host, port=server.server_address[1])
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                reports = monitor.poll()
                if log is not None:
                    log.debug("lag collected", groups=len(reports))
            except Exception as exc:  # keep serving; the error is in the metrics and log
                if log is not None:
                    log.warning("lag collection failed", error=f"{type(exc).__name__}: {exc}")
            stop.wait(max(0.0, interval_s - (time.monotonic() - started)))
    finally:
        server.shutdown()
        server.server_close()
        monitor.close()


# =========================================================================== CLI

lag_app = typer.Typer(
    help="Consumer-group lag: table/JSON view and a Prometheus exporter.",
    add_completion=False,
)

_GROUP_OPT = typer.Option(
    None,
    "--group",
    "-g",
    help="Also report this group (repeatable); it is reported even if the broker does not know it.",
)
_WINDOW_OPT = typer.Option(DEFAULT_WINDOW_S, "--window", help="Evaluation window (s).")
_STOP_OPT = typer.Option(
    DEFAULT_STOP_WINDOW_S, "--stop-window", help="No commit for this long with lag: STOPPED (s)."
)
_PIPELINE_OPT = typer.Option(
    True,
    "--pipeline/--no-pipeline",
    help="Always report the pipeline's service groups on their input topics.",
)


def _monitor(
    group: list[str] | None, window: float, stop_window: float, pipeline: bool
) -> LagMonitor:
    from shared.runtime.settings import Settings

    settings = Settings()
    return LagMonitor(
        settings,
        group or [],
        expected=pipeline_expectations(settings) if pipeline else None,
        window_s=window,
        stop_window_s=stop_window,
    )


def lag_command(
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh until Ctrl-C."),
    json_output: bool = typer.Option(
        False, "--json", help="JSON for scripts (one document per refresh with --watch)."
    ),
    interval: float = typer.Option(5.0, "--interval", "-i", min=0.1, help="Refresh period (s)."),
    group: list[str] | None = _GROUP_OPT,
    window: float = _WINDOW_OPT,
    stop_window: float = _STOP_OPT,
    pipeline: bool = _PIPELINE_OPT,
) -> None:
    """Lag of every pipeline consumer group, including groups with no active members.

    A single run judges from one snapshot (lag with no members: STOPPED); --watch
    builds the history that STALLED / WARNING / REWIND need.
    """
    from rich.console import Console

    console = Console(width=max(shutil.get_terminal_size().columns, 180))
    monitor = _monitor(group, window, stop_window, pipeline)
    try:
        if not watch:
            reports = _poll_or_exit(monitor)
            if json_output:
                typer.echo(reports_to_json(reports))
            else:
                console.print(build_table(reports))
            return
        if json_output:
            while True:
                started = time.monotonic()
                typer.echo(reports_to_json(_poll_or_exit(monitor), indent=None))
                time.sleep(max(0.0, interval - (time.monotonic() - started)))
        from rich.live import Live

        with Live(build_table(_poll_or_exit(monitor)), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                try:
                    live.update(build_table(monitor.poll()), refresh=True)
                except Exception as exc:  # show it and keep watching
                    console.print(f"[red]collection failed:[/] {type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        pass
    finally:
        monitor.close()


def _poll_or_exit(monitor: LagMonitor) -> list[GroupReport]:
    try:
        return monitor.poll()
    except Exception as exc:
        typer.echo(f"lag: cannot collect from Kafka: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(2) from exc


def exporter_command(
    port: int = typer.Option(DEFAULT_EXPORTER_PORT, "--port", "-p", min=0, max=65535),
    host: str = typer.Option("0.0.0.0", "--host"),
    interval: float = typer.Option(
        DEFAULT_EXPORTER_INTERVAL_S, "--interval", "-i", min=0.1, help="Collection period (s)."
    ),
    group: list[str] | None = _GROUP_OPT,
    window: float = _WINDOW_OPT,
    stop_window: float = _STOP_OPT,
    pipeline: bool = _PIPELINE_OPT,
) -> None:
    """Serve Prometheus /metrics with consumer-group lag until SIGTERM."""
    from shared.runtime.logging import configure_logging, get_logger
    from shared.runtime.settings import Settings

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    monitor = _monitor(group, window, stop_window, pipeline)
    run_exporter(monitor, host=host, port=port, interval_s=interval, log=get_logger(name="lag"))


@lag_app.callback(invoke_without_command=True)
def _default(
    ctx: typer.Context,
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh until Ctrl-C."),
    json_output: bool = typer.Option(False, "--json", help="JSON for scripts."),
    interval: float = typer.Option(5.0, "--interval", "-i", min=0.1, help="Refresh period (s)."),
    group: list[str] | None = _GROUP_OPT,
    window: float = _WINDOW_OPT,
    stop_window: float = _STOP_OPT,
    pipeline: bool = _PIPELINE_OPT,
) -> None:
    """Consumer-group lag (``show`` when no command is given)."""
    if ctx.invoked_subcommand is None:
        lag_command(watch, json_output, interval, group, window, stop_window, pipeline)


lag_app.command("show")(lag_command)
lag_app.command("exporter")(exporter_command)


if __name__ == "__main__":
    lag_app()


__all__ = [
    "Status",
    "PartitionLag",
    "GroupSnapshot",
    "GroupReport",
    "evaluate",
    "explain",
    "prune_history",
    "build_table",
    "report_to_dict",
    "reports_to_json",
    "metric_families",
    "render_metrics",
    "LagMonitor",
    "collect",
    "pipeline_expectations",
    "serve_metrics",
    "run_exporter",
    "lag_command",
    "exporter_command",
    "lag_app",
]
