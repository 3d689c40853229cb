"""The long-running Prometheus exporter: serve the monitor's latest reports on
``/metrics`` (and ``/healthz``) and poll it every interval until stopped.
"""

from __future__ import annotations

import signal
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from shared.ops.lag.collector import LagMonitor
from shared.runtime.http import Response, alive, serve_routes

DEFAULT_EXPORTER_PORT = 9308  # kafka_exporter's port, by convention
DEFAULT_EXPORTER_INTERVAL_S = 15.0


def serve_metrics(
    monitor: LagMonitor, host: str = "127.0.0.1", port: int = 0
) -> ThreadingHTTPServer:
    """Serve ``/metrics`` (the monitor's latest reports) and ``/healthz`` in a daemon
    thread; ``server.server_address[1]`` is the port (useful with ``port=0``). A query
    string is ignored (``/metrics?x`` is ``/metrics``)."""

    def metrics() -> Response:
        return Response(200, monitor.render(), CONTENT_TYPE_LATEST)

    routes = {"/metrics": metrics, "/healthz": alive}
    return serve_routes(routes, host, port, thread_name="lag-exporter", ignore_query=True)


def run_exporter(
    monitor: LagMonitor,
    *,
    host: str = "127.0.0.1",
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
