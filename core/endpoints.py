"""Where the bank, the database, the broker and the trusted proxies are: defaults and the rules on them.

Services, migrations and scripts read DATABASE_URL and the broker the same way through these functions.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from core.env import IPNetwork, SettingsError, ip_networks

__all__ = ["DEFAULT_API_BASE_URL", "DEFAULT_DATABASE_URL", "DEFAULT_FORWARDED", "DEFAULT_REDIS_URL",
           "api_base_url", "broker_url_from", "database_url_from", "forwarded_allow", "is_loopback",
           "normalize_database_url"]

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_API_BASE_URL = "http://127.0.0.1:8100/QPay.WebAPI/api/"
DEFAULT_DATABASE_URL = f"sqlite:///{PROJECT_DIR / 'var' / 'qpay.db'}"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6479/0"  # the embedded Redis that `make demo` / `make up` start
DEFAULT_FORWARDED: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.1/32"),)


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback  # not "127.example.com"
    except ValueError:
        return False


def api_base_url(env: Mapping[str, str]) -> str:
    """QPAY_API_BASE_URL ending in `/`, https only: the bank's replies are what pays orders. Plain http is
    allowed for a loopback address (the local sandbox) or a host named in QPAY_API_HTTP_HOSTS (the
    compose sandbox)."""
    url = env.get("QPAY_API_BASE_URL") or DEFAULT_API_BASE_URL
    if not url.endswith("/"):
        url += "/"
    parsed = urlparse(url)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise SettingsError("QPAY_API_BASE_URL must be https://host/... (an http(s) URL with a host)")
    if parsed.scheme == "https" or is_loopback(url):
        return url
    allowed = {h.strip().lower() for h in (env.get("QPAY_API_HTTP_HOSTS") or "").split(",") if h.strip()}
    if parsed.hostname.lower() not in allowed:
        raise SettingsError(
            "QPAY_API_BASE_URL must be https:// (plain http:// only for a loopback address, or a host "
            "listed in QPAY_API_HTTP_HOSTS)"
        )
    return url


def normalize_database_url(url: str) -> str:
    """Heroku (and other hosts) hand out `postgres://...`; SQLAlchemy 2 knows only `postgresql://`.

    Only the scheme changes (`postgres+psycopg2://` keeps its driver); the rest, password included, is
    passed through untouched and never logged.
    """
    scheme, sep, rest = url.partition("://")
    dialect, plus, driver = scheme.partition("+")
    if sep and dialect.lower() == "postgres":
        return f"postgresql{plus}{driver}{sep}{rest}"
    return url


def database_url_from(env: Mapping[str, str], fallback: str | None = None) -> str:
    """DATABASE_URL as every process must use it (services, migrations, scripts): normalised, with
    `fallback` (or the SQLite file under var/) when it is unset."""
    return normalize_database_url(env.get("DATABASE_URL") or fallback or DEFAULT_DATABASE_URL)


def broker_url_from(env: Mapping[str, str]) -> str:
    """The Celery broker: BROKER_URL, else REDIS_URL (the name Heroku's Redis add-on sets), else the
    embedded Redis of `make demo` / `make up`. BROKER_URL wins, so an AMQP broker can sit beside a
    Redis that only holds beat's lock."""
    return env.get("BROKER_URL") or env.get("REDIS_URL") or DEFAULT_REDIS_URL


def forwarded_allow(env: Mapping[str, str]) -> tuple[IPNetwork, ...] | None:
    """FORWARDED_ALLOW_IPS as gunicorn reads it: the proxies whose X-Forwarded-* headers count
    (None: '*', any peer)."""
    raw = env.get("FORWARDED_ALLOW_IPS")
    if raw is None or raw.strip() == "":
        return DEFAULT_FORWARDED
    if raw.strip() == "*":
        return None
    return ip_networks(env, "FORWARDED_ALLOW_IPS")
