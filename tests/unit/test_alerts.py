"""deploy/prometheus/alerts.yml: checked and unit-tested by the real promtool, and every
metric the alert rules and the Grafana dashboard query is one the code really emits.

promtool comes with Debian's ``prometheus`` package (``scripts/test.sh`` installs it when
missing); like the browser tests, these tests fail rather than skip without it.

The emitted names are scraped, not listed by hand: the lag exporter's ``/metrics``
(:func:`shared.ops.lag.serve_metrics` over a monitor holding reports) and a service's
``/metrics`` (:func:`shared.runtime.metrics.serve`, the process-wide prometheus_client
registry, which the collections console serves too), both in-process on a free port.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import services.collections.console.app  # noqa: F401  (registers the console's metrics)
from shared.ops.lag import (
    GroupReport,
    GroupSnapshot,
    LagMonitor,
    PartitionLag,
    Status,
    serve_metrics,
)
from shared.registry import SERVICE_NAMES
from shared.runtime import metrics as service_metrics
from shared.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts.test.yml"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "installments.json"

# Series Prometheus makes itself for every scrape target (not emitted by any code of ours).
PROMETHEUS_SERIES = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
)


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- promtool


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: install Debian's prometheus package (scripts/test.sh does)"
        )
    return path


def _run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *args],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_promtool_check_rules() -> None:
    result = _run_promtool("check", "rules", ALERTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_config_loads_the_rules() -> None:
    config = _load(PROMETHEUS_CONFIG)
    assert config["rule_files"] == [ALERTS.name]  # next to prometheus.yml in /etc/prometheus
    result = _run_promtool("check", "config", PROMETHEUS_CONFIG.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_promtool_test_rules() -> None:
    result = _run_promtool("test", "rules", ALERTS_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _load(ALERTS)["groups"] for rule in group["rules"]]


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    alerts = {rule["alert"] for rule in _rules()}
    assert {
        "ConsumerLagSecondsHigh",
        "ConsumerGroupWithoutMembers",
        "DeadLettersIncreasing",
        "ServiceDown",
        "ServiceAbsent",
        "ServiceNotReady",
        "ConsumerPartitionStalled",
        "LagExporterCannotCollect",
    } <= alerts
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in _load(ALERTS_TEST)["tests"]:
        for case in test.get("alert_rule_test") or []:
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert alerts - firing == set(), "alerts never shown firing"
    assert alerts - quiet == set(), "alerts never shown quiet"


def test_every_alert_has_a_severity_and_a_summary() -> None:
    for rule in _rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_service_absent_names_every_service() -> None:
    (rule,) = [r for r in _rules() if r["alert"] == "ServiceAbsent"]
    named = re.findall(r'absent\(installments_ready\{service="([a-z-]+)"\}\)', rule["expr"])
    assert sorted(named) == sorted(SERVICE_NAMES)


def test_jobs_in_alerts_are_scrape_jobs() -> None:
    jobs = {job["job_name"] for job in _load(PROMETHEUS_CONFIG)["scrape_configs"]}
    used = set()
    for rule in _rules():
        for regex in re.findall(r'job=~?"([^"]+)"', rule["expr"]):
            used.update(regex.split("|"))
    assert used and used <= jobs


# ------------------------------------------------------------ metric names in expressions

_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, aggregations, keywords,
    label matchers, grouping labels, durations and Grafana variables removed)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = _GROUPING.sub(" ", text)  # by (...), on (...), ...
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    text = re.sub(r"\boffset\s+\S+", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana's $__rate_interval, ...
    text = re.sub(r"\b\d[\w.]*", " ", text)  # numbers and durations (10m, 1e3)
    names = set()
    for match in _IDENT.finditer(text):
        name = match.group()
        if name.lower() in _KEYWORDS:
            continue
        if re.match(r"\s*\(", text[match.end() :]):  # a function or an aggregation
            continue
        names.add(name)
    return names


def test_metric_names_parser() -> None:
    quantile = 'histogram_quantile(0.99, sum by (service, le) (rate(x_bucket{a="b(c)"}[$__r])))'
    assert metric_names(quantile) == {"x_bucket"}
    assert metric_names(
        'sum by (g) (delta(a{g!~".*x"}[10m])) > 0 and on (g) max by (g) (b) == 0'
        " or absent(c) unless d offset 10m"
    ) == {"a", "b", "c", "d"}


def _dashboard_exprs() -> list[str]:
    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels") or [])  # collapsed rows nest theirs

    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in panels(dashboard["panels"]) for t in p.get("targets") or []]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if variable.get("type") == "query" and isinstance(query, str):
            exprs.append(re.sub(r"^\w+\((.*)\)$", r"\1", query))  # label_values(expr, l)
    return exprs


def _alert_exprs() -> list[str]:
    return [rule["expr"] for rule in _rules()]


# ------------------------------------------------------------------- what the code emits


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def _names(exposition: str) -> set[str]:
    """Every series name a Prometheus scraping this text stores: the sample names, and for
    families with no sample yet (a labelled metric before its first use) the names their
    type gives (counter ``_total``, histogram ``_bucket`` / ``_count`` / ``_sum``, ...)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


