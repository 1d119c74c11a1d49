"""The benchmark end to end on a tiny tasks file (tiny model, fake generator), its resume, and its bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_corpus

from culturemanager.bench.config import load_bench_config
from culturemanager.bench.data import chat_examples
from culturemanager.bench.methods import METHODS, NEEDS_CHECK, TRAINED
from culturemanager.cli import main
from culturemanager.config import ConfigError

ES_POS = ["Los andaluces son vagos y no trabajan", "Los catalanes son tacaños siempre", "Vete a tu país, moro",
          "Las mujeres no saben conducir", "Los gitanos roban a todos", "Los gallegos son cerrados y raros"]
ES_NEG = ["Me encanta la paella de mi abuela", "Qué buen partido del Barça ayer", "Mañana vamos a la playa",
          "La siesta es sagrada en verano", "El flamenco me emociona mucho", "Hoy hace sol en Madrid",
          "Los toros son tradición para algunos", "Feliz Navidad a todos", "El tren llega tarde otra vez",
          "Mi gato duerme en el sofá", "Compré pan en la panadería", "La feria de abril es preciosa"]
TR_POS = ["Defol git buradan pislik", "Senin ananı", "Aptal herif sus artık", "Salak mısın sen",
          "Gerizekalı hakem yine", "Lanet olsun size"]
TR_NEG = ["Çay ister misin?", "Bu maç harikaydı", "Bayramınız kutlu olsun", "Yarın İstanbul'a gidiyorum",
          "Annem börek yaptı", "Hava çok güzel bugün", "Kahve içelim mi", "Kitap okumayı severim",
          "Tatil planı yaptık", "Otobüs geç kaldı", "Köyde düğün var", "Yeni ayakkabı aldım"]


def write_bench(root: Path, model: Path, extra: str = "") -> Path:
    data = root / "data"
    (data / "es").mkdir(parents=True)
    (data / "tr").mkdir()
    rows = [{"text": t, "lab": "STEREO"} for t in ES_POS] + [{"text": t, "lab": "NONE"} for t in ES_NEG]
    rows += [{"text": 12345, "lab": "NONE"}, {"text": ES_NEG[0], "lab": "NONE"}]  # a non-text row, a duplicate
    (data / "es" / "stereo.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                              encoding="utf-8")
    rows = [{"tweet": t, "label": "OFF"} for t in TR_POS] + [{"tweet": t, "label": "NOT"} for t in TR_NEG]
    (data / "tr" / "abusive.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                               encoding="utf-8")
    rows = [{"tweet": t, "label": "NOT"} for t in TR_NEG]  # no positive at all: F1 is undefined
    (data / "tr" / "spam.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                            encoding="utf-8")
    template = "If the following sentence has {task}, respond with '1'. If not, respond with '0'. " \
               "Sentence: {input} Response: "
    tasks = {"prompt_template": template, "tasks": [
        {"id": "es-stereo", "culture": "Spanish", "language": "es", "task": "stereotype",
         "file": "es/stereo.jsonl", "text_field": "text", "label_field": "lab", "positive_labels": ["STEREO"],
         "negative_labels": ["NONE"]},
        {"id": "tr-abusive", "culture": "Turkish", "language": "tr", "task": "abusive language",
         "file": "tr/abusive.jsonl", "text_field": "tweet", "label_field": "label", "positive_labels": ["OFF"],
         "negative_labels": ["NOT"]},
        {"id": "tr-spam", "culture": "Turkish", "language": "tr", "task": "spam", "file": "tr/spam.jsonl",
         "text_field": "tweet", "label_field": "label", "positive_labels": ["Spam"], "negative_labels": ["NOT"]},
    ]}
    (data / "tasks.json").write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    paper = {"source": "test", "paper": "test", "model": "big", "metric": "F1", "tasks": ["es-stereo", "tr-abusive"],
             "rows": {"TaskSFT": {"es-stereo": 50.0, "tr-abusive": 40.0},
                      "CultureManager": {"es-stereo": 60.0, "tr-abusive": 45.0}}}
    (data / "paper.json").write_text(json.dumps(paper), encoding="utf-8")
    for culture, folder in (("Spanish", "Spanish"), ("Turkish", "Turkey")):
        lines = [{"messages": [{"role": "system", "content": f"You are a {culture} chatbot."},
                               {"role": "user", "content": f"Give me the answer from 1 to 4: question {k}?"},
                               {"role": "assistant", "content": str(1 + k % 4)}]} for k in range(6)]
        for size in ("50", "1000"):
            path = data / "culturellm" / folder / "Finetune" / f"WVQ_{folder}_{size}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    (data / "culturellm" / "Finetune").mkdir()
    (data / "culturellm" / "Finetune" / "WVQ_all.jsonl").write_text(
        (data / "culturellm" / "Spanish" / "Finetune" / "WVQ_Spanish_1000.jsonl").read_text() * 2, encoding="utf-8")
    write_corpus(root / "corpus")
    cfg = root / "bench.toml"
    cfg.write_text(f"""
[bench]
tasks = "data/tasks.json"
dir = "out"
demo_share = 0.25
test_cap = 12
seeds = [0, 1]
survey.folders = {{Turkish = "Turkey"}}
quick = {{"bench.seeds" = [0], "bench.test_cap" = 6}}
paper = "data/paper.json"
bootstrap = 200

