"""The client's address, for the login lockout (django-axes, AXES_CLIENT_IP_CALLABLE), the audit
trail (crm.audit) and the API's anonymous throttle: one rule for all three.

Without a trusted proxy (the default) it is REMOTE_ADDR and no header is read: anyone can send
an X-Forwarded-For, so trusting it would let a client pick the address it is counted and logged
under. Behind reverse proxies, each proxy appends the address it received the request from, so
counting from the right, past the entries our own proxies wrote, gives the address the outermost
trusted proxy saw, which the client cannot forge; whatever the client put further left is ignored.

- ``TRUSTED_PROXY_COUNT`` = N proxies in front: the Nth entry from the right.
- ``TRUSTED_PROXIES`` = their addresses or networks: the header is read only on a request that
  comes from one of them, and the client is the first entry from the right outside them (with
  TRUSTED_PROXY_COUNT too: the Nth from the right, still only from those addresses).

A request with fewer entries than that, or whose chosen entry is not a bare IP address (no port),
is taken at its REMOTE_ADDR: it did not come the way the proxies are configured.
"""
from __future__ import annotations

import ipaddress

from django.conf import settings


def _address(text: str):
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address, networks) -> bool:
    return address is not None and any(address in network for network in networks)


def client_ip(request) -> str | None:
    """The client's IP address as text, or None when the request has none (REMOTE_ADDR unset)."""
    remote = request.META.get("REMOTE_ADDR") or None
    count, networks = settings.TRUSTED_PROXY_COUNT, settings.TRUSTED_PROXIES
    if not count and not networks:
        return remote
    if networks and not _trusted(_address(remote or ""), networks):
        return remote  # not from one of our proxies: its headers are the client's own
    hops = [_address(entry) for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if entry.strip()]
    if count:
        chosen = hops[-count] if len(hops) >= count else None
    else:
        chosen = next((hop for hop in reversed(hops) if not _trusted(hop, networks)), hops[0] if hops else None)
    return remote if chosen is None else str(chosen)
