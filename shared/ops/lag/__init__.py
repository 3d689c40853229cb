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

Layout, one concern a module (imports point down this list):

- ``rules``: the dataclasses and :func:`evaluate` / :func:`explain` (pure, no I/O);
- ``render``: the rich table, JSON and Prometheus text of reports (no Kafka);
- ``collector``: the Kafka part, :class:`LagMonitor` / :func:`collect`, and
  :func:`pipeline_expectations` (the service groups, from ``shared.registry``);
- ``exporter``: ``/metrics`` and ``/healthz`` over ``shared.runtime.http`` and the
  polling loop;
- ``commands``: the CLI :data:`lag_app` (commands ``show``, the default, and
  ``exporter``), also usable as the plain functions :func:`lag_command` and
  :func:`exporter_command`.

Every public name is importable from ``shared.ops.lag``.

Prometheus: kafka_exporter's names, labels and figures
(``kafka_consumergroup_{current_offset,lag}{consumergroup,topic,partition}``, -1 on a
partition with no commit; ``kafka_consumergroup_{lag_sum,current_offset_sum}
{consumergroup,topic}``; ``kafka_consumergroup_members{consumergroup}``;
``kafka_topic_partitions`` and ``kafka_topic_partition_{current,oldest}_offset``), plus
the project's extras: ``kafka_consumergroup_unconsumed_messages`` (the lag above, which
also counts partitions with no commit), ``kafka_consumergroup_lag_seconds``,
``kafka_consumergroup_status`` (0=OK 1=WARNING 2=STALLED 3=STOPPED 4=REWIND),
``kafka_consumergroup_exporter_up`` and
``kafka_consumergroup_exporter_last_success_timestamp_seconds``
(:func:`shared.ops.lag.render.metric_families`; the differences in README, "Lag").
"""

from shared.ops.lag.collector import LagMonitor, collect, pipeline_expectations
from shared.ops.lag.commands import exporter_command, lag_app, lag_command
from shared.ops.lag.exporter import run_exporter, serve_metrics
from shared.ops.lag.render import (
    build_table,
    metric_families,
    render_metrics,
    report_to_dict,
    reports_to_json,
)
from shared.ops.lag.rules import (
    GroupReport,
    GroupSnapshot,
    PartitionLag,
    Status,
    evaluate,
    explain,
    prune_history,
)

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
