"""Stage 3: run every query against the retriever and (optionally) summarize what it found.

Each query's top-k documents become one `Material`; with `search.summarize` the generator condenses them,
citing the documents as [1], [2] (the paper's search agent). The documents stay attached to the material, so
provenance reaches every synthetic sample. A summary that says NONE drops the material (counted); a failed
summary call falls back to the raw documents (counted). A culture with no documents at all is warned about,
skipped and reported in the manifest. When every search of a backend failed, or no summary call gave a
usable answer, the stage fails (`StageFailed`) and `materials.jsonl` keeps what an earlier run wrote.

Entry point: `search(cfg, rd, llm)`; reads `queries.jsonl`, writes `materials.jsonl`.
Run: `culturemanager search CONFIG.toml`.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

from culturemanager.backends.llm import CachedLLM, ChatRequest
from culturemanager.backends.retrieval.retriever import Retriever
from culturemanager.config import Config, Culture
from culturemanager.errors import ConfigError, StageFailed
from culturemanager.records import (
    Citation,
    Document,
    Material,
    Query,
    append_jsonl_line,
    read_json_lines,
    read_jsonl,
    sha1_text,
    stable_seed,
    write_jsonl,
)
from culturemanager.rundir import RunDir
from culturemanager.text.prompts import build_summary_messages, language_name, parse_citations, parse_summary

log = logging.getLogger(__name__)


def make_retriever(cfg: Config, rd: RunDir) -> Retriever:
    """The configured backends; several are merged by `Sources` (one failing does not stop the others)."""
    retrievers = [make_one(cfg, rd, name) for name in cfg.search_backends]
    return retrievers[0] if len(retrievers) == 1 else Sources(retrievers)


def make_one(cfg: Config, rd: RunDir, name: str) -> Retriever:
    if name == "local":
        if not cfg.search.corpus:
            raise ConfigError("search.corpus is empty: name at least one folder or file of the local corpus")
        from culturemanager.backends.retrieval.dense import build_retriever

        index = cfg.search.index_dir or rd.index
        if cfg.search.by_culture:
            from culturemanager.backends.retrieval.retriever import ByCulture
            from culturemanager.rundir import safe_name

            return ByCulture({c.name: build_retriever(culture_folders(cfg.search.corpus, c.name),
                                                      index / "by-culture" / safe_name(c.name), cfg.search.retrieval)
                              for c in cfg.cultures})
        return build_retriever(list(cfg.search.corpus), index, cfg.search.retrieval)
    from culturemanager.backends.retrieval.web import make_web_retriever

    fetcher = None
    if cfg.search.fetch.enabled:
        from culturemanager.backends.retrieval.fetch import SafeFetcher

        fetcher = SafeFetcher(cfg.search.fetch, rd.root / "cache" / "pages")
    return CachedSearch(make_web_retriever(name, cfg.search.web, fetcher), rd.root / "cache" / "search.jsonl")


def culture_folders(corpus: list[Path], culture: str) -> list[Path]:
    """The `<folder>/<culture>/` folders of the corpus (name matched case-insensitively): `search.by_culture`."""
    found = [sub for root in map(Path, corpus) if root.is_dir()
             for sub in sorted(root.iterdir()) if sub.is_dir() and sub.name.casefold() == culture.casefold()]
    if not found:
        raise ConfigError(f"search.by_culture: no folder named {culture!r} in the corpus "
                          f"({', '.join(map(str, corpus))}); each culture needs <corpus folder>/{culture}/")
    return found


class CachedSearch:
    """A web backend whose answers are kept on disk by (backend, query, k, culture): a re-run or a resumed run
    asks the search API nothing it already asked. Failed or empty answers are not kept (they may work later)."""

    def __init__(self, inner: Retriever, path: Path):
        self.inner, self.path, self.name = inner, path, inner.name
        self.usage = inner.usage
        self.usage.setdefault("cached", 0)
        self._answers: dict[str, list[Document]] = {}
        entries, bad = read_json_lines(path)
        for entry in entries:
            try:
                self._answers[entry["key"]] = [Document.model_validate(d) for d in entry["documents"]]
            except (KeyError, TypeError, ValueError):
                bad += 1
        if bad:  # half a line from a killed run, stray bytes: those searches are simply redone
            self.usage["unreadable_cache_lines"] = bad
            log.warning("%s: %d line(s) could not be read: those searches are made again", path, bad)

    @property
    def first_error(self) -> str | None:
        return getattr(getattr(self.inner, "http", self.inner), "first_error", None)

    def search(self, query: str, k: int, culture: Culture | None = None) -> list[Document]:
        key = json.dumps([self.name, query, k, culture.name if culture else None], ensure_ascii=False)
        if key in self._answers:
            self.usage["cached"] += 1
            return [d.model_copy() for d in self._answers[key]]
        docs = self.inner.search(query, k, culture)
        if docs:
            self._answers[key] = docs
            append_jsonl_line(self.path, {"key": key, "documents": [d.model_dump() for d in docs]})
        return docs


class Sources:
    """Several retrievers as one: each query goes to every backend, results are merged in turn (first of each,
    then second of each, ...) and deduplicated by URL or id. A backend that raises is counted and skipped for
    that query; when every backend fails on every query so far, the run stops with the errors."""

    def __init__(self, retrievers: list[Retriever]):
        self.retrievers = retrievers
        self.name = "+".join(r.name for r in retrievers)
        self.usage = {"requests": 0, "results": 0, "errors": 0, "empty": 0}

    def search(self, query: str, k: int, culture: Culture | None = None) -> list[Document]:
        self.usage["requests"] += 1
        lists, errors = [], []
        for r in self.retrievers:
            try:
                lists.append(r.search(query, k, culture))
            except Exception as e:  # noqa: BLE001 - a backend that is down must not stop the others
                errors.append(f"{r.name}: {e}")
                log.warning("search backend %s failed: %s", r.name, e)
        self.usage["errors"] += len(errors)
        if not lists:
            raise RuntimeError("every search backend failed: " + "; ".join(errors))
        seen, merged = set(), []
        for rank in range(max((len(x) for x in lists), default=0)):
            for docs in lists:
                if rank < len(docs) and (key := docs[rank].url or docs[rank].id) not in seen:
                    seen.add(key)
                    merged.append(docs[rank])
        self.usage["results"] += len(merged[:k])
        self.usage["empty"] += not merged
        return merged[:k]


def search(cfg: Config, rd: RunDir, llm: CachedLLM, retriever: Retriever | None = None
           ) -> tuple[list[Material], dict]:
    queries = read_jsonl(rd.need(rd.queries, "queries"), Query)
    retriever = retriever or make_retriever(cfg, rd)
    cultures = {c.name: c for c in cfg.cultures}
    counts: Counter = Counter()
    found: list[tuple[Query, list[Document]]] = []
    for q in queries:
        culture = cultures[q.culture]
        pool = retriever.search(q.text, cfg.search.top_k * cfg.search.candidates, culture)
        terms = culture_terms(culture)
        docs = prefer_culture(pool, terms)[:cfg.search.top_k]
        counts["documents_about_other_cultures"] += sum(not mentions(d, terms) for d in docs)
        if not docs:
            counts["queries_without_documents"] += 1
            continue
        docs = [d.model_copy(update={"text": d.text[:cfg.search.max_doc_chars]}) for d in docs]
        found.append((q, docs))
    check_searches(retriever)
    materials = summarize(cfg, llm, found, counts) if cfg.search.summarize else [
        raw_material(q, docs) for q, docs in found]
    for name in cultures:
        n = sum(m.culture == name for m in materials)
        counts[f"materials[{name}]"] = n
        if n == 0 and any(q.culture == name for q in queries):
            log.warning("no material found for culture %s: it gets no synthetic data", name)
            counts["cultures_without_material"] += 1
    counts["materials"] = len(materials)
    counts["documents"] = sum(len(m.documents) for m in materials)
    counts.update({f"retriever.{k}": v for k, v in retriever.usage.items()})
    for r in getattr(retriever, "retrievers", [retriever]):
        counts.update({f"backend[{r.name}].{k}": v for k, v in r.usage.items()})
    write_jsonl(rd.materials, materials)
    return materials, dict(counts)


def check_searches(retriever: Retriever) -> None:
    """A stage whose every search failed has found nothing: it fails before writing anything. One backend of
    several that fails throughout is a counted skip; the others carry on."""
    backends = getattr(retriever, "retrievers", [retriever])
    if all(0 < b.usage.get("requests", 0) + b.usage.get("cached", 0) <= b.usage.get("errors", 0) for b in backends):
        first = next((e for b in backends if (e := getattr(b, "first_error", None))), "see the warnings above")
        raise StageFailed("search", retriever.usage.get("requests", 0), first, what="searches")


def culture_terms(culture: Culture) -> list[str]:
    terms = [culture.name, language_name(culture)] + ([culture.description] if culture.description else [])
    return sorted({t.casefold() for t in terms if t and len(t) > 2})


def mentions(doc: Document, terms: list[str]) -> bool:
    hay = f"{doc.source} {doc.title} {doc.text}".casefold()
    return any(t in hay for t in terms)


def prefer_culture(docs: list[Document], terms: list[str]) -> list[Document]:
    """Documents that name the culture (in source, title or text) first, each group in retrieval order.

    A lexical retriever ranks "hate speech in Turkish culture" by "hate speech" as much as by "Turkish";
    material about another culture would then teach the wrong culture. Web backends get the culture as a
    locale parameter instead."""
    return sorted(docs, key=lambda d: not mentions(d, terms))


def summarize(cfg: Config, llm: CachedLLM, found: list[tuple[Query, list[Document]]], counts: Counter
              ) -> list[Material]:
    cultures = {c.name: c for c in cfg.cultures}
    requests = [ChatRequest(build_summary_messages(cultures[q.culture], cfg.task(q.task), q.text,
                                                   [(d.url or d.source, d.text) for d in docs]),
                            cfg.generator.temperature, cfg.generator.max_new_tokens,
                            stable_seed(cfg.run.seed, "summary", q.id))
                for q, docs in found]
    answers = llm.complete(requests, stage="summarize")
    if requests and all(a is None for a in answers):  # the generator is down: raw documents are no summary
        raise StageFailed("search", len(requests), llm.first_error.get("summarize", "?"), what="summary calls")
    out = []
    first_unusable = None
    for (q, docs), req, ans in zip(found, requests, answers):
        if ans is None:
            counts["summary_failed_used_raw"] += 1
            out.append(raw_material(q, docs))
            continue
        text = parse_summary(ans.text)
        if text is None:
            counts["summary_irrelevant"] += 1
            first_unusable = first_unusable or f"the summary says nothing is relevant: {ans.text[:120]!r}"
            continue
        citations = [Citation(n=n, source_id=docs[n - 1].id, url=docs[n - 1].url, quote=quote)
                     for n, quote in parse_citations(text, len(docs))]
        counts["summaries_with_citations"] += bool(citations)
        out.append(Material(id=sha1_text("material|" + q.id)[:12], culture=q.culture, task=q.task, mode=q.mode,
                            query_id=q.id, query=q.text, text=text, documents=docs, summarized=True,
                            summary_prompt_hash=req.prompt_hash(), citations=citations))
    if requests and not out:
        raise StageFailed("search", len(requests), llm.first_error.get("summarize") or first_unusable or "?",
                          what="summary calls")
    return out


def raw_material(q: Query, docs: list[Document]) -> Material:
    text = "\n\n".join(f"[{i}] {d.title}: {d.text}" for i, d in enumerate(docs, 1))
    return Material(id=sha1_text("material|" + q.id)[:12], culture=q.culture, task=q.task, mode=q.mode,
                    query_id=q.id, query=q.text, text=text, documents=docs, summarized=False)