def _lag_reports() -> list[GroupReport]:
    def part(committed: int | None, end: int, n: int) -> PartitionLag:
        lag = end - (committed or 0)
        return PartitionLag("card.purchases.v1", n, end, committed, lag, lag_seconds=1.5)

    snapshot = GroupSnapshot(
        "installments-purchases", 1000.0, 1, [part(3, 5, 0), part(None, 2, 1)], "Stable"
    )
    return [GroupReport(snapshot, Status.STALLED, "")]


@pytest.fixture(scope="module")
def exporter_names() -> set[str]:
    monitor = LagMonitor(Settings(), discover=False)  # no Kafka client until a poll
    monitor.reports = _lag_reports()
    monitor.last_success = 1000.0
    server = serve_metrics(monitor, "127.0.0.1", 0)
    try:
        return _names(_scrape(server.server_address[1]))
    finally:
        server.shutdown()
        server.server_close()


class _NoDatabase:
    def connect(self) -> Any:
        raise ConnectionError("no database in unit tests")


@pytest.fixture(scope="module")
def service_names() -> set[str]:
    runner = SimpleNamespace(
        service=SimpleNamespace(name="offers"), ready=False, assigned=set(), engine=_NoDatabase()
    )
    server = service_metrics.serve(0, runner, host="127.0.0.1")
    try:
        return _names(_scrape(server.server_address[1]))
    finally:
        server.shutdown()
        server.server_close()


def test_the_exporter_emits_kafka_exporters_names_and_the_extras(
    exporter_names: set[str],
) -> None:
    assert {
        "kafka_consumergroup_current_offset",
        "kafka_consumergroup_current_offset_sum",
        "kafka_consumergroup_lag",
        "kafka_consumergroup_lag_sum",
        "kafka_consumergroup_members",
        "kafka_topic_partitions",
        "kafka_topic_partition_current_offset",
        "kafka_topic_partition_oldest_offset",
        "kafka_consumergroup_unconsumed_messages",
        "kafka_consumergroup_lag_seconds",
        "kafka_consumergroup_status",
        "kafka_consumergroup_exporter_up",
        "kafka_consumergroup_exporter_last_success_timestamp_seconds",
    } <= exporter_names


def test_a_service_emits_its_metrics_and_readiness(service_names: set[str]) -> None:
    assert {
        "installments_events_total",
        "installments_handler_seconds_bucket",
        "installments_ready",
        "installments_console_contacts_total",
    } <= service_names


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_queried_metrics_are_emitted(
    source: str, exporter_names: set[str], service_names: set[str]
) -> None:
    exprs = _alert_exprs() if source == "alerts" else _dashboard_exprs()
    used = set().union(*(metric_names(e) for e in exprs))
    assert len(used) >= 5, used  # the parser found the expressions' metrics
    missing = used - exporter_names - service_names - PROMETHEUS_SERIES
    assert not missing, f"{source} query metrics nothing emits: {sorted(missing)}"


def test_readiness_gauge_follows_readyz() -> None:
    runner = SimpleNamespace(
        service=SimpleNamespace(name="points"), ready=True, assigned=set(), engine=_NoDatabase()
    )
    ok, _ = service_metrics.readiness(runner)
    assert not ok
    assert REGISTRY.get_sample_value("installments_ready", {"service": "points"}) == 0
