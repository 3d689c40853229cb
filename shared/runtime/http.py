"""The small HTTP server behind every health/metrics port: routes -> handlers.

Used by the services (:func:`shared.runtime.metrics.serve`: ``/healthz``, ``/readyz``,
``/metrics``) and by the lag exporter (``shared.ops.lag.exporter``: ``/metrics``,
``/healthz``). A route is a function of no argument returning a :class:`Response`;
a path with no route is ``404 not found`` (text/plain). Only GET is served (other
methods get http.server's 501). Access logs are not written (they would break the
JSON log). The server runs in a daemon thread, one daemon thread per request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple


class Response(NamedTuple):
    status: int
    body: bytes
    content_type: str


Route = Callable[[], Response]

NOT_FOUND = Response(404, b"not found", "text/plain")


def alive() -> Response:
    """``/healthz``: the process is alive."""
    return Response(200, b'{"status":"alive"}', "application/json")


def serve_routes(
    routes: Mapping[str, Route],
    host: str,
    port: int,
    *,
    thread_name: str,
    ignore_query: bool = False,
) -> ThreadingHTTPServer:
    """Serve ``routes`` (path -> handler) on ``(host, port)`` in a daemon thread.

    ``ignore_query``: match the path without its ``?query`` (otherwise the request
    path must equal the route exactly). ``server.server_address[1]`` is the port
    (useful with ``port=0``); stop with ``server.shutdown()``.
    """
    table = dict(routes)

    class _Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0] if ignore_query else self.path
            route = table.get(path)
            self._send(route() if route is not None else NOT_FOUND)

        def _send(self, response: Response) -> None:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)

        def log_message(self, *_args: Any) -> None:  # keep access logs out of the JSON log
            return

    server = ThreadingHTTPServer((host, port), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name=thread_name).start()
    return server
