"""Routing and prediction: mixed-adapter batches, valid choices, truncation."""

from __future__ import annotations

import pytest
import torch
from conftest import random_adapters

from culturemanager import load_config
from culturemanager.backends.target import BASE, encode, load_target, option_ids, score_options
from culturemanager.engine import Engine
from culturemanager.pipeline import Run
from culturemanager.stages.route import read_router, route, write_router


def test_mixed_adapter_batch_equals_one_adapter_at_a_time(task_config):
    cfg = load_config(task_config)
    run = Run(cfg, progress=False)
    random_adapters(cfg, run.rd)
    router = write_router(cfg, run.rd)
    engine = Engine.load(cfg.target, {c: p for c, p in router.adapters.items() if p})
    model, tok = engine.model, engine.tok
    texts = ["Los catalanes son tacaños", "Defol git buradan", "Me encanta la paella", "Çay ister misin?"]
    prompts = [encode(tok, "Sentence: ", t, " Response: ", 64).ids for t in texts]
    opts = option_ids(tok, ["0", "1"])
    names = ["Spanish", "Turkish", BASE, "Spanish"]
    mixed = score_options(model, tok, prompts, opts, names, batch_size=4)
    for name in set(names):
        rows = [i for i, n in enumerate(names) if n == name]
        alone = score_options(model, tok, [prompts[i] for i in rows], opts, [name] * len(rows), batch_size=1)
        assert torch.allclose(mixed[rows], alone, atol=1e-5)
    # and the adapters really differ from each other and from the base model
    every = {n: score_options(model, tok, prompts[:1], opts, [n], batch_size=1) for n in ("Spanish", "Turkish", BASE)}
    assert not torch.allclose(every["Spanish"], every["Turkish"])
    assert not torch.allclose(every["Spanish"], every[BASE])


@pytest.mark.parametrize("kind", ["prompt", "embedding"])
def test_router_always_returns_a_valid_option(task_config, kind):
    cfg = load_config(task_config, [f'router.kind="{kind}"'])
    run = Run(cfg, progress=False)
    router = write_router(cfg, run.rd)
    engine = Engine.load(cfg.target)
    texts = ["hola", "merhaba", "x" * 5000, "١٢٣ مرحبا", "你好"]
    r = route(engine, router, texts)
    choice, scores, truncated = r.cultures, r.scores, r.truncated
    assert set(choice) <= {"Spanish", "Turkish", "Others"}
    assert all(set(s) == {"Spanish", "Turkish", "Others"} for s in scores)
    assert all(abs(sum(p.values()) - 1) < 1e-3 for p in r.probs)
    if kind == "prompt":
        assert all(c == max(s, key=s.get) for c, s in zip(choice, scores))
        assert truncated == 1  # the prompt router reads at most target.max_length tokens
    else:  # the embedding router: the likeliest culture, or Others when the detector's margin is positive
        assert all(c == ("Others" if s["Others"] > 0 else max(p, key=p.get))
                   for c, s, p in zip(choice, scores, r.probs))
        assert choice[3:] == ["Others", "Others"]  # Arabic and Chinese: languages of no culture of this run


def test_predict_writes_labels_in_the_label_set_and_counts_truncation(task_config):
    cfg = load_config(task_config)
    run = Run(cfg, progress=False)
    random_adapters(cfg, run.rd)
    run.stage("route")
    counts = run.stage("predict")
    from culturemanager.records import Prediction, read_jsonl

    preds = read_jsonl(run.rd.predictions, Prediction)
    assert len(preds) == 5 and all(p.label in ("0", "1") for p in preds)
    assert all(abs(sum(p.label_scores.values()) - 1) < 1e-3 for p in preds)
    assert preds[-1].truncated and counts["counts"]["truncated"] >= 1
    scores = counts["tasks"]["hate"]["scores"]
    assert scores["n"] == 5 and 0 <= scores["macro_f1"] <= 1
    assert sum(v for k, v in counts["counts"].items() if k.startswith("routed[")) == 5


