"""The journey tests' world: the system as real processes, a tiny shop site, and a real Chromium.

One stack per module (sandbox bank over HTTP, gunicorn, a Celery worker, PostgreSQL, Redis): starting it
costs more than the journeys themselves. Each test opens its own browser context (cookies, language,
viewport, JavaScript on or off).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from tests.support import services
from tests.support.browser import BrowserUnavailable, ensure_chromium
from tests.support.stack import Stack

SHOP_NAME = "茶葉小舖"
SHOP_RETURN_DELAY = 3  # seconds: long enough to see the final page, short enough for a test


class _ShopPage(BaseHTTPRequestHandler):
    """The shop's own order page that SHOP_RETURN_URL points at."""

    def do_GET(self) -> None:
        body = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Shop</title></head>"
                f"<body><h1 id=\"shop-order\">Shop page for {escape(self.path)}</h1></body></html>").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def chromium_path() -> str:
    try:
        return ensure_chromium()
    except BrowserUnavailable as exc:
        pytest.fail(f"the browser tests need Chromium: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")  # the system Chromium only
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright, chromium_path: str) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=chromium_path)
    yield launched
    launched.close()


@pytest.fixture(scope="module")
def shop_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ShopPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def stack(postgres_admin_url: str, shop_url: str) -> Iterator[Stack]:
    database_url = services.create_database(postgres_admin_url)
    try:
        with services.TempRedis() as redis_server, Stack(
            database_url, redis_server.url, workers=1,
            extra_env={"SHOP_NAME": SHOP_NAME, "SHOP_RETURN_URL": f"{shop_url}/orders/{{order_no}}",
                       "SHOP_RETURN_DELAY": str(SHOP_RETURN_DELAY)},
        ) as running:
            yield running
    finally:
        services.drop_database(database_url)
