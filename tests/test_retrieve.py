"""Tests for the offline retrieval backend: tokenization per script, corpus loading, BM25 search, and the
saved index. Small corpora are written in the tests; one test uses the shared narratives corpus if present.

Run: .venv/bin/pytest tests/test_retrieve.py -q
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import pytest

from culturemanager.backends.retrieval.bm25 import BM25Retriever, build_local_retriever, tokenize
from culturemanager.backends.retrieval.corpus import PASSAGE_MAX_CHARS, load_corpus, split_passages
from culturemanager.backends.retrieval.retriever import Retriever
from culturemanager.records import Document

DATA = Path(os.environ.get("CULTUREMANAGER_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

CORPUS = {
    "arab.md": "# Arab culture\n\nRamadan is the holy month of fasting; families break the fast together at "
               "sunset with dates and water.\n\n"
               "رمضان شهر الصيام عند المسلمين، ويجتمع الناس على الإفطار بعد غروب الشمس.",
    "china.txt": "The Spring Festival is the most important traditional holiday in China; families eat "
                 "dumplings on New Year's Eve.\n\n春节是中国最重要的传统节日，人们在除夕吃饺子。",
    "bengal.txt": "Pohela Boishakh is the first day of the Bengali calendar, celebrated with fairs and new "
                  "clothes.\n\nপহেলা বৈশাখ বাংলা নববর্ষের প্রথম দিন। মানুষ নতুন পোশাক পরে মেলায় যায়।",
    "spain.txt": "Flamenco is an art form of song, guitar and dance from Andalusia, performed at festivals "
                 "and in small tablaos.",
}


def write_corpus(root: Path, files: dict[str, str] = CORPUS) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


# ---------------------------------------------------------------------------------------------- tokenize

def test_tokenize_bengali_keeps_vowel_signs_inside_words():
    assert tokenize("বাংলা সংস্কৃতি") == ["বাংলা", "সংস্কৃতি"]
    # why the module uses \p{M}: Python's re \w stops at the vowel signs and cuts the word
    assert len(re.findall(r"\w+", "সংস্কৃতি")) > 1


def test_tokenize_arabic_words_and_diacritics():
    assert tokenize("الثقافة العربية؟") == ["الثقافة", "العربية"]
    # short-vowel marks, shadda and tatweel are dropped, hamza alef folded, so spellings match
    assert tokenize("الثَّقَافَة") == tokenize("الثقـافة") == ["الثقافة"]
    assert tokenize("أحمد") == tokenize("احمد")
    assert tokenize("ﻛﺘﺎﺏ") == ["كتاب"]  # presentation forms, folded by NFKC


def test_tokenize_cjk_unigrams_and_bigrams():
    assert tokenize("中国文化") == ["中", "国", "文", "化", "中国", "国文", "文化"]
    assert tokenize("한국 문화") == ["한", "국", "한국", "문", "화", "문화"]
    assert tokenize("iPhone手机") == ["iphone", "手", "机", "手机"]
    assert "コー" in tokenize("コーヒー")  # the long-vowel mark stays inside the katakana run
    assert tokenize("文化。") == ["文", "化", "文化"]


def test_tokenize_latin_casefold_nfkc_stopwords():
    assert tokenize("The Culture of SPAIN, in the 1990s!") == ["culture", "spain", "1990s"]
    assert tokenize("Straße ＡＢＣ") == ["strasse", "abc"]
    assert tokenize("café Café") == ["café", "café"]
    assert tokenize("  ... !!! ") == []


# ---------------------------------------------------------------------------------------------- passages

def paragraph(i: int, n: int = 300) -> str:
    return (f"Paragraph {i} " + "word " * n)[:n].strip() + "."


def test_split_passages_packs_whole_paragraphs():
    paras = [paragraph(i) for i in range(7)]
    passages = split_passages("\n\n".join(paras))
    assert len(passages) > 1
    assert all(len(p) <= PASSAGE_MAX_CHARS for p in passages)
    assert [q for p in passages for q in p.split("\n\n")] == paras  # nothing cut, nothing lost, in order
    assert all(len(p) >= 600 for p in passages[:-1])


def test_split_passages_cuts_long_paragraphs_at_sentence_ends():
    english = " ".join(f"Sentence number {i} is here to make the paragraph long." for i in range(60))
    chinese = "".join(f"这是第{i}个句子，用来让段落变得很长很长很长很长很长。" for i in range(80))
    arabic = " ".join("هل هذه جملة طويلة عن الثقافة العربية والتقاليد القديمة؟" for _ in range(40))
    for text, end in ((english, "."), (chinese, "。"), (arabic, "؟")):
        passages = split_passages(text)
        assert len(passages) > 1
        assert all(len(p) <= PASSAGE_MAX_CHARS and p.endswith(end) for p in passages)
        assert re.sub(r"\s", "", "".join(passages)) == re.sub(r"\s", "", text)


def test_split_passages_hard_splits_unpunctuated_text():
    passages = split_passages("字" * 2500)
    assert [len(p) for p in passages] == [1000, 1000, 500]


# ---------------------------------------------------------------------------------------------- load_corpus

def test_load_corpus_txt_md_titles_ids_and_recursion(tmp_path, caplog):
    write_corpus(tmp_path, {**CORPUS, "sub/deep.txt": "Nested file.", "notes.csv": "a,b",
                            ".hidden.txt": "ignored", "empty.txt": "\n\n"})
    with caplog.at_level(logging.WARNING, logger="culturemanager.backends.retrieval.bm25"):
        docs = load_corpus([tmp_path])
    assert [d.id for d in docs] == ["arab.md#0", "bengal.txt#0", "china.txt#0", "spain.txt#0",
                                    "sub/deep.txt#0"]
    assert docs[0].title == "Arab culture" and docs[1].title == "bengal"
    assert docs[4].source == "sub/deep.txt"
    assert "notes.csv" in caplog.text and "skipped 1 file" in caplog.text
    assert load_corpus([tmp_path / "spain.txt"])[0].id == "spain.txt#0"  # a file: source is its name


def test_load_corpus_passage_ids_count_up(tmp_path):
    write_corpus(tmp_path, {"long.md": "\n\n".join(paragraph(i) for i in range(10))})
    docs = load_corpus([tmp_path])
    assert len(docs) > 2
    assert [d.id for d in docs] == [f"long.md#{n}" for n in range(len(docs))]
    assert {d.title for d in docs} == {"long"}


def test_load_corpus_html(tmp_path):
    page = ("<html><head><title> Doğu &amp; Batı </title><style>p{}</style><script>var x = 'secret';</script>"
            "</head><body><h1>Turkish tea</h1><p>Tea is served in <b>tulip</b> glasses.</p>"
            "<div>Çay bahçesi</div></body></html>")
    write_corpus(tmp_path, {"page.html": page, "bare.htm": "<p>No title here</p>"})
    docs = load_corpus([tmp_path])
    page = next(d for d in docs if d.source == "page.html")
    assert page.title == "Doğu & Batı"
    assert page.text == "Turkish tea\n\nTea is served in tulip glasses.\n\nÇay bahçesi"
    assert next(d for d in docs if d.source == "bare.htm").title == "bare"


def test_load_corpus_jsonl(tmp_path):
    lines = [{"text": "First record.", "title": "One", "url": "https://example.org/1"},
             {"text": "Second record.", "id": "custom-7", "source": "web", "extra": 1},
             {"text": "   "}]
    write_corpus(tmp_path, {"web.jsonl": "\n".join(json.dumps(x) for x in lines) + "\n\n"})
    docs = load_corpus([tmp_path])
    assert docs == [Document(id="web.jsonl#0", title="One", text="First record.", source="web.jsonl",
                             url="https://example.org/1"),
                    Document(id="custom-7", text="Second record.", source="web")]


@pytest.mark.parametrize("bad", ['{"text": "ok"', '["a list"]', '{"title": "no text"}', '{"text": 3}',
                                 '{"text": "t", "url": 5}'])
def test_load_corpus_jsonl_malformed_line_names_file_and_line(tmp_path, bad):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n\n' + bad + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{path}:3:")):
        load_corpus([tmp_path])


def test_load_corpus_empty_and_missing(tmp_path):
    assert load_corpus([tmp_path]) == []
    with pytest.raises(FileNotFoundError):
        load_corpus([tmp_path / "nope"])


# ---------------------------------------------------------------------------------------------- BM25

@pytest.mark.parametrize("query, source", [
    ("fasting month Ramadan", "arab.md"),
    ("الصِّيام في رمضان", "arab.md"),
    ("春节吃饺子", "china.txt"),
    ("Spring Festival dumplings", "china.txt"),
    ("বাংলা নববর্ষ", "bengal.txt"),
    ("flamenco guitar", "spain.txt"),
])
def test_bm25_finds_the_right_culture(tmp_path, query, source):
    retriever: Retriever = BM25Retriever(load_corpus([write_corpus(tmp_path)]))
    hits = retriever.search(query, k=2)
    assert hits[0].source == source
    assert hits[0].score > 0 and all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    assert retriever.usage == {"requests": 1, "results": len(hits), "errors": 0, "empty": 0}


def test_bm25_k_larger_than_corpus_skips_zero_scores_and_copies(tmp_path):
    docs = load_corpus([write_corpus(tmp_path)])
    retriever = BM25Retriever(docs)
    hits = retriever.search("families", k=50)
    assert {d.source for d in hits} == {"arab.md", "china.txt"}  # the others score zero
    assert all(d.score == 0.0 for d in retriever.docs)  # results are copies
    assert retriever.search("families", k=0) == []


def test_bm25_empty_and_unknown_queries_are_counted(tmp_path):
    retriever = BM25Retriever(load_corpus([write_corpus(tmp_path)]))
    assert retriever.search("the of ?!", k=5) == []
    assert retriever.search("zeppelin", k=5) == []
    assert retriever.usage == {"requests": 2, "results": 0, "errors": 0, "empty": 2}


def test_bm25_ties_keep_corpus_order():
    docs = [Document(id=f"d{i}", text="same words here" if i % 2 else "other text", source="s")
            for i in range(40)]
    hits = BM25Retriever(docs).search("words", k=5)
    assert [d.id for d in hits] == ["d1", "d3", "d5", "d7", "d9"]


def test_bm25_rejects_corpus_without_words():
    with pytest.raises(ValueError):
        BM25Retriever([])
    with pytest.raises(ValueError, match="searchable"):
        BM25Retriever([Document(id="x", text="...", source="s")])


# ---------------------------------------------------------------------------------------------- persistence

def test_build_local_retriever_saves_reuses_and_rebuilds(tmp_path):
    corpus, index = write_corpus(tmp_path / "corpus"), tmp_path / "index"
    first = build_local_retriever([corpus], index)
    assert not first.loaded_from_cache
    assert {p.name for p in index.iterdir()} == {"bm25", "documents.jsonl", "meta.json"}
    meta = json.loads((index / "meta.json").read_text())
    assert meta["n_docs"] == len(first.docs) and meta["tokenizer_version"]
    mtime = (index / "meta.json").stat().st_mtime_ns

    second = build_local_retriever([corpus], index)
    assert second.loaded_from_cache
    assert (index / "meta.json").stat().st_mtime_ns == mtime
    assert second.docs == first.docs
    assert second.search("春节", 3) == first.search("春节", 3)

    (corpus / "spain.txt").write_text("Paella is a rice dish from Valencia.", encoding="utf-8")
    third = build_local_retriever([corpus], index)
    assert not third.loaded_from_cache
    assert third.search("paella", 1)[0].source == "spain.txt"
    assert build_local_retriever([corpus], index).loaded_from_cache
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "index"]  # no temp folders left


def test_build_local_retriever_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no documents found in"):
        build_local_retriever([tmp_path / "empty"], tmp_path / "index")
    corpus = write_corpus(tmp_path / "corpus")
    busy = write_corpus(tmp_path / "busy", {"keep.txt": "not an index"})
    with pytest.raises(ValueError, match="not a retrieval index"):
        build_local_retriever([corpus], busy)
    assert (busy / "keep.txt").exists()


def test_build_local_retriever_rebuilds_a_broken_index(tmp_path, caplog):
    corpus, index = write_corpus(tmp_path / "corpus"), tmp_path / "index"
    build_local_retriever([corpus], index)
    (index / "documents.jsonl").write_text("{}\n")
    with caplog.at_level(logging.WARNING, logger="culturemanager.backends.retrieval.bm25"):
        again = build_local_retriever([corpus], index)
    assert not again.loaded_from_cache and "rebuilding" in caplog.text
    assert build_local_retriever([corpus], index).loaded_from_cache


# ---------------------------------------------------------------------------------------------- real corpus

@pytest.fixture(scope="module")
def narratives(tmp_path_factory) -> BM25Retriever:
    retriever = build_local_retriever([DATA / "narratives"], tmp_path_factory.mktemp("narratives") / "index")
    assert len({d.source for d in retriever.docs}) == 10
    return retriever


@pytest.mark.skipif(not (DATA / "narratives").is_dir(), reason="shared narratives corpus not present")
@pytest.mark.parametrize("query, sources, top1", [
    # "Ramadan" and "fasting" do not occur in these texts; "Islamic" carries the query into the top 5
    ("Ramadan fasting Islamic holidays", {"arabic.txt", "turkish.txt"}, False),
    ("Islamic mosque architecture calligraphy", {"arabic.txt", "turkish.txt"}, True),
    ("kimchi fermented side dish", {"korean.txt"}, True),
    ("Confucianism tea ceremony dynasty", {"chinese.txt"}, True),
    ("Rabindranath Tagore Baul songs", {"bengali.txt"}, True),
    ("samba carnival fado", {"portuguese.txt"}, True),
])
def test_real_narratives_corpus(narratives, query, sources, top1):
    hits = narratives.search(query, k=5)
    assert sources & {d.source for d in hits}
    assert hits[0].source in sources or not top1


def test_several_corpus_folders_keep_ids_unique(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "README.md").write_text(f"# {name}\n\nSome text about {name}.", encoding="utf-8")
    docs = load_corpus([tmp_path / "a", tmp_path / "b"])
    assert sorted(d.id for d in docs) == ["a/README.md#0", "b/README.md#0"]
