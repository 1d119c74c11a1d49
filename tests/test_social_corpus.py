"""Tests for the social-media corpus builder (bench/social_corpus.py) and `search.by_culture`: which files it leaves
out and why, which posts it drops (leaks of any benchmark input, repeats, non-text) and counts, that no label
reaches a page, that the local corpus reader takes the pages, and that a culture's queries stay on its folder.

Run: .venv/bin/pytest tests/test_social_corpus.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from culturemanager.backends.retrieval.corpus import load_corpus
from culturemanager.bench.social_corpus import build_social_corpus
from culturemanager.config import Config, Culture
from culturemanager.errors import ConfigError
from culturemanager.rundir import RunDir
from culturemanager.stages.search import make_one

BENCH = ["Bu bir test cümlesi ve çok uzun bir cümle olmalı ki sekiz kelime paylaşsın",
         "İkinci değerlendirme girdisi burada duruyor"]
OTHER_BENCH = ["Una frase de evaluación de otra cultura que también está protegida aquí"]
CLEAN = [f"temiz gönderi numara {i} hakkında bir şey" for i in range(20)]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def data(tmp_path) -> Path:
    root = tmp_path / "data"
    tasks = [{"id": "tr-x", "culture": "Turkish", "task": "abuse", "file": "culturellm/Turkey/Bench/task.jsonl",
              "text_field": "tweet", "label_field": "label", "positive_labels": ["OFF"], "negative_labels": ["NOT"]},
             {"id": "es-x", "culture": "Spanish", "task": "abuse", "file": "culturellm/Spanish/B/task.jsonl",
              "text_field": "data", "label_field": "label", "positive_labels": ["1"], "negative_labels": ["0"]}]
    (root).mkdir()
    (root / "tasks.json").write_text(json.dumps({"prompt_template": "{task} {input}", "tasks": tasks}))
    write_jsonl(root / tasks[0]["file"], [{"tweet": t, "label": "OFF"} for t in BENCH])
    write_jsonl(root / tasks[1]["file"], [{"data": t, "label": "1"} for t in OTHER_BENCH])
    turkey = root / "culturellm" / "Turkey"
    write_jsonl(turkey / "Bench" / "relabelled.jsonl", [{"tweet": "başka bir gönderi", "label": "x"}])
    write_jsonl(turkey / "Relabel" / "r.jsonl", [{"tweet": BENCH[1], "label": "1"}, {"tweet": CLEAN[0], "label": "0"}])
    posts = [{"tweet": t, "label": "OFF" if i % 2 else "NOT"} for i, t in enumerate(CLEAN)]
    posts += [{"tweet": BENCH[1].upper() + "!!", "label": "OFF"},  # equal once normalised
              {"tweet": "öncesi " + " ".join(BENCH[0].split()[2:10]) + " sonrası", "label": "OFF"},  # an 8-gram
              {"tweet": OTHER_BENCH[0], "label": "NOT"},  # another culture's benchmark input: protected too
              {"tweet": CLEAN[3], "label": "NOT"},  # a repeat
              {"tweet": 12345, "label": "NOT"}, {"id": 7, "label": "NOT"}]  # no text
    write_jsonl(turkey / "Posts" / "a.jsonl", posts)
    write_jsonl(turkey / "More" / "b.jsonl", [{"data": CLEAN[5], "label": "1"}, {"data": "yepyeni bir gönderi"}])
    write_jsonl(turkey / "Finetune" / "WVQ.jsonl", [{"messages": []}])
    return root


def test_builder_leaves_out_task_files_and_their_datasets_and_drops_leaks(data, tmp_path):
    out = tmp_path / "corpus"
    m = build_social_corpus(data, out, posts_per_page=4)
    assert m["left_out_files"] == {
        "culturellm/Spanish/B/task.jsonl": "a benchmark task's file",
        "culturellm/Turkey/Bench/relabelled.jsonl": "in a benchmark task's dataset folder",
        "culturellm/Turkey/Bench/task.jsonl": "a benchmark task's file",
        "culturellm/Turkey/Relabel/r.jsonl": "shares 50% of its texts with benchmark inputs"}
    tr = m["cultures"]["Turkish"]
    assert tr["dropped"] == {"leaks_evaluation": 3, "duplicate": 2, "not_text": 2}
    assert tr["posts"] == 21 and tr["files"]["culturellm/Turkey/Posts/a.jsonl"]["pages"] == 5  # 20 posts / 4
    assert m["cultures"]["Spanish"]["posts"] == 0
    pages = [json.loads(line) for f in sorted((out / "Turkish").glob("*.jsonl")) for line in f.read_text().splitlines()]
    text = "\n".join(p["text"] for p in pages)
    assert "yepyeni bir gönderi" in text and all(c in text for c in CLEAN)
    assert "OFF" not in text and '"label"' not in json.dumps(pages)  # labels dropped
    assert "İkinci" not in text and "sekiz" not in text and "evaluación" not in text
    docs = load_corpus([out / "Turkish"])  # the local corpus reader takes the pages as they are
    assert docs and all(d.text for d in docs)


def config(tmp_path: Path, corpus: Path, by_culture: bool) -> Config:
    return Config.model_validate({
        "run": {"dir": str(tmp_path / "run")}, "generator": {"backend": "fake"},
        "cultures": [{"name": "Spanish", "language": "es"}, {"name": "Turkish", "language": "tr"}],
        "tasks": [{"id": "hate", "label": "hate speech"}],
        "search": {"corpus": [str(corpus)], "by_culture": by_culture}})


def test_by_culture_keeps_a_cultures_queries_on_its_own_folder(tmp_path):
    corpus = tmp_path / "corpus"
    write_jsonl(corpus / "spanish" / "p.jsonl", [{"text": "insulto insulto insulto gitano", "title": "es"}])
    write_jsonl(corpus / "Turkish" / "p.jsonl", [{"text": "hakaret ve bir insulto", "title": "tr"},
                                                 {"text": "çay ve kahve", "title": "tr2"}])
    turkish, spanish = Culture(name="Turkish", language="tr"), Culture(name="Spanish", language="es")
    mixed = make_one(config(tmp_path / "a", corpus, False), RunDir(tmp_path / "a"), "local")
    assert mixed.search("insulto gitano", 1, turkish)[0].title == "es"  # the mixed corpus: the other culture's post
    by = make_one(config(tmp_path / "b", corpus, True), RunDir(tmp_path / "b"), "local")
    assert [d.title for d in by.search("insulto gitano", 3, turkish)] == ["tr"]
    assert [d.title for d in by.search("insulto gitano", 3, spanish)] == ["es"]
    assert by.usage["requests"] == 2
    with pytest.raises(KeyError):
        by.search("insulto", 3, Culture(name="Arabic"))


def test_by_culture_without_a_cultures_folder_is_an_error(tmp_path):
    corpus = tmp_path / "corpus"
    write_jsonl(corpus / "Spanish" / "p.jsonl", [{"text": "hola"}])
    with pytest.raises(ConfigError, match="no folder named 'Turkish'"):
        make_one(config(tmp_path, corpus, True), RunDir(tmp_path), "local")
