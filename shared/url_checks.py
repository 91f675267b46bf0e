"""Why a URL is unfit outside development: Twilio must be reached over HTTPS at a real host (every
tenant's Basic-auth credentials travel with each request), and the public URL Twilio calls back
must be an HTTPS URL the internet can reach. Pure functions; the settings apply them."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def _local_host_reason(host: str) -> str | None:
    if not host:
        return "has no host"
    if host == "localhost" or host.endswith(".localhost"):
        return "points at this machine"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        # A single-label name only resolves inside a private network (a container or pod name).
        return None if "." in host else "is a private host name"
    if address.is_loopback:
        return "points at this machine"
    if address.is_private or address.is_link_local or address.is_unspecified or address.is_reserved:
        return "is a private address"
    return None


def insecure_url_reason(url: str) -> str | None:
    """None for an HTTPS URL to a public host; otherwise what is wrong with it (never the URL)."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return "is not a URL"
    if parts.scheme != "https":
        return "is not https"
    if parts.username or parts.password:
        return "carries credentials"
    return _local_host_reason(host)


def is_public_address(address: str) -> bool:
    """Whether an IP address belongs to the public internet (not this machine, a private network,
    link-local addresses such as cloud metadata services, or reserved ranges)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def webhook_url_reason(url: str, *, strict: bool) -> str | None:
    """None when ``url`` may receive webhook deliveries; otherwise what is wrong with it.

    Every environment needs an http(s) URL with a host and no credentials in it; a strict one
    (outside development, unless allowed) needs https to a public host. Host names are checked
    again where it counts, when a delivery connects: the addresses they resolve to must be public.
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https"):
        return "is not an http(s) URL"
    if not host:
        return "has no host"
    if parts.username or parts.password:
        return "carries credentials"
    if parts.fragment:
        return "has a fragment"
    return insecure_url_reason(url) if strict else None
