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


class ByCulture:
    """One retriever per culture: a query goes to its culture's retriever only (`search.by_culture`), so that a
    lexical match in another culture's documents can never be returned. A query without a culture, or of a
    culture that has no retriever, is an error."""

    def __init__(self, retrievers: dict[str, Retriever]):
        self.retrievers = retrievers
        self.name = "by-culture:" + "+".join(sorted({r.name for r in retrievers.values()}))
        self.usage = new_usage()

    def search(self, query: str, k: int, culture: Culture | None = None) -> list[Document]:
        if culture is None or culture.name not in self.retrievers:
            raise KeyError(f"no corpus for culture {culture.name if culture else None!r} "
                           f"(have: {sorted(self.retrievers)})")
        self.usage["requests"] += 1
        docs = self.retrievers[culture.name].search(query, k, culture)
        self.usage["results"] += len(docs)
        self.usage["empty"] += not docs
        return docs
