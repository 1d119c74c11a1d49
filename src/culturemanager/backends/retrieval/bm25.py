"""Offline retrieval: a BM25 index over a local corpus of texts, behind the same small interface as the
web search backends.

`build_local_retriever(paths, index_dir)` reads the corpus (.txt, .md, .html, .jsonl files or folders of
them), cuts it into passages of ~600-1000 characters, and returns a `BM25Retriever`. The index is saved
in `index_dir` (bm25s arrays + documents.jsonl + meta.json) and reused while the corpus is unchanged.
Tokenization is script-aware without any segmenter: words for alphabetic scripts (Latin, Arabic,
Bengali...), character unigrams + bigrams for Chinese, Japanese and Korean.

Run it:
    python -m culturemanager.backends.retrieval.bm25 CORPUS_DIR [MORE_PATHS...] "kimchi side dish" -k 5 \
        [--index-dir DIR]
e.g. CORPUS_DIR = ../shared/data/narratives (English Wikipedia "Culture of X" texts).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

import regex

from culturemanager.backends.retrieval.corpus import PASSAGE_MAX_CHARS, PASSAGE_MIN_CHARS, load_corpus
from culturemanager.backends.retrieval.retriever import new_usage
from culturemanager.backends.retrieval.store import read_meta, swap_in, temp_sibling
from culturemanager.records import ARABIC_FOLD, UNSPACED_SCRIPTS, Document, read_jsonl, write_json, write_jsonl

if TYPE_CHECKING:  # type hints only: bm25s is imported lazily, and config may one day import this module
    import bm25s
    import numpy as np

    from culturemanager.config import Culture

log = logging.getLogger(__name__)

TOKENIZER_VERSION = "1"  # bump when tokenize() changes, so that saved indexes are rebuilt


# ---------------------------------------------------------------------------------------------- BM25

class BM25Retriever:
    """BM25 (bm25s, Lucene variant) over `tokenize` output. `culture` is ignored: a local corpus is one
    pool, and the query itself names the culture."""

    def __init__(self, docs: list[Document], name: str = "local", *,
                 _index: bm25s.BM25 | None = None) -> None:
        if not docs:
            raise ValueError("BM25Retriever needs at least one document")
        self.name = name
        self.docs = list(docs)
        self.usage = new_usage()
        self.loaded_from_cache = False
        self._bm25 = _index if _index is not None else _build_bm25([tokenize(d.text) for d in self.docs])

    def search(self, query: str, k: int, culture: Culture | None = None) -> list[Document]:
        self.usage["requests"] += 1
        tokens = tokenize(query)
        hits = _top_k(self._bm25.get_scores(tokens), k) if tokens and k > 0 else []
        self.usage["results"] += len(hits)
        if not hits:
            self.usage["empty"] += 1
        return [self.docs[i].model_copy(update={"score": score}) for i, score in hits]


def _bm25s():
    """Import bm25s lazily (numpy/scipy load time) and undo the DEBUG level it sets on its own logger at
    import, which would otherwise print "Building index from tokens" wherever logging is configured."""
    import bm25s

    if logging.getLogger("bm25s").level == logging.DEBUG:
        logging.getLogger("bm25s").setLevel(logging.NOTSET)
    return bm25s


def _build_bm25(corpus_tokens: list[list[str]]) -> bm25s.BM25:
    bm25s = _bm25s()
    if not any(corpus_tokens):
        # bm25s fails on an empty vocabulary with an opaque max() error
        raise ValueError("no document has any searchable word")
    bm25 = bm25s.BM25()
    bm25.index(corpus_tokens, show_progress=False)
    return bm25


def _top_k(scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Indices and scores of the k best non-zero scores. Done here rather than with bm25s.retrieve, whose
    argpartition top-k returns ties in arbitrary order and which raises when k exceeds the corpus."""
    import numpy as np

    order = np.argsort(-scores, kind="stable")[:k]
    return [(int(i), float(scores[i])) for i in order if scores[i] > 0]


# ---------------------------------------------------------------------------------------------- persistence

def build_local_retriever(paths: list[Path], index_dir: Path) -> BM25Retriever:
    """Load the corpus and return its retriever, reusing the index saved in `index_dir` when it was built
    from the same documents with the same tokenizer; otherwise build it and save it (atomically)."""
    paths = [Path(p) for p in paths]
    index_dir = Path(index_dir)
    docs = load_corpus(paths)
    if not docs:
        raise ValueError(f"no documents found in {', '.join(str(p) for p in paths)}")
    fingerprint = corpus_fingerprint(docs)
    meta = read_meta(index_dir)
    if meta is not None and meta.get("fingerprint") == fingerprint:
        try:
            retriever = _load_index(index_dir)
        except (OSError, ValueError, KeyError) as e:
            log.warning("index in %s is unreadable (%s); rebuilding it", index_dir, e)
        else:
            retriever.loaded_from_cache = True
            return retriever
    elif meta is None and index_dir.exists() and any(index_dir.iterdir()):
        # replacing the folder would delete whatever is in it
        raise ValueError(f"{index_dir} exists and is not a retrieval index (no meta.json)")
    retriever = BM25Retriever(docs)
    _save_index(retriever, index_dir, fingerprint)
    log.info("indexed %d passages from %s into %s", len(docs), ", ".join(map(str, paths)), index_dir)
    return retriever


