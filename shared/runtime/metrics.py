"""Health and Prometheus metrics for every service, on one small HTTP port.

``/healthz``: the process is alive. ``/readyz``: the consumer has its partitions
and the database answers. ``/metrics``: Prometheus exposition.
"""

from __future__ import annotations

import json
from http.server import ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select, text

from shared.runtime.http import Response, alive, serve_routes
from shared.runtime.store import outbox

EVENTS = Counter(
    "installments_events_total",
    "Events handled by a service, by type and outcome (processed, duplicate, dlq, failed)",
    ["service", "type", "outcome"],
)
EMITTED = Counter("installments_events_emitted_total", "Outbox rows published", ["service"])
BATCH_SIZE = Histogram(
    "installments_batch_size",
    "Records per processed batch",
    ["service"],
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
BATCH_SECONDS = Histogram(
    "installments_batch_seconds", "Time to process one batch (database transaction)", ["service"]
)
HANDLER_SECONDS = Histogram(
    "installments_handler_seconds",
    "Handler latency per event type",
    ["service", "type"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
OUTBOX_BACKLOG = Gauge("installments_outbox_backlog", "Unpublished outbox rows", ["service"])
ASSIGNED = Gauge("installments_assigned_partitions", "Partitions assigned", ["service"])
READY = Gauge(
    "installments_ready", "1 when the service is ready (/readyz answers 200), else 0", ["service"]
)


_children: dict[tuple[object, ...], object] = {}


def _child(metric: object, *labels: str) -> object:
    """The labelled child of a metric, cached (``labels()`` costs a lock and a lookup)."""
    key = (id(metric), *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)  # type: ignore[attr-defined]
    return child


def count(service: str, event_type: str, outcome: str) -> None:
    _child(EVENTS, service, event_type, outcome).inc()  # type: ignore[attr-defined]


def count_emitted(service: str, n: int) -> None:
    EMITTED.labels(service).inc(n)


def observe_batch(service: str, size: int, seconds: float) -> None:
    BATCH_SIZE.labels(service).observe(size)
    BATCH_SECONDS.labels(service).observe(seconds)


def observe_handler(service: str, event_type: str, seconds: float) -> None:
    _child(HANDLER_SECONDS, service, event_type).observe(seconds)  # type: ignore[attr-defined]


def readiness(runner: Any) -> tuple[bool, dict[str, Any]]:
    """Ready when the loop polls with partitions assigned and the database answers
    (also sets the ``installments_ready`` gauge, which the alert rules watch)."""
    ok, detail = _readiness(runner)
    READY.labels(runner.service.name).set(1 if ok else 0)
    return ok, detail


def _readiness(runner: Any) -> tuple[bool, dict[str, Any]]:
    detail: dict[str, Any] = {"service": runner.service.name, "polling": runner.ready}
    try:
        with runner.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            by_batch = conn.execute(
                select(outbox.c.batch, func.count()).group_by(outbox.c.batch)
            ).all()
        # rows this process published already and marks sent with its next batch are out
        with runner.lock:
            published = set(runner._published_batches)
        backlog = sum(n for batch, n in by_batch if batch not in published)
        OUTBOX_BACKLOG.labels(runner.service.name).set(backlog)
        detail["database"] = "ok"
        detail["outbox_backlog"] = backlog
    except Exception as exc:  # any failure means not ready
        detail["database"] = type(exc).__name__
        return False, detail
    detail["assigned_partitions"] = len(runner.assigned)
    ASSIGNED.labels(runner.service.name).set(len(runner.assigned))
    return bool(runner.ready and runner.assigned), detail


def serve(port: int, runner: Any, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start the health/metrics server (all interfaces, ``port``) in a daemon thread."""

    def ready() -> Response:
        ok, detail = readiness(runner)
        return Response(200 if ok else 503, json.dumps(detail).encode(), "application/json")

    def metrics() -> Response:
        readiness(runner)  # refreshes the outbox backlog and assigned-partitions gauges
        return Response(200, generate_latest(), CONTENT_TYPE_LATEST)

    routes = {"/healthz": alive, "/readyz": ready, "/metrics": metrics}
    return serve_routes(routes, host, port, thread_name="http")
