"""The culture router: the embedding router learned from a handful of examples (real USE embedder and py3langid),
"Others" for a language of no culture of the run, a threshold fit that reads no test label, the router through the
run directory, the paper's prompt, and top-k mixing through the real engine (tiny model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import random_adapters

from culturemanager import load_config
from culturemanager.answering import Rule, label_answers
from culturemanager.backends import embedrouter
from culturemanager.config import RouterConfig
from culturemanager.engine import Engine
from culturemanager.errors import ConfigError, InputError
from culturemanager.pipeline import Run
from culturemanager.records import BASE
from culturemanager.stages.route import OTHERS, Router, Routing, mixtures, read_router, route, write_router
from culturemanager.text.router_prompts import ROUTER_TEMPLATES, format_router_prompt, split_router_template

EXAMPLES = {
    "Spanish": ["Los andaluces no trabajan nunca", "Qué buen partido del Barça ayer", "Vete a tu país",
                "Me encanta la paella de mi abuela", "El gobierno sube otra vez los impuestos",
                "Mañana vamos a la playa con los niños"],
    "Turkish": ["Bu maç harikaydı", "Bayramınız kutlu olsun", "Çay ister misin?", "Hükümet yine vergileri artırdı",
                "Yarın çocuklarla denize gidiyoruz", "Annemin yaptığı dolma çok güzel"],
    "Arabic": ["مباراة رائعة أمس", "كل عام وأنتم بخير", "الحكومة رفعت الضرائب مرة أخرى", "أحب القهوة العربية",
               "غدا نذهب إلى البحر مع الأطفال", "هذا الفيلم ممل جدا"],
}
LANGUAGES = {"Spanish": "es", "Turkish": "tr", "Arabic": "ar"}
UNSEEN = {"Los catalanes son tacaños": "Spanish", "Qué calor hace hoy en Madrid": "Spanish",
          "Bugün hava çok sıcak": "Turkish", "Akşam yemeğinde ne var, anne?": "Turkish",
          "الجو حار جدا اليوم": "Arabic", "أين المحطة من فضلك؟": "Arabic"}
OUT_OF_SET = ["Das Wetter ist heute sehr schön und wir gehen im Park spazieren", "오늘 날씨가 정말 좋네요",
              "আমি প্রতিদিন সকালে বাংলায় গান গাই", "今天天气很好，我们去公园散步吧"]


@pytest.fixture(scope="module")
def handful():
    return embedrouter.fit(EXAMPLES, LANGUAGES)


def test_routes_from_a_handful_of_examples_route_unseen_texts_right(handful):
    router, report = handful
    d = router.decide(list(UNSEEN))
    chosen = [router.cultures[int(i)] for i in d.probs.argmax(1)]
    assert chosen == list(UNSEEN.values())
    assert not d.others.any()
    assert np.allclose(d.probs.sum(1), 1, atol=1e-5)
    # the sentences are translations of each other: the embedding alone cannot tell them apart, the language
    # prior can, and cross-validation on the examples finds that out
    assert report["cv_accuracy_by_weight"]["0.0"] < 0.5 and report["weight"] > 0


def test_a_language_of_no_culture_of_the_run_goes_to_others(handful):
    router, report = handful
    assert router.decide(OUT_OF_SET).others.all()
    assert all(v == 1.0 for v in report["heldout_left_out_to_others"].values())


def test_without_others_every_text_gets_a_culture(tmp_path, task_config):
    cfg = load_config(task_config, ["router.others=false"])
    router = write_router(cfg, Run(cfg, progress=False).rd)
    assert OTHERS not in router.options
    r = route(None, router, ["Das ist ein deutscher Satz über das Wetter"])
    assert r.cultures[0] in ("Spanish", "Turkish")


def test_others_threshold_keeps_every_cultures_share():
    # culture 0's held-out scores are low, culture 1 has one noisy example with a high score
    s_in = np.array([0.1, 0.2, 0.3, 0.4, 1.0, 1.1, 1.2, 5.0])
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert embedrouter.others_threshold(s_in, y, keep=1.0) == 5.0  # no held-out example may be lost
    assert embedrouter.others_threshold(s_in, y, keep=0.75) == 1.2  # culture 1 keeps 3 of 4


class Directions:
    """Hand-made embeddings: a text's first letter picks its direction, the rest of the text adds a small fixed
    perturbation, so each culture's examples form a cluster and the fit's arithmetic is checked without a model."""

    name, dim = "directions", 16

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            rng = np.random.default_rng(sum(map(ord, t)))
            out[i] = 0.25 * rng.standard_normal(self.dim)
            out[i, "abcdefghijklmnop".index(t[0])] += 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_hand_made_clusters_route_right_and_an_unused_direction_is_others():
    examples = {c: [f"{c[0]}{k} {c}" for k in range(8)] for c in ("alpha", "beta", "gamma")}
    router, report = embedrouter.fit(examples, {}, embedder=Directions())
    assert report["language_prior"] is False and router.weight == 0  # no culture names a language
    d = router.decide(["a new", "b new", "g new", "p far away", "o elsewhere"])
    assert [router.cultures[int(i)] for i in d.probs.argmax(1)][:3] == ["alpha", "beta", "gamma"]
    assert d.others.tolist() == [False, False, False, True, True]


def test_threshold_fit_reads_only_the_examples_never_test_inputs_or_labels(task_config):
    """The fit sees the route examples and nothing else: the run's evaluation and prediction inputs, their gold
    labels and gold cultures can change completely and the fitted router stays byte-identical."""
    cfg = load_config(task_config, ["router.examples=[\"demonstrations\"]"])
    rd = Run(cfg, progress=False).rd
    first = write_router(cfg, rd)
    arrays = (rd.root / "router.npz").read_bytes()
    inputs = task_config.parent / "inputs.jsonl"
    rows = [json.loads(x) for x in inputs.read_text(encoding="utf-8").splitlines()]
    inputs.write_text("".join(json.dumps({**r, "label": "0" if r["label"] == "1" else "1", "culture": "Spanish"})
                              + "\n" for r in rows), encoding="utf-8")
    (rd.root / "router.npz").unlink()
    rd.router.unlink()
    second = write_router(cfg, rd)
    assert (rd.root / "router.npz").read_bytes() == arrays
    assert first.fit["settings"] == second.fit["settings"] and first.fit["hash"] == second.fit["hash"]


def test_the_router_round_trips_through_the_run_directory_and_is_reused_while_unchanged(task_config):
    cfg = load_config(task_config)
    rd = Run(cfg, progress=False).rd
    written = write_router(cfg, rd)
    assert written.kind == "embedding" and written.fit["examples"]["Spanish"] == 3
    texts = ["Me encanta la paella", "Çay ister misin?", "Bu maç harikaydı", "Vete a tu país"]
    stamp = (rd.root / "router.npz").stat().st_mtime_ns
    read = read_router(rd)
    assert read == written
    a, b = route(None, written, texts), route(None, read, texts)
    assert a.cultures == b.cultures and a.probs == b.probs
    again = write_router(cfg, rd)  # same examples, same settings: the saved fit is kept
    assert (rd.root / "router.npz").stat().st_mtime_ns == stamp and again.fit == written.fit
    refit = write_router(load_config(task_config, ["router.keep=0.9"]), rd)
    assert refit.fit["hash"] != written.fit["hash"]
    (rd.root / "router.npz").unlink()
    with pytest.raises(InputError, match="router.npz"):
        read_router(rd)


def test_route_examples_need_two_per_culture(task_config):
    (task_config.parent / "demos_tr.txt").write_text("Bu maç harikaydı\n", encoding="utf-8")
    cfg = load_config(task_config, ["router.examples=[\"demonstrations\"]"])
    with pytest.raises(InputError, match="Turkish has 1"):
        write_router(cfg, Run(cfg, progress=False).rd)
    cfg = load_config(task_config, ["router.kind=\"prompt\""])
    assert write_router(cfg, Run(cfg, progress=False).rd).kind == "prompt"


def test_router_settings_are_checked():
    assert RouterConfig().kind == "embedding" and RouterConfig().template == "short"
    for bad in ({"top_k": 0}, {"keep": 0.3}, {"kind": "semantic"}, {"template": "no input here {options}"},
                {"template": "{input} without options"}, {"mix_below": 0}):
        with pytest.raises(ValueError):
            RouterConfig(**bad)


def test_bad_router_setting_in_a_config_file_names_the_key(task_config):
    with pytest.raises(ConfigError, match="router.top_k"):
        load_config(task_config, ["router.top_k=0"])


def test_the_papers_router_prompt_word_for_word_and_the_short_one():
    options = ["Arabic", "Bengali", OTHERS]
    paper = format_router_prompt("paper", options, "TEXT")
    assert paper == (
        "You are a helpful chatbot that knows different cultures around the world very well. Your task is to analyze "
        "the provided text based on its language, expressions, and context, and select the most relevant culture to "
        "the provided text from the following options:\n- Arabic\n- Bengali\n"
        "- Others (if the text is not relevant to any cultures listed above)\n"
        "Output **only** the exact name of the culture without any explanation.\nText: TEXT\nAnswer:")
    assert format_router_prompt("short", options, "TEXT") == (
        "Which culture does the following text come from? Options: Arabic, Bengali, Others.\nText: TEXT\nCulture:")
    prefix, suffix = split_router_template(ROUTER_TEMPLATES["paper"], options)
    assert prefix.endswith("Text: ") and suffix == "\nAnswer:"


@pytest.mark.parametrize("template", ["short", "paper"])
def test_prompt_router_scores_every_option_with_either_template(task_config, template):
    cfg = load_config(task_config, ["router.kind=\"prompt\"", f"router.template=\"{template}\""])
    router = write_router(cfg, Run(cfg, progress=False).rd)
    assert router.template == ROUTER_TEMPLATES[template]
    r = route(Engine.load(cfg.target), router, ["hola", "merhaba"])
    assert all(set(p) == {"Spanish", "Turkish", OTHERS} and abs(sum(p.values()) - 1) < 1e-3 for p in r.probs)


# ---------------------------------------------------------------------------------------------- top-k mixing

def test_mixtures_weight_the_top_routes_adapters():
    router = Router(True, ["A", "B", "C", OTHERS], "", {"A": "a/", "B": "b/", "C": None}, 64, top_k=2, mix_below=0.9)
    routing = Routing(["A", "A", "B", OTHERS], probs=[{"A": 0.6, "B": 0.3, "C": 0.1}, {"A": 0.95, "B": 0.05},
                                                     {"B": 0.5, "C": 0.5}, {"A": 0.5, "B": 0.5}])
    mix = mixtures(router, routing)
    assert mix[0] == pytest.approx({"A": 2 / 3, "B": 1 / 3})
    assert mix[1] == {"A": 1.0}  # sure enough: not mixed
    assert mix[2] == pytest.approx({"B": 0.5, BASE: 0.5})  # C has no adapter: the base model stands in
    assert mix[3] == {BASE: 1.0}  # Others: the base model alone
    assert mixtures(Router(True, ["A", "B"], "", {"A": "a/", "B": "b/"}, 64), routing)[0] == {"A": 1.0}


def adapter_engine(task_config):
    """(config, engine) with random Spanish and Turkish adapters loaded."""
    cfg = load_config(task_config)
    rd = Run(cfg, progress=False).rd
    random_adapters(cfg, rd)
    return cfg, Engine.load(cfg.target, {"Spanish": rd.adapter("Spanish"), "Turkish": rd.adapter("Turkish")})


def test_top_k_mixing_is_the_weighted_average_of_the_adapters_label_probabilities(task_config):
    cfg, engine = adapter_engine(task_config)
    task = cfg.tasks[0]
    texts = ["Los catalanes son tacaños", "Defol git buradan", "Çay ister misin?"]
    mixes = [{"Spanish": 0.7, "Turkish": 0.3}, {"Turkish": 1.0}, {"Spanish": 0.25, BASE: 0.75}]
    mixed, _, _, _ = label_answers(engine, task, texts, mixes, Rule())
    for i, mix in enumerate(mixes):
        alone = {a: engine.label_probs(task, [texts[i]], [a])[0][0] for a in mix}
        assert torch.allclose(torch.tensor(mixed[i]), sum(w * alone[a] for a, w in mix.items()), atol=1e-5)
    assert not torch.allclose(engine.label_probs(task, texts[:1], ["Spanish"])[0],
                              engine.label_probs(task, texts[:1], ["Turkish"])[0])
    with pytest.raises(ValueError, match="sum to 1"):
        label_answers(engine, task, texts[:1], [{"Spanish": 0.5}], Rule())


def test_predict_with_top_k_mixes_and_records_the_mixture(task_config):
    from culturemanager.records import Prediction, read_jsonl
    cfg = load_config(task_config, ["router.top_k=2", "router.others=false"])
    run = Run(cfg, progress=False)
    random_adapters(cfg, run.rd)
    run.stage("route")
    counts = run.stage("predict")
    preds = read_jsonl(run.rd.predictions, Prediction)
    mixed = [p for p in preds if p.mixture]
    assert mixed and counts["counts"]["mixed"] == len(mixed)
    engine = Engine.load(cfg.target, {c: run.rd.adapter(c) for c in ("Spanish", "Turkish")})
    p = mixed[0]
    expect = sum(w * engine.label_probs(cfg.tasks[0], [p.text], [a])[0][0] for a, w in p.mixture.items())
    assert [p.label_scores[x] for x in ("0", "1")] == pytest.approx(expect.tolist(), abs=2e-4)


def test_an_unreadable_fitted_router_is_an_error_naming_it_and_route_fits_it_again(task_config):
    from culturemanager.records import RecordFileError

    cfg = load_config(task_config, ["router.others=false"])  # 3 examples per culture: too few for Others
    rd = Run(cfg, progress=False).rd
    router = write_router(cfg, rd)
    rd.router_model.write_bytes(b"not an npz file")
    with pytest.raises(RecordFileError, match="router.npz: not a fitted router"):
        route(None, read_router(rd), ["hola"])
    again = write_router(cfg, rd)  # same examples and settings, but the saved arrays are unreadable: refitted
    assert again.fit["hash"] == router.fit["hash"]
    assert route(None, read_router(rd), ["Vete a tu país"]).cultures == ["Spanish"]


def test_a_calibrated_mixture_is_the_weighted_average_of_each_adapters_calibrated_answer(task_config):
    """The rule predict and the bench share: each adapter's content-free lean is removed before the weights apply."""
    from culturemanager.metrics import calibrate

    cfg, engine = adapter_engine(task_config)
    task = cfg.tasks[0]
    texts = ["Los catalanes son tacaños", "Defol git buradan"]
    mixes = [{"Spanish": 0.6, "Turkish": 0.4}, {"Turkish": 1.0}]
    mixed, cal, refs, _ = label_answers(engine, task, texts, mixes, Rule(calibrate=True))
    for i, mix in enumerate(mixes):
        alone = {a: engine.label_probs(task, [texts[i]], [a])[0][0].tolist() for a in mix}
        expected = [sum(w * calibrate(alone[a], engine.label_prior(task, a))[j] for a, w in mix.items())
                    for j in range(len(task.labels))]
        assert cal[i] == pytest.approx(expected, abs=1e-5)
        assert refs[i] == {a: "content_free" for a in mix}  # no validation slice asked for
    assert label_answers(engine, task, texts, mixes, Rule())[1] == [None, None]  # not asked: not computed