[generator]
backend = "fake"

[target]
model = "{model}"
max_length = 80
batch_size = 4

[queries]
per_mode = 1

[search]
corpus = ["corpus"]
top_k = 2

[synthesis]
samples_per_material = 4

[train]
rank = 4
alpha = 8
epochs = 1
max_steps = 2
batch_size = 4
min_samples = 2
layers = 1
balance = true
{extra}
""", encoding="utf-8")
    return cfg


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("bench")
    cfg = write_bench(root, tiny_model)
    assert main(["bench", str(cfg), "--no-progress"]) == 0
    return root, cfg


def test_bench_end_to_end_writes_every_method_the_router_c_spec_and_the_report(bench_run):
    root, _ = bench_run
    out = root / "out"
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    # every row, but the ablations of checks this run has off (their adapters would be the known-culture ones)
    assert [m["name"] for m in results["methods"]] == [m for m in METHODS if m not in NEEDS_CHECK]
    ok = [t["id"] for t in results["tasks"] if t["status"] == "ok"]
    assert ok == ["es-stereo", "tr-abusive"]
    for m in results["methods"]:
        trained = m["name"] in TRAINED
        for kind in ("raw", "calibrated"):
            assert set(m[kind]["tasks"]) == set(ok), m["name"]
            assert set(m[kind]["cultures"]) == {"Spanish", "Turkish"}
            f1 = m[kind]["overall"]["f1_positive"]
            assert 0.0 <= f1["mean"] <= 1.0 and len(f1["values"]) == (2 if trained else 1)
            lo, hi = m[kind]["overall_ci"]["macro_f1"]
            assert lo <= m[kind]["overall"]["macro_f1"]["mean"] + 1e-9 and hi >= lo
            assert 0.0 <= m[kind]["overall"]["auc"]["mean"] <= 1.0
        assert m["seeds"] == ([0, 1] if trained else [0])
    # paired comparisons with a verdict read from their interval
    cm = {(c["a"], c["b"]): c for c in results["comparisons"]}
    x = cm[("CultureManager", "TaskSFT")]["raw"]["macro_f1"]
    assert x["ci"][0] <= x["ci"][1] and x["verdict"] in ("better", "worse", "not distinguishable")
    assert results["best_baseline"] in METHODS and results["paper"]["rows"]["TaskSFT"]["es-stereo"] == 50.0
    # the probe is a logistic regression on the base model's features, one answer per test input
    probe = json.loads((out / "preds" / "probe" / "es-stereo.json").read_text())["p_positive"]
    assert len(probe) == len(json.loads((out / "preds" / "base" / "es-stereo.json").read_text())["p_positive"])
    # the two-stage variant continued from the culture's CultureSFT adapter, on the top layer only
    two = json.loads((out / "adapters" / "cm-2s" / "Spanish" / "seed0" / "adapter_config.json").read_text())
    assert two["layers_to_transform"] == [1]
    # a trained adapter answers differently from the base model it sits on
    base = json.loads((out / "preds" / "base" / "es-stereo.json").read_text())["p_positive"]
    tuned = json.loads((out / "preds" / "tasksft_es-stereo_s0" / "es-stereo.json").read_text())["p_positive"]
    assert len(base) == len(tuned) and base != tuned
    # the task without positives is a reported skip, not a silent zero
    spam = next(t for t in results["tasks"] if t["id"] == "tr-spam")
    assert spam["status"] == "skipped" and "positive" in spam["skip_reason"]
    es = next(t for t in results["tasks"] if t["id"] == "es-stereo")
    assert es["skipped"] == {"not_text": 1, "duplicate_text": 1} and es["rows_used"] == 18
    assert es["demos"] + len(json.loads((out / "preds" / "base" / "es-stereo.json").read_text())["p_positive"]) \
        <= 18 and es["test"] <= 12
    # the split: demonstrations carry no label and never appear in the test set
    demos = [json.loads(x) for x in (out / "data" / "es-stereo" / "demos.jsonl").read_text().splitlines()]
    test = [json.loads(x)["text"] for x in (out / "data" / "es-stereo" / "test.jsonl").read_text().splitlines()]
    assert all(set(d) == {"text"} for d in demos) and not {d["text"] for d in demos} & set(test)
    r = results["router"]
    assert r["options"] == ["Spanish", "Turkish", "Others"] and set(r["per_task"]) == set(ok)
    assert sum(map(sum, r["confusion"]["counts"])) == sum(t["test"] for t in results["tasks"] if t["status"] == "ok")
    c = results["c_spec"]
    assert c["cultures"] == ["Spanish", "Turkish"] and len(c["score"]["values"]) == 2
    assert 0.0 <= c["score"]["mean"] <= 1.0
    assert results["contamination"]["kept_samples_matching_test"] == 0
    assert results["protocol"]["test_cap"] == 12 and results["protocol"]["seeds"] == [0, 1]
    for key in ("split", "pipeline", "train", "evaluate", "total"):
        assert results["timings"][key] >= 0
    # every adapter is a PEFT folder; the survey baselines trained on the chat files
    adapters = results["adapters"]
    assert adapters["culturesft_Turkish_s1"]["trained"] and adapters["culturellm-all_all_s0"]["examples"] == 12
    report = (out / "report.md").read_text(encoding="utf-8")
    for name in METHODS:
        assert (name in report) == (name not in NEEDS_CHECK)
    assert "## Reading" in report and "Orderings" in report and "calibrated" in report
    for png in ("c_spec.png", "router_confusion.png", "f1_by_task.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_rerun_resumes_without_training_or_scoring_again(bench_run, monkeypatch):
    from culturemanager.bench import train as bench_mod

    root, cfg = bench_run
    before = json.loads((root / "out" / "results.json").read_text())

    def fail(*a, **k):
        raise AssertionError("finished work was redone")

    from culturemanager.engine import Engine

    monkeypatch.setattr(bench_mod, "fit_adapter", fail)
    monkeypatch.setattr(Engine, "label_probs", fail)
    monkeypatch.setattr(Engine, "option_scores", fail)
    assert main(["bench", str(cfg), "--no-progress"]) == 0
    after = json.loads((root / "out" / "results.json").read_text())
    assert [m["raw"]["overall"] for m in after["methods"]] == [m["raw"]["overall"] for m in before["methods"]]
    assert after["pipeline"]["synthesize"]["llm"].get("calls", 0) == 0


def test_quick_applies_the_configs_quick_overrides(tmp_path, tiny_model):
    cfg = load_bench_config(write_bench(tmp_path, tiny_model), quick=True)
    assert cfg.bench.seeds == [0] and cfg.bench.test_cap == 6
    plain = load_bench_config(tmp_path / "bench.toml", ["bench.test_cap=3"])
    assert plain.bench.seeds == [0, 1] and plain.bench.test_cap == 3


def test_bench_config_errors_name_the_key_and_the_file(tmp_path, tiny_model, capsys):
    cfg = write_bench(tmp_path, tiny_model, extra="[bench.surveyy]\ndir = 'x'\n")
    with pytest.raises(ConfigError, match="bench.surveyy"):
        load_bench_config(cfg)
    cfg = write_bench(tmp_path / "b", tiny_model)
    assert main(["bench", str(cfg), "--set", "bench.methods=['Original', 'Nope']", "--no-progress"]) == 2
    assert "bench.methods" in capsys.readouterr().err


def test_a_tasks_file_with_a_missing_field_or_unknown_label_stops_the_bench(tmp_path, tiny_model, capsys):
    cfg = write_bench(tmp_path, tiny_model)
    tasks = json.loads((tmp_path / "data" / "tasks.json").read_text())
    del tasks["tasks"][1]["text_field"]
    (tmp_path / "data" / "tasks.json").write_text(json.dumps(tasks))
    assert main(["bench", str(cfg), "--no-progress"]) == 3  # an input error (exit codes: errors.py)
    err = capsys.readouterr().err
    assert "tr-abusive" in err and "text_field" in err and "tasks.json" in err
    tasks["tasks"][1]["text_field"] = "tweet"
    tasks["tasks"][1]["negative_labels"] = ["NOPE"]
    (tmp_path / "data" / "tasks.json").write_text(json.dumps(tasks))
    assert main(["bench", str(cfg), "--no-progress"]) == 3
    assert "abusive.jsonl:7" in capsys.readouterr().err


def test_chat_examples_put_the_loss_on_the_answer_and_name_a_bad_line(tmp_path, tiny_model):
    from culturemanager.backends.target import load_tokenizer
    from culturemanager.config import TargetConfig

    tok = load_tokenizer(TargetConfig(model=str(tiny_model)))
    path = tmp_path / "wvq.jsonl"
    good = {"messages": [{"role": "system", "content": "You are a Turkish chatbot."},
                         {"role": "user", "content": "Give me the answer from 1 to 4"},
                         {"role": "assistant", "content": "3"}]}
    path.write_text(json.dumps(good) + "\n\n" + json.dumps({"messages": [{"role": "user", "content": "x"}]}) + "\n")
    with pytest.raises(ValueError, match="wvq.jsonl:3"):
        chat_examples(tok, path, 64)
    path.write_text(json.dumps(good) + "\n")
    [(ids, labels)] = chat_examples(tok, path, 64)
    answer = tok("3", add_special_tokens=False)["input_ids"]
    assert ids[-len(answer):] == answer and labels[-len(answer):] == answer
    assert all(x == -100 for x in labels[:-len(answer)])


def test_two_bench_shards_train_disjoint_adapters_and_the_full_run_trains_nothing(tmp_path, tiny_model, monkeypatch):
    import os
    import subprocess
    import sys

    from culturemanager.bench import train as bench_mod

    cfg = write_bench(tmp_path, tiny_model, extra="")
    cfg.write_text(cfg.read_text().replace("seeds = [0, 1]", "seeds = [0]"), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-m", "culturemanager", "bench", str(cfg), "--shard", f"{i}/2",
                               "--no-progress"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in (0, 1)]
    trained = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        line = next(x for x in out.splitlines() if x.startswith("shard "))
        trained.append(set(line.split(": ", 2)[2].split(", ")))
    assert trained[0] and trained[1] and not trained[0] & trained[1]

    def fail(*a, **k):
        raise AssertionError("an adapter was trained twice")

    monkeypatch.setattr(bench_mod, "fit_adapter", fail)
    assert main(["bench", str(cfg), "--no-progress"]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {s for s, a in results["adapters"].items() if a["trained"]} == trained[0] | trained[1]


def test_the_paper_config_validates_and_its_first_stages_run_with_the_fake_generator(tmp_path, monkeypatch):
    """examples/paper.toml (Llama-3.1-8B on a GPU, GPT-4o, web search, ~1,000 samples per culture) on one real task
    with the fake generator and the local corpus: the split and the pipeline's LLM stages run as configured."""
    from conftest import DATA, REPO

    from culturemanager.bench import prepare
    from culturemanager.bench.tasks import load_tasks

    if not (DATA / "tasks.json").exists():
        pytest.skip(f"benchmark data not found in {DATA}")
    monkeypatch.setenv("CULTUREMANAGER_DATA", str(DATA))
    cfg = load_bench_config(REPO / "examples" / "paper.toml")
    assert cfg.target.model == "meta-llama/Llama-3.1-8B-Instruct" and cfg.generator.model == "gpt-4o"
    assert cfg.bench.seeds == [0, 1, 2] and cfg.bench.test_cap is None and cfg.bench.paper.exists()
    cfg = load_bench_config(REPO / "examples" / "paper.toml", [
        f"bench.dir={tmp_path / 'paper'}", "bench.task_ids=['es-stereotype']", "generator.backend=fake",
        "search.backend=local", "queries.per_mode=1", "synthesis.samples_per_material=4"])
    split = prepare.split(cfg, load_tasks(cfg.bench.tasks))
    [task] = split.ok_tasks
    # the paper's protocol: 10% demonstrations, every other input (976 after duplicates are dropped) is a test input
    assert len(task.demos) + len(task.test) == task.info["rows_used"] == 976 and 95 <= len(task.demos) <= 100
    corpus = prepare.pipeline(cfg, split, progress=False)
    assert corpus.counts["queries"]["queries"] == 2 and corpus.samples["Spanish"]


