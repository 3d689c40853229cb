"""Health, readiness and metrics endpoints of a running service."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest

from shared.runtime import metrics
from tests.builders import messages as f
from tests.builders.services import PURCHASES as SERVICE
from tests.support import Collector, Producer, ServiceThread, wait_until

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_healthz_readyz_and_metrics(settings):
    port = _free_port()
    svc = ServiceThread(SERVICE, settings)
    server = metrics.serve(port, svc.runner)
    base = f"http://127.0.0.1:{port}"
    try:
        assert _get(f"{base}/healthz")[0] == 200
        assert _get(f"{base}/readyz")[0] == 503  # not polling yet
        svc.start()
        wait_until(lambda: _get(f"{base}/readyz")[0] == 200, 60, "ready")
        ready = json.loads(_get(f"{base}/readyz")[1])
        assert ready["database"] == "ok" and ready["assigned_partitions"] >= 1
        producer, out = Producer(settings), Collector(settings, "purchases.recorded.v1")
        producer.send_all("card.purchases.v1", [f.purchase(f.new_id("acc")), b"not json"])
        out.wait_count(1)
        wait_until(lambda: b'outcome="dlq"' in _get(f"{base}/metrics")[1], 30, "dlq metric")
        body = _get(f"{base}/metrics")[1].decode()
        assert (
            'installments_events_total{outcome="processed",service="purchases",type="purchase.posted"}'
            in body
        )
        assert "installments_handler_seconds_bucket" in body
        assert 'installments_outbox_backlog{service="purchases"}' in body
        assert "installments_batch_size_count" in body
    finally:
        svc.stop()
        server.shutdown()
