"""A real HTTP server on 127.0.0.1 for download tests: Range support, truncation, request log."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class FileServer:
    files: dict[str, bytes] = field(default_factory=dict)
    support_range: bool = True
    truncate_at: int | None = None  # send Content-Length of the whole body but stop after this many bytes
    requests: list[dict[str, str | None]] = field(default_factory=list)
    port: int = 0

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


def start(server_state: FileServer) -> tuple[ThreadingHTTPServer, threading.Thread]:
    state = server_state

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output quiet
            pass

        def do_GET(self):  # noqa: N802 (http.server API)
            name = self.path.lstrip("/")
            range_header = self.headers.get("Range")
            state.requests.append({"path": name, "range": range_header})
            body = state.files.get(name)
            if body is None:
                self.send_error(404)
                return
            start = 0
            if range_header and state.support_range:
                start = int(range_header.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            payload = body[start:]
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if state.truncate_at is not None:
                payload = payload[: state.truncate_at]
            self.wfile.write(payload)
            self.wfile.flush()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return httpd, thread
