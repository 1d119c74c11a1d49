"""Fetching the pages behind web search results, safely, and turning them into plain text.

`SafeFetcher(cfg, cache_dir).fetch(url)` returns a `Page` (title, main text, language) or raises `FetchError`
with a short machine-readable `reason`. What it guards against:
- SSRF: `check_url` allows only http(s), resolves the host (every address) and refuses loopback, private,
  link-local (cloud metadata 169.254.169.254), multicast, reserved and unspecified addresses, their
  IPv4-mapped / NAT64 / 6to4 forms and the metadata host names, unless `allow_private` or the host (or exact
  "host:port") is in `allowed_hosts`. Redirects are followed by hand and every hop is checked again.
- DNS rebinding: the request goes to the address that was checked, not to a second lookup. The URL's host is
  replaced by the checked IP, the Host header keeps the name and, for https, the TLS SNI and certificate check
  keep the name too (httpcore's `sni_hostname` extension). Keep-alive is off so that a TLS connection made for
  one name is never reused for another name on the same IP. Proxies from the environment are ignored (a
  proxy would resolve the name itself).
- Size and time: the body is streamed and cut at `max_bytes` (`Page.truncated`); the Content-Type is checked
  before any of the body is read; connect/read timeouts, plus a whole-page deadline of
  connect + 4 x read timeout so that a server dripping bytes (body or headers) is cut off too. Only gzip/deflate
  are accepted.
- Content: nothing from a page is executed or followed; the module only returns text. Cookies are never kept.
- Credentials: a URL's `user:password@` is removed before the URL is used for anything (Page.url, final_url,
  the page cache, errors, hence provenance and logs); it is sent as HTTP Basic auth only with
  `allow_url_credentials`, and then only to the URL's own scheme, host and port (a redirect elsewhere gets none).

Text: decoding, the main text (trafilatura) and the language (py3langid) are in pagetext.py. Pages are cached
on disk by URL (sha256 → JSON); a cached URL makes no request, but the cached page's URL and final URL go
through `check_url` again with this run's config (a page cached under `allow_private` is blocked without it).
`fetch_many` runs fetches in threads, at most `per_host` in flight per host, order preserved.

`usage` counts: requests (HTTP requests sent, every redirect hop), cached, ok (pages fetched), errors
(FetchErrors raised), blocked (of those, blocked addresses), truncated. `cfg.enabled` is for the caller.

Run: `python -m culturemanager.backends.retrieval.fetch URL [--allow-private]` prints the title, language and
first 500 characters.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import logging
import os
import re
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any

import httpx

from culturemanager.backends.retrieval.pagetext import (  # used by _read, and still importable from here
    decode_body,
    detect_language,
    extract_text,
    html_title,
    parse_content_type,
)
from culturemanager.backends.retry import DeadlineExceeded, run_with_deadline
from culturemanager.config.search import FetchConfig

log = logging.getLogger(__name__)

REASONS = ("bad_scheme", "blocked_address", "dns", "too_many_redirects", "content_type", "timeout",
           "http_status", "network", "empty")
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}
NAT64 = ipaddress.ip_network("64:ff9b::/96")
USERINFO = re.compile(r"\s*([A-Za-z][A-Za-z0-9+.-]*:[/\\]*)[^/?#\\]*@")  # "https://" then "user:pass@"
USER_AGENT = "culturemanager/0.1 (research text fetcher)"


@dataclass(frozen=True)
class Page:
    url: str
    final_url: str
    status: int
    content_type: str
    title: str
    text: str
    language: str | None
    truncated: bool


class FetchError(Exception):
    """A page could not be fetched. `reason` is one of REASONS; `url` is the URL that was asked for."""

    def __init__(self, reason: str, url: str, detail: str = ""):
        super().__init__(f"{reason}: {url}" + (f" ({detail})" if detail else ""))
        self.reason, self.url, self.detail = reason, url, detail


class SafeFetcher:
    """One per run. `cache_dir` is where pages are cached (`cfg.cache_dir` wins when set). `verify` is passed to
    httpx (an `ssl.SSLContext` or CA bundle path; tests use it for a self-signed certificate)."""

    def __init__(self, cfg: FetchConfig, cache_dir: Path, *, verify: Any = True):
        self.cfg = cfg
        self.cache_dir = Path(cfg.cache_dir or cache_dir)
        self.usage: dict[str, int] = dict.fromkeys(("requests", "cached", "ok", "errors", "blocked", "truncated"), 0)
        self._lock = threading.Lock()
        self._host_slots: dict[str, threading.Semaphore] = {}
        no_cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
        self._client = httpx.Client(
            timeout=httpx.Timeout(cfg.read_timeout_s, connect=cfg.connect_timeout_s),
            follow_redirects=False, trust_env=False, verify=verify, cookies=no_cookies,
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate",
                     "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.1"})

    def fetch(self, url: str) -> Page:
        url, credentials = split_userinfo(url)
        try:
            page = self._cache_get(url)
            if page is not None:
                self._recheck(url, page)
                self._count("cached")
                return page
            with self._slot(url):
                page = self._fetch(url, credentials if self.cfg.allow_url_credentials else None)
        except FetchError as e:
            self._count("errors")
            if e.reason == "blocked_address":
                self._count("blocked")
            raise
        self._count("ok")
        if page.truncated:
            self._count("truncated")
        self._cache_put(page)
        return page

    def fetch_many(self, urls: list[str]) -> list[Page | FetchError]:
        def one(url: str) -> Page | FetchError:
            try:
                return self.fetch(url)
            except FetchError as e:
                return e

        if not urls:
            return []
        workers = min(len(urls), 16, self.cfg.per_host * len({_host_key(u) for u in urls}))
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="fetch") as pool:
            return list(pool.map(one, urls))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SafeFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------- one page

    def _fetch(self, url: str, credentials: tuple[str, str] | None = None) -> Page:
        """`url` has no userinfo; `credentials` go (as Basic auth) to the hops on `url`'s own origin only."""
        deadline = time.monotonic() + self.cfg.connect_timeout_s + 4 * self.cfg.read_timeout_s
        current = url
        try:
            origin = _origin(url)
            for _ in range(self.cfg.max_redirects + 1):
                ips = check_url(current, self.cfg)
                auth = credentials if credentials and _origin(current) == origin else None
                # the watchdog bounds what the page deadline below cannot: a server dripping its headers
                response = run_with_deadline(partial(self._send, current, ips, auth),
                                             max(0.05, deadline - time.monotonic()))
                try:
                    location = response.headers.get("location")
                    if response.status_code in REDIRECT_STATUSES and location:
                        # a redirect's own user:password@ is dropped: only the caller's URL may carry them
                        current = split_userinfo(str(httpx.URL(current).join(location.strip())))[0]
                        continue
                    return self._read(url, current, response, deadline)
                finally:
                    response.close()
        except FetchError as e:  # errors name the URL asked for; the hop that failed goes in the detail
            if e.url == url:
                raise
            raise _at_hop(e, url) from e
        except httpx.TimeoutException as e:
            raise FetchError("timeout", url, type(e).__name__) from e
        except DeadlineExceeded as e:
            raise FetchError("timeout", url, "page deadline (headers)") from e
        except httpx.InvalidURL as e:
            raise FetchError("bad_scheme", url, str(e)) from e
        except (httpx.HTTPError, httpx.StreamError) as e:
            raise FetchError("network", url, f"{type(e).__name__}: {e}") from e
        raise FetchError("too_many_redirects", url, f"more than {self.cfg.max_redirects}")

    def _send(self, url: str, ips: list[str], auth: tuple[str, str] | None = None) -> httpx.Response:
        """GET `url` from the checked address (the first one that accepts a connection). httpx would turn a
        URL's userinfo into Basic auth by itself, so the URL sent never has any; `auth` is sent when given."""
        u = httpx.URL(url).copy_with(userinfo=b"")
        host = u.raw_host.decode("ascii")
        headers = {"Host": u.netloc.decode("ascii")}
        extensions = {"sni_hostname": host} if u.scheme == "https" and not _is_ip(host) else None
        self._count("requests")
        for i, ip in enumerate(ips):
            request = self._client.build_request("GET", u.copy_with(host=ip), headers=headers, extensions=extensions)
            try:
                return self._client.send(request, stream=True, auth=httpx.BasicAuth(*auth) if auth else None)
            except httpx.ConnectError:
                if i == len(ips) - 1:
                    raise
        raise AssertionError("check_url returns at least one address")

    def _read(self, url: str, final_url: str, response: httpx.Response, deadline: float) -> Page:
        if not 200 <= response.status_code < 300:
            raise FetchError("http_status", final_url, str(response.status_code))
        content_type, charset = parse_content_type(response.headers.get("content-type", ""))
        if content_type not in self.cfg.content_types:
            raise FetchError("content_type", final_url, content_type or "missing")
        body, truncated = bytearray(), False
        for chunk in response.iter_bytes():  # as data arrives (a chunk_size would wait for it to fill)
            body += chunk
            if len(body) > self.cfg.max_bytes:
                del body[self.cfg.max_bytes:]
                truncated = True
                break
            if time.monotonic() > deadline:
                raise FetchError("timeout", final_url, "page deadline")
        decoded = decode_body(bytes(body), charset, html=content_type != "text/plain", truncated=truncated)
        if content_type == "text/plain":
            title, text = "", decoded.strip()
        else:
            title, text = html_title(decoded), extract_text(decoded, final_url)
        if not text:
            raise FetchError("empty", final_url)
        return Page(url=url, final_url=final_url, status=response.status_code, content_type=content_type,
                    title=title, text=text, language=detect_language(text), truncated=truncated)

    # --------------------------------------------------------------------- cache, slots and counters

    def _recheck(self, url: str, page: Page) -> None:
        """The SSRF guard, with this run's config, on a cached page: it may have been cached by a run that
        allowed private addresses or other hosts. (Redirect hops in between are not cached, only the ends.)"""
        for u in dict.fromkeys((url, page.final_url)):
            try:
                check_url(u, self.cfg)
            except FetchError as e:
                if e.url == url:
                    raise
                raise _at_hop(e, url) from e

    def _cache_path(self, url: str) -> Path:
        return self.cache_dir / f"{hashlib.sha256(url.encode('utf-8')).hexdigest()}.json"

    def _cache_get(self, url: str) -> Page | None:
        path = self._cache_path(url)
        if not path.exists():
            return None
        try:
            return Page(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as e:
            log.warning("ignoring unreadable page cache %s: %s", path, e)
            return None

    def _cache_put(self, page: Page) -> None:
        path = self._cache_path(page.url)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(asdict(page), ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)

    def _slot(self, url: str) -> threading.Semaphore:
        key = _host_key(url)
        with self._lock:
            if key not in self._host_slots:
                self._host_slots[key] = threading.Semaphore(max(1, self.cfg.per_host))
            return self._host_slots[key]

    def _count(self, key: str) -> None:
        with self._lock:
            self.usage[key] += 1


# ------------------------------------------------------------------------------------- the SSRF guard

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


def _origin(url: str) -> tuple[str, str, int | None]:
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
                             + ("" if _is_ip(host) else f" for {host}"))
    return ips


def resolve(host: str, port: int, url: str) -> list[str]:
    if _is_ip(host):
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


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _at_hop(e: FetchError, url: str) -> FetchError:
    """`e` (raised for a later hop) as an error for the URL asked for, the hop named in the detail."""
    return FetchError(e.reason, url, f"at {e.url}" + (f": {e.detail}" if e.detail else ""))


def _host_key(url: str) -> str:
    try:
        return _norm_host(httpx.URL(url).host)
    except httpx.InvalidURL:
        return ""


# ------------------------------------------------------------------------------------------------ CLI

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m culturemanager.backends.retrieval.fetch",
                                 description="Fetch one page safely.")
    ap.add_argument("url")
    ap.add_argument("--allow-private", action="store_true", help="allow loopback and private addresses")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, SafeFetcher(FetchConfig(allow_private=args.allow_private),
                                                           Path(tmp)) as fetcher:
        try:
            page = fetcher.fetch(args.url)
        except FetchError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    print(f"title: {page.title}\nlanguage: {page.language}\nurl: {page.final_url} ({page.status}, "
          f"{page.content_type}{', truncated' if page.truncated else ''})\n\n{page.text[:500]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
