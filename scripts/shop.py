"""A small shop backend that receives order events, written as a shop would: it holds only the secret.

It verifies every delivery with the independent `standardwebhooks` package (never with this project's
signing code), and records what arrived. `make demo`, the tests and the benchmark run it; its mode
makes it misbehave on purpose:

    ok      200 to every verified delivery (401 to one that fails verification)
    503     answers 503 Service Unavailable
    hang    reads the request and never answers (until `release()` or the server stops)

`stop()` closes the listening socket (connections are refused) and `start()` opens it again on the
same port.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

HANG_LIMIT = 60.0  # seconds a hanging answer waits at most, so a forgotten endpoint cannot hold on forever


@dataclass(frozen=True)
class Delivery:
    """One POST the shop received: its headers, body and whether the signature held."""

    webhook_id: str
    timestamp: str
    body: bytes
    verified: bool
    received_at: float  # time.time()
    status: int  # what the shop answered (0: no answer)

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def order_no(self) -> str:
        return str(self.event["data"]["order"]["order_no"])

    @property
    def type(self) -> str:
        return str(self.event["type"])


@dataclass
class ShopEndpoint:
    """The receiving end on 127.0.0.1; `url` is what SHOP_WEBHOOK_URL should be."""

    secret: str
    port: int = 0
    mode: str = "ok"
    deliveries: list[Delivery] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._webhook = Webhook(self.secret)
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._open: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/qpay-events"

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> ShopEndpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with endpoint._lock:
                    endpoint._open.add(self.connection)

            def finish(self) -> None:
                with endpoint._lock:
                    endpoint._open.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                endpoint._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.block_on_close = False  # stop() must not wait for kept-alive connections to end
        self.port = int(server.server_address[1])
        self._release.clear()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="shop-endpoint", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket: connections are refused until start()."""
        self._release.set()
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()  # the listening socket: new connections are refused
        with self._lock:  # and the kept-alive ones are cut: a server that is down answers nothing
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self._open.clear()

    def hang(self) -> None:
        """From now on, take each POST and do not answer (until `release()`)."""
        self._release.clear()
        self.mode = "hang"

    def release(self) -> None:
        """Let hanging requests go (they are then dropped without an answer)."""
        self._release.set()

    def __enter__(self) -> ShopEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- receiving ----------------------------------------------------------------------------------

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length)
        headers = {k.lower(): v for k, v in req.headers.items()}
        try:
            self._webhook.verify(body, headers)
            verified = True
        except (WebhookVerificationError, ValueError):
            verified = False
        mode = self.mode
        status = 0 if mode == "hang" else 503 if mode == "503" else 200 if verified else 401
        with self._lock:
            self.deliveries.append(Delivery(headers.get("webhook-id", ""),
                                            headers.get("webhook-timestamp", ""),
                                            body, verified, time.time(), status))
        if mode == "hang":
            self._release.wait(HANG_LIMIT)
            req.close_connection = True
            return
        answer = b'{"ok":true}' if status == 200 else b'{"ok":false}'
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(answer)))
        req.end_headers()
        req.wfile.write(answer)

    # -- what arrived -------------------------------------------------------------------------------

    def received(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def accepted(self) -> list[Delivery]:
        """Verified deliveries the shop answered 2xx: the ones that count as delivered."""
        return [d for d in self.received() if d.verified and 200 <= d.status < 300]

    def unverified(self) -> list[Delivery]:
        return [d for d in self.received() if not d.verified]

    def events_of(self, order_no: str) -> list[dict[str, Any]]:
        """The verified, accepted events of one order, one per event id, by id."""
        unique = {d.webhook_id: d.event for d in self.accepted() if d.order_no == order_no}
        return [unique[k] for k in sorted(unique, key=lambda name: int(name.removeprefix("evt_")))]
