"""What a web search API's answer becomes: hits, then deduplicated, fetched and counted `Document`s.

`parse_hits(rows, url_field, title_field, snippet_field)` reads one API's result list (raising TypeError on
another shape); `make_documents(backend, hits, k)` deduplicates the hits by `url_key`, replaces each snippet with
the fetched page's text when the backend has a `fetcher` (a failed fetch keeps the snippet), caps them at k and
counts them in the backend's `usage`. A result URL's `user:password@` reaches the fetcher, never a document.

Run: imported by web.py, whose backends call these after each search; no entry point of its own.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit, urlunsplit

from culturemanager.backends.retrieval.urlguard import split_userinfo
from culturemanager.records import Document


class Page(Protocol):
    """What fetch.Page offers here (final_url is the URL after redirects)."""

    final_url: str
    title: str
    text: str
    language: str | None


class Fetcher(Protocol):
    """fetch.SafeFetcher's interface: one result per URL, in order; a failed fetch is an error object
    (anything without page text counts as failed, so FetchError need not be an Exception)."""

    def fetch_many(self, urls: list[str]) -> list[Page | Exception]: ...



class Hit(NamedTuple):
    url: str
    title: str
    snippet: str



def make_documents(backend: Any, hits: list[Hit] | None, k: int) -> list[Document]:
    """Deduplicated, fetched (when a fetcher is set), capped at k and counted. None means a counted failure."""
    if hits is None:
        return []
    unique: dict[str, Hit] = {}
    for h in hits:
        unique.setdefault(url_key(split_userinfo(h.url)[0]), h)
    picked = list(unique.values())[:max(k, 0)]
    # a result's user:password@ reaches the fetcher (which sends it only when allowed), never a document
    rows = [(split_userinfo(h.url)[0], h.title, h.snippet or h.title, None) for h in picked]
    if backend.fetcher is not None and picked:
        pages = backend.fetcher.fetch_many([h.url for h in picked])
        rows, seen = [], set()
        for h, page in zip(picked, pages, strict=True):
            url = split_userinfo(h.url)[0]
            if isinstance(page, BaseException) or not getattr(page, "text", ""):  # FetchError: keep the snippet
                backend.usage["fetch_errors"] += 1
                row = (url, h.title, h.snippet or h.title, None)
            else:
                backend.usage["fetched"] += 1
                row = (page.final_url or url, h.title or page.title or "", page.text, page.language)
            if url_key(row[0]) not in seen:  # two results may redirect to the same page
                seen.add(url_key(row[0]))
                rows.append(row)
    docs = [Document(id="web:" + hashlib.sha1(url.encode("utf-8")).hexdigest()[:16], title=title, text=text,
                     source=backend.name, url=url, score=1.0 / (rank + 1), language=language)
            for rank, (url, title, text, language) in enumerate(rows)]
    backend.usage["results"] += len(docs)
    if not docs:
        backend.usage["empty"] += 1
    return docs


def parse_hits(rows: Any, url_field: str, title_field: str, snippet_field: str) -> list[Hit]:
    """Hits from a list of result objects; rows without a URL are dropped. Raises TypeError on another shape."""
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise TypeError("results are not a list of objects")
    return [Hit(str(r[url_field]), str(r.get(title_field) or ""), " ".join(str(r.get(snippet_field) or "").split()))
            for r in rows if r.get(url_field)]


def url_key(url: str) -> str:
    """The deduplication key of a URL: scheme and host case-folded, fragment and trailing slash dropped."""
    p = urlsplit(url.strip())
    return urlunsplit((p.scheme.lower(), p.netloc.lower(), p.path.rstrip("/"), p.query, ""))