def test_plan_counts_the_work_and_runs_nothing(tmp_path, tiny_model, capsys):
    from culturemanager.bench.methods import jobs, with_checks_on
    from culturemanager.bench.plan import plan_bench
    from culturemanager.plan import Rates

    cfg_path = write_bench(tmp_path, tiny_model)
    assert main(["bench", str(cfg_path), "--plan"]) == 0
    out = capsys.readouterr().out
    assert "| train: adapters |" in out and "total" in out
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was written
    cfg = load_bench_config(cfg_path, ["bench.rates.layer_token_train_s=1.0", "bench.rates.adapter_overhead_s=0",
                                       "bench.rates.layer_token_forward_upper_s=0"])
    plan = plan_bench(cfg)
    assert plan.counts["adapters"] == len(jobs(set(with_checks_on(cfg.bench.methods, cfg)), ["es-stereo", "tr-abusive"],
                                               ["Spanish", "Turkish"], [0, 1]))
    assert plan.counts["decoder layers"] == 2 and plan.counts["adapted layers"] == 1
    train = next(p for p in plan.phases if p.name == "train: adapters")
    seen = int(train.work.split(" examples seen")[0].split()[-1])
    tokens = float(plan.counts["mean tokens (test / training)"].split(" / ")[1])
    # time = examples seen x tokens x adapted layers x the rate (1 s here)
    assert train.seconds == pytest.approx(seen * tokens * 1 * 1.0, rel=0.02)
    assert Rates().layer_token_train_s > Rates().layer_token_forward_s
    # a run of base-model methods only has no adapter to evaluate, and no frozen prefix of test inputs
    base = plan_bench(load_bench_config(cfg_path, ["bench.methods=['Original', 'Prompt']"]))
    assert next(p for p in base.phases if p.name == "evaluate: adapters").seconds == 0
    assert next(p for p in base.phases if p.name == "evaluate: base model").seconds > 0


