"""Closed-loop HTTP load at a fixed concurrency: wrk when installed, else a labelled Python fallback.

Both POST the bank's callback body with a PayToken unique per request and report completed
requests/s (2xx only) and latency percentiles. The Python fallback is much weaker than wrk (the GIL
and the client compete with the server for the same cores), so its figures say less about the server;
every result names the generator that produced it.
"""

from __future__ import annotations

import http.client
import json
import math
import secrets
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from bench.stats import percentile

LUA = Path(__file__).with_name("post_tokens.lua")
WRK_HINT = "wrk is not installed; for the real figures run: apt-get install -y wrk (Debian/Ubuntu)"


@dataclass(frozen=True)
class LoadResult:
    generator: str
    requests: int  # completed with a 2xx answer
    errors: int  # non-2xx answers, socket errors and timeouts
    seconds: float
    p50_ms: float
    p99_ms: float
    web_cpu_ms: float = math.nan  # CPU of the server's processes per completed request, if measured

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else math.nan


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run(url: str, *, connections: int, seconds: float, threads: int = 2, shop_no: str = "NA0001_001",
        force_python: bool = False) -> LoadResult:
    """Load `url` for `seconds` with `connections` keep-alive connections, each token unique."""
    prefix = secrets.token_hex(8)
    if have_wrk() and not force_python:
        return _wrk(url, connections=connections, seconds=seconds, threads=threads, prefix=prefix,
                    shop_no=shop_no)
    return _python(url, connections=connections, seconds=seconds, prefix=prefix, shop_no=shop_no)


def _wrk(url: str, *, connections: int, seconds: float, threads: int, prefix: str,
         shop_no: str) -> LoadResult:
    threads = max(1, min(threads, connections))
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
            "-s", str(LUA), url, "--", prefix, shop_no]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    errors = (data["status_errors"] + data["connect_errors"] + data["read_errors"] + data["write_errors"]
              + data["timeouts"])
    return LoadResult(
        generator=f"wrk -t{threads} -c{connections}",
        requests=data["requests"] - data["status_errors"],
        errors=errors,
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )


def _python(url: str, *, connections: int, seconds: float, prefix: str, shop_no: str) -> LoadResult:
    """Threads, each with one keep-alive http.client connection: a fallback, not a peer of wrk."""
    parsed = urlparse(url)
    host, port, path = parsed.hostname or "127.0.0.1", parsed.port or 80, parsed.path or "/"
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    start_gate = threading.Event()
    deadline = [0.0]

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
        counter = 0
        start_gate.wait()
        while time.monotonic() < deadline[0]:
            counter += 1
            token = f"{prefix}{index + 1:08x}{counter:040d}"
            body = json.dumps({"ShopNo": shop_no, "PayToken": token})
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = 200 <= response.status < 300
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=10)
            if ok:
                latencies[index].append(time.perf_counter() - t0)
            else:
                errors[index] += 1
        conn.close()

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(connections)]
    for t in pool:
        t.start()
    t_start = time.monotonic()
    deadline[0] = t_start + seconds
    start_gate.set()
    for t in pool:
        t.join(seconds + 30)
    elapsed = time.monotonic() - t_start
    flat = [x for per in latencies for x in per]
    return LoadResult(
        generator=f"python-fallback (threads={connections}; weaker than wrk)",
        requests=len(flat),
        errors=sum(errors),
        seconds=elapsed,
        p50_ms=percentile(flat, 50) * 1000,
        p99_ms=percentile(flat, 99) * 1000,
    )
