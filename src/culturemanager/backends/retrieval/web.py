"""Web search backends behind the `Retriever` interface of retrieve.py.

`make_web_retriever(name, cfg, fetcher)` returns one of the backends below, configured by `search.web`
(`WebSearchConfig`). Each backend asks its API for `min(k, web.results)` results in the culture's locale,
deduplicates them by URL and, when a `fetcher` (fetch.SafeFetcher) is given, replaces each snippet with the
text of the fetched page (webresults.py). Failures never stop a run: HTTP 429 and 5xx (and timeouts) are retried up to
`web.max_retries` times (honouring Retry-After, capped at 30 s, else exponential backoff), then counted in
`usage["errors"]` and the query gets no documents; 401/403 and malformed answers are counted at once.
`web.timeout_s` is a wall-clock deadline per request (backends/retry.py): a server that drips bytes is cut off.

Backends (`BACKENDS` below); `base_url` replaces the API root, the path shown is appended to it:
- tavily:  key in TAVILY_API_KEY (`Authorization: Bearer`); POST https://api.tavily.com/search.
           Locale: country="spain". Domains: its own include_domains / exclude_domains.
- brave:   key in BRAVE_API_KEY (`X-Subscription-Token`); GET https://api.search.brave.com/res/v1/web/search.
           Locale: country=ES, search_lang=es. Domains: site: / -site: operators in the query.
- serper:  key in SERPER_API_KEY (`X-API-KEY`); POST https://google.serper.dev/search.
           Locale: gl=es, hl=es. Domains: site: / -site: operators.
- searxng: no key; base_url required (your instance, e.g. http://localhost:8888, with the json format
           enabled in its settings.yml); GET {base_url}/search?format=json. Locale: language=es-ES.
           Domains: site: / -site: operators.
- ddgs:    no key; the `ddgs` package (DuckDuckGo and other engines; no base_url). Locale: region=es-es.
           Domains: site: / -site: operators.
locales.py maps a culture to each API's codes (only values the API knows; ja -> jp, gb -> uk-en, ...).
`api_key_env` names another variable for the key. Keys are registered with backends.secrets and never logged.

Run it:
    python -m culturemanager.backends.retrieval.web BACKEND "query" [--country es --language es] [-k 5] [--base-url URL]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from culturemanager.backends.retrieval.locales import (  # the tables stay importable from here
    BRAVE_COUNTRIES,  # noqa: F401
    BRAVE_LANGUAGES,  # noqa: F401
    DDGS_REGIONS,  # noqa: F401
    TAVILY_COUNTRIES,  # noqa: F401
    brave_locale,
    ddgs_region,
    searxng_locale,
    serper_locale,
    tavily_locale,
)
from culturemanager.backends.retrieval.retriever import Retriever, new_usage
from culturemanager.backends.retrieval.webresults import Fetcher, Hit, make_documents, parse_hits
from culturemanager.backends.retry import (
    DeadlineExceeded,
    backoff,
    deadline_hooks,
    parse_retry_after,
    run_with_deadline,
)
from culturemanager.backends.secrets import redact, remember
from culturemanager.records import Document

if TYPE_CHECKING:
    from culturemanager.config import Culture
    from culturemanager.config.search import WebSearchConfig

log = logging.getLogger(__name__)

MAX_WAIT_S = 30.0  # cap on one Retry-After / backoff wait, so a hostile header cannot stall the run
BACKOFF_S = 1.0  # first exponential backoff wait (1, 2, 4... s); tests set it to ~0


class WebSearchError(RuntimeError):
    """A configuration problem (missing API key, searxng without base_url, unknown backend)."""


def make_web_retriever(name: str, cfg: WebSearchConfig, fetcher: Fetcher | None = None) -> Retriever:
    if name not in BACKENDS:
        raise WebSearchError(f"unknown web search backend {name!r} (known: {', '.join(BACKENDS)})")
    return BACKENDS[name](cfg, fetcher)


# ---------------------------------------------------------------------------------------------- backends

class TavilySearch:
    """Tavily Search API (docs.tavily.com, "Search" endpoint): POST JSON {query, max_results, search_depth,
    topic, include_domains, exclude_domains, country}; answer {"results": [{url, title, content, score}]}.
    Auth is the current `Authorization: Bearer` header (the older api_key body field is not sent)."""

    name = "tavily"

    def __init__(self, cfg: WebSearchConfig, fetcher: Fetcher | None = None):
        key_env = cfg.api_key_env or "TAVILY_API_KEY"
        self.http = _Http(self.name, cfg, f"check {key_env}", {"Authorization": f"Bearer {_key(key_env)}"})
        self.cfg, self.fetcher, self.usage = cfg, fetcher, self.http.usage
        self.url = _endpoint(cfg.base_url or "https://api.tavily.com", "/search")

    def search(self, query: str, k: int, culture: Culture | None = None) -> list[Document]:
        body: dict[str, Any] = {"query": query, "max_results": _count(k, self.cfg, 20),
                                "search_depth": "basic", "topic": "general"}
        if self.cfg.include_domains:
            body["include_domains"] = list(self.cfg.include_domains)
        if self.cfg.exclude_domains:
            body["exclude_domains"] = list(self.cfg.exclude_domains)
        body.update(tavily_locale(culture))  # only with topic "general"
        data = self.http.call("POST", self.url, json=body)
        hits = self.http.parse(data, lambda d: parse_hits(d["results"], "url", "title", "content"))
        return make_documents(self, hits, k)


class BraveSearch:
    """Brave Web Search API (api-dashboard.search.brave.com, "Web search"): GET ?q&count&country&search_lang
    with `X-Subscription-Token`; answer {"web": {"results": [{url, title, description}]}} ("web" is absent
    when nothing was found)."""

    name = "brave"

    def __init__(self, cfg: WebSearchConfig, fetcher: Fetcher | None = None):
        key_env = cfg.api_key_env or "BRAVE_API_KEY"
        self.http = _Http(self.name, cfg, f"check {key_env}",
                          {"X-Subscription-Token": _key(key_env), "Accept": "application/json"})
        self.cfg, self.fetcher, self.usage = cfg, fetcher, self.http.usage
        self.url = _endpoint(cfg.base_url or "https://api.search.brave.com", "/res/v1/web/search")

    def search(self, query: str, k: int, culture: Culture | None = None) -> list[Document]:
        params = {"q": _with_sites(query, self.cfg), "count": _count(k, self.cfg, 20), **brave_locale(culture)}
        data = self.http.call("GET", self.url, params=params)
        hits = self.http.parse(data, lambda d: parse_hits(d.get("web", {}).get("results", []), "url", "title",
                                                      "description"))
        return make_documents(self, hits, k)


class SerperSearch:
    """Serper Google Search API (serper.dev playground / docs): POST JSON {q, num, gl, hl} with `X-API-KEY`;
    answer {"organic": [{title, link, snippet, position}], ...}."""

    name = "serper"

    def __init__(self, cfg: WebSearchConfig, fetcher: Fetcher | None = None):
        key_env = cfg.api_key_env or "SERPER_API_KEY"
        self.http = _Http(self.name, cfg, f"check {key_env}", {"X-API-KEY": _key(key_env)})
        self.cfg, self.fetcher, self.usage = cfg, fetcher, self.http.usage
        self.url = _endpoint(cfg.base_url or "https://google.serper.dev", "/search")

    def search(self, query: str, k: int, culture: Culture | None = None) -> list[Document]:
        body: dict[str, Any] = {"q": _with_sites(query, self.cfg), "num": _count(k, self.cfg, 100),
                                **serper_locale(culture)}
        data = self.http.call("POST", self.url, json=body)
        hits = self.http.parse(data, lambda d: parse_hits(d.get("organic", []), "link", "title", "snippet"))
        return make_documents(self, hits, k)


class SearxngSearch:
    """A SearXNG instance's Search API (docs.searxng.org/dev/search_api): GET /search?q&format=json&language
    &pageno=1; answer {"results": [{url, title, content, engine, score}]}. 403 means the instance has the
    json format disabled. The result count cannot be set: the first page is capped at k."""

    name = "searxng"

    def __init__(self, cfg: WebSearchConfig, fetcher: Fetcher | None = None):
        if not cfg.base_url:
            raise WebSearchError("the searxng backend needs search.web.base_url (your instance, e.g. "
                                 "http://localhost:8888)")
        self.http = _Http(self.name, cfg, "enable the json format in the instance's settings.yml "
                          "(search.formats) and check that it allows this client", {})
        self.cfg, self.fetcher, self.usage = cfg, fetcher, self.http.usage
        self.url = _endpoint(cfg.base_url, "/search")

    def search(self, query: str, k: int, culture: Culture | None = None) -> list[Document]:
        params = {"q": _with_sites(query, self.cfg), "format": "json", "pageno": 1, **searxng_locale(culture)}
        data = self.http.call("GET", self.url, params=params)
        hits = self.http.parse(data, lambda d: parse_hits(d["results"], "url", "title", "content"))
        return make_documents(self, hits, k)


class DdgsSearch:
    """The `ddgs` metasearch package: `DDGS(timeout).text(query, region, max_results)` returns
    [{title, href, body}] and raises DDGSException("No results found.") when nothing matched (ddgs 9.x).
    Rate limits and timeouts are retried with backoff like HTTP 429."""

    name = "ddgs"
    first_error: str | None = None

    def __init__(self, cfg: WebSearchConfig, fetcher: Fetcher | None = None):
        try:
            from ddgs import DDGS
        except ImportError:
            raise WebSearchError("the ddgs backend needs the ddgs package: pip install ddgs") from None
        self.cfg, self.fetcher, self.usage = cfg, fetcher, _new_usage()
        self.client = DDGS(timeout=max(1, round(cfg.timeout_s)))

    def search(self, query: str, k: int, culture: Culture | None = None) -> list[Document]:
        from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException

        self.usage["requests"] += 1
        region = ddgs_region(culture)
        attempts = max(1, self.cfg.max_retries + 1)
        rows: Any = None
        for attempt in range(attempts):
            try:
                rows = self.client.text(_with_sites(query, self.cfg), region=region,
                                        max_results=_count(k, self.cfg, 100))
                break
            except (RatelimitException, TimeoutException) as e:
                if attempt == attempts - 1:
                    return _failed(self, f"gave up after {attempts} attempts: {e}")
                time.sleep(_backoff(attempt))
            except DDGSException as e:
                if str(e) == "No results found.":  # how ddgs 9 reports an empty answer
                    return make_documents(self, [], k)
                return _failed(self, str(e))
        try:
            hits = parse_hits(rows, "href", "title", "body")
        except (KeyError, TypeError, AttributeError) as e:
            return _failed(self, f"unexpected answer shape ({e!r})")
        return make_documents(self, hits, k)


BACKENDS: dict[str, Callable[[WebSearchConfig, Fetcher | None], Retriever]] = {
    "tavily": TavilySearch,
    "brave": BraveSearch,
    "serper": SerperSearch,
    "searxng": SearxngSearch,
    "ddgs": DdgsSearch,
}


# ---------------------------------------------------------------------------------------------- HTTP

class _Http:
    """One httpx client per backend, the retry policy, and the backend's usage counters."""

    first_error: str | None = None

    def __init__(self, name: str, cfg: WebSearchConfig, auth_hint: str, headers: dict[str, str]):
        self.name, self.cfg, self.auth_hint = name, cfg, auth_hint
        self.usage = _new_usage()
        self.client = httpx.Client(headers=headers, timeout=cfg.timeout_s, follow_redirects=True,
                                   event_hooks=deadline_hooks(cfg.timeout_s))
        self._warned_auth = False

    def call(self, method: str, url: str, **kwargs: Any) -> Any | None:
        """The decoded JSON answer, or None after a counted and logged failure."""
        self.usage["requests"] += 1
        attempts = max(1, self.cfg.max_retries + 1)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                r = run_with_deadline(lambda: self.client.request(method, url, **kwargs), self.cfg.timeout_s + 0.5)
            except (httpx.TransportError, DeadlineExceeded) as e:  # timeouts, refused connections: retried
                if last:
                    return self.fail(f"gave up after {attempts} attempts: {e!r}")
                time.sleep(_backoff(attempt))
                continue
            if r.status_code == 429 or r.status_code >= 500:
                if last:
                    return self.fail(f"gave up after {attempts} attempts: HTTP {r.status_code}")
                time.sleep(_retry_after(r.headers.get("Retry-After"), attempt))
                continue
            if r.status_code in (401, 403):
                self.usage["errors"] += 1
                self.first_error = self.first_error or f"HTTP {r.status_code}: {self.auth_hint}"
                if not self._warned_auth:  # every query would say the same: once is enough
                    self._warned_auth = True
                    log.warning("%s search refused the request (HTTP %d): %s", self.name, r.status_code,
                                self.auth_hint)
                return None
            if r.status_code >= 400:
                return self.fail(f"HTTP {r.status_code}: {r.text[:200]}")
            try:
                return r.json()
            except ValueError:
                return self.fail(f"answer is not JSON: {r.text[:100]!r}")
        raise AssertionError("unreachable")  # the loop always returns on its last attempt

    def parse(self, data: Any, extract: Callable[[Any], list[Hit]]) -> list[Hit] | None:
        """Hits from a decoded answer; None (counted) when it lacks the documented shape."""
        if data is None:
            return None
        try:
            return extract(data)
        except (KeyError, TypeError, AttributeError) as e:
            return self.fail(f"unexpected answer shape ({e!r})")

    def fail(self, why: str) -> None:
        _failed(self, why)


