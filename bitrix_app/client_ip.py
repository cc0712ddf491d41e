"""The client's address: ``REMOTE_ADDR``, or what a trusted proxy says in ``X-Forwarded-For``.

Behind nginx every request's ``REMOTE_ADDR`` is nginx's own address, so per-address decisions
(refusal-log rate limits, the /metrics allow-list) need the address nginx saw. ``X-Forwarded-For``
is only believed when the connection came from a proxy in ``TRUSTED_PROXIES`` (CIDRs); anyone else
can write what they like into it. The header is read from the right: each hop a trusted proxy
appended is skipped, and the first address not in a trusted network is the client — the rule of
nginx's ``real_ip_recursive on``, so the app and deploy/nginx agree on who the client is.

Our own code rather than django-ipware: ipware matches trusted proxies by string prefix, which can't
express a CIDR such as 172.16.0.0/12 the way nginx's ``set_real_ip_from`` does.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

# Django's settings object is lazy: importing it here is safe from bitrix_app/settings.py, which
# validates its CIDR settings with parse_networks.
from django.conf import settings

if TYPE_CHECKING:
    from django.http import HttpRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (or bare addresses) as networks; raises ValueError naming the entry that isn't one."""
    networks = []
    for cidr in cidrs:
        text = cidr.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"not an IP network: {text!r}") from None
    return tuple(networks)


@functools.lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(cidrs)


# Cached: the receiver asks for every request (refusal log, metrics), the same few proxies and
# clients come again and again, and parsing with ipaddress was a large share of a refusal's CPU
# (docs/events.md, "Paired run after the redesign").
@functools.lru_cache(maxsize=4096)
def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[::1]:443", as some proxies write IPv6
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.1:443"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d: compare it as IPv4.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(address: str, networks: Iterable[Network]) -> bool:
    """Whether ``address`` (text) lies in one of ``networks``; False for text that isn't an address."""
    return _in_networks(address, tuple(networks))


@functools.lru_cache(maxsize=4096)
def _in_networks(address: str, networks: tuple[Network, ...]) -> bool:
    parsed = _address(address)
    return parsed is not None and any(parsed in network for network in networks)


def client_ip_from(meta: Mapping[str, Any], trusted: Iterable[Network]) -> str:
    """The client's address from a WSGI environ (``request.META``) given the trusted proxies.

    ``REMOTE_ADDR`` unless it is a trusted proxy; then the right-most ``X-Forwarded-For`` entry that
    is not itself a trusted proxy. A malformed entry stops the walk at the hop that wrote it (the
    last trusted one): garbage is never returned as an address. "" when there is no address at all.
    """
    trusted = tuple(trusted)
    remote = str(meta.get("REMOTE_ADDR") or "")
    if not trusted or not in_networks(remote, trusted):
        return remote
    client = remote
    for hop in reversed(str(meta.get("HTTP_X_FORWARDED_FOR") or "").split(",")):
        address = _address(hop)
        if address is None:
            break
        client = str(address)
        if not any(address in network for network in trusted):
            break
    return client


def client_ip(request: HttpRequest) -> str:
    """The client's address for ``request`` under settings.TRUSTED_PROXIES."""
    return client_ip_from(request.META, _networks(tuple(settings.TRUSTED_PROXIES)))


def from_trusted_proxy(request: HttpRequest) -> bool:
    """Whether ``request`` came straight from a proxy in settings.TRUSTED_PROXIES."""
    return in_networks(str(request.META.get("REMOTE_ADDR") or ""), _networks(tuple(settings.TRUSTED_PROXIES)))


def allowed(address: str, cidrs: Iterable[str]) -> bool:
    """Whether ``address`` is in one of ``cidrs`` (an allow-list from settings)."""
    return in_networks(address, _networks(tuple(cidrs)))