def corpus_fingerprint(docs: list[Document]) -> str:
    """sha256 over the documents themselves (not file mtimes): a touched file keeps its index, while a
    content edit or a change in passage cutting rebuilds it. Includes the tokenizer version."""
    h = hashlib.sha256(f"tokenizer={TOKENIZER_VERSION}\n".encode())
    for d in docs:
        h.update(d.model_dump_json().encode("utf-8") + b"\n")
    return h.hexdigest()


def _load_index(index_dir: Path) -> BM25Retriever:
    bm25s = _bm25s()
    meta = json.loads((index_dir / "meta.json").read_text(encoding="utf-8"))
    docs = read_jsonl(index_dir / "documents.jsonl", Document)
    if len(docs) != meta["n_docs"]:
        raise ValueError(f"documents.jsonl has {len(docs)} documents, meta.json says {meta['n_docs']}")
    bm25 = bm25s.BM25.load(index_dir / "bm25", show_progress=False)
    return BM25Retriever(docs, _index=bm25)


def _save_index(retriever: BM25Retriever, index_dir: Path, fingerprint: str) -> None:
    """Write into a temp sibling folder, then swap it in, so a killed run never leaves half an index."""
    bm25s = _bm25s()
    tmp = temp_sibling(index_dir)
    retriever._bm25.save(tmp / "bm25", show_progress=False)
    write_jsonl(tmp / "documents.jsonl", retriever.docs)
    write_json(tmp / "meta.json", {"fingerprint": fingerprint, "n_docs": len(retriever.docs),
                                   "tokenizer_version": TOKENIZER_VERSION, "bm25s_version": bm25s.__version__,
                                   "passage_chars": [PASSAGE_MIN_CHARS, PASSAGE_MAX_CHARS]})
    # the embeddings check their own fingerprint: keep them across a BM25 rebuild
    swap_in(tmp, index_dir, keep=("dense",))


# ---------------------------------------------------------------------------------------------- tokenize

# Kept short on purpose: BM25's idf already discounts common words, and the corpus is multilingual.
STOPWORDS = frozenset(["a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "is", "it", "its",
                       "of", "on", "or", "that", "the", "this", "to", "was", "were", "with"])

# character unigrams + bigrams for the unspaced scripts and for Hangul (whose words agglutinate particles, so
# "김치를" would not match "김치" as a word)
_CJK = UNSPACED_SCRIPTS + r"\p{Hangul}"
# Marks (\p{M}) belong to words: Bengali vowel signs and viramas are Mn/Mc, and Python's re \w excludes
# them, which would cut "সংস্কৃতি" into pieces.
_TOKEN = regex.compile(rf"(?P<cjk>[{_CJK}]+)|(?P<word>(?:(?![{_CJK}])[\p{{L}}\p{{M}}\p{{N}}])+)")


def tokenize(text: str) -> list[str]:
    """Search tokens: NFKC, case-folded; words are runs of letters, marks and digits; CJK runs (no
    segmenter available) become character unigrams plus bigrams."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(ARABIC_FOLD)
    tokens: list[str] = []
    for m in _TOKEN.finditer(text):
        if m.group("cjk"):
            run = m.group("cjk")
            tokens += list(run)
            tokens += [run[i:i + 2] for i in range(len(run) - 1)]
        elif m.group("word") not in STOPWORDS:
            tokens.append(m.group("word"))
    return tokens


# ---------------------------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m culturemanager.backends.retrieval.bm25",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path, nargs="+", help="corpus files or folders")
    ap.add_argument("query")
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--index-dir", type=Path, help="save / reuse the index here (default: in memory only)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.index_dir:
        retriever = build_local_retriever(args.corpus, args.index_dir)
    else:
        docs = load_corpus(args.corpus)
        if not docs:
            raise SystemExit(f"no documents found in {', '.join(map(str, args.corpus))}")
        retriever = BM25Retriever(docs)
    hits = retriever.search(args.query, args.k)
    if not hits:
        print(f"no passage matches {args.query!r}")
    for rank, doc in enumerate(hits, 1):
        print(f"{rank}. [{doc.score:.2f}] {doc.id}  {doc.title}\n   {' '.join(doc.text.split())[:300]}\n")


if __name__ == "__main__":
    main()
