"""The settings of stage 3, [search]: where material comes from (a local corpus, or web search APIs), the web
backends' shared settings ([search.web]) and fetching the pages behind web results ([search.fetch]). Pydantic
classes like the other stage tables (settings.py: `Section`, the shared upper bounds), each field documented by
the docstring under it; kept apart because the web backends (backends/retrieval/web.py, fetch.py) read these
tables alone.

Run: imported by config/__init__.py and the retrieval backends; no entry point of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from culturemanager.config.settings import CHARS, DAY_S, RETRIES, Section

SearchBackend = Literal["local", "tavily", "brave", "serper", "searxng", "ddgs"]


class WebSearchConfig(Section):
    """Settings shared by the web search backends (tavily, brave, serper, searxng, ddgs)."""

    api_key_env: str | None = None
    """Environment variable holding the API key. Default per backend: TAVILY_API_KEY, BRAVE_API_KEY,
    SERPER_API_KEY; searxng and ddgs need none. The key itself never goes in the config."""
    base_url: str | None = None
    """Override the backend's API endpoint (searxng: required, your instance, e.g. http://localhost:8888)."""
    results: int = Field(5, ge=1, le=100)
    """Results asked for per query."""
    include_domains: list[str] = Field(default_factory=list)
    """Only results from these domains (e.g. ["elpais.com"]); empty: any."""
    exclude_domains: list[str] = Field(default_factory=list)
    """Never results from these domains."""
    timeout_s: float = Field(20.0, gt=0, le=DAY_S)
    """Wall-clock deadline of one search request, whatever the server does (a dripping answer is cut off)."""
    max_retries: int = Field(3, ge=0, le=RETRIES)
    """Retries on 429 (honouring Retry-After) and 5xx, with exponential backoff; then counted and skipped."""


class FetchConfig(Section):
    """Fetching the pages behind web results (httpx), with an SSRF guard."""

    enabled: bool = True
    """Fetch each result page and extract its main text; off: use the search snippet."""
    allow_private: bool = False
    """Allow loopback, private, link-local and other non-public addresses (never by default)."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """"host" or "host:port" entries allowed even though they resolve to a non-public address."""
    allow_url_credentials: bool = False
    """Send a result URL's `user:password@` as HTTP Basic auth, to that URL's scheme, host and port only (never
    to a redirect elsewhere). Off: never sent. Either way they are removed from the URL before it is stored
    (page cache, provenance) or logged."""
    connect_timeout_s: float = Field(5.0, gt=0, le=DAY_S)
    """Connection timeout of one page request."""
    read_timeout_s: float = Field(15.0, gt=0, le=DAY_S)
    """Longest wait for the next bytes of a page; the whole page has connect + 4 x read timeout."""
    max_bytes: int = Field(2_000_000, ge=1, le=1_000_000_000)
    """Larger responses are cut off here (and counted)."""
    content_types: list[str] = ["text/html", "application/xhtml+xml", "text/plain"]
    """Content-Types accepted; other pages are refused before their body is read."""
    max_redirects: int = Field(5, ge=0, le=100)
    """Redirects followed (each hop re-checked by the SSRF guard)."""
    per_host: int = Field(2, ge=1, le=1024)
    """Requests in flight to one host at a time."""
    cache_dir: Path | None = None
    """On-disk page cache keyed by URL (default: <run>/cache/pages)."""


class SearchConfig(Section):
    backend: SearchBackend | list[SearchBackend] = "local"
    """Where material comes from: local (the corpus below) or a web search API; a list queries each and
    merges the results (a backend that fails is counted and the others go on)."""
    corpus: list[Path] = Field(default_factory=list)
    """Folders or files of the local corpus."""
    retrieval: Literal["bm25", "dense", "hybrid"] = "bm25"
    """local backend: BM25, a multilingual embedding model, or both fused."""
    by_culture: bool = False
    """local backend: each culture's queries search only its own folder of each corpus folder
    (`<folder>/<culture name>/`, the name matched case-insensitively; one index per culture), so a query for
    Arabic never lands on Bengali posts. A culture with no such folder is an error naming the folders. The
    social-media corpus (`python -m culturemanager.bench.social_corpus`) is laid out this way."""
    web: WebSearchConfig = Field(default_factory=WebSearchConfig)
    """The web search backends' settings."""
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    """Fetching the pages behind web results."""
    top_k: int = Field(3, ge=1, le=1000)
    """Documents kept per query (they become one material)."""
    candidates: int = Field(5, ge=1, le=1000)
    """Retrieve top_k x candidates documents, then keep the top_k that name the query's culture first."""
    summarize: bool = True
    """Summarize each query's documents with the generator before synthesis (as in the paper)."""
    max_doc_chars: int = Field(1500, ge=1, le=CHARS)
    """Characters of each document shown to the generator."""
    index_dir: Path | None = None
    """Where the BM25 index is persisted (default: <run>/index)."""
