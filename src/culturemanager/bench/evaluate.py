"""The bench's evaluate phase: the routers once on the base model, then every (model variant, task) pair.

Per pair: P(positive) of every test input and of content-free input (for calibration) for the two-label formats, a
probability per option for multiple choice, the generated answer for free text; the linear probe on the base
model's features. Each pair's answers are cached on disk by everything that decides them.
                                                              -> router/, preds/<variant>/<task>.json
Entry point: `evaluate(cfg, split, corpus, adapters, seeds)`; returns the `Evaluated` record results are built from.
`both` reads a cached answer file's answer kinds (bench/results.py, benchmarks/compare_runs.py).
Run: imported by `bench/run.py` (`culturemanager bench`); no entry point of its own.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from culturemanager.backends.trainer import META
from culturemanager.bench import routing
from culturemanager.bench.config import BenchConfig
from culturemanager.bench.data import TaskData, stable_hash
from culturemanager.bench.methods import FIXED_VARIANT, ROUTED, Job, answering
from culturemanager.bench.prepare import Corpus, Split
from culturemanager.bench.score import calibrated
from culturemanager.metrics import calibrate
from culturemanager.records import write_json
from culturemanager.rundir import safe_name
from culturemanager.stages.route import CONTENT_FREE


@dataclass
class Evaluated:
    """The evaluate phase's hand-off: the routers' choices ({kind: {task: [route]}, "probs": {kind: {task:
    [probs]}}}, empty when no routed method runs), each (variant, task) pair's saved answers, and both routers
    measured (results.json "routers")."""
    routed: dict = field(default_factory=dict)
    answers: dict[tuple[str, str], dict] = field(default_factory=dict)
    routing: dict = field(default_factory=dict)

    def then(self, later: Evaluated) -> Evaluated:
        """These answers and a later seed's together (the routes and their measurement: the later ones)."""
        return Evaluated(self.routed | later.routed, self.answers | later.answers, later.routing)


def evaluate(cfg: BenchConfig, split: Split, corpus: Corpus, adapters: dict[Job, Path | None], seeds: list[int],
             progress: bool = True) -> Evaluated:
    """Every (variant, task) pair the methods need for `seeds`, each answered once (base, prompt and probe first)."""
    from rich.progress import Progress

    from culturemanager.engine import Engine

    engine = Engine.load(cfg.target)
    need = variants(split, adapters, seeds)
    routed, measured = {}, {}
    if ROUTED.keys() & set(split.methods):  # both routers measured (bench/routing.py)
        routed, measured = routing.bench_routes(cfg, split.ok_tasks, corpus.samples, engine)
    answers: dict[tuple[str, str], dict] = {}
    slugs = {job.slug: path for job, path in adapters.items() if path}
    order = sorted(need, key=lambda v: (v not in ("base", "prompt", "probe"), v))
    with Progress(disable=not progress, transient=True) as bar:
        job_bar = bar.add_task("evaluate", total=sum(len(need[v]) for v in order))
        for v in order:
            for t in split.ok_tasks:
                if t.spec.id in need[v]:
                    bar.update(job_bar, description=f"evaluate {v} on {t.spec.id}")
                    answers[(v, t.spec.id)] = answer(cfg, engine, v, t, slugs.get(v))
                    bar.advance(job_bar)
    return Evaluated(routed, answers, measured)


def variant(job: Job | None, method: str, adapters: dict[Job, Path | None]) -> str:
    """The variant that answers for `job` (its slug), or for an untrained method its fixed variant; a job without an
    adapter (too few examples) answers with the base model."""
    if job is None:
        return FIXED_VARIANT[method]
    return job.slug if adapters.get(job) else "base"


def method_variants(method: str, task: TaskData, seed: int, cultures: list[str], adapters: dict[Job, Path | None]
                    ) -> list[str]:
    return [v if isinstance(v, str) else variant(v, method, adapters)
            for v in answering(method, task.spec.id, task.spec.culture, seed, cultures)]


def variants(split: Split, adapters: dict[Job, Path | None], seeds: list[int]) -> dict[str, set[str]]:
    """model variant ("base", "prompt", "probe" or an adapter job slug) -> the task ids it must answer."""
    methods, need = set(split.methods), {}
    for t in split.ok_tasks:
        for method in methods:
            for seed in seeds:
                for v in method_variants(method, t, seed, split.cultures, adapters):
                    need.setdefault(v, set()).add(t.spec.id)
    return need


