"""The status front: a GET-only HTTP endpoint for probes and Prometheus, the port ``serve`` exposes
for them instead of Triton's own HTTP and metrics ports (which single requests crash: access.py).

- ``/v2/health/live``: 200 while ``serve`` runs (it restarts tritonserver itself and never gives
  up, so killing the pod for a restart in progress would only add a cold start);
- ``/v2/health/ready``: 200 when the server is ready AND the ensemble is (Triton's own
  ``/v2/health/ready`` stays 200 after the ensemble is unloaded), else 503;
- ``/metrics``: Triton's Prometheus text, relayed from its metrics socket (process.py).

It never reads a request body: other methods get 501 and every connection closes after its answer.
"""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from resnet_serve.server.process import LIVE_PATH, READY_PATH, port_taken

METRICS_PATH = "/metrics"


class _Handler(BaseHTTPRequestHandler):
    server_version = "resnet-serve"
    timeout = 5  # seconds a client may take to send its request line and headers

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        front: StatusFront = self.server.front  # type: ignore[attr-defined]
        if path == LIVE_PATH:
            self._answer(200, b"live\n")
        elif path == READY_PATH:
            ready = front.ready()
            self._answer(200 if ready else 503, b"ready\n" if ready else b"not ready\n")
        elif path == METRICS_PATH:
            try:
                self._answer(200, front.metrics())
            except OSError as exc:
                self._answer(502, f"tritonserver metrics unavailable: {exc}\n".encode())
        else:
            paths = ", ".join((LIVE_PATH, READY_PATH, METRICS_PATH))
            self._answer(404, f"this port serves {paths} only, got {path[:100]!r}; inference: gRPC\n".encode())

    def _answer(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # probes every few seconds: not worth a log line each
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client that hung up early (a probe's timeout) is not worth a traceback in serve's log."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class StatusFront:
    """``with StatusFront(host, port, ready, metrics): ...`` serves in a background thread; ``metrics()``
    returns the Prometheus text (raises OSError when it cannot)."""

    def __init__(self, host: str, port: int, ready: Callable[[], bool], metrics: Callable[[], bytes]):
        self.ready, self.metrics = ready, metrics
        server_class = type("_Server6", (_Server,), {"address_family": socket.AF_INET6}) if ":" in host else _Server
        try:
            self.httpd = server_class((host.strip("[]"), port), _Handler)
        except OSError as exc:
            raise port_taken("metrics and health", host, port, exc) from None
        self.httpd.front = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="status-front", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        host = "127.0.0.1" if host == "0.0.0.0" else (f"[{host}]" if ":" in host else host)
        return f"http://{host}:{port}"

    def start(self) -> StatusFront:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()

    def __enter__(self) -> StatusFront:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
