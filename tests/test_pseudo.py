"""Tests for the pseudo-labelled real texts (stages/pseudo.py, `synthesis.pseudo_label`): which real texts are
pooled, which ends of the probe's scores become labels, that the labels follow what the synthetic samples' labels
carry (a probe on a tiny real model's hidden states), provenance, and the groups it skips; through the synthesize
stage too (a fake generator writes the synthetic samples, the real posts come from the retrieved documents).

Run: .venv/bin/pytest tests/test_pseudo.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_select import sample

from culturemanager.backends.llm import Completion, FakeBackend
from culturemanager.config import Config
from culturemanager.records import Document, Material
from culturemanager.stages.pseudo import confident_ends, posts_of, pseudo_label, real_pool

# the synthetic samples say: "odio ..." is hate speech, "paella ..." is not
HATE = ["odio odio a todos", "odio a los vecinos", "odio odio odio", "odio a la gente de fuera", "te odio mucho"]
MILD = ["paella con amigos", "la paella del domingo", "paella paella rica", "me gusta la paella", "paella y sol"]
# real texts nobody labelled: posts of a retrieved page and the task's demonstrations
POSTS = ["odio a los de siempre", "paella en la playa", "odio todo esto", "una paella grande"]
DEMOS = ["odio a mi jefe", "paella de marisco"]


def config(tmp_path: Path, model: Path | str = "unused", **pseudo) -> Config:
    return Config.model_validate({
        "run": {"dir": str(tmp_path / "run")}, "generator": {"backend": "fake"},
        "target": {"model": str(model), "device": "cpu", "batch_size": 4},
        "cultures": [{"name": "Spanish", "language": "es"}],
        "tasks": [{"id": "hate", "label": "hate speech"},
                  {"id": "which", "label": "which dish", "format": "multiple_choice", "labels": ["a", "b"]}],
        "synthesis": {"pseudo_label": {"enabled": True, "min_per_label": 3, **pseudo}}})


def material(posts: list[str], task: str = "hate", culture: str = "Spanish") -> Material:
    doc = Document(id="corpus.jsonl:7", text="\n\n".join(posts), source="corpus.jsonl", url="https://x.example/p")
    return Material(id="mat1", culture=culture, task=task, mode="task_specific", query_id="q1",
                    query="hate speech in Spain", text="\n\n".join(posts), documents=[doc], summarized=False)


def test_confident_ends_takes_each_end_and_never_overlaps():
    assert confident_ends([0.9, 0.1, 0.5, 0.2, 0.8], 0.4) == ([1, 3], [4, 0])
    assert confident_ends([0.3, 0.7], 0.5) == ([0], [1])
    assert confident_ends([0.3, 0.7, 0.5], 0.5) == ([0], [1])  # never the middle one twice
    assert confident_ends([0.3, 0.7, 0.5, 0.6], 0.01) == ([0], [1])  # at least one of each


def test_posts_are_a_documents_paragraphs_within_the_length_bounds():
    m = material(["odio  a\ntodos", "ok", "x" * 700, "paella rica"])
    assert posts_of(m, 5, 600) == ["odio a todos", "paella rica"]


def test_the_pool_takes_demonstrations_and_posts_once_each_and_honours_sources_and_limit(tmp_path):
    cfg = config(tmp_path)
    task = cfg.task("hate")
    pool = real_pool(cfg, task, "Spanish", [material(POSTS + ["odio a mi jefe"])], DEMOS)
    assert [t for t, _ in pool] == DEMOS + POSTS  # the demonstration that is also a post counts once
    assert [m is None for _, m in pool] == [True, True] + [False] * 4
    only_posts = real_pool(config(tmp_path, sources=["material"]), task, "Spanish", [material(POSTS)], DEMOS)
    assert [(t, m.id) for t, m in only_posts] == [(t, "mat1") for t in POSTS]
    assert real_pool(cfg, task, "Turkish", [material(POSTS)], []) == []  # another culture's material is not used
    limited = real_pool(config(tmp_path, pool_limit=3), task, "Spanish", [material(POSTS)], DEMOS)
    assert len(limited) == 3 and {t for t, _ in limited} <= {t for t, _ in pool}
    assert limited == real_pool(config(tmp_path, pool_limit=3), task, "Spanish", [material(POSTS)], DEMOS)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from conftest import build_tiny_model

    from culturemanager.config import TargetConfig
    from culturemanager.engine import Engine

    folder = build_tiny_model(tmp_path_factory.mktemp("pseudo"))
    return Engine.load(TargetConfig(model=str(folder), device="cpu", batch_size=4))


def synthetic() -> list:
    return [sample(t, label="1") for t in HATE] + [sample(t, label="0") for t in MILD]


def test_real_texts_get_the_label_the_synthetic_samples_teach(tmp_path, engine):
    cfg = config(tmp_path, engine.target.model, share=0.5)
    out, counts = pseudo_label(cfg, synthetic(), [material(POSTS)], {"hate": {"Spanish": DEMOS}}, engine)
    labels = {s.text: s.label for s in out}
    assert labels == {"odio a mi jefe": "1", "odio a los de siempre": "1", "odio todo esto": "1",
                      "paella de marisco": "0", "paella en la playa": "0", "una paella grande": "0"}
    assert counts["pseudo_kept"] == 6 and counts["pseudo_kept[Spanish]"] == 6
    post = next(s for s in out if s.text == "odio todo esto")
    check = post.provenance.checks[0]
    assert check.name == "probe" and check.by == engine.target.model and check.verdict == "1"
    assert 0.5 < check.scores["p"] <= 1.0
    assert post.provenance.material_id == "mat1" and post.provenance.source_ids == ["corpus.jsonl:7"]
    assert post.provenance.source_urls == ["https://x.example/p"] and post.provenance.mode == "task_specific"
    assert post.provenance.generator == f"probe:{engine.target.model}"
    demo = next(s for s in out if s.text == "paella de marisco")
    assert demo.provenance.mode == "demonstration" and demo.provenance.material_id.startswith("demonstration:")
    assert demo.provenance.checks[0].scores["p"] < 0.5


def test_groups_without_enough_samples_of_each_label_or_without_texts_are_skipped_and_counted(tmp_path, engine):
    cfg = config(tmp_path, engine.target.model)
    few = [sample(t, label="1") for t in HATE] + [sample(t, label="0") for t in MILD[:2]]
    out, counts = pseudo_label(cfg, few, [material(POSTS)], {}, engine)
    assert out == [] and counts == {"pseudo_skipped_few_samples": 1}
    out, counts = pseudo_label(cfg, synthetic(), [], {}, engine)
    assert out == [] and counts == {"pseudo_skipped_no_texts": 1}
    choice = [sample(t, label="a", task="which") for t in HATE] + [sample(t, label="b", task="which") for t in MILD]
    out, counts = pseudo_label(cfg, choice, [material(POSTS, task="which")], {}, engine)
    assert out == [] and not counts  # only binary tasks are pseudo-labelled


class Writer(FakeBackend):
    """The fake LLM, except that a synthesis call is answered with the synthetic samples above."""

    def complete(self, requests):
        items = [{"text": t, "label": "1"} for t in HATE] + [{"text": t, "label": "0"} for t in MILD]
        return [Completion("\n".join(json.dumps(x) for x in items)) for _ in requests]


def test_through_the_synthesize_stage(tmp_path, engine):
    """The synthetic samples come from the (fake) generator; the material's posts come back labelled beside them,
    and a post equal to an evaluation input is dropped as a leak."""
    from culturemanager.backends.llm import CachedLLM
    from culturemanager.records import Sample, read_jsonl, write_jsonl
    from culturemanager.rundir import RunDir
    from culturemanager.stages.synthesize import synthesize

    evaluation = tmp_path / "eval.jsonl"
    evaluation.write_text(json.dumps({"text": "una paella grande", "label": "0"}) + "\n")
    cfg = Config.model_validate({
        "run": {"dir": str(tmp_path / "run")}, "generator": {"backend": "fake"},
        "target": {"model": engine.target.model, "device": "cpu"},
        "cultures": [{"name": "Spanish", "language": "es"}],
        "tasks": [{"id": "hate", "label": "hate speech", "evaluation": [{"path": str(evaluation)}]}],
        "synthesis": {"samples_per_material": 10, "label_mode": "free",
                      "pseudo_label": {"enabled": True, "share": 0.5, "min_per_label": 3,
                                       "sources": ["material"]}}})
    rd = RunDir(cfg.run.dir)
    rd.root.mkdir(parents=True)
    write_jsonl(rd.materials, [material(POSTS)])
    by_culture, counts = synthesize(cfg, rd, CachedLLM(Writer(), rd.llm_cache, rd.calls))
    kept = by_culture["Spanish"]
    real = {s.text: s.label for s in kept if s.provenance.generator.startswith("probe:")}
    assert real == {"odio a los de siempre": "1", "odio todo esto": "1", "paella en la playa": "0"}
    assert counts["pseudo_kept"] == 4 and counts["leaks_evaluation"] == 1
    assert len(kept) == len(HATE) + len(MILD) + 3
    assert {s.text for s in read_jsonl(rd.samples("Spanish"), Sample)} == {s.text for s in kept}
