"""Reading one environment variable: numbers, flags, address lists, schedules.

Shared by the settings, the Celery and gunicorn configs, the worker launcher and the exporter, so a bad
value fails the same way everywhere: the message names the variable, never its value.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import TypeVar

from core.shops import ShopsError

__all__ = ["IPNetwork", "SettingsError", "env_flag", "env_float", "env_int", "env_seconds", "ip_networks"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_Number = TypeVar("_Number", int, float)


class SettingsError(ShopsError):
    """A variable is missing or malformed; the message names the variable, never its value."""


def _env_number(env: Mapping[str, str], name: str, parse: Callable[[str], _Number], kind: str,
                default: _Number, minimum: _Number, maximum: _Number | None) -> _Number:
    """The one rule for numbers: unset or empty is `default`, else parsed and kept within bounds."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {kind}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name} must be at most {maximum}")
    return value


def env_float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    """A number from the environment (unset or empty: `default`); errors name the variable, not the value."""
    return _env_number(env, name, float, "a number", default, minimum, None)


def env_int(env: Mapping[str, str], name: str, default: int, minimum: int = 0,
            maximum: int | None = None) -> int:
    """A whole number from the environment, like `env_float`."""
    return _env_number(env, name, int, "a whole number", default, minimum, maximum)


def env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """1/0, true/false, yes/no, on/off (unset or empty: `default`)."""
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be 1 or 0")


def env_seconds(env: Mapping[str, str], name: str, default: tuple[float, ...]) -> tuple[float, ...]:
    """A comma-separated list of positive seconds (unset or empty: `default`)."""
    raw = env.get(name)
    if not raw:
        return default
    try:
        steps = tuple(float(part) for part in raw.split(","))
    except ValueError:
        raise SettingsError(f"{name} must be comma-separated seconds, e.g. 60,300,900") from None
    if not steps or any(s <= 0 for s in steps):
        raise SettingsError(f"{name} must list positive seconds")
    return steps


def ip_networks(env: Mapping[str, str], name: str) -> tuple[IPNetwork, ...]:
    """A comma-separated list of addresses or CIDR ranges (e.g. `203.0.113.0/24,10.0.0.5`)."""
    raw = env.get(name) or ""
    networks = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise SettingsError(f"{name} must be comma-separated IP addresses or CIDR ranges") from None
    return tuple(networks)
