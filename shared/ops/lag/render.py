"""Rendering of lag reports: the CLI's rich table, JSON (``--json``) and Prometheus text.

Metric names, labels and figures are kafka_exporter's, plus the project's extras (see
:func:`metric_families`); :func:`render_metrics` is what the exporter's ``/metrics`` serves.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from rich.table import Column, Table

from shared.ops.lag.rules import GroupReport, PartitionLag, Status

NO_COMMIT = "no commit yet"


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


# kafka_exporter's value for a partition the group never committed on (its OffsetFetch
# answer), in both kafka_consumergroup_current_offset and kafka_consumergroup_lag.
NO_OFFSET = -1


def metric_families(
    reports: Sequence[GroupReport], *, up: bool = True, last_success: float | None = None
) -> list[Any]:
    """Prometheus metric families for the reports.

    kafka_exporter's families, with its names, labels and figures (see
    ``kafka_exporter.go``): per partition ``kafka_consumergroup_current_offset`` and
    ``kafka_consumergroup_lag`` (both ``-1`` on a partition the group never committed
    on), per group and topic ``kafka_consumergroup_lag_sum`` (committed partitions
    only) and ``kafka_consumergroup_current_offset_sum``, per group
    ``kafka_consumergroup_members``, per topic ``kafka_topic_partitions``,
    ``kafka_topic_partition_current_offset`` (log end) and
    ``kafka_topic_partition_oldest_offset`` (log start). Like kafka_exporter, a topic
    on which the group has no commit at all is left out of the consumergroup families.

    The project's extras: ``kafka_consumergroup_unconsumed_messages`` (the lag that also
    counts partitions with no commit: log end - log start, what a consumer starting
    from ``earliest`` reads; topics with no commit at all included),
    ``kafka_consumergroup_lag_seconds``, ``kafka_consumergroup_status``,
    ``kafka_consumergroup_exporter_up`` and
    ``kafka_consumergroup_exporter_last_success_timestamp_seconds``.
    """

    tp_labels = ["consumergroup", "topic", "partition"]
    group_topic = ["consumergroup", "topic"]
    # -- kafka_exporter's
    current = GaugeMetricFamily(
        "kafka_consumergroup_current_offset",
        "Committed offset of a consumer group at topic/partition (-1: no commit yet)",
        labels=tp_labels,
    )
    current_sum = GaugeMetricFamily(
        "kafka_consumergroup_current_offset_sum",
        "Committed offsets of a consumer group summed over the topic's committed partitions",
        labels=group_topic,
    )
    lag = GaugeMetricFamily(
        "kafka_consumergroup_lag",
        "Lag of a consumer group at topic/partition: log end - committed (-1: no commit yet)",
        labels=tp_labels,
    )
    lag_sum = GaugeMetricFamily(
        "kafka_consumergroup_lag_sum",
        "Lag of a consumer group summed over the topic's committed partitions",
        labels=group_topic,
    )
    members = GaugeMetricFamily(
        "kafka_consumergroup_members", "Active members of the group", labels=["consumergroup"]
    )
    partitions = GaugeMetricFamily(
        "kafka_topic_partitions", "Partitions of the topic", labels=["topic"]
    )
    log_end = GaugeMetricFamily(
        "kafka_topic_partition_current_offset",
        "Log end offset of the topic/partition",
        labels=["topic", "partition"],
    )
    log_start = GaugeMetricFamily(
        "kafka_topic_partition_oldest_offset",
        "Log start offset of the topic/partition",
        labels=["topic", "partition"],
    )
    # -- the project's
    unconsumed = GaugeMetricFamily(
        "kafka_consumergroup_unconsumed_messages",
        "Messages the group has still to read: log end - committed "
        "(no commit yet: log end - log start)",
        labels=tp_labels,
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
    topics: dict[str, dict[int, PartitionLag]] = {}
    for report in reports:
        snap = report.snapshot
        g = snap.group
        members.add_metric([g], snap.members)
        status.add_metric([g], int(report.status))
        by_topic: dict[str, list[PartitionLag]] = {}
        for p in sorted(snap.partitions, key=lambda x: x.key):
            by_topic.setdefault(p.topic, []).append(p)
            topics.setdefault(p.topic, {})[p.partition] = p
            labels = [g, p.topic, str(p.partition)]
            unconsumed.add_metric(labels, p.lag)
            if p.lag_seconds is not None:
                lag_seconds.add_metric(labels, p.lag_seconds)
        for topic, parts in by_topic.items():
            committed = [p for p in parts if p.committed is not None]
            if not committed:  # kafka_exporter: "the topic is not consumed by that group"
                continue
            for p in parts:
                labels = [g, topic, str(p.partition)]
                if p.committed is None:
                    current.add_metric(labels, NO_OFFSET)
                    lag.add_metric(labels, NO_OFFSET)
                else:
                    current.add_metric(labels, p.committed)
                    lag.add_metric(labels, p.log_end - p.committed)
            current_sum.add_metric([g, topic], sum(p.committed or 0 for p in committed))
            lag_sum.add_metric([g, topic], sum(p.log_end - (p.committed or 0) for p in committed))
    for topic, by_partition in sorted(topics.items()):
        partitions.add_metric([topic], len(by_partition))
        for number, p in sorted(by_partition.items()):
            log_end.add_metric([topic, str(number)], p.log_end)
            log_start.add_metric([topic, str(number)], p.log_start)
    up_family = GaugeMetricFamily(
        "kafka_consumergroup_exporter_up", "1 when the last collection from Kafka succeeded"
    )
    up_family.add_metric([], 1 if up else 0)
    ok = GaugeMetricFamily(
        "kafka_consumergroup_exporter_last_success_timestamp_seconds",
        "When the last successful collection finished (absent before the first one)",
    )
    if last_success is not None:
        ok.add_metric([], last_success)
    return [
        current,
        current_sum,
        lag,
        lag_sum,
        members,
        partitions,
        log_end,
        log_start,
        unconsumed,
        lag_seconds,
        status,
        up_family,
        ok,
    ]


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

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(lambda: metric_families(reports, up=up, last_success=last_success)))
    return generate_latest(registry)