def _new_usage() -> dict[str, int]:
    """retrieve.new_usage() plus pages fetched / failed (a failed fetch keeps the search snippet)."""
    return {**new_usage(), "fetched": 0, "fetch_errors": 0}


def _failed(backend: Any, why: str) -> list[Document]:
    """Count and log a failed query (and keep the first error); the run goes on without its documents."""
    backend.usage["errors"] += 1
    if backend.first_error is None:
        backend.first_error = redact(why)
    log.warning("%s search failed, query skipped: %s", backend.name, redact(why))
    return []


def _retry_after(value: str | None, attempt: int) -> float:
    """Retry-After in seconds or as an HTTP date; exponential backoff when absent or unreadable."""
    wait = parse_retry_after(value)
    return min(MAX_WAIT_S, wait) if wait is not None else _backoff(attempt)


def _backoff(attempt: int) -> float:
    return backoff(attempt, BACKOFF_S, MAX_WAIT_S)


def _count(k: int, cfg: WebSearchConfig, api_max: int) -> int:
    """Results to ask for: no more than the caller keeps (k) or the config allows, within the API's range."""
    return max(1, min(k, cfg.results, api_max))


def _with_sites(query: str, cfg: WebSearchConfig) -> str:
    """include/exclude domains as search operators, for APIs without a parameter for them."""
    include = " OR ".join(f"site:{d}" for d in cfg.include_domains)
    exclude = " ".join(f"-site:{d}" for d in cfg.exclude_domains)
    return " ".join(part for part in (query, include, exclude) if part)


