"""Who is calling: the peer's address, or behind trusted proxies the client they forwarded for.

X-Forwarded-For is anyone's to write, so it counts only as far as gunicorn's own trust reaches
(FORWARDED_ALLOW_IPS, read into Settings.forwarded_allow): walking the header from the right (the hop
our proxy appended), each hop that is itself a trusted proxy is skipped, and the first one that is
not is the client. With FORWARDED_ALLOW_IPS='*' every peer is trusted, and only the last hop (the
one the peer appended) is taken: what lies before it was written by whoever called that proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from core.env import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(text: str | None) -> IPAddress | None:
    try:
        return ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None


def _trusted(address: IPAddress, proxies: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in proxies if network.version == address.version)


def client_address(
    remote_addr: str | None, forwarded_for: str | None, proxies: Sequence[IPNetwork] | None
) -> IPAddress | None:
    """The caller's address (None if unreadable). `proxies` None means '*' (every peer trusted)."""
    peer = _ip(remote_addr)
    if peer is None or not forwarded_for:
        return peer
    if proxies is not None and not _trusted(peer, proxies):
        return peer  # not our proxy: its X-Forwarded-For is the caller's own invention
    hops = [h for h in (part.strip() for part in forwarded_for.split(",")) if h]
    if proxies is None:
        return _ip(hops[-1]) if hops else peer
    for hop in reversed(hops):
        address = _ip(hop)
        if address is None:
            return None  # a malformed hop where we expected our proxies' writing: trust nothing
        if not _trusted(address, proxies):
            return address
    return _ip(hops[0]) if hops else peer


def allowed(address: IPAddress | None, allow: Sequence[IPNetwork]) -> bool:
    """True if no allow list is set, or the address is in one of its ranges."""
    if not allow:
        return True
    return address is not None and _trusted(address, allow)
