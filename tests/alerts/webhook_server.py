"""A loopback webhook: records what Discord or Slack would have received.

``mode`` is ``ok`` (204, as Discord answers), ``fail`` (500 to everything) or ``hang``
(each request waits, unanswered, until ``release()`` or 30 s). ``requests`` counts the
requests that arrived, answered or not.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET = "T0KEN-s3cr3t-do-not-log"


class WebhookServer:
    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.bodies: list[dict[str, Any]] = []
        self.requests = 0
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        # The path holds a secret, as a real webhook's does.
        self.url = f"http://127.0.0.1:{self.port}/api/webhooks/1234/{SECRET}"

    def start(self) -> WebhookServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def release(self) -> None:
        self._release.set()

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def texts(self, kind: str | None = None) -> list[str]:
        with self._lock:
            return [str(b.get("content")) for b in self.bodies]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                with hook._lock:
                    hook.requests += 1
                    hook.paths.append(self.path)
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if hook.mode == "hang":
                    hook._release.wait(30)
                    return
                if hook.mode == "fail":
                    self.send_response(500)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                with hook._lock:
                    hook.bodies.append(body)
                self.send_response(204)
                self.end_headers()

        return Handler
