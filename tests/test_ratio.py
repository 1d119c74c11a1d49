"""Tests for the likelihood-ratio label check (stages/ratio.py, `synthesis.ratio_check`): its prompts and verdict
rule, the ratio's sign following the description a (tiny, trained-in-the-test) model was made to prefer, which
samples it drops and why, and the ratio in a kept sample's provenance, through the synthesize stage too.

Run: .venv/bin/pytest tests/test_ratio.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_select import sample

from culturemanager.config import Config, Task
from culturemanager.stages.ratio import build_ratio_prefixes, ratio_label, ratio_scores

HATE = Task(id="hate", label="hate speech")
POS, NEG = build_ratio_prefixes("hate speech", "Spanish")
HATEFUL, MILD, BOTH = "odio a todos", "me gusta la paella", "gracias por todo"


def test_prefixes_name_the_task_and_language():
    assert build_ratio_prefixes("spam", "Turkish") == ("A social media post with spam:\n",
                                                       "An ordinary social media post:\n")
    pos, neg = build_ratio_prefixes("spam", "Turkish", "language")
    assert "in Turkish with spam" in pos and "in Turkish" in neg and "spam" not in neg
    assert build_ratio_prefixes("spam", "Turkish", "contrast")[1] == "A social media post without spam:\n"


@pytest.mark.parametrize("ratio, margin, label", [(0.3, 0.0, "1"), (-0.3, 0.0, "0"), (0.3, 0.5, None),
                                                  (-0.5, 0.5, None), (0.0, 0.0, None)])
def test_ratio_label(ratio, margin, label):
    assert ratio_label(ratio, HATE, margin) == label


@pytest.fixture(scope="module")
def preferring_model(tmp_path_factory) -> Path:
    """The tiny llama trained a few steps on "positive description + hateful text" and "negative description +
    mild text", and on a third text after both: it is made to expect the hateful text after the positive
    description, the mild one after the negative, and the third as much after either."""
    import torch
    from conftest import build_tiny_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = build_tiny_model(tmp_path_factory.mktemp("preferring"))
    model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    batch = tok([POS + HATEFUL, NEG + MILD, POS + BOTH, NEG + BOTH], return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(60):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(folder)
    return folder


def engine_for(folder: Path):
    from culturemanager.config.settings import TargetConfig
    from culturemanager.engine import Engine

    return Engine.load(TargetConfig(model=str(folder), device="cpu", batch_size=3))


def test_ratio_sign_follows_the_description_the_model_prefers(preferring_model):
    scores = ratio_scores(engine_for(preferring_model), [(POS, NEG, HATEFUL), (POS, NEG, MILD)])
    assert scores[0] > 0.5 and scores[1] < -0.5
    # swapping the descriptions flips the sign: the ratio reads the descriptions, not the text alone
    swapped = ratio_scores(engine_for(preferring_model), [(NEG, POS, HATEFUL)])
    assert swapped[0] == pytest.approx(-scores[0], abs=1e-4)


def test_continuation_logprobs_is_per_token_and_batch_independent(preferring_model):
    engine = engine_for(preferring_model)
    alone, _ = engine.continuation_logprobs([POS], [HATEFUL], 64)
    mixed, cut = engine.continuation_logprobs([NEG, POS, POS, NEG], [MILD * 3, HATEFUL, "", HATEFUL], 4)
    cut_alone, _ = engine.continuation_logprobs([POS], [HATEFUL], 4)
    assert cut[0] and cut[1] and not cut[2]  # a text over max_tokens is cut and says so
    assert mixed[2] == 0.0  # an empty text scores nothing
    assert mixed[1] == pytest.approx(float(cut_alone[0]), abs=1e-4)  # padding beside it changes nothing
    assert float(alone[0]) < 0 and float(alone[0]) != pytest.approx(float(cut_alone[0]))


def config(tmp_path: Path, model: Path, margin: float) -> Config:
    return Config.model_validate({
        "run": {"dir": str(tmp_path / "run")}, "generator": {"backend": "fake"},
        "target": {"model": str(model), "device": "cpu"},
        "cultures": [{"name": "Spanish", "language": "es"}],
        "tasks": [{"id": "hate", "label": "hate speech"},
                  {"id": "which", "label": "which dish", "format": "multiple_choice", "labels": ["a", "b"]}],
        "synthesis": {"ratio_check": {"enabled": True, "margin": margin}}})


def test_check_drops_disagreeing_and_undecided_samples_and_records_the_ratio(tmp_path, preferring_model):
    from culturemanager.stages.checks import check_samples

    samples = [sample(HATEFUL, label="1"), sample(HATEFUL, label="0"), sample(MILD, label="0"),
               sample(MILD, label="1"), sample(BOTH, label="1"), sample(MILD, label="a", task="which")]
    engine = engine_for(preferring_model)
    both = ratio_scores(engine, [(POS, NEG, BOTH)])[0]
    margin = abs(both) + 1e-3  # the text that fits both descriptions sits near zero
    assert margin < 0.5
    kept, dropped, counts = check_samples(config(tmp_path, preferring_model, margin), None, samples, {}, None,
                                          engine)
    assert [(s.text, s.label) for s in kept] == [(HATEFUL, "1"), (MILD, "0"), (MILD, "a")]
    assert [(d.text, d.label, str(d.reason)) for d in dropped] == [
        (HATEFUL, "0", "ratio_disagrees"), (MILD, "1", "ratio_disagrees"), (BOTH, "1", "ratio_near_zero")]
    assert counts["ratio_skipped_not_binary"] == 1
    check = kept[0].provenance.checks[0]
    assert check.name == "ratio" and check.by == str(preferring_model) and check.verdict == "1"
    assert check.scores["ratio"] > 0.5 and kept[1].provenance.checks[0].scores["ratio"] < -0.5
    assert not kept[2].provenance.checks  # not scored: not a binary task


def test_median_center_removes_a_constant_lean(tmp_path, preferring_model):
    """Centred on the median of its culture x task, a ratio that leans positive for every text still splits the
    samples: the lean is a property of the description pair, not of the texts."""
    from culturemanager.stages.ratio import centered, ratio_check

    assert centered([("a", "t")] * 3 + [("b", "t")], [1.0, 2.0, 4.0, -5.0]) == [-1.0, 0.0, 2.0, 0.0]
    cfg = config(tmp_path, preferring_model, 0.0)
    cfg.synthesis.ratio_check.center = "median"
    samples = [sample(HATEFUL, label="1"), sample(BOTH, label="1"), sample(MILD, label="0"),
               sample(HATEFUL, label="1", culture="Turkish")]
    cfg.cultures.append(cfg.cultures[0].model_copy(update={"name": "Turkish"}))
    out, _ = ratio_check(cfg, samples, engine_for(preferring_model))
    kinds = [(type(o).__name__, getattr(o, "reason", None)) for o in out]
    # Spanish: HATEFUL above the median (BOTH), MILD below it, BOTH at it (near zero); Turkish: alone, at its median
    assert kinds == [("Sample", None), ("DroppedSample", "ratio_near_zero"), ("Sample", None),
                     ("DroppedSample", "ratio_near_zero")]


def test_check_loads_another_scoring_model_by_name(tmp_path, preferring_model, tiny_model):
    from culturemanager.stages.ratio import ratio_check, scoring_target

    cfg = config(tmp_path, tiny_model, 0.0)
    cfg.synthesis.ratio_check.model = str(preferring_model)
    assert scoring_target(cfg).model == str(preferring_model) and scoring_target(cfg).device == "cpu"
    out, _ = ratio_check(cfg, [sample(HATEFUL, label="1"), sample(MILD, label="1")])
    assert [type(o).__name__ for o in out] == ["Sample", "DroppedSample"]


def test_a_relative_scoring_model_path_is_the_config_files(tmp_path):
    from conftest import write_task

    from culturemanager.config import load_config

    (tmp_path / "scorer").mkdir()
    path = write_task(tmp_path, tmp_path / "unused")
    cfg = load_config(path, ["synthesis.ratio_check.model=./scorer"])
    assert cfg.synthesis.ratio_check.model == str(path.parent / "scorer")
    assert load_config(path, []).synthesis.ratio_check.model == "target"


def test_synthesize_stage_counts_ratio_drops_and_writes_them(tmp_path, tiny_model):
    """The stage's call site: every sample is scored by the run's target; drops land in dropped.jsonl and the
    manifest's counts, kept samples carry their ratio."""
    from conftest import write_task

    from culturemanager.config import load_config
    from culturemanager.pipeline import run

    cfg = load_config(write_task(tmp_path, tiny_model),
                      ["synthesis.ratio_check.enabled=true", "synthesis.ratio_check.margin=0.0002"])
    counts = run(cfg, ["queries", "search", "synthesize"], progress=False)["synthesize"]
    dropped = [json.loads(line) for line in (cfg.run.dir / "samples" / "dropped.jsonl").read_text().splitlines()]
    kept = [json.loads(line) for c in ("Spanish", "Turkish")
            for line in (cfg.run.dir / "samples" / f"{c}.jsonl").read_text().splitlines()]
    ratio_drops = [d for d in dropped if d["reason"] in ("ratio_disagrees", "ratio_near_zero")]
    assert ratio_drops and kept  # a random model agrees with some labels and not others
    for reason in ("ratio_disagrees", "ratio_near_zero"):
        assert counts.get(reason, 0) == sum(d["reason"] == reason for d in dropped)
    for s in kept:
        (check,) = s["provenance"]["checks"]
        assert check["name"] == "ratio" and abs(check["scores"]["ratio"]) > 0.0002
        assert (check["scores"]["ratio"] > 0) == (s["label"] == "1")
