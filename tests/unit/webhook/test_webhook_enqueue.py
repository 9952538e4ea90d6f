"""The broker sender never hangs and never raises: an unreachable broker is a False, quickly."""

from __future__ import annotations

import socket
import time

import pytest
from kombu.exceptions import OperationalError

from webhook.enqueue import CeleryEnqueuer


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_broker_reports_false_within_the_timeout():
    enqueuer = CeleryEnqueuer(f"redis://127.0.0.1:{closed_port()}/0")
    started = time.monotonic()
    assert enqueuer.send_resolve(42) is False
    assert enqueuer.send_resolve(43) is False
    assert time.monotonic() - started < 3.0


def test_silent_broker_is_abandoned_after_the_connect_timeout():
    # given a listener that accepts TCP connections but never says a word (a wedged Redis)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        port = server.getsockname()[1]
        enqueuer = CeleryEnqueuer(f"redis://127.0.0.1:{port}/0", timeout=0.5)
        started = time.monotonic()
        assert enqueuer.send_resolve(42) is False
        assert time.monotonic() - started < 5.0


def test_ping_raises_for_an_unreachable_broker():
    enqueuer = CeleryEnqueuer(f"redis://127.0.0.1:{closed_port()}/0")
    with pytest.raises((OperationalError, OSError)):
        enqueuer.ping()


def test_repr_hides_the_broker_url():
    assert "secret" not in repr(CeleryEnqueuer("redis://:secret@127.0.0.1:1/0"))
