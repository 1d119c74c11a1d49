"""Fetching the pages behind web search results, safely, and turning them into plain text.

`SafeFetcher(cfg, cache_dir).fetch(url)` returns a `Page` (title, main text, language) or raises `FetchError`
with a short machine-readable `reason`. What it guards against:
- SSRF: `check_url` (urlguard.py) allows only http(s) and refuses hosts that resolve to loopback, private,
  link-local (cloud metadata), multicast, reserved or unspecified addresses (and their embedded IPv4 forms)
  unless `allow_private` or `allowed_hosts` say so. Redirects are followed by hand and every hop is checked again.
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
- Credentials: a URL's `user:password@` is removed (urlguard.split_userinfo) before the URL is used for anything
  (Page.url, final_url, the page cache, errors, hence provenance and logs); it is sent as HTTP Basic auth only
  with `allow_url_credentials`, and then only to the URL's own scheme, host and port (a redirect elsewhere gets
  none).

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
import json
import logging
import os
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
from culturemanager.backends.retrieval.urlguard import (
    FetchError,
    at_hop,
    check_url,
    host_key,
    is_ip,
    split_userinfo,
    url_origin,
)
from culturemanager.backends.retry import DeadlineExceeded, run_with_deadline
from culturemanager.config.search import FetchConfig

log = logging.getLogger(__name__)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
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
        workers = min(len(urls), 16, self.cfg.per_host * len({host_key(u) for u in urls}))
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
            origin = url_origin(url)
            for _ in range(self.cfg.max_redirects + 1):
                ips = check_url(current, self.cfg)
                auth = credentials if credentials and url_origin(current) == origin else None
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
            raise at_hop(e, url) from e
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
        extensions = {"sni_hostname": host} if u.scheme == "https" and not is_ip(host) else None
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
                raise at_hop(e, url) from e

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
        key = host_key(url)
        with self._lock:
            if key not in self._host_slots:
                self._host_slots[key] = threading.Semaphore(max(1, self.cfg.per_host))
            return self._host_slots[key]

    def _count(self, key: str) -> None:
        with self._lock:
            self.usage[key] += 1


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
