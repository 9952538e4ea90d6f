"""bench/ingest: the real receiver next to two controls, same gunicorn settings, same machine, same run.

Targets (each its own gunicorn, started with the same argv apart from the app):
  bare     bench.controls:bare_app()     parse JSON, answer S                (the ceiling)
  durable  bench.controls:durable_app()  + INSERT ... ON CONFLICT, LPUSH     (the minimum durable work)
  real     webhook:create_app()          the receiver as shipped
Each gets a warm-up, then a measured closed-loop run at a fixed concurrency of unique PayTokens.
After the real run, every acknowledged token must be a row: the bench checks it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg2
import redis

from bench import cli, harness, loadgen
from bench.loadgen import LoadResult
from bench.stats import fmt_ms, fmt_pct, ratio

TARGETS = {
    "bare": "bench.controls:bare_app()",
    "durable": "bench.controls:durable_app()",
    "real": "webhook:create_app()",
}


@dataclass
class IngestReport:
    results: dict[str, list[LoadResult]]
    argv: str
    checks: list[str]

    def best(self, name: str) -> LoadResult:
        """The median round by requests/s (one round: that round)."""
        runs = sorted(self.results[name], key=lambda r: r.rps)
        return runs[len(runs) // 2]

    def round_ratios(self) -> list[float]:
        """real / durable requests/s of each round, for the rounds that ran both."""
        pairs = zip(self.results.get("real", []), self.results.get("durable", []), strict=False)
        return [ratio(real.rps, durable.rps) for real, durable in pairs]

    def markdown(self) -> str:
        gen = self.best("real").generator
        lines = [
            "### ingest (POST /qpay/backend, unique PayTokens)",
            f"load: {gen}; gunicorn: `{self.argv}`; rounds: {len(self.results['real'])} (median shown)",
            "",
            "| target | requests/s | p50 ms | p99 ms | errors | web CPU ms per request | real as % of it |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        real = self.best("real")
        for name in ("bare", "durable", "real"):
            r = self.best(name)
            share = "—" if name == "real" else fmt_pct(ratio(real.rps, r.rps))
            lines.append(f"| {name} | {r.rps:.0f} | {fmt_ms(r.p50_ms)} | {fmt_ms(r.p99_ms)} | {r.errors} "
                         f"| {r.web_cpu_ms:.2f} | {share} |")
        if len(self.results["real"]) > 1:
            spread = {n: ", ".join(f"{r.rps:.0f}" for r in runs) for n, runs in self.results.items()}
            lines += ["", "all rounds (requests/s): " + "; ".join(f"{n}: {v}" for n, v in spread.items())]
            per_round = self.round_ratios()
            if per_round:
                lines += ["", "real / durable within each round (the targets run back to back, so the "
                          "machine's background load is closest): "
                          + ", ".join(fmt_pct(x) for x in per_round)
                          + f" (median {fmt_pct(sorted(per_round)[len(per_round) // 2])})"]
        lines += ["", *[f"- {c}" for c in self.checks]]
        return "\n".join(lines)


@contextlib.contextmanager
def _target(name: str, env: dict[str, str], workers: int | None,
            threads: int | None) -> Iterator[tuple[str, int]]:
    proc, base = harness.start_gunicorn(f"ingest-{name}", TARGETS[name], env, workers=workers,
                                        threads=threads)
    try:
        yield f"{base}/qpay/backend", proc.pid
    finally:
        proc.stop()
        if name == "real":
            errors = [ln for ln in proc.log().splitlines() if "Traceback" in ln or " ERROR " in ln]
            if errors:
                print(f"  (real receiver logged {len(errors)} error lines; log: {proc.log_path})")


def _count_rows(url: str) -> int:
    with psycopg2.connect(harness.dsn(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pay_tokens")
        row = cur.fetchone()
        return int(row[0]) if row else 0


def run(*, seconds: float, warmup: float, connections: int, wrk_threads: int, workers: int | None,
        threads: int | None, rounds: int, python_loadgen: bool,
        targets: tuple[str, ...] = tuple(TARGETS)) -> IngestReport:
    if not loadgen.have_wrk():
        print(f"  NOTE: {loadgen.WRK_HINT}; using the Python fallback generator (weaker, labelled).")
    results: dict[str, list[LoadResult]] = {name: [] for name in TARGETS}
    checks: list[str] = []
    acked = {"durable": 0, "real": 0}
    with harness.private_redis() as redis_url, harness.database() as real_db, harness.database() as ctl_db:
        envs = {
            "bare": harness.app_env(ctl_db, redis_url.replace("/0", "/1")),
            "durable": harness.app_env(ctl_db, redis_url.replace("/0", "/1")),
            "real": harness.app_env(real_db, redis_url),
        }
        argv = " ".join(harness.gunicorn_argv("APP", 0, workers, threads)[1:]).replace("127.0.0.1:0", "PORT")
        for round_no in range(rounds):
            for name in targets:
                with _target(name, envs[name], workers, threads) as (url, pgid):
                    for phase, duration in (("warm-up", warmup), ("measure", seconds)):
                        cpu0 = harness.group_cpu_seconds(pgid)
                        result = loadgen.run(url, connections=connections, seconds=duration,
                                             threads=wrk_threads, force_python=python_loadgen)
                        cpu_ms = (harness.group_cpu_seconds(pgid) - cpu0) * 1000
                        result = dataclasses.replace(result, web_cpu_ms=cpu_ms / max(result.requests, 1))
                        if name in acked:
                            acked[name] += result.requests
                        if phase == "measure":
                            results[name].append(result)
                            print(f"  round {round_no + 1} {name:8s} {result.rps:8.0f} req/s  "
                                  f"p50 {fmt_ms(result.p50_ms)} ms  p99 {fmt_ms(result.p99_ms)} ms  "
                                  f"errors {result.errors}  web CPU {result.web_cpu_ms:.2f} ms/req",
                                  flush=True)
        if "real" not in targets:
            return IngestReport(results=results, argv=argv, checks=checks)
        rows = _count_rows(real_db)
        queued = redis.Redis.from_url(redis_url).llen("callbacks")
        verdict = "ok" if rows >= acked["real"] else "LOST ACKNOWLEDGED TOKENS"
        checks.append(f"real: {acked['real']} acknowledged (incl. warm-up), {rows} pay_tokens rows, "
                      f"{queued} resolve messages queued in Redis 'callbacks' — {verdict}")
        ctl_rows = _count_rows(ctl_db)
        checks.append(f"durable control: {acked['durable']} acknowledged, {ctl_rows} rows")
    return IngestReport(results=results, argv=argv, checks=checks)


def summary_line(report: IngestReport) -> str:
    real, durable, bare = (report.best(n) for n in ("real", "durable", "bare"))
    return (f"ingest: real {real.rps:.0f} req/s (p99 {fmt_ms(real.p99_ms)} ms) = "
            f"{fmt_pct(ratio(real.rps, durable.rps))} of the durable control, "
            f"{fmt_pct(ratio(real.rps, bare.rps))} of bare Flask")


def add_arguments(parser: argparse.ArgumentParser, *, full: bool = False) -> None:
    parser.add_argument("--seconds", type=float, default=30 if full else 8,
                        help="measured seconds per target")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up seconds per target (not counted)")
    # 64, not 16: a keep-alive connection stays with the gunicorn worker that accepted it, and with 16
    # one worker sometimes held nearly all of them (bimodal rounds, bench/RESULTS.md section 1).
    parser.add_argument("--connections", type=int, default=64, help="concurrent keep-alive connections")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--web-workers", type=int, default=None,
                        help="gunicorn --workers for all three (default: gunicorn.conf.py's)")
    parser.add_argument("--web-threads", type=int, default=None, help="gunicorn --threads for all three")
    parser.add_argument("--rounds", type=int, default=3 if full else 1,
                        help="rounds of bare, durable, real (the median round is reported)")
    parser.add_argument("--python-loadgen", action="store_true",
                        help="use the Python generator even with wrk")


def from_args(args: argparse.Namespace) -> IngestReport:
    return run(seconds=args.seconds, warmup=args.warmup, connections=args.connections,
               wrk_threads=args.wrk_threads, workers=args.web_workers, threads=args.web_threads,
               rounds=args.rounds, python_loadgen=args.python_loadgen)


if __name__ == "__main__":
    cli.run_part(sys.modules[__name__], full_help="longer runs, 3 rounds")