def answer(cfg: BenchConfig, engine, variant: str, task: TaskData, folder: Path | None) -> dict:
    """One model variant's answers to a task's test inputs, cached on disk by everything that decides them:
    P(positive) per input and on content-free input (the variant's lean, for calibration) for the two-label
    formats; a probability per option and the content-free ones for multiple choice; the generated answer
    for free text."""
    adapter_hash = ""
    if folder is not None:
        adapter_hash = json.loads((folder / META).read_text(encoding="utf-8"))["data_hash"]
    preamble = cfg.bench.prompt_preamble.replace("{culture}", task.spec.culture) if variant == "prompt" else ""
    generation = cfg.bench.max_new_tokens if task.family == "free_text" else None
    key = stable_hash([variant, adapter_hash, preamble, task.task.template, task.test, cfg.target.model,
                       cfg.target.max_length, task.demos if variant == "probe" else None, "v2"]
                      + ([task.family, task.task.labels, generation] if task.family != "labels" else []))
    path = cfg.bench.dir / "preds" / variant / f"{safe_name(task.spec.id)}.json"
    rule = cfg.bench.validation_cut
    if path.exists() and (saved := json.loads(path.read_text(encoding="utf-8"))).get("key") == key:
        if task.family == "labels" and saved.get("validation_cut", "best_f1" if "prior_validation" in saved
                                                 else None) != rule:
            # a cache from before that kind, or cut by another rule: only the slice's answers are recomputed
            saved.update(prior_validation=validation_prior(engine, variant, task, folder, rule),
                         validation_cut=rule)
            write_json(path, saved)
        return saved
    t0 = time.time()
    texts = [x for x, _ in task.test]
    saved = {"key": key, "variant": variant, "task": task.spec.id}
    if variant == "probe":
        saved.update(p_positive=probe_answers(engine, task), prior=0.5)
    else:
        if folder is not None:
            engine.add_adapter(variant, folder)
        name = variant if folder else None
        if task.family == "free_text":
            answers, _ = engine.generate(task.task, texts, [name] * len(texts), generation, preamble)
            saved.update(answers=answers)
        else:
            probs, _ = engine.label_probs(task.task, texts + list(CONTENT_FREE), [name] * (len(texts) + 3),
                                          preamble)
            if task.family == "options":
                saved.update(probs=[[round(x, 5) for x in row] for row in probs[:len(texts)].tolist()],
                             prior=[round(x, 5) for x in probs[len(texts):].mean(0).tolist()])
            else:
                positive = (task.task.labels or []).index(task.task.positive_label or "1")
                saved.update(p_positive=[round(x, 5) for x in probs[:len(texts), positive].tolist()],
                             prior=round(statistics.fmean(probs[len(texts):, positive].tolist()), 5),
                             prior_validation=validation_prior(engine, variant, task, folder, rule),
                             validation_cut=rule)
    saved["seconds"] = round(time.time() - t0, 2)
    write_json(path, saved)
    return saved


def validation_prior(engine, variant: str, task: TaskData, folder: Path | None, rule: str) -> float | None:
    """P(positive)'s reference for the "validation" answer kind: the prior that puts the adapter's cut at its
    operating point on its own validation slice by `rule` (bench.validation_cut, Engine.validation_prior);
    None for the base model, the probe, the survey adapters (no task labels) and a slice of one label."""
    if folder is None:
        return None
    engine.add_adapter(variant, folder)
    prior = engine.validation_prior(task.task, variant, rule)
    positive = (task.task.labels or []).index(task.task.positive_label or "1")
    return round(prior[positive], 6) if prior else None


def both(saved: dict) -> tuple[list, list, list]:
    """A variant's answers uncalibrated, calibrated and calibrated to its validation slice's operating point
    (the content-free calibration where it has none; free text: the same answers three times)."""
    if "answers" in saved:
        return saved["answers"], saved["answers"], saved["answers"]
    if "probs" in saved:
        cal = [calibrate(row, saved["prior"]) for row in saved["probs"]]
        return saved["probs"], cal, cal
    cal = calibrated(saved["p_positive"], saved["prior"])
    ref = saved.get("prior_validation")
    return saved["p_positive"], cal, calibrated(saved["p_positive"], ref) if ref is not None else cal


def probe_answers(engine, task: TaskData) -> list[float]:
    """The linear probe's P(positive) per test input: logistic regression (class-balanced, standardised features)
    on the base model's mean final hidden state, trained on the task's labelled demonstrations."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x_train = engine.features(task.task, [x for x, _ in task.demos]).numpy()
    x_test = engine.features(task.task, [x for x, _ in task.test]).numpy()
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
    clf.fit(scaler.transform(x_train), np.array([y == "1" for _, y in task.demos]))
    return [round(float(p), 5) for p in clf.predict_proba(scaler.transform(x_test))[:, 1]]