def test_the_plan_counts_small_loss_first_passes_once(tmp_path, tiny_model):
    """With the small-loss check on, every CultureManager adapter but the no-label-check one trains twice; the
    known-culture adapter's first pass is the no-label-check adapter itself, so that row adds no training."""
    from culturemanager.bench.plan import plan_bench

    cfg_path = write_bench(tmp_path, tiny_model)
    rows = '["Original", "CultureManager (known culture)"]'
    trainings = {}
    for name, extra in (("off", []), ("on", ["train.small_loss.enabled=true"]),
                        ("ablation", ["train.small_loss.enabled=true", "bench.methods=" + rows[:-1]
                                      + ', "CultureManager (no label check)"]'])):
        plan = plan_bench(load_bench_config(cfg_path, [f"bench.methods={rows}", *extra]
                                            if name != "ablation" else extra))
        work = next(p for p in plan.phases if p.name == "train: adapters").work
        trainings[name] = (plan.counts["adapters"], work)
    assert trainings["off"][0] == trainings["on"][0] == 4  # 2 cultures x 2 seeds
    assert "small-loss" not in trainings["off"][1] and "(+ 4 small-loss first passes)" in trainings["on"][1]
    assert trainings["ablation"][0] == 8 and "small-loss" not in trainings["ablation"][1]


