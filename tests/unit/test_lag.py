"""The lag monitor's pure part: status evaluation on synthetic offset histories, rendering."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from shared.ops.lag import (
    GroupReport,
    GroupSnapshot,
    LagMonitor,
    PartitionLag,
    Status,
    build_table,
    evaluate,
    explain,
    pipeline_expectations,
    prune_history,
    render_metrics,
    report_to_dict,
)
from shared.ops.lag.collector import _member_topics
from shared.runtime.settings import Settings

T = "card.purchases.v1"


def part(
    committed: int | None,
    log_end: int,
    partition: int = 0,
    *,
    log_start: int = 0,
    lag_seconds: float | None = None,
    topic: str = T,
) -> PartitionLag:
    lag = max(0, log_end - (log_start if committed is None else committed))
    return PartitionLag(
        topic=topic,
        partition=partition,
        log_end=log_end,
        committed=committed,
        lag=lag,
        lag_seconds=lag_seconds,
        log_start=log_start,
    )


def snap(
    at: float, *parts: PartitionLag, members: int = 1, group: str = "installments-x"
) -> GroupSnapshot:
    return GroupSnapshot(group=group, at=at, members=members, partitions=list(parts))


def history(points: list[tuple[float, int | None, int]], members: int = 1) -> list[GroupSnapshot]:
    """One partition: (at, committed, log_end) per snapshot."""
    return [snap(at, part(c, end), members=members) for at, c, end in points]


# --------------------------------------------------------------------------- statuses


def test_status_values_are_the_gauge_values():
    assert [s.value for s in Status] == [0, 1, 2, 3, 4]
    assert [s.name for s in Status] == ["OK", "WARNING", "STALLED", "STOPPED", "REWIND"]


def test_empty_history_is_an_error():
    with pytest.raises(ValueError):
        evaluate([])


def test_caught_up_is_ok_even_if_offsets_do_not_move():
    h = history([(0, 10, 10), (30, 10, 10), (400, 10, 10)])
    assert evaluate(h) is Status.OK


def test_single_snapshot_with_lag_and_members_is_ok_for_lack_of_history():
    status, reason = explain(history([(0, 5, 10)]))
    assert status is Status.OK
    assert "one snapshot" in reason


def test_single_snapshot_with_lag_and_no_members_is_stopped():
    assert evaluate(history([(0, 5, 10)], members=0)) is Status.STOPPED


def test_consuming_and_catching_up_is_ok():
    h = history([(0, 10, 100), (10, 40, 110), (20, 80, 120), (30, 115, 125)])
    assert evaluate(h) is Status.OK


def test_committed_not_moving_with_lag_is_stalled():
    h = history([(0, 5, 10), (10, 5, 10)])
    status, reason = explain(h)
    assert status is Status.STALLED
    assert f"{T}[0] lag 5" in reason


def test_stalled_needs_the_partition_twice_in_the_window():
    # partition 1 appears only in the latest snapshot: no judgement on it yet
    h = [snap(0, part(10, 10)), snap(10, part(10, 10), part(0, 5, partition=1))]
    assert evaluate(h) is Status.OK


def test_one_stuck_partition_among_moving_ones_stalls_the_group():
    h = [
        snap(0, part(10, 50, 0), part(3, 9, 1)),
        snap(10, part(30, 60, 0), part(3, 9, 1)),
    ]
    assert evaluate(h) is Status.STALLED


def test_unchanged_for_the_stop_window_is_stopped_even_with_members():
    h = history([(0, 5, 10), (100, 5, 10), (200, 5, 12), (300, 5, 12)])
    status, reason = explain(h, stop_window_s=300)
    assert status is Status.STOPPED
    assert "no commit for 300s" in reason


def test_unchanged_just_under_the_stop_window_is_stalled():
    h = history([(0, 5, 10), (100, 5, 10), (299, 5, 12)])
    assert evaluate(h, stop_window_s=300) is Status.STALLED


def test_the_unchanged_run_starts_at_the_last_change():
    # moved 4 -> 5 at t=200: unchanged for 200s only (although the history spans 400s)
    h = history([(0, 4, 10), (200, 5, 10), (400, 5, 10)])
    assert evaluate(h, window_s=60, stop_window_s=300) is Status.STALLED
    h = history([(0, 4, 10), (50, 5, 10), (400, 5, 10)])
    assert evaluate(h, window_s=60, stop_window_s=300) is Status.STOPPED


def test_no_members_and_not_moving_is_stopped_before_the_stop_window():
    h = history([(0, 5, 10), (10, 5, 10)], members=0)
    status, reason = explain(h, stop_window_s=300)
    assert status is Status.STOPPED
    assert "no active members" in reason


def test_no_members_but_moving_is_a_standalone_consumer_and_ok():
    h = history([(0, 5, 20), (10, 9, 20)], members=0)
    assert evaluate(h) is Status.OK


def test_a_member_that_died_after_progress_becomes_stopped_when_the_move_leaves_the_window():
    h = history([(0, 5, 20), (10, 9, 20)], members=0)
    h += history([(40, 9, 20), (80, 9, 20)], members=0)
    assert evaluate(h, window_s=60) is Status.STOPPED


def test_lag_growing_at_every_step_while_moving_is_warning():
    h = history([(0, 10, 20), (10, 20, 40), (20, 30, 60)])
    status, reason = explain(h)
    assert status is Status.WARNING
    assert "10->30" in reason


def test_growth_needs_enough_points():
    h = history([(0, 10, 20), (10, 20, 40)])
    assert evaluate(h, growth_points=3) is Status.OK
    assert evaluate(h, growth_points=2) is Status.WARNING


def test_lag_growth_with_a_flat_step_is_not_warning():
    h = history([(0, 10, 20), (10, 20, 40), (20, 40, 70), (30, 70, 100)])  # 10, 20, 30, 30
    assert evaluate(h) is Status.OK


def test_only_the_window_counts_for_growth_and_movement():
    # growth long ago, then lag steady inside the window
    h = history([(0, 10, 20), (10, 20, 40), (20, 30, 60), (100, 60, 90), (110, 90, 120)])
    assert evaluate(h, window_s=30) is Status.OK
    # moved long ago, not moving inside the window: stalled
    h = history([(0, 1, 50), (100, 5, 50), (110, 5, 50), (120, 5, 50)])
    assert evaluate(h, window_s=30) is Status.STALLED


def test_window_holds_at_least_the_previous_snapshot():
    h = history([(0, 5, 10), (1000, 5, 10)])
    assert evaluate(h, window_s=60, stop_window_s=5000) is Status.STALLED
    h = history([(0, 3, 10), (1000, 5, 10)])
    assert evaluate(h, window_s=60, stop_window_s=5000) is Status.OK


def test_committed_offset_going_back_is_rewind():
    h = history([(0, 50, 60), (10, 20, 60)])
    status, reason = explain(h)
    assert status is Status.REWIND
    assert "50->20" in reason


def test_rewind_is_reported_even_when_caught_up_again_while_in_the_window():
    h = history([(0, 50, 60), (10, 20, 60), (20, 60, 60)])
    assert evaluate(h, window_s=60) is Status.REWIND
    assert evaluate(h + history([(100, 60, 60)]), window_s=60) is Status.OK


def test_rewind_wins_over_stopped():
    h = history([(0, 50, 60), (10, 20, 60)], members=0)
    assert evaluate(h, stop_window_s=1) is Status.REWIND


# --------------------------------------------------------------------------- no commit yet


def test_no_commit_yet_counts_the_messages_in_the_log():
    p = part(None, 30, log_start=10)
    assert p.no_commit and p.lag == 20


def test_no_commit_yet_on_an_empty_partition_is_ok():
    h = history([(0, None, 0), (10, None, 0)], members=0)
    assert evaluate(h) is Status.OK


def test_no_commit_yet_with_messages_and_no_members_is_stopped():
    assert evaluate(history([(0, None, 7)], members=0)) is Status.STOPPED


def test_no_commit_yet_with_messages_and_members_not_moving_is_stalled():
    assert evaluate(history([(0, None, 7), (10, None, 7)])) is Status.STALLED


def test_first_commit_is_movement():
    assert evaluate(history([(0, None, 7), (10, 3, 7)])) is Status.OK


def test_no_commit_yet_for_the_whole_stop_window_is_stopped():
    h = history([(0, None, 7), (200, None, 7), (400, None, 7)])
    assert evaluate(h, stop_window_s=300) is Status.STOPPED


def test_a_commit_disappearing_is_not_called_rewind():
    # offsets deleted or expired: the partition shows "no commit yet" again
    h = history([(0, 5, 7), (10, None, 7)])
    assert evaluate(h) is not Status.REWIND


# --------------------------------------------------------------------------- history pruning


def test_prune_keeps_one_snapshot_at_or_before_the_horizon():
    h = history([(t, 1, 1) for t in (0, 100, 200, 250, 300, 350)])
    kept = prune_history(h, 100)
    assert [s.at for s in kept] == [250, 300, 350]


def test_prune_keeps_a_minimum_and_handles_empty():
    h = history([(0, 1, 1), (1000, 1, 1)])
    assert [s.at for s in prune_history(h, 10)] == [0, 1000]
    assert prune_history([], 10) == []


# --------------------------------------------------------------------------- commit tracking


def test_last_commit_is_the_time_the_monitor_saw_the_offset_change():
    monitor = LagMonitor(Settings(), discover=False)
    assert monitor._track_commit("g", T, 0, 5, 100.0) == (None, 100.0)
    assert monitor._track_commit("g", T, 0, 5, 110.0) == (None, 100.0)
    assert monitor._track_commit("g", T, 0, 8, 120.0) == (120.0, 120.0)
    assert monitor._track_commit("g", T, 0, 8, 130.0) == (120.0, 120.0)
    assert monitor._track_commit("g", T, 1, None, 130.0) == (None, None)
    assert monitor._track_commit("g", T, 1, 2, 140.0) == (140.0, 140.0)


def test_member_topics_from_subscription_and_assignment():
    member = {
        "member_metadata": {"topics": ["a"], "user_data": ""},
        "member_assignment": {"assigned_partitions": [{"topic": "b", "partitions": [0]}]},
    }
    assert _member_topics(member) == {"a", "b"}
    assert _member_topics({"member_metadata": b"\x00undecoded", "member_assignment": b""}) == set()


def test_pipeline_expectations_map_service_groups_to_their_physical_input_topics():
    expected = pipeline_expectations(Settings(topic_prefix="tx."))
    assert expected["tx.installments-purchases"] == ["tx.card.purchases.v1"]
    assert all(g.startswith("tx.installments-") for g in expected)  # groups are namespaced too


# --------------------------------------------------------------------------- rendering


def _reports() -> list[GroupReport]:
    stalled = GroupSnapshot(
        group="installments-purchases",
        at=1000.0,
        members=0,
        state="Empty",
        partitions=[part(12, 20, 0, lag_seconds=42.5), part(None, 3, 1), part(None, 0, 2)],
    )
    ok = GroupSnapshot(
        group="installments-offers",
        at=1000.0,
        members=2,
        partitions=[part(7, 7, 0, lag_seconds=0.0, topic="purchases.recorded.v1")],
    )
    return [
        GroupReport(stalled, Status.STOPPED, "no active members"),
        GroupReport(ok, Status.OK, "no lag"),
    ]


def test_prometheus_text_uses_the_ecosystem_names_and_values():
    text = render_metrics(_reports(), last_success=1000.0).decode()
    lines = set(text.splitlines())
    g = 'consumergroup="installments-purchases"'
    # kafka_exporter's figures: a partition with no commit is -1 in lag and current offset
    assert f'kafka_consumergroup_lag{{{g},partition="0",topic="{T}"}} 8.0' in lines
    assert f'kafka_consumergroup_lag{{{g},partition="1",topic="{T}"}} -1.0' in lines
    assert f'kafka_consumergroup_lag{{{g},partition="2",topic="{T}"}} -1.0' in lines
    assert f'kafka_consumergroup_current_offset{{{g},partition="0",topic="{T}"}} 12.0' in lines
    assert f'kafka_consumergroup_current_offset{{{g},partition="1",topic="{T}"}} -1.0' in lines
    # the sums are by group and topic, over the committed partitions only
    assert f'kafka_consumergroup_lag_sum{{{g},topic="{T}"}} 8.0' in lines
    assert f'kafka_consumergroup_current_offset_sum{{{g},topic="{T}"}} 12.0' in lines
    assert f"kafka_consumergroup_members{{{g}}} 0.0" in lines
    assert f'kafka_topic_partitions{{topic="{T}"}} 3.0' in lines
    assert f'kafka_topic_partition_current_offset{{partition="1",topic="{T}"}} 3.0' in lines
    assert f'kafka_topic_partition_oldest_offset{{partition="1",topic="{T}"}} 0.0' in lines
    # the project's extras: the lag that counts the partition with no commit too
    assert f'kafka_consumergroup_unconsumed_messages{{{g},partition="0",topic="{T}"}} 8.0' in lines
    assert f'kafka_consumergroup_unconsumed_messages{{{g},partition="1",topic="{T}"}} 3.0' in lines
    assert f'kafka_consumergroup_unconsumed_messages{{{g},partition="2",topic="{T}"}} 0.0' in lines
    assert f'kafka_consumergroup_lag_seconds{{{g},partition="0",topic="{T}"}} 42.5' in lines
    # lag seconds unknown for partition 1: omitted rather than invented
    assert f'kafka_consumergroup_lag_seconds{{{g},partition="1",topic="{T}"}}' not in text
    assert f"kafka_consumergroup_status{{{g}}} 3.0" in lines
    assert 'kafka_consumergroup_status{consumergroup="installments-offers"} 0.0' in lines
    assert 'kafka_consumergroup_members{consumergroup="installments-offers"} 2.0' in lines
    assert "kafka_consumergroup_exporter_up 1.0" in lines
    assert "kafka_consumergroup_exporter_last_success_timestamp_seconds 1000.0" in lines
    assert "# TYPE kafka_consumergroup_lag gauge" in lines


def test_prometheus_text_leaves_out_a_topic_with_no_commit_like_kafka_exporter():
    never = GroupSnapshot(
        group="installments-points",
        at=1000.0,
        members=1,
        partitions=[part(None, 5, 0), part(None, 0, 1), part(4, 6, 0, topic="other.v1")],
    )
    text = render_metrics([GroupReport(never, Status.OK, "")]).decode()
    lines = set(text.splitlines())
    g = 'consumergroup="installments-points"'
    # kafka_exporter skips a topic on which the group has no commit at all ...
    for family in ("lag", "current_offset", "lag_sum", "current_offset_sum"):
        assert f'kafka_consumergroup_{family}{{{g},partition="0",topic="{T}"}}' not in text
        assert f'kafka_consumergroup_{family}{{{g},topic="{T}"}}' not in text
    assert f'kafka_consumergroup_lag_sum{{{g},topic="other.v1"}} 2.0' in lines
    # ... the project's extra does not: 5 messages wait on partition 0
    assert f'kafka_consumergroup_unconsumed_messages{{{g},partition="0",topic="{T}"}} 5.0' in lines
    assert f'kafka_topic_partition_current_offset{{partition="0",topic="{T}"}} 5.0' in lines


def test_kafka_exporter_lag_is_not_clamped():
    # a committed offset past the log end (truncated log): kafka_exporter shows the difference
    ahead = GroupSnapshot(group="g", at=1.0, members=1, partitions=[part(9, 7, 0)])
    text = render_metrics([GroupReport(ahead, Status.OK, "")]).decode()
    labels = f'{{consumergroup="g",partition="0",topic="{T}"}}'
    assert f"kafka_consumergroup_lag{labels} -2.0" in text
    assert f"kafka_consumergroup_unconsumed_messages{labels} 0.0" in text


def test_prometheus_text_when_collection_failed():
    text = render_metrics([], up=False).decode()
    assert "kafka_consumergroup_exporter_up 0.0" in text.splitlines()


def test_json_shape_says_no_commit_yet_explicitly():
    doc = json.loads(json.dumps(report_to_dict(_reports()[0])))
    assert doc["group"] == "installments-purchases"
    assert doc["status"] == "STOPPED" and doc["status_code"] == 3
    assert doc["members"] == 0 and doc["lag"] == 11 and doc["lag_seconds"] == 42.5
    p1 = doc["partitions"][1]
    assert p1["committed"] is None and p1["no_commit_yet"] is True and p1["lag"] == 3


def test_table_shows_status_and_no_commit_yet():
    console = Console(record=True, width=200)
    console.print(build_table(_reports(), now=1000.0))
    out = console.export_text()
    assert "installments-purchases" in out and "STOPPED" in out
    assert "no commit yet" in out
    assert "42.5" in out
    assert "never" in out
