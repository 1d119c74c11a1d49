"""The SSRF guard of the page fetcher (fetch.py): which URLs may be fetched, and URLs without their credentials.

`check_url(url, cfg)` returns the addresses `url`'s host resolves to, or raises `FetchError` (bad_scheme, dns,
blocked_address). It allows only http(s), resolves the host (every address) and refuses loopback, private,
link-local (cloud metadata 169.254.169.254), multicast, reserved and unspecified addresses, their IPv4-mapped /
NAT64 / 6to4 forms and the metadata host names, unless `allow_private` or the host (or exact "host:port") is in
`allowed_hosts`. `is_public_address(ip)` is the address rule alone.

`split_userinfo(url)` removes a URL's `user:password@` (and returns them) before the URL is used for
anything; `url_origin(url)` is the (scheme, host, port) that credentials may go to. `FetchError` lives here
because the guard raises it; fetch.py raises it too, with the reasons of the fetch itself.

Run: imported by fetch.py (every hop, and every cached page) and web.py (result URLs); no entry point of its own.
"""

from __future__ import annotations

import ipaddress
import re
import socket

import httpx

from culturemanager.config.search import FetchConfig

REASONS = ("bad_scheme", "blocked_address", "dns", "too_many_redirects", "content_type", "timeout",
           "http_status", "network", "empty")
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata"})
DEFAULT_PORTS = {"http": 80, "https": 443}
NAT64 = ipaddress.ip_network("64:ff9b::/96")
USERINFO = re.compile(r"\s*([A-Za-z][A-Za-z0-9+.-]*:[/\\]*)[^/?#\\]*@")  # "https://" then "user:pass@"


class FetchError(Exception):
    """A page could not be fetched. `reason` is one of REASONS; `url` is the URL that was asked for."""

    def __init__(self, reason: str, url: str, detail: str = ""):
        super().__init__(f"{reason}: {url}" + (f" ({detail})" if detail else ""))
        self.reason, self.url, self.detail = reason, url, detail



def split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """`url` without its `user:password@`, and the (percent-decoded) user and password it had; a URL without
    any is returned as it was, character for character (it is the page cache's key)."""
    m = USERINFO.match(url)
    if m is None:
        return url, None
    try:
        u = httpx.URL(url.strip())
        credentials = (u.username, u.password) if u.username or u.password else None
    except httpx.InvalidURL:  # still stripped: the URL is refused later, and its error must not show them
        credentials = None
    return m.group(1) + url[m.end():], credentials


def url_origin(url: str) -> tuple[str, str, int | None]:
    u = httpx.URL(url)
    return u.scheme, u.host, u.port or DEFAULT_PORTS.get(u.scheme)


def check_url(url: str, cfg: FetchConfig) -> list[str]:
    """The addresses `url`'s host resolves to, or FetchError (bad_scheme, dns, blocked_address)."""
    try:
        u = httpx.URL(url)
    except httpx.InvalidURL as e:
        raise FetchError("bad_scheme", url, str(e)) from None
    if u.scheme not in DEFAULT_PORTS:
        raise FetchError("bad_scheme", url, f"scheme {u.scheme!r}")
    host = _norm_host(u.raw_host.decode("ascii"))
    if not host:
        raise FetchError("bad_scheme", url, "no host")
    port = u.port or DEFAULT_PORTS[u.scheme]
    allowed = cfg.allow_private or any(_entry_matches(e, host, port) for e in cfg.allowed_hosts)
    if not allowed and host in METADATA_HOSTS:
        raise FetchError("blocked_address", url, f"metadata host {host}")
    ips = resolve(host, port, url)
    if not allowed:
        bad = [ip for ip in ips if not is_public_address(ip)]
        if bad:
            raise FetchError("blocked_address", url, f"non-public address {', '.join(bad)}"
                             + ("" if is_ip(host) else f" for {host}"))
    return ips


def resolve(host: str, port: int, url: str) -> list[str]:
    if is_ip(host):
        return [host]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise FetchError("dns", url, str(e)) from None
    ips = list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
    if not ips:
        raise FetchError("dns", url, "no address")
    return ips


def is_public_address(ip: str) -> bool:
    """True for a globally routable unicast address; embedded IPv4 (mapped, NAT64, 6to4) is judged too."""
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return is_public_address(str(addr.ipv4_mapped))
        if addr in NAT64:
            return is_public_address(str(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)))
        if addr.sixtofour is not None and not is_public_address(str(addr.sixtofour)):
            return False
        if addr.teredo is not None or addr.is_site_local:
            return False
    return addr.is_global and not (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast
                                   or addr.is_reserved or addr.is_unspecified)


def _entry_matches(entry: str, host: str, port: int) -> bool:
    """`allowed_hosts` entry: "host", "host:port", "1.2.3.4:80", "::1" or "[::1]:8000"."""
    entry = entry.strip()
    if entry.startswith("["):
        h, _, rest = entry[1:].partition("]")
        p = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:
        h, p = entry.split(":")
    else:
        h, p = entry, ""
    return _norm_host(h) == host and (not p or (p.isdigit() and int(p) == port))


def _norm_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def at_hop(e: FetchError, url: str) -> FetchError:
    """`e` (raised for a later hop) as an error for the URL asked for, the hop named in the detail."""
    return FetchError(e.reason, url, f"at {e.url}" + (f": {e.detail}" if e.detail else ""))


def host_key(url: str) -> str:
    try:
        return _norm_host(httpx.URL(url).host)
    except httpx.InvalidURL:
        return ""
