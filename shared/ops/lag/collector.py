"""The Kafka side of the lag monitor: :class:`LagMonitor` collects snapshots of the
consumer groups (admin + a group-less consumer), keeps each group's history and
evaluates it with :mod:`shared.ops.lag.rules`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from shared import registry
from shared.ops.lag.render import render_metrics
from shared.ops.lag.rules import (
    DEFAULT_GROWTH_POINTS,
    DEFAULT_STOP_WINDOW_S,
    DEFAULT_WINDOW_S,
    GroupReport,
    GroupSnapshot,
    PartitionLag,
    explain,
    prune_history,
)
from shared.runtime.settings import Settings

DEFAULT_GROUP_PREFIX = "installments-"


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
    """group -> physical input topics of every service of the pipeline.

    From :mod:`shared.registry` (group names with the topic prefix, as the runtime
    names them); a service that fails to build is left out.
    """
    expected: dict[str, list[str]] = {}
    for name in registry.service_names():
        try:
            group = registry.group_name(settings, name)
            topics = registry.consumed_topics(settings, name)
        except Exception:
            continue
        expected[group] = [settings.topic(t) for t in topics]
    return expected