def test_predict_without_router_uses_the_files_culture(task_config, tmp_path):
    cfg = load_config(task_config, ["router.enabled=false",
                                    'predict.inputs=[{path="inputs.jsonl", culture="Turkish"}]'])
    run = Run(cfg, progress=False)
    random_adapters(cfg, run.rd)
    run.stage("route")
    counts = run.stage("predict")
    assert counts["counts"]["routed[Turkish]"] == 5 and counts["counts"]["adapter[Turkish]"] == 5
    assert counts["router_accuracy"] == 1.0


def test_single_token_fast_path_equals_full_sequence_scoring(task_config):
    """The one-forward path for single-token options gives the same log-likelihoods as scoring each
    prompt+option sequence on its own, unpadded (the definition)."""
    from culturemanager.backends.target import score_next_token

    cfg = load_config(task_config)
    model, tok = load_target(cfg.target)
    prompts = [encode(tok, "Sentence: ", t, " Response: ", 64).ids for t in ("hola amigo", "Defol git buradan lan")]
    opts = option_ids(tok, ["0", "1"])
    assert all(len(o) == 1 for o in opts)
    fast = score_next_token(model, tok, prompts, [o[0] for o in opts], None, batch_size=2)
    with torch.no_grad():
        for i, p in enumerate(prompts):
            for k, o in enumerate(opts):
                logits = model(input_ids=torch.tensor([p + o])).logits
                ref = torch.log_softmax(logits[0, len(p) - 1], -1)[o[0]]
                assert abs(float(ref) - float(fast[i, k])) < 1e-4


def test_multi_token_options_match_unpadded_scoring(task_config):
    cfg = load_config(task_config)
    model, tok = load_target(cfg.target)
    prompts = [encode(tok, "Text: ", t, " Culture:", 64).ids for t in ("hola", "merhaba arkadaşlar nasılsınız")]
    opts = option_ids(tok, [" Spanish", " Turkish", " Others"])
    assert any(len(o) > 1 for o in opts)
    got = score_options(model, tok, prompts, opts, None, batch_size=2)
    with torch.no_grad():
        for i, p in enumerate(prompts):
            for k, o in enumerate(opts):
                logp = torch.log_softmax(model(input_ids=torch.tensor([p + o])).logits[0], -1)
                ref = sum(float(logp[len(p) - 1 + j, t]) for j, t in enumerate(o))
                assert abs(ref - float(got[i, k])) < 1e-4


def test_calibrated_router_scores_are_the_raw_scores_minus_the_content_free_prior(task_config):
    """Contextual calibration: each option's mean score on content-free texts is subtracted, so a text that says
    nothing no longer picks the option the model leans to; the choice is the argmax of the calibrated scores."""
    from dataclasses import replace

    from culturemanager.stages.route import CONTENT_FREE, prior

    assert not load_config(task_config, ["router.calibrate=false"]).router.calibrate
    cfg = load_config(task_config, ['router.kind="prompt"'])  # calibration is the default
    run = Run(cfg, progress=False)
    router = write_router(cfg, run.rd)
    assert router.calibrate and read_router(run.rd).calibrate
    engine = Engine.load(cfg.target)
    texts = ["hola amigos", "merhaba arkadaşlar", "N/A"]
    raw_r, cal_r = route(engine, replace(router, calibrate=False), texts), route(engine, router, texts)
    raw_choice, raw, cal_choice, cal = raw_r.cultures, raw_r.scores, cal_r.cultures, cal_r.scores
    p = prior(engine, router)[0]
    assert p.shape == (len(router.options),) and len(CONTENT_FREE) == 3
    for r, c in zip(raw, cal):
        for k, o in enumerate(router.options):
            assert c[o] == pytest.approx(r[o] - float(p[k]), abs=2e-4)
    assert all(ch == max(s, key=s.get) for ch, s in zip(cal_choice, cal))
    assert all(ch == max(s, key=s.get) for ch, s in zip(raw_choice, raw))


def test_calibration_prior_is_computed_once_per_engine_not_per_batch(task_config):
    cfg = load_config(task_config, ['router.kind="prompt"'])
    router = write_router(cfg, Run(cfg, progress=False).rd)
    engine = Engine.load(cfg.target)
    calls = []
    real = engine.option_scores
    engine.option_scores = lambda prompts, *a, **k: calls.append(len(prompts)) or real(prompts, *a, **k)
    for texts in (["hola"], ["merhaba", "hi"], ["ciao"]):
        route(engine, router, texts)
    # three batches of texts, and the three content-free texts scored once
    assert calls == [1, 3, 2, 1]