def test_the_bench_refuses_a_run_that_mixes_scores_naming_the_tasks(tmp_path, tiny_model, capsys):
    cfg = write_bench(tmp_path, tiny_model)
    tasks = json.loads((tmp_path / "data" / "tasks.json").read_text())
    tasks["tasks"][1].update(format="multiple_choice", options=["OFF", "NOT"])
    (tmp_path / "data" / "tasks.json").write_text(json.dumps(tasks))
    assert main(["bench", str(cfg), "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert "tr-abusive (multiple_choice)" in err and "es-stereo (binary)" in err and "bench.task_ids" in err


ES_QA = [("¿Cuál es la capital de España?", ["Madrid"]), ("¿Qué se come en Nochevieja?", ["uvas", "doce uvas"]),
         ("¿Qué bebida se toma con churros?", ["chocolate"]), ("¿Dónde se celebra la Tomatina?", ["Buñol"]),
         ("¿Qué idioma se habla en Cataluña?", ["catalán", "español"]), ("¿Qué plato lleva arroz y azafrán?",
                                                                       ["paella"]),
         ("¿Cuándo es la siesta?", ["después de comer", "por la tarde"]), ("¿Qué baile es de Andalucía?",
                                                                          ["flamenco", "sevillanas"])]
TR_QA = [("Türkiye'nin başkenti neresidir?", ["Ankara"]), ("Bayramda ne yenir?", ["baklava", "şeker"]),
         ("Kahvaltıda ne içilir?", ["çay"]), ("Hangi şehir iki kıtadadır?", ["İstanbul"]),
         ("Türk kahvesi nasıl pişirilir?", ["cezvede", "cezve"]), ("Düğünde ne takılır?", ["altın"]),
         ("Ramazanda ne yenir?", ["pide", "güllaç"]), ("Hangi içecek ayrandır?", ["ayran", "yoğurt"])]


def write_formats_bench(root: Path, model: Path) -> Path:
    """The bench's tasks file with a multiple-choice task (options per row) and a free-text task (several
    accepted answers per row) per culture, real-looking rows."""
    cfg = write_bench(root, model)
    data = root / "data"
    mc = {"es": [{"q": q, "opts": [a[0], "Roma", "Lisboa"], "ans": a[0]} for q, a in ES_QA],
          "tr": [{"q": q, "opts": ["Atina", a[0], "Sofya"], "ans": a[0]} for q, a in TR_QA]}
    ft = {"es": [{"q": q, "answers": a} for q, a in ES_QA], "tr": [{"q": q, "answers": a} for q, a in TR_QA]}
    tasks = json.loads((data / "tasks.json").read_text(encoding="utf-8"))
    for lang, culture in (("es", "Spanish"), ("tr", "Turkish")):
        for kind, rows in (("mc", mc[lang]), ("ft", ft[lang])):
            (data / lang / f"{kind}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                               for r in rows), encoding="utf-8")
        tasks["tasks"] += [
            {"id": f"{lang}-mc", "culture": culture, "language": lang, "task": "everyday life", "file":
             f"{lang}/mc.jsonl", "format": "multiple_choice", "text_field": "q", "options_field": "opts",
             "label_field": "ans"},
            {"id": f"{lang}-ft", "culture": culture, "language": lang, "task": "everyday life", "file":
             f"{lang}/ft.jsonl", "format": "free_text", "text_field": "q", "answers_field": "answers"}]
    (data / "tasks.json").write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    return cfg


@pytest.mark.parametrize("fmt, metrics", [("mc", ("accuracy", "macro_f1")), ("ft", ("soft_match", "exact_match"))])
def test_the_bench_scores_multiple_choice_and_free_text(tmp_path, tiny_model, fmt, metrics):
    """Each format's tasks through the whole bench (pipeline, adapters, routers, report) with its own scores:
    accuracy over the options (calibrated too) for multiple choice, soft and exact match for free text."""
    from culturemanager.bench.methods import NOT_APPLICABLE
    from culturemanager.bench.score import FAMILIES

    cfg = write_formats_bench(tmp_path, tiny_model)
    ids = f'["es-{fmt}", "tr-{fmt}"]'
    judge = ["--set", "bench.judge.enabled=true"] if fmt == "ft" else []  # the fake generator judges
    assert main(["bench", str(cfg), "--quick", "--no-progress", "--set", f"bench.task_ids={ids}",
                 "--set", "bench.test_cap=6", "--set", "bench.max_new_tokens=4", *judge]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    family = FAMILIES["multiple_choice" if fmt == "mc" else "free_text"]
    assert results["family"] == family and results["primary_metric"] == metrics[0]
    names = [m["name"] for m in results["methods"]]
    assert names == [m for m in METHODS if m not in NOT_APPLICABLE[family] and m not in NEEDS_CHECK]
    kinds = ("raw", "calibrated") if fmt == "mc" else ("raw",)
    for m in results["methods"]:
        assert set(k for k in ("raw", "calibrated") if k in m) == set(kinds), m["name"]
        for kind in kinds:
            assert set(m[kind]["tasks"]) == {f"es-{fmt}", f"tr-{fmt}"}
            for metric in metrics:
                v = m[kind]["overall"][metric]["mean"]
                lo, hi = m[kind]["overall_ci"][metric]
                assert 0.0 <= v <= 1.0 and 0.0 <= lo <= hi <= 1.0, (m["name"], metric)
    if fmt == "ft":  # the answers are the generated text, scored against each input's accepted answers
        preds = json.loads((tmp_path / "out" / "preds" / "base" / "es-ft.json").read_text(encoding="utf-8"))
        assert len(preds["answers"]) == 6 and all(isinstance(a, str) and "\n" not in a for a in preds["answers"])
        test = [json.loads(x) for x in (tmp_path / "out" / "data" / "es-ft" / "test.jsonl").read_text(
            encoding="utf-8").splitlines()]
        assert all(r["answers"] and r["label"] == r["answers"][0] for r in test)
        from culturemanager.text.answers import soft_match

        want = sum(soft_match(a, r["answers"], "es") for a, r in zip(preds["answers"], test)) / 6
        base = next(m for m in results["methods"] if m["name"] == "Original")
        assert base["raw"]["tasks"]["es-ft"]["soft_match"]["mean"] == pytest.approx(want)
        # the judge (the fake: "yes" when an accepted answer is in the answer; an empty answer is wrong unasked)
        said = [bool(a.strip()) and any(x.casefold() in a.casefold() for x in r["answers"])
                for a, r in zip(preds["answers"], test)]
        assert results["judge"]["by"] == "fake" and results["judge"]["distinct_answers"] > 0
        assert base["raw"]["tasks"]["es-ft"]["judge_match"]["mean"] == pytest.approx(sum(said) / 6)
        assert "judge_match" in results["comparisons"][0]["raw"]
    else:  # a probability per option, calibrated against the content-free lean over the options
        preds = json.loads((tmp_path / "out" / "preds" / "base" / "es-mc.json").read_text(encoding="utf-8"))
        assert len(preds["probs"]) == 6 and all(len(p) == 3 and abs(sum(p) - 1) < 1e-3 for p in preds["probs"])
        assert len(preds["prior"]) == 3
    verdicts = [c[kinds[0]][metrics[0]]["verdict"] for c in results["comparisons"]]
    assert verdicts and set(verdicts) <= {"better", "worse", "not distinguishable"}
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert ("## Accuracy (%), uncalibrated" if fmt == "mc" else "## Soft match (%)") in report
    assert ("## LLM judge (%)" in report) == (fmt == "ft")
    assert "positive-class F1" not in report.split("## Router")[0].lower()


def test_the_small_loss_check_applies_to_culturemanagers_synthetic_data_only(tmp_path, tiny_model):
    cfg = write_bench(tmp_path, tiny_model)
    methods = '["Original", "TaskSFT", "CultureManager (known culture)", "CultureManager task-specific only"]'
    assert main(["bench", str(cfg), "--quick", "--no-progress", "--set", f"bench.methods={methods}",
                 "--set", "train.small_loss.enabled=true", "--set", "train.small_loss.drop_share=0.25"]) == 0
    adapters = tmp_path / "out" / "adapters"
    for kind, first in (("cm", adapters / "cm-nolc" / "Spanish" / "seed0"),  # shared with the ablation row
                        ("cm-ts", adapters / "cm-ts" / "Spanish" / ".seed0.first")):
        meta = json.loads((adapters / kind / "Spanish" / "seed0" / "culturemanager.json").read_text(encoding="utf-8"))
        first = json.loads((first / "culturemanager.json").read_text(encoding="utf-8"))
        assert meta["small_loss"]["examples"] == first["examples"] == len(first["example_losses"])
        assert meta["small_loss"]["dropped"] > 0 or kind == "cm-ts"  # (cm-ts: too few samples per label)
        assert meta["examples"] == first["examples"] - meta["small_loss"]["dropped"]
    tasksft = adapters / "tasksft" / "es-stereo"
    assert "small_loss" not in json.loads((tasksft / "seed0" / "culturemanager.json").read_text(encoding="utf-8"))
    assert not (tasksft / ".seed0.first").exists()


def test_the_label_check_and_selection_ablations_train_without_what_they_remove(tmp_path, tiny_model):
    """"no label check": every kept sample, no small-loss drop (its adapter is the CultureManager adapter's first
    pass, trained once); "no selection": the samples before synthesis.select. Each row is in the report, paired
    with the known-culture row; with its check off a row is not run (it would repeat the known-culture row)."""
    cfg = write_bench(tmp_path, tiny_model)
    rows = ["Original", "CultureManager (known culture)", "CultureManager (no label check)",
            "CultureManager (no selection)"]
    sets = ["--set", f"bench.methods={json.dumps(rows)}", "--set", "train.small_loss.enabled=true",
            "--set", "train.small_loss.drop_share=0.5", "--set", "synthesis.select.enabled=true",
            "--set", "synthesis.select.min_representativeness=-1", "--set", "synthesis.select.min_distinctiveness=-2",
            "--set", "synthesis.select.near_duplicate=0.99"]
    assert main(["bench", str(cfg), "--quick", "--no-progress", *sets]) == 0
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    samples = {c: (out / "pipeline" / "samples" / f"{c}.jsonl").read_text().splitlines() for c in ("Spanish",)}
    unchecked = (out / "pipeline" / "samples" / "unchecked" / "Spanish.jsonl").read_text().splitlines()
    assert len(unchecked) > len(samples["Spanish"])  # selection dropped some (label balance at least)
    meta = {k: json.loads((out / "adapters" / k / "Spanish" / "seed0" / "culturemanager.json").read_text())
            for k in ("cm", "cm-nolc", "cm-nosel")}
    assert "small_loss" not in meta["cm-nolc"] and len(meta["cm-nolc"]["example_losses"]) == meta["cm-nolc"]["examples"]
    assert meta["cm"]["small_loss"]["examples"] == meta["cm-nolc"]["examples"]
    assert meta["cm"]["examples"] < meta["cm-nolc"]["examples"]
    assert meta["cm-nosel"]["small_loss"]["examples"] > meta["cm-nolc"]["examples"]  # more data, checked by loss
    assert not (out / "adapters" / "cm" / "Spanish" / ".seed0.first").exists()  # the first pass is cm-nolc's
    assert set(rows) <= {m["name"] for m in results["methods"]}
    pairs = {(c["a"], c["b"]) for c in results["comparisons"]}
    assert {("CultureManager (known culture)", "CultureManager (no label check)"),
            ("CultureManager (known culture)", "CultureManager (no selection)")} <= pairs
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "CultureManager (no label check)" in report and "CultureManager (no selection)" in report
    # with both checks off, both rows are left out
    assert main(["bench", str(cfg), "--quick", "--no-progress", "--set", f"bench.methods={json.dumps(rows)}",
                 "--set", f"bench.dir={tmp_path / 'off'}"]) == 0
    off = json.loads((tmp_path / "off" / "results.json").read_text(encoding="utf-8"))
    names = {m["name"] for m in off["methods"]}
    assert "CultureManager (known culture)" in names
    assert not {"CultureManager (no label check)", "CultureManager (no selection)"} & names


def test_the_factbook_configs_validate_on_the_tasks_the_builder_writes(tmp_path, monkeypatch):
    """examples/factbook.toml (one bench run per format) and examples/factbook-run.toml (all three formats in one
    run): they load, and each format's split and inputs read from the builder's files."""
    from conftest import DATA, REPO
    from test_factbook_tasks import FOLDERS, profile

    from culturemanager.bench.factbook_tasks import build
    from culturemanager.bench.prepare import split
    from culturemanager.bench.tasks import load_tasks
    from culturemanager.text.datafiles import read_rows

    for code, folder in FOLDERS.items():
        (tmp_path / "fb" / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / "fb" / folder / f"{code}.json").write_text(json.dumps(profile(code)), encoding="utf-8")
    build(tmp_path / "fb", tmp_path / "tasks")
    monkeypatch.setenv("CULTUREMANAGER_DATA", str(DATA))
    for fmt, family in (("tf", "labels"), ("mc", "options"), ("ft", "free_text")):
        ids = json.dumps([f"{lang}-factbook-{fmt}" for lang in ("ar", "es")])
        cfg = load_bench_config(REPO / "examples" / "factbook.toml", [
            f"bench.tasks={tmp_path / 'tasks' / 'tasks.json'}", f"bench.dir={tmp_path / fmt}", f"bench.task_ids={ids}"])
        got = split(cfg, load_tasks(cfg.bench.tasks))
        assert got.family == family and [t.spec.id for t in got.tasks] == json.loads(ids)
    from culturemanager import load_config

    run = load_config(REPO / "examples" / "factbook-run.toml")
    assert [t.format for t in run.tasks] == ["true_false", "multiple_choice", "free_text"] and run.predict.judge.enabled
    for df in run.predict.inputs:  # the same files, as the builder writes them (hand-made profiles: capitals)
        rows = read_rows(df.model_copy(update={"path": tmp_path / "tasks" / df.path.name, "start": 0}))
        assert rows and all(r.culture in ("Spanish", "Turkish") for r in rows)
        if df.options_field:
            assert all(r.label in "ABCD" and " A) " in r.text for r in rows)


def test_the_plan_counts_the_answer_files_the_bench_writes(bench_run):
    from culturemanager.bench.plan import plan_bench

    root, cfg_path = bench_run
    preds = root / "out" / "preds"
    adapter_files = [f for d in preds.iterdir() if d.name not in ("base", "prompt", "probe") for f in d.glob("*.json")]
    adapters = [d for d in (root / "out" / "adapters").glob("*/*/seed*") if (d / "culturemanager.json").exists()]
    plan = plan_bench(load_bench_config(cfg_path))
    evaluate = next(p for p in plan.phases if p.name == "evaluate: adapters")
    assert plan.counts["adapters"] == len(adapters)  # every planned adapter was trained (none fell below min_samples)
    # each (adapter, task) pair the methods need is answered once, however many methods read it
    assert int(evaluate.work.split(" (adapter, task) pairs")[0]) == len(adapter_files)


def test_compare_runs_pairs_one_adapter_kind_across_two_runs_of_the_same_split(bench_run, tmp_path, monkeypatch,
                                                                                capsys):
    """benchmarks/compare_runs.py: a run against itself differs by exactly 0; against a copy whose CultureManager
    answers are inverted, by the AUC's mirror; a run of another split is refused, not compared."""
    import importlib.util
    import shutil
    import sys

    root, cfg_path = bench_run
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_runs.py"
    spec = importlib.util.spec_from_file_location("compare_runs", path)
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    monkeypatch.chdir(cfg_path.parent)  # the config's relative paths

    def run(b: Path, *extra: str) -> dict:
        out = tmp_path / "compare.json"
        monkeypatch.setattr(sys, "argv", ["compare_runs.py", str(cfg_path), "--a", str(root / "out"), "--b", str(b),
                                          "--kind", "cm", "--seeds", "0", "--out", str(out), *extra])
        compare.main()
        return json.loads(out.read_text(encoding="utf-8"))

    same = run(root / "out")
    assert all(v["difference"] == 0 for kind in same["b_minus_a"].values() for v in kind.values())
    flipped = tmp_path / "flipped"
    shutil.copytree(root / "out" / "data", flipped / "data")
    shutil.copytree(root / "out" / "preds", flipped / "preds")
    for f in (flipped / "preds").glob("cm_*_s0/*.json"):
        saved = json.loads(f.read_text(encoding="utf-8"))
        saved["p_positive"] = [1 - x for x in saved["p_positive"]]
        f.write_text(json.dumps(saved), encoding="utf-8")
    got = run(flipped)
    a_auc = got["runs"]["A"]["raw"]["auc"]["value"]
    assert got["runs"]["B"]["raw"]["auc"]["value"] == pytest.approx(1 - a_auc)
    assert got["b_minus_a"]["raw"]["auc"]["difference"] == pytest.approx(1 - 2 * a_auc)
    assert "| raw | auc |" in capsys.readouterr().out
    (flipped / "data" / "es-stereo" / "test.jsonl").write_text('{"text": "other", "label": "0"}\n', encoding="utf-8")
    with pytest.raises(SystemExit, match="not comparable"):
        run(flipped)


def test_the_validation_kind_cuts_each_adapter_where_its_own_held_out_slice_says(tmp_path, tiny_model):
    """TaskSFT's "validation" answers: P(positive) cut on the demonstrations its trainer held out (validation.jsonl
    beside the adapter) so that as many are answered positive as hold positives (bench.validation_cut = "share"),
    the cut recomputed here from that file with the adapter itself; the base model, without a slice, falls back to
    its content-free calibration. Run again with the best-macro-F1 rule, the bench recomputes only that cut."""
    from culturemanager.bench.data import split_task
    from culturemanager.bench.score import task_scores
    from culturemanager.bench.tasks import load_tasks
    from culturemanager.engine import Engine
    from culturemanager.metrics import best_cut, cut_prior, log_odds, share_cut

    cfg = write_bench(tmp_path, tiny_model)
    sets = ["--set", 'bench.methods=["Original", "TaskSFT"]', "--set", "bench.demo_share=0.6",
            "--set", "train.validation=0.3", "--set", "bench.seeds=[0]"]
    assert main(["bench", str(cfg), "--no-progress", *sets]) == 0
    out = tmp_path / "out"
    folder = out / "adapters" / "tasksft" / "es-stereo" / "seed0"
    held = [json.loads(x) for x in (folder / "validation.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(held) == json.loads((folder / "culturemanager.json").read_text())["validation_examples"] > 0
    assert {r["label"] for r in held} == {"0", "1"}
    saved = json.loads((out / "preds" / "tasksft_es-stereo_s0" / "es-stereo.json").read_text(encoding="utf-8"))
    engine = Engine.load(load_bench_config(cfg).target, {"a": folder})
    bcfg = load_bench_config(cfg, ["bench.demo_share=0.6"])
    tf = load_tasks(bcfg.bench.tasks)
    task = split_task(next(t for t in tf.tasks if t.id == "es-stereo"), tf.prompt_template, bcfg, out, write=False)
    p_val = engine.label_probs(task.task, [r["text"] for r in held], ["a"] * len(held))[0][:, 1].tolist()
    gold_val = [r["label"] == "1" for r in held]
    cut = share_cut(p_val, sum(gold_val) / len(gold_val))
    assert saved["validation_cut"] == "share"
    assert saved["prior_validation"] == pytest.approx(cut_prior(cut, 1)[1], abs=1e-5)
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    tasksft = next(m for m in results["methods"] if m["name"] == "TaskSFT")
    gold = [y for _, y in task.test]
    want = task_scores(gold, ["1" if log_odds(x) > cut else "0" for x in saved["p_positive"]])["macro_f1"]
    assert tasksft["validation"]["tasks"]["es-stereo"]["macro_f1"]["mean"] == pytest.approx(want, abs=1e-6)
    base = json.loads((out / "preds" / "base" / "es-stereo.json").read_text(encoding="utf-8"))
    original = next(m for m in results["methods"] if m["name"] == "Original")
    assert base["prior_validation"] is None
    assert original["validation"]["overall"] == original["calibrated"]["overall"]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "at each adapter's validation operating point" in report and 'validation_cut = "share"' in report

    adapter_written = (folder / "adapter_model.safetensors").stat().st_mtime_ns
    assert main(["bench", str(cfg), "--no-progress", *sets, "--set", 'bench.validation_cut="best_f1"']) == 0
    again = json.loads((out / "preds" / "tasksft_es-stereo_s0" / "es-stereo.json").read_text(encoding="utf-8"))
    assert again["validation_cut"] == "best_f1" and again["p_positive"] == saved["p_positive"]
    assert again["prior_validation"] == pytest.approx(cut_prior(best_cut(gold_val, p_val), 1)[1], abs=1e-5)
    assert (folder / "adapter_model.safetensors").stat().st_mtime_ns == adapter_written  # nothing retrained
    assert 'validation_cut = "best_f1"' in (out / "report.md").read_text(encoding="utf-8")
