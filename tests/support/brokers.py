"""The brokers the pipeline is tested on: a private Redis, or the machine's RabbitMQ.

RabbitMQ runs on 127.0.0.1:5672 (guest/guest) on the development and CI machines; it is started when
it is down and installed (apt-get, as root) when missing, like PostgreSQL and Redis in services.py.
Tests never share its state: each broker gets a virtual host of its own (rabbitmqctl, as root),
deleted afterwards. The machine's RabbitMQ is never stopped: a test that needs the broker gone puts
a `TcpProxy` between the pipeline and it and cuts that.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from kombu import Connection

from tests.support.poll import wait_for
from tests.support.services import ServiceUnavailable, TempRedis, free_port

RABBIT_HOST, RABBIT_PORT = "127.0.0.1", 5672
RABBIT_USER = "guest:guest"


def _rabbit_ok(vhost: str = "/") -> bool:
    url = f"amqp://{RABBIT_USER}@{RABBIT_HOST}:{RABBIT_PORT}/{vhost if vhost != '/' else ''}"
    try:
        with Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
        return True
    except Exception:
        return False


def _run(cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def ensure_rabbitmq() -> None:
    """The machine's RabbitMQ on 5672: installed if missing, started if down, else a clear failure."""
    if _rabbit_ok():
        return
    if shutil.which("rabbitmq-server") is None:
        _run(["apt-get", "update"], timeout=300)
        _run(["apt-get", "install", "-y", "rabbitmq-server"], timeout=600)
    if shutil.which("rabbitmq-server") is None:
        raise ServiceUnavailable("RabbitMQ is not installed and `apt-get install -y rabbitmq-server` failed")
    if _run(["service", "rabbitmq-server", "start"]).returncode != 0:
        _run(["rabbitmq-server", "-detached"])
    try:
        wait_for(_rabbit_ok, timeout=90, interval=1, message="RabbitMQ on 127.0.0.1:5672")
    except TimeoutError as exc:
        raise ServiceUnavailable("RabbitMQ on 127.0.0.1:5672 (guest/guest) is down and could not be "
                                 "started") from exc


@contextlib.contextmanager
def rabbit_vhost() -> Iterator[str]:
    """A fresh virtual host on the machine's RabbitMQ for guest; its amqp:// URL. Deleted on exit."""
    ensure_rabbitmq()
    name = f"qpay_t_{uuid.uuid4().hex[:12]}"
    user = RABBIT_USER.split(":")[0]
    for cmd in (["rabbitmqctl", "add_vhost", name],
                ["rabbitmqctl", "set_permissions", "-p", name, user, ".*", ".*", ".*"]):
        result = _run(cmd, timeout=60)
        if result.returncode != 0:
            raise ServiceUnavailable(f"{' '.join(cmd[:2])} failed (the tests run it as root): "
                                     f"{result.stderr[-500:]}")
    try:
        yield f"amqp://{RABBIT_USER}@{RABBIT_HOST}:{RABBIT_PORT}/{name}"
    finally:
        _run(["rabbitmqctl", "delete_vhost", name], timeout=60)


class TcpProxy:
    """A TCP relay on a spare port; `cut()` drops every connection and refuses new ones until
    `restore()`: to the processes behind it, the broker is down."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            with self._lock:
                self._conns.difference_update((src, dst))

    def cut(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self.start()

    stop = cut


@dataclass
class Broker:
    """A broker for one Stack: `url` is its BROKER_URL, `env` what else the processes need."""

    kind: str
    url: str
    env: dict[str, str] = field(default_factory=dict)
    redis: TempRedis | None = None  # the private Redis (the broker, or beat's lock beside RabbitMQ)
    proxy: TcpProxy | None = None  # RabbitMQ only, when the test cuts the broker


@contextlib.contextmanager
def broker_for(kind: str, *, cuttable: bool = False) -> Iterator[Broker]:
    """`redis`: a private Redis; `rabbitmq`: a fresh vhost on the machine's RabbitMQ, with a private
    Redis beside it for beat's lock (as REDIS_URL: BROKER_URL wins for the broker). `cuttable` puts
    RabbitMQ behind a TcpProxy (`broker.proxy.cut()` / `.restore()`)."""
    with TempRedis() as redis_server:
        if kind == "redis":
            yield Broker(kind, redis_server.url, {"REDIS_URL": redis_server.url}, redis=redis_server)
            return
        if kind != "rabbitmq":
            raise ValueError(f"unknown broker kind {kind!r}")
        with rabbit_vhost() as url:
            proxy = TcpProxy(RABBIT_HOST, RABBIT_PORT).start() if cuttable else None
            if proxy is not None:
                url = url.replace(f":{RABBIT_PORT}/", f":{proxy.port}/")
            try:
                yield Broker(kind, url, {"REDIS_URL": redis_server.url, "RESOLVE_RETRY_BASE": "2"},
                             redis=redis_server, proxy=proxy)
            finally:
                if proxy is not None:
                    proxy.cut()
