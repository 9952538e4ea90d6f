"""`make up`: the whole local stack in the foreground until Ctrl-C.

Reads .env if present (the environment wins over it). Defaults: SQLite in var/qpay.db (kept between
runs), the embedded Redis on 127.0.0.1:6479, the sandbox bank on 8100, web on 8000, Flower on 5555.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys

from core.endpoints import broker_url_from, database_url_from
from scripts.stack import PROJECT_DIR, Stack, StackConfig, StackError, read_env_file

DEFAULT_DB = f"sqlite:///{PROJECT_DIR / 'var' / 'qpay.db'}"


def config_from_env() -> StackConfig:
    env = {**read_env_file(PROJECT_DIR / ".env"), **{k: v for k, v in os.environ.items() if v}}
    # A local stack must be usable at once: an orders API token, a checkout-link secret (links then
    # change with each run: set CHECKOUT_SECRET in .env to keep them) and an open Flower on 127.0.0.1,
    # unless the operator chose their own.
    env.setdefault("API_TOKEN", secrets.token_hex(16))
    env.setdefault("CHECKOUT_SECRET", secrets.token_hex(32))
    if not env.get("FLOWER_BASIC_AUTH"):
        env["FLOWER_ALLOW_NO_AUTH"] = "1"
    return StackConfig(
        database_url=database_url_from(env, DEFAULT_DB),
        redis_url=broker_url_from(env),
        web_port=int(env.get("WEB_PORT", "8000")),
        sandbox_port=int(env.get("SANDBOX_PORT", "8100")),
        flower_port=int(env.get("FLOWER_PORT", "5555")),
        sandbox_args=env.get("SANDBOX_ARGS", ""),
        extra_env=env,
    )


def main() -> int:
    config = config_from_env()
    stack = Stack(config)  # honcho writes to this terminal
    stopping: list[bool] = []

    # Ctrl-C reaches only this script (honcho and Redis run in sessions of their own): it raises
    # KeyboardInterrupt here, and `finally` stops the stack in order. SIGTERM does the same.
    def interrupt(*_: object) -> None:
        stopping.append(True)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        stack.check_ports()
        print(f"broker: {stack.start_redis()}", flush=True)
        stack.migrate()
        print("migrations: up to date", flush=True)
        stack.start_processes()
        stack.wait_ready()
        print(f"\n  web      {config.web_url}  (orders API: POST {config.web_url}/api/orders, "
              f"Authorization: Bearer {config.extra_env['API_TOKEN']}; its checkout_url is the "
              "customer's payment page)\n"
              f"  sandbox  {config.sandbox_url}\n"
              f"  Flower   {config.flower_url}\n"
              f"  metrics  {config.metrics_urls()}  (Prometheus; docs/monitoring.md)\n"
              "  Ctrl-C stops everything.\n", flush=True)
        assert stack.honcho is not None
        code = stack.honcho.wait()
        print(f"make up: the stack ended by itself (honcho exit {code})", file=sys.stderr)
        return code or 1
    except StackError as exc:
        print(f"make up: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        stopping.append(True)
        print("\nmake up: stopping every process ...", flush=True)
        return 0
    finally:
        # A second Ctrl-C must not cut the shutdown short (it would orphan processes).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        if stopping:
            print("make up: every process stopped", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
