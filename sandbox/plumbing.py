"""HTTP plumbing for the sandbox's handlers: bodies, replies, dropped connections, routing.

The standard library's BaseHTTPRequestHandler gives the raw control of the connection that fault
injection needs (hold it open, close it without a reply, send half a body).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from sandbox.runtime import Sandbox

if TYPE_CHECKING:
    from sandbox.app import SandboxServer

__all__ = ["MAX_BODY", "BadRequest", "BaseHandler"]

log = logging.getLogger("sandbox.app")  # the access log keeps the name it always had

MAX_BODY = 1 << 20


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class BaseHandler(BaseHTTPRequestHandler):
    """What every route needs: read a body, answer JSON or HTML, drop the connection, dispatch."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small keep-alive replies must not wait for delayed ACKs
    server: SandboxServer
    server_version = "QPaySandbox/1.0"

    @property
    def sb(self) -> Sandbox:
        return self.server.sandbox

    def log_message(self, format: str, *args: Any) -> None:
        if self.sb.config.access_log:
            log.info("%s %s", self.address_string(), format % args)

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise BadRequest(411, "send a Content-Length (chunked bodies are not supported)")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise BadRequest(400, "Content-Length is not a number") from None
        if length < 0 or length > MAX_BODY:
            raise BadRequest(413, f"body larger than {MAX_BODY} bytes")
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> Any:
        raw = self._body()
        try:
            return json.loads(raw.decode("utf-8-sig")) if raw.strip() else {}
        except (UnicodeDecodeError, ValueError):
            raise BadRequest(400, "body is not UTF-8 JSON") from None

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self._send(status, data, "application/json; charset=utf-8")

    def _html(self, status: int, text: str) -> None:
        self._send(status, text.encode("utf-8"), "text/html; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _drop(self) -> None:
        """Close the connection without a reply (what a crashed or unplugged bank looks like)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _route(self, routes: list[tuple[re.Pattern[str] | str, Any]]) -> None:
        path = urlsplit(self.path).path
        try:
            for pattern, handler in routes:
                if isinstance(pattern, str):
                    if path == pattern or path == pattern + "/":
                        return handler()
                elif match := pattern.match(path):
                    return handler(*[unquote(g) if g else g for g in match.groups()])
            self._error(404, f"no route {self.command} {path}")
        except BadRequest as exc:
            self.close_connection = True  # the body may not have been read
            self._error(exc.status, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            log.exception("sandbox handler failed for %s %s", self.command, path)
            self.close_connection = True
            self._error(500, "internal sandbox error (see its log)")
        return None

    def _shop_arg(self) -> str | None:
        """`?shop=<ShopNo>`: which shop's order, when two shops use one OrderNo."""
        return parse_qs(urlsplit(self.path).query).get("shop", [""])[0] or None
