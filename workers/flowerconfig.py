"""Flower's options: `celery -A workers flower --conf=workers/flowerconfig.py`.

Flower executes this file and takes every module-level name that is one of its options.

- Authentication: HTTP basic auth from FLOWER_BASIC_AUTH (`user:password`; several separated by
  commas). Flower refuses to start without it, unless FLOWER_ALLOW_NO_AUTH=1, which only the local
  demo sets. Flower also exposes the API (and task revocation) to whoever can reach it.
- Task arguments are shown: our tasks carry only pay_tokens row ids (qpay.resolve_pay_token) or
  nothing (qpay.sweep), never a PayToken, an amount or a key.
- History is bounded (max_tasks) so a busy day cannot grow Flower's memory without limit.
- It listens on 127.0.0.1 unless FLOWER_ADDRESS says otherwise; the port is FLOWER_PORT (5555).
- Its log lines are redacted like every process's: the API token, its own logins and the shop's keys.
"""

from __future__ import annotations

import os
import sys

from core.logging import redact_records, register_settings_secrets
from core.settings import get_settings


def _basic_auth() -> list[str]:
    raw = os.environ.get("FLOWER_BASIC_AUTH", "").strip()
    if not raw:
        return []
    pairs = [pair.strip() for pair in raw.split(",") if pair.strip()]
    for pair in pairs:
        user, _, password = pair.partition(":")
        if not user or not password:
            # Never echo the value: it is a password.
            sys.exit("flowerconfig: FLOWER_BASIC_AUTH must be user:password (comma-separated for several)")
    return pairs


def _port() -> int:
    raw = os.environ.get("FLOWER_PORT", "") or "5555"
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        sys.exit("flowerconfig: FLOWER_PORT must be a TCP port number")
    return int(raw)


basic_auth = _basic_auth()
if not basic_auth and os.environ.get("FLOWER_ALLOW_NO_AUTH") != "1":
    sys.exit(
        "flowerconfig: refusing to start Flower without authentication; set FLOWER_BASIC_AUTH=user:password "
        "(FLOWER_ALLOW_NO_AUTH=1 is for the local demo only)"
    )

# Flower logs through tornado's formatter, not ours: mask the secrets in every record it creates.
register_settings_secrets(get_settings())
redact_records()

address = os.environ.get("FLOWER_ADDRESS", "") or "127.0.0.1"
port = _port()
max_tasks = 10000
# Offline workers disappear from the dashboard after an hour instead of accumulating forever.
purge_offline_workers = 3600
persistent = False
