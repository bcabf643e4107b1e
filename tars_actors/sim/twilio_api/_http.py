"""The REST stand-in's HTTP server: threads that read a request and write the JSON answer."""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tars_actors.sim.twilio_api._routes import RestRoutes

__all__ = ["RestHttpServer"]


class RestHttpServer(ThreadingHTTPServer):
    """Serves ``routes`` on 127.0.0.1 on a free port, one thread per connection.

    Answers held back by a delay go out at once when :attr:`stopping` is set.
    """

    daemon_threads = True

    def __init__(self, routes: RestRoutes) -> None:
        self.routes = routes
        self.stopping = threading.Event()
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RestHttpServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are recorded instead of printed."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        status, payload, after, delay = self.server.routes.respond(
            method=self.command,
            target=self.path,
            authorization=self.headers.get("Authorization"),
            body=body,
        )
        if delay > 0:
            self.server.stopping.wait(delay)
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == HTTPStatus.UNAUTHORIZED:
                self.send_header("WWW-Authenticate", 'Basic realm="Twilio API"')
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            # The client gave up (or was killed) while its answer was held back.
            self.close_connection = True
        if after is not None:
            after()