def _key(env: str) -> str:
    key = os.environ.get(env, "").strip()
    if not key:
        raise WebSearchError(f"no API key: set the environment variable {env} (or search.web.api_key_env "
                             "to name another one)")
    return remember(key)


def _endpoint(base_url: str, path: str) -> str:
    base = base_url.rstrip("/")
    return base if base.endswith(path) else base + path


# ---------------------------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> None:
    from culturemanager.config import Culture
    from culturemanager.config.search import WebSearchConfig

    p = argparse.ArgumentParser(prog="python -m culturemanager.backends.retrieval.web",
                                description=__doc__.split("\n")[0])
    p.add_argument("backend", choices=list(BACKENDS))
    p.add_argument("query")
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--country", help="ISO 3166 alpha-2, e.g. es")
    p.add_argument("--language", help="ISO 639-1, e.g. es")
    p.add_argument("--base-url")
    p.add_argument("--api-key-env")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = WebSearchConfig(base_url=args.base_url, api_key_env=args.api_key_env, results=args.k)
    culture = (Culture(name="cli", country=args.country, language=args.language)
               if args.country or args.language else None)
    try:
        retriever = make_web_retriever(args.backend, cfg)
    except WebSearchError as e:
        sys.exit(f"error: {e}")
    for doc in retriever.search(args.query, args.k, culture):
        print(json.dumps(doc.model_dump(), ensure_ascii=False))
    print(json.dumps(retriever.usage), file=sys.stderr)


if __name__ == "__main__":
    main()
