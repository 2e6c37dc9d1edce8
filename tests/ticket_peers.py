"""Real peers on loopback for ticketing tests: an HTTP receiver that behaves like an idempotent API."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit


class Receiver:
    """Records every POST; answers from a script of statuses (then 200); dedups by Idempotency-Key.

    ``check(path, query, headers, body) -> str | None`` may reject a request
    (a signature check): the returned reason is answered with HTTP 200 and
    ``{"errcode": 310000}``, as DingTalk does, or with ``reject_status``.
    """

    def __init__(self, statuses=(), delay=0.0, check=None, reject_status=None, error_body=None):
        self.statuses = list(statuses)
        self.error_body = error_body  # the reply to a scripted non-200 status (default: JSON below)
        self.delay = delay
        self.check = check
        self.reject_status = reject_status
        self.requests: list[dict] = []
        self.accepted: dict[str, dict] = {}  # idempotency key -> body, first delivery only
        self.duplicates = 0
        self.lock = threading.Lock()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                url = urlsplit(self.path)
                req = {
                    "path": url.path,
                    "query": dict(parse_qsl(url.query)),
                    "headers": dict(self.headers),
                    "body": json.loads(body) if body else None,
                }
                if peer.delay:
                    time.sleep(peer.delay)
                with peer.lock:
                    peer.requests.append(req)
                    status = peer.statuses.pop(0) if peer.statuses else 200
                    reason = peer.check(req) if peer.check and status == 200 else None
                    key = self.headers.get("Idempotency-Key", "")
                    if status == 200 and reason is None:
                        if key in peer.accepted:
                            peer.duplicates += 1
                        else:
                            peer.accepted[key] = req["body"]
                if reason is not None:
                    code = peer.reject_status or 200
                    out = json.dumps(
                        {"errcode": 310000, "errmsg": reason, "code": 19021, "msg": reason}
                    ).encode()
                elif status != 200 and peer.error_body is not None:
                    code, out = status, peer.error_body
                else:
                    code = status
                    out = json.dumps({"errcode": 0, "code": 0, "msg": "success"}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