def test_a_killed_predict_resumes_and_ends_as_an_uninterrupted_one(task_config, monkeypatch):
    import json

    cfg = load_config(task_config)
    run = Run(cfg, progress=False)
    random_adapters(cfg, run.rd)
    run.stage("route")
    run.stage("predict")
    whole = run.rd.predictions.read_bytes()
    run.rd.predictions.unlink()
    run.rd.metrics.unlink()

    real, seen = Engine.label_probs, []

    def dies_on_the_second_batch(self, task, texts, *a, **k):
        seen.append(list(texts))
        if len(seen) == 2:
            raise KeyboardInterrupt
        return real(self, task, texts, *a, **k)

    monkeypatch.setattr(Engine, "label_probs", dies_on_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        run.stage("predict")
    partial = run.rd.root / "predictions.partial.jsonl"
    assert len(partial.read_text().splitlines()) == 1 + len(seen[0])  # the key line and the first batch
    assert not run.rd.predictions.exists() and not run.rd.metrics.exists()

    seen.clear()
    monkeypatch.setattr(Engine, "label_probs", lambda self, task, texts, *a, **k: seen.append(list(texts))
                        or real(self, task, texts, *a, **k))
    run.stage("predict")
    assert len(seen) == 1 and sum(map(len, seen)) == 5 - cfg.target.batch_size  # only the unfinished batch
    assert run.rd.predictions.read_bytes() == whole and not partial.exists()
    metrics = json.loads(run.rd.metrics.read_text())
    import hashlib
    assert metrics["predictions_sha256"] == hashlib.sha256(whole).hexdigest()


def test_a_gold_label_outside_the_label_set_stops_before_any_model_runs(task_config, monkeypatch):
    from culturemanager.text.datafiles import InputFileError

    cfg = load_config(task_config)
    run = Run(cfg, progress=False)
    run.stage("route")
    rows = (cfg.run.dir.parent / "inputs.jsonl").read_text().splitlines()
    rows[3] = rows[3].replace('"label": "0"', '"label": "maybe"')
    (cfg.run.dir.parent / "inputs.jsonl").write_text("\n".join(rows) + "\n")
    monkeypatch.setattr(Engine, "load", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(InputFileError, match=r"inputs.jsonl:4: gold label 'maybe'"):
        run.stage("predict")


def test_a_corrupt_router_file_is_an_error_naming_it(task_config):
    from culturemanager.records import RecordFileError

    cfg = load_config(task_config)
    run = Run(cfg, progress=False)
    run.rd.router.write_text('{"enabled": true, "options": ["Spanish"]')
    with pytest.raises(RecordFileError, match="router.json: not valid JSON"):
        read_router(run.rd)
    run.rd.router.write_text('{"enabled": true}')
    with pytest.raises(RecordFileError, match="router.json"):
        run.stage("predict")


def test_predict_from_the_command_line_is_recorded_in_the_manifest(task_config, tmp_path):
    import json

    from culturemanager.cli import main

    cfg = load_config(task_config)
    run = Run(cfg, progress=False)
    run.stage("route")
    new = tmp_path / "new.jsonl"
    new.write_text(json.dumps({"text": "Çay ister misin?"}) + "\n", encoding="utf-8")
    assert main(["predict", str(task_config), "--input", str(new), "--no-progress"]) == 0
    manifest = json.loads(run.rd.manifest.read_text())
    assert manifest["stages"]["predict"]["counts"]["inputs"] == 1
    assert manifest["stages"]["predict"]["config_sha256"] == manifest["stages"]["route"]["config_sha256"]
    # a stage re-run under other settings shows as such
    assert main(["route", str(task_config), "--set", "router.others=false", "--no-progress"]) == 0
    manifest = json.loads(run.rd.manifest.read_text())
    assert manifest["stages"]["predict"]["config_sha256"] != manifest["stages"]["route"]["config_sha256"]


def test_calibrated_predictions_divide_by_each_adapters_content_free_lean(task_config):
    from culturemanager.metrics import calibrate
    from culturemanager.records import Prediction, read_jsonl
    from culturemanager.stages.route import CONTENT_FREE

    cfg = load_config(task_config, ["predict.calibrate=true"])
    run = Run(cfg, progress=False)
    random_adapters(cfg, run.rd)
    run.stage("route")
    run.stage("predict")
    preds = read_jsonl(run.rd.predictions, Prediction)
    engine = Engine.load(cfg.target, {c: p for c, p in read_router(run.rd).adapters.items() if p})
    task = cfg.tasks[0]
    for p in preds:
        adapter = read_router(run.rd).adapter_for(p.culture)
        prior = engine.label_probs(task, list(CONTENT_FREE), [adapter] * 3)[0].mean(0).tolist()
        want = calibrate([p.label_scores[x] for x in task.labels], prior)
        assert [p.calibrated_scores[x] for x in task.labels] == pytest.approx(want, abs=2e-3)
        assert p.label == task.labels[max(range(2), key=want.__getitem__)]


@pytest.mark.parametrize("rule", ["share", "best_f1"])
def test_validation_calibration_answers_positive_above_the_cut_its_validation_slice_chooses(task_config, rule):
    """predict.calibration = "validation": each adapter's answers are cut where its own held-out slice
    (validation.jsonl) says, by predict.validation_cut: as many of the slice answered positive as it holds
    positives, or the best macro-F1 there; an adapter whose slice holds one label falls back to its content-free
    lean, and metrics.json says which reference each adapter had."""
    import json

    from culturemanager.metrics import best_cut, calibrate, log_odds, share_cut
    from culturemanager.records import Prediction, read_jsonl
    from culturemanager.stages.route import CONTENT_FREE

    cfg = load_config(task_config, ["predict.calibrate=true", 'predict.calibration="validation"',
                                    f'predict.validation_cut="{rule}"'])
    run = Run(cfg, progress=False)
    random_adapters(cfg, run.rd)
    task = cfg.tasks[0]
    slices = {"Spanish": [("Los andaluces son vagos", "1"), ("Qué buen día", "0"), ("Vete a tu país", "1"),
                          ("Me gusta la playa", "0"), ("Feliz Navidad", "0")],
              "Turkish": [("Çay ister misin?", "0"), ("Annem börek yaptı", "0")]}  # one label: no cut
    for culture, rows in slices.items():
        (run.rd.adapter(culture) / "validation.jsonl").write_text("".join(
            json.dumps({"task": task.id, "text": x, "label": y}, ensure_ascii=False) + "\n" for x, y in rows),
            encoding="utf-8")
    run.stage("route")
    metrics = run.stage("predict")
    assert metrics["calibration"]["by_adapter"]["Spanish"][task.id] == "validation"
    assert metrics["calibration"]["by_adapter"]["Turkish"][task.id] == "content_free"
    assert metrics["calibration"]["validation_cut"] == rule
    router = read_router(run.rd)
    engine = Engine.load(cfg.target, {c: p for c, p in router.adapters.items() if p})
    k = task.labels.index(task.positive_label)
    texts = [x for x, _ in slices["Spanish"]]
    p_val = engine.label_probs(task, texts, ["Spanish"] * len(texts))[0][:, k].tolist()
    gold = [y == task.positive_label for _, y in slices["Spanish"]]
    cut = share_cut(p_val, sum(gold) / len(gold)) if rule == "share" else best_cut(gold, p_val)
    preds = read_jsonl(run.rd.predictions, Prediction)
    routed = {c: [p for p in preds if router.adapter_for(p.culture) == c] for c in ("Spanish", "Turkish")}
    assert routed["Spanish"] and routed["Turkish"]
    for p in routed["Spanish"]:
        assert (p.label == task.positive_label) == (log_odds(p.label_scores[task.positive_label]) > cut)
    prior = engine.label_probs(task, list(CONTENT_FREE), ["Turkish"] * 3)[0].mean(0).tolist()
    for p in routed["Turkish"]:
        want = calibrate([p.label_scores[x] for x in task.labels], prior)
        assert [p.calibrated_scores[x] for x in task.labels] == pytest.approx(want, abs=2e-3)


def free_text_predict(task_config, tmp_path, rows: list[dict], *overrides: str):
    """The task as free text, `rows` (text, accepted answers, culture) as predict's input, random adapters, the
    router off: (config, run, predict's metrics, the predictions)."""
    import json

    from culturemanager.records import Prediction, read_jsonl

    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                       encoding="utf-8")
    cfg = load_config(task_config, ['tasks.0.format="free_text"', "predict.max_new_tokens=4", "router.enabled=false",
                                    *overrides, 'predict.inputs=[{path="qa.jsonl", answers_field="answers", '
                                                'culture_field="culture"}]'])
    run = Run(cfg, progress=False)
    random_adapters(cfg, run.rd)
    run.stage("route")
    metrics = run.stage("predict")
    return cfg, run, metrics, read_jsonl(run.rd.predictions, Prediction)


def test_free_text_predict_answers_one_line_and_scores_accepted_answers(task_config, tmp_path):
    rows = [{"text": "¿Qué se come en Nochevieja?", "answers": ["doce uvas", "uvas"], "culture": "Spanish"},
            {"text": "¿Dónde se celebra la Tomatina?", "answers": "Buñol", "culture": "Spanish"},
            {"text": "Bayramda ne yenir?", "answers": ["baklava"], "culture": "Turkish"}]
    cfg, _, metrics, preds = free_text_predict(task_config, tmp_path, rows)
    assert [p.answers for p in preds] == [["doce uvas", "uvas"], ["Buñol"], ["baklava"]]
    assert all("\n" not in p.label for p in preds)
    scores = metrics["tasks"]["hate"]["scores"]
    assert scores["n"] == 3 and 0 <= scores["soft_match"] <= 1 and 0 <= scores["exact_match"] <= scores["soft_match"]
    assert set(scores["by_culture"]) == {"Spanish", "Turkish"} and scores["by_culture"]["Spanish"]["n"] == 2
    assert metrics["free_text"]["n"] == 3 and set(scores["lemmatizer"]) == {"Spanish", "Turkish"}
    # answers that are no answers, by reason (formats.validate_answer); an empty one is counted as such
    from culturemanager.text.formats import validate_answer

    want = [validate_answer(p.text, p.label, cfg.task("hate")) for p in preds]
    assert scores["not_answers"] == {r.value: want.count(r) for r in set(want) if r is not None}
    assert scores["not_answers"].get("no_label", 0) == scores["empty_answers"]


def test_free_text_judge_verdicts_are_scored_beside_soft_match_and_not_asked_again(task_config, tmp_path):
    """predict.judge: every free-text prediction gets the judge's verdict; metrics carry the judge's rate and its
    agreement with soft match; a second predict answers every judge call from the run's cache."""
    from culturemanager.records import CallRecord, read_jsonl

    rows = [{"text": "¿Qué se come en Nochevieja?", "answers": ["uvas"], "culture": "Spanish"},
            {"text": "Bayramda ne yenir?", "answers": ["baklava"], "culture": "Turkish"}]
    _, run, metrics, preds = free_text_predict(task_config, tmp_path, rows, "predict.judge.enabled=true")
    # the fake judge says "yes" exactly when an accepted answer is in the answer: random adapters never write one
    assert [p.judged for p in preds] == [any(a.casefold() in p.label.casefold() for a in p.answers) for p in preds]
    judge = metrics["tasks"]["hate"]["scores"]["judge"]
    assert judge["judged"] == 2 and judge["no_verdict"] == 0
    assert judge["judge_match"] == sum(p.judged for p in preds) / 2
    assert metrics["judge"] == {"by": "fake", "judged": 2, "no_verdict": 0}
    from culturemanager.summary import describe  # the run's summary line reads free-text scores (it crashed on them)

    line = describe("predict", metrics)
    assert "hate: soft match" in line and "judge" in line and "macro-F1" not in line
    calls = [c for c in read_jsonl(run.rd.calls, CallRecord) if c.stage == "answer_judge"]
    assert [c.outcome for c in calls] == ["ok", "ok"]
    run.stage("predict")
    calls = [c for c in read_jsonl(run.rd.calls, CallRecord) if c.stage == "answer_judge"]
    assert [c.outcome for c in calls][2:] == ["cached", "cached"]


def test_an_adapter_with_non_finite_weights_is_an_error_naming_it_not_null_scores(task_config, capsys):
    """An adapter saved with NaN weights (by a training that diverged before that was caught) scored every label
    NaN: predictions with null scores and the label "0", exit 0. Now predict stops, naming the adapter's folder."""
    from safetensors.torch import load_file, save_file

    from culturemanager.cli import main
    from culturemanager.errors import EXIT_INPUT

    cfg = load_config(task_config)
    run = Run(cfg, progress=False)
    random_adapters(cfg, run.rd)
    weights_file = run.rd.adapter("Turkish") / "adapter_model.safetensors"
    save_file({k: torch.full_like(v, float("nan")) for k, v in load_file(weights_file).items()}, weights_file)
    run.stage("route")
    assert main(["predict", str(task_config), "--no-progress"]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert str(run.rd.adapter("Turkish")) in err and "non-finite label scores" in err, err
    assert not run.rd.predictions.exists()


class SpyTokenizer:
    """The real tokenizer, recording the longest text it is asked to tokenize."""

    def __init__(self, tok):
        self.tok, self.longest = tok, 0

    def __call__(self, text, **kw):
        self.longest = max(self.longest, len(text))
        return self.tok(text, **kw)


def test_an_input_is_cut_by_characters_before_tokenizing_and_keeps_the_same_tokens(tiny_model):
    from culturemanager.backends.target import load_tokenizer, text_chars
    from culturemanager.config import TargetConfig

    tok = load_tokenizer(TargetConfig(model=str(tiny_model)))
    text = "Los catalanes son tacaños y el fútbol une a los vecinos. " * 3000  # 171k characters
    spy = SpyTokenizer(tok)
    for budget in (1, 30, 200):
        got = encode(spy, "Sentence: ", text, " Response: ", budget + 8)
        whole = tok(text, add_special_tokens=False)["input_ids"]
        p, s = tok("Sentence: ")["input_ids"], tok(" Response: ", add_special_tokens=False)["input_ids"]
        room = budget + 8 - len(p) - len(s)
        assert got.ids == p + whole[:room] + s and got.truncated
    assert spy.longest == text_chars(200 + 8 - len(p) - len(s)) < len(text)
    short = encode(spy, "Sentence: ", "Me encanta la paella", " Response: ", 64)
    assert not short.truncated


def test_a_5_mb_input_is_never_tokenized_whole_and_stored_as_a_prefix_and_hash(task_config, monkeypatch):
    """One 5 MB input peaked at 1.66 GB at predict and was copied whole into predictions.jsonl."""
    import hashlib
    import json

    from transformers import PreTrainedTokenizerBase

    from culturemanager.backends.target import text_chars
    from culturemanager.cli import main

    cfg = load_config(task_config)
    run = Run(cfg, progress=False)
    random_adapters(cfg, run.rd)
    run.stage("route")
    big = ("Defol git buradan, senin ananı. " * 160_000)[:4_999_999] + "!"
    inputs = task_config.parent / "big.jsonl"
    inputs.write_text(json.dumps({"text": "Me encanta la paella"}) + "\n" + json.dumps({"text": big}) + "\n",
                      encoding="utf-8")
    seen: list[int] = []
    call = PreTrainedTokenizerBase.__call__

    def spy(self, text=None, *args, **kw):
        seen.append(max((len(t) for t in text), default=0) if isinstance(text, list) else len(text or ""))
        return call(self, text, *args, **kw)

    monkeypatch.setattr(PreTrainedTokenizerBase, "__call__", spy)
    assert main(["predict", str(task_config), "--input", str(inputs), "--no-progress"]) == 0
    assert seen and max(seen) <= text_chars(cfg.target.max_length)
    small, long = [json.loads(x) for x in run.rd.predictions.read_text(encoding="utf-8").splitlines()]
    assert small["text"] == "Me encanta la paella" and small["text_sha256"] is None
    assert long["text"] == big[:text_chars(cfg.target.max_length)] and long["truncated"]
    assert long["text_sha256"] == hashlib.sha256(big.encode()).hexdigest() and long["text_chars"] == 5_000_000
    assert run.rd.predictions.stat().st_size < 50_000
