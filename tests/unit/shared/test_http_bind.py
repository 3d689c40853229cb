"""The health/metrics server listens on loopback unless told otherwise (#15)."""

from __future__ import annotations

from shared.runtime import metrics
from shared.runtime.settings import Settings


def test_the_health_server_binds_loopback_by_default_and_the_configured_host_otherwise():
    assert Settings(environment="test").http_host == "127.0.0.1"
    for host in ("127.0.0.1", "0.0.0.0"):
        server = metrics.serve(0, runner=None, host=host)
        try:
            assert server.server_address[0] == host
        finally:
            server.shutdown()
            server.server_close()
    default = metrics.serve(0, runner=None)
    try:
        assert default.server_address[0] == "127.0.0.1"
    finally:
        default.shutdown()
        default.server_close()
