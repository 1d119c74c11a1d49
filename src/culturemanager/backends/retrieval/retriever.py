"""The one small interface every search backend implements, and its usage counters.

A retriever answers `search(query, k, culture)` with at most k `Document`s; `usage` counts requests, returned
results, errors and requests that returned nothing ("empty"), and the search stage copies it into the manifest.
Backends: `bm25.BM25Retriever`, `dense.DenseRetriever` / `HybridRetriever` (the local corpus) and the web APIs in
`web.py`.

Run: imported by the backends and the search stage; no entry point of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from culturemanager.config import Culture
    from culturemanager.records import Document


class Retriever(Protocol):
    """A search backend. `usage` counts requests, returned results, errors, and requests that returned
    nothing ("empty")."""

    name: str
    usage: dict[str, int]

    def search(self, query: str, k: int, culture: Culture | None = None) -> list[Document]: ...


def new_usage() -> dict[str, int]:
    return {"requests": 0, "results": 0, "errors": 0, "empty": 0}
