"""`python -m sandbox`: run the sandbox bank until interrupted.

Every flag has an environment variable (for Procfile and docker-compose); a flag wins.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from types import FrameType

from core.settings import SettingsError
from sandbox.app import make_server
from sandbox.config import SandboxConfig, load_shops
from sandbox.faults import FaultError, Faults
from sandbox.runtime import Sandbox

log = logging.getLogger("sandbox")


def _parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    def default(name: str, fallback: str) -> str:
        return env.get(name) or fallback

    p = argparse.ArgumentParser(prog="python -m sandbox", description="The local SinoPac QPay sandbox bank.")
    p.add_argument("--host", default=default("SANDBOX_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(default("SANDBOX_PORT", "8100")))
    p.add_argument("--public-url", default=default("SANDBOX_PUBLIC_URL", ""),
                   help="base URL of the payment page links (default http://<host>:<port>)")
    p.add_argument("--nonce-ttl", type=float, default=float(default("SANDBOX_NONCE_TTL", "300")),
                   help="seconds a nonce stays usable (default 300)")
    p.add_argument("--atm-autopay-seconds", type=float,
                   default=float(default("SANDBOX_ATM_AUTOPAY_SECONDS", "0")),
                   help="pay ATM orders by themselves after this delay, unless OrderNo ends in 9 (0 = off)")
    p.add_argument("--resend-interval", type=float, default=float(default("SANDBOX_RESEND_INTERVAL", "600")),
                   help="seconds between callback sends (default 600, as the bank)")
    p.add_argument("--max-sends", type=int, default=int(default("SANDBOX_MAX_SENDS", "5")))
    p.add_argument("--callback-timeout", type=float, default=float(default("SANDBOX_CALLBACK_TIMEOUT", "5")),
                   help="seconds to wait for a BackendURL to answer (default 5)")
    p.add_argument("--callback-workers", type=int, default=int(default("SANDBOX_CALLBACK_WORKERS", "8")))
    p.add_argument("--faults", default=default("SANDBOX_FAULTS", ""),
                   help='initial fault settings as JSON, e.g. \'{"error_rate": 0.1}\'')
    p.add_argument("--access-log", action="store_true", default=default("SANDBOX_ACCESS_LOG", "") == "1")
    return p


def build_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> SandboxConfig:
    """Parse flags and environment; raises SettingsError or FaultError with a clear message."""
    env = os.environ if env is None else env
    try:
        args = _parser(env).parse_args(argv)
    except ValueError as exc:  # a numeric environment default that does not parse
        raise SettingsError(f"a SANDBOX_* number is malformed ({exc})") from None
    if not 0 < args.port < 65536:
        raise SettingsError("--port must be 1-65535")
    positive = {"--nonce-ttl": args.nonce_ttl, "--resend-interval": args.resend_interval,
                "--callback-timeout": args.callback_timeout}
    for name, value in positive.items():
        if not value > 0:
            raise SettingsError(f"{name} must be positive")
    if args.atm_autopay_seconds < 0:
        raise SettingsError("--atm-autopay-seconds must be 0 (off) or positive")
    if not 1 <= args.max_sends <= 100 or not 1 <= args.callback_workers <= 256:
        raise SettingsError("--max-sends must be 1-100 and --callback-workers 1-256")
    try:
        faults = json.loads(args.faults) if args.faults.strip() else {}
    except ValueError:
        raise FaultError("--faults / SANDBOX_FAULTS must be a JSON object") from None
    Faults(faults)  # validates
    return SandboxConfig(
        shops=load_shops(env), host=args.host, port=args.port, public_url=args.public_url,
        nonce_ttl=args.nonce_ttl, atm_autopay_seconds=args.atm_autopay_seconds,
        resend_interval=args.resend_interval, max_sends=args.max_sends,
        callback_timeout=args.callback_timeout,
        callback_workers=args.callback_workers, faults=faults, access_log=args.access_log,
    )


def main(argv: Sequence[str] | None = None) -> int:
    level = (os.environ.get("LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(level=getattr(logging, level, logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = build_config(argv)
    except (SettingsError, FaultError) as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    server = make_server(Sandbox(config))
    host, port = server.server_address[:2]

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: shutting down", signum)
        server.sandbox.stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("QPay sandbox bank on http://%s:%s (shops: %s; resend every %gs; ATM autopay %s)", host, port,
             ", ".join(sorted(config.shops)), config.resend_interval,
             f"after {config.atm_autopay_seconds:g}s" if config.atm_autopay_seconds else "off")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
