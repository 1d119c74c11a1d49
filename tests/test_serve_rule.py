"""The server answers as `culturemanager predict` does (one answering rule, answering.answer): through real HTTP with
the official openai client, on the tiny model with two adapters, calibration to the validation cut and top-2
mixing on, /v1/classify gives predict's labels, probabilities and mixtures, and completions generate with the
adapter predict would."""

from __future__ import annotations

import json

import pytest
from servers import openai_client, served_run, serving

from culturemanager import load_config
from culturemanager.pipeline import Run
from culturemanager.records import BASE, Prediction, read_jsonl

RULE = ["router.top_k=2", "predict.calibrate=true", 'predict.calibration="validation"',
        'predict.validation_cut="share"']
SLICES = {"Spanish": [("Los andaluces son vagos", "1"), ("Qué buen día", "0"), ("Vete a tu país", "1"),
                      ("Me gusta la playa", "0"), ("Feliz Navidad", "0")],
          "Turkish": [("Çay ister misin?", "0"), ("Annem börek yaptı", "0")]}  # one label: its content-free lean


@pytest.fixture(scope="module")
def predicted(tmp_path_factory, tiny_model):
    """A served run re-routed with top-2 mixing, each adapter given a validation slice, predicted, then served."""
    root = tmp_path_factory.mktemp("rule")
    run_dir = served_run(root, tiny_model)
    cfg = load_config(root / "run.toml", RULE)
    run = Run(cfg, progress=False)
    for culture, rows in SLICES.items():
        (run.rd.adapter(culture) / "validation.jsonl").write_text("".join(
            json.dumps({"task": "hate", "text": x, "label": y}, ensure_ascii=False) + "\n" for x, y in rows),
            encoding="utf-8")
    run.stage("route")
    metrics = run.stage("predict")
    assert metrics["calibration"]["by_adapter"] == {"Spanish": {"hate": "validation"},
                                                    "Turkish": {"hate": "content_free"}}
    with serving(run_dir) as server:
        yield server, read_jsonl(run.rd.predictions, Prediction)


def classify(url: str, texts: list[str], model: str = "auto") -> list[dict]:
    """/v1/classify through the openai client's own transport (it has no method of that name)."""
    return openai_client(url).post("/classify", cast_to=object, body={"task": "hate", "input": texts,
                                                                      "model": model})["data"]


def test_classify_gives_predicts_labels_probabilities_and_mixtures_with_calibration_and_mixing(predicted):
    server, preds = predicted
    assert any(p.mixture for p in preds), "top-2 mixing answered no input: the test would not test it"
    assert any(p.label_scores != p.calibrated_scores for p in preds)
    rows = classify(server.url, [p.text for p in preds])
    for p, r in zip(preds, rows, strict=True):
        assert r["culture"] == p.culture and r["routed"]
        assert r["label"] == p.label
        assert r["score"] == pytest.approx(p.score, abs=1e-4)
        assert r["label_probs"] == pytest.approx(p.label_scores, abs=1e-4)
        assert r["calibrated_probs"] == pytest.approx(p.calibrated_scores, abs=1e-4)
        mixture = {("base" if a == BASE else a): w for a, w in p.mixture.items()}
        assert (r["mixture"] if len(r["mixture"]) > 1 else {}) == pytest.approx(mixture, abs=1e-4)
        assert r["calibration"] == {a: {"Spanish": "validation"}.get(a, "content_free") for a in r["mixture"]}


def test_completions_generate_with_the_adapter_predict_answers_with(predicted):
    """Free text is never averaged: the heaviest adapter of the input's mixture generates, in predict and here."""
    server, preds = predicted
    preds = [p for p in preds if not p.truncated]  # a prompt longer than the model is refused (400) here
    comp = openai_client(server.url).completions.create(model="auto", prompt=[p.text for p in preds], max_tokens=2)
    for p, choice in zip(preds, comp.choices, strict=True):
        mixture = p.mixture or {p.culture if p.culture in ("Spanish", "Turkish") else BASE: 1.0}
        heaviest = max(mixture, key=mixture.get)
        assert choice.culturemanager["culture"] == p.culture
        assert choice.culturemanager["adapter"] == (None if heaviest == BASE else heaviest)
