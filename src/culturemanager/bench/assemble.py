"""The bench's results phase: results.json assembled from what the earlier phases handed on.

Every method's answers are built from the variants' cached answers (a routed method takes, per input, the answer
of the adapter it was routed to: the answering rule, answering.py); then scores with and without calibration, AUC,
paired bootstrap intervals and comparisons with verdicts (bench/results.py), the routers with top-2 mixing, C-SPEC,
contamination, the adapters' training records and the paper's numbers.               -> results.json (by run.py)
Entry point: `results(cfg, split, corpus, trained, evaluated, judged, seeds_done, ...)`, a pure function of its
inputs and the adapters' and pipeline's files.
Run: imported by `bench/run.py` (`culturemanager bench`); no entry point of its own.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from culturemanager.backends.trainer import META
from culturemanager.bench import routing
from culturemanager.bench.config import BenchConfig
from culturemanager.bench.data import TaskData
from culturemanager.bench.evaluate import Evaluated, both, method_variants, variant
from culturemanager.bench.judge import Judged
from culturemanager.bench.methods import CM_METHODS, METHODS, ROUTED, TRAINED, Job
from culturemanager.bench.paper import paper_numbers
from culturemanager.bench.prepare import Corpus, Split
from culturemanager.bench.results import Answers, best_baseline, comparisons, method_results, scores_of
from culturemanager.bench.score import PRIMARY, c_spec_summary, culture_matrix, router_summary
from culturemanager.bench.train import Trained
from culturemanager.records import BASE
from culturemanager.rundir import library_versions
from culturemanager.stages.route import Router


def results(cfg: BenchConfig, split: Split, corpus: Corpus, trained: Trained, ev: Evaluated, judged: Judged,
            seeds_done: list[int], command: str = "", quick: bool = False, timings: dict | None = None) -> dict:
    """results.json's content for the training seeds finished so far."""
    culture_of = split.culture_of()
    names = [m for m in METHODS if m in split.methods]
    a = scoring(cfg, split, judged)
    for name in names:
        seeds = seeds_done if name in TRAINED else seeds_done[:1]
        a.p[name] = {s: {t.spec.id: method_answers(cfg, split, trained.adapters, name, t, s, ev)
                         for t in split.ok_tasks} for s in seeds}
    b = cfg.bench
    methods = method_results(a, b.split_seed, b.bootstrap)
    best = best_baseline(methods, metric=PRIMARY[split.family])
    pairs = [("CultureManager", "TaskSFT"), ("CultureManager", best or ""), ("CultureManager", "Original"),
             ("CultureManager", "CultureManager (known culture)"), ("CultureManager", "CultureManager-all"),
             ("CultureManager task-specific only", "CultureManager task-agnostic only"),
             ("CultureManager (known culture)", "CultureManager (no label check)"),
             ("CultureManager (known culture)", "CultureManager (no selection)"),
             ("CultureManager", "CultureSFT"), ("CultureManager", "CultureLLM"),
             ("CultureSFT -> CultureManager", "CultureSFT"),
             ("CultureSFT -> CultureManager", "CultureManager (known culture)"), ("TaskSFT", "Probe (linear)"),
             ("CultureManager (embedding router)", "CultureManager (prompt router)"),
             ("CultureManager (top-2 mix)", "CultureManager")]
    return {
        "schema": 2, "family": split.family, "primary_metric": PRIMARY[split.family],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": command, "quick": quick,
        "models": {"target": cfg.target.model, "generator": cfg.generator.model
                   if CM_METHODS & set(split.methods) else None},
        "protocol": {"demo_share": b.demo_share, "test_cap": b.test_cap, "split_seed": b.split_seed,
                     "seeds": seeds_done, "seeds_planned": b.seeds, "bootstrap": b.bootstrap,
                     "validation_cut": b.validation_cut,
                     "train": cfg.train.model_dump(mode="json"), "survey_train": b.survey_train,
                     "max_length": cfg.target.max_length, "prompt_template": split.prompt_template,
                     "prompt_preamble": b.prompt_preamble, "tasks_file": str(b.tasks)},
        "tasks": [t.info for t in split.tasks], "cultures": split.cultures, "methods": methods,
        "best_baseline": best, "comparisons": comparisons(a, pairs, b.split_seed, b.bootstrap),
        "router": router_summary(ev.routed[cfg.router.kind], culture_of,
                                 routing.router_options(cfg.router, split.cultures)) if ev.routed else None,
        "routers": with_mixing(cfg, split, trained.adapters, ev, seeds_done[0]) if ev.routed and
        split.family == "labels" else (ev.routing or None),
        "c_spec": c_spec_summary(c_spec_matrices(cfg, split, trained.adapters, ev, judged, seeds_done),
                                 split.cultures),
        "contamination": contamination(cfg, split, corpus),
        "adapters": {j.slug: {"kind": j.kind, "name": j.name, "seed": j.seed, "trained": bool(p),
                              **(adapter_meta(p) if p else {})} for j, p in trained.adapters.items()},
        "pipeline": corpus.counts, "paper": paper_numbers(b.paper) if b.paper else None,
        "judge": {"by": judged.by, "distinct_answers": sum(len(v) for v in judged.verdicts.values())}
        if judged.verdicts else None,
        "timings": timings if timings is not None else {}, "versions": library_versions(),
    }


def scoring(cfg: BenchConfig, split: Split, judged: Judged) -> Answers:
    """What scores this run's answers: gold labels, and per family the options or accepted answers."""
    ok, family = split.ok_tasks, split.family
    return Answers({t.spec.id: [y for _, y in t.test] for t in ok}, split.culture_of(),
                   family=family, labels={t.spec.id: list(t.task.labels or []) for t in ok},
                   accepted={t.spec.id: t.test_answers for t in ok},
                   language={t.spec.id: t.spec.language for t in ok},
                   judged=judged.verdicts if family == "free_text" and cfg.bench.judge.enabled else None,
                   base_rate={t.spec.id: sum(y == "1" for _, y in t.demos) / len(t.demos) for t in ok}
                   if family == "labels" else {}, validation=family == "labels")


def method_answers(cfg: BenchConfig, split: Split, adapters: dict[Job, Path | None], method: str, task: TaskData,
                   seed: int, ev: Evaluated) -> tuple[list, list, list]:
    """(answers, calibrated, validation-calibrated answers) per test input of one method, seed and task
    (evaluate.both)."""
    if method not in ROUTED:
        return both(ev.answers[(method_variants(method, task, seed, split.cultures, adapters)[0], task.spec.id)])
    kind, top_k = ROUTED[method]
    return routed_answers(cfg, split, adapters, kind or cfg.router.kind, top_k, task, seed, ev)


def routed_answers(cfg: BenchConfig, split: Split, adapters: dict[Job, Path | None], kind: str, top_k: int,
                   task: TaskData, seed: int, ev: Evaluated) -> tuple[list, list, list]:
    """The same rule as predict: the routed culture's adapter answers, the base model for "Others" and for a
    culture without an adapter (Router.adapter_for); with top_k > 1 the top routes' adapters together."""
    router = Router(True, routing.router_options(cfg.router, split.cultures), "",
                    {c: str(adapters.get(Job("cm", c, seed)) or "") or None for c in split.cultures}, 0, top_k=top_k)
    by_adapter = {c: both(ev.answers[(variant(Job("cm", c, seed), "CultureManager", adapters), task.spec.id)])
                  for c in split.cultures}
    by_adapter[BASE] = both(ev.answers[("base", task.spec.id)])
    return routing.routed_answers(by_adapter, router, ev.routed[kind][task.spec.id],
                                  ev.routed["probs"][kind][task.spec.id])


def with_mixing(cfg: BenchConfig, split: Split, adapters: dict[Job, Path | None], ev: Evaluated, seed: int) -> dict:
    """The router measurement with, per router, top-1 against top-2 mixing on the quarter of the test inputs where
    the router is least sure, for training seed `seed` (P(positive) uncalibrated and calibrated)."""
    out = {kind: dict(v) for kind, v in ev.routing.items()}
    for kind in out:
        gold, conf, top1, mixed = [], [], ([], []), ([], [])
        for t in split.ok_tasks:
            gold += [y for _, y in t.test]
            conf += [max(p.values()) if p else 1.0 for p in ev.routed["probs"][kind][t.spec.id]]
            for k, dest in ((1, top1), (2, mixed)):
                for j, p in enumerate(routed_answers(cfg, split, adapters, kind, k, t, seed, ev)[:2]):
                    dest[j].extend(p)
        out[kind]["top2_mixing"] = {"seed": seed, **{name: routing.least_sure(gold, top1[j], mixed[j], conf)
                                                     for j, name in enumerate(("raw", "calibrated"))}}
    return out


def c_spec_matrices(cfg: BenchConfig, split: Split, adapters: dict[Job, Path | None], ev: Evaluated,
                    judged: Judged, seeds_done: list[int]) -> dict:
    """Each culture's adapter on each culture's tasks, per seed (every adapter answers every task): positive-
    class F1 for the two-label formats (the paper's), the family's primary score otherwise."""
    if "CultureManager" not in split.methods:
        return {}
    a = scoring(cfg, split, judged)
    metric = "f1_positive" if split.family == "labels" else PRIMARY[split.family]
    matrices = {}
    for s in seeds_done:
        f1 = {(c, t.spec.id): scores_of(a, t.spec.id, both(ev.answers[(variant(Job("cm", c, s), "CultureManager",
                                                                               adapters), t.spec.id)])[0])[metric]
              for c in split.cultures for t in split.ok_tasks}
        matrices[s] = culture_matrix(f1, split.cultures, split.culture_of())
    return matrices


def contamination(cfg: BenchConfig, split: Split, corpus: Corpus) -> dict | None:
    """How many kept synthetic samples match a test input (the synthesis check's definition of a leak), and why
    synthesis dropped the samples it dropped. None when the pipeline did not run."""
    if not corpus.samples:
        return None
    from culturemanager.text.leakage import LeakIndex

    # one definition of a leak: the synthesis check's, over every test input of the bench
    index = LeakIndex([x for t in split.ok_tasks for x, _ in t.test], cfg.synthesis.leakage_ngram)
    kept = [s for c in split.cultures for s in corpus.samples.get(c, [])]
    dropped = cfg.bench.dir / "pipeline" / "samples" / "dropped.jsonl"
    reasons = [json.loads(line)["reason"] for line in dropped.read_text(encoding="utf-8").splitlines()
               if line.strip()] if dropped.exists() else []
    per = {c: {m: sum(s.provenance.mode == m for s in corpus.samples.get(c, []))
               for m in ("task_specific", "task_agnostic")} for c in split.cultures}
    return {"kept_samples_matching_test": sum(index.leaks(s.text) for s in kept),
            "dropped_as_leakage": reasons.count("leaks_evaluation"), "synthetic_samples": per,
            "kept_samples": len(kept), "dropped_by_reason": {r: reasons.count(r) for r in sorted(set(reasons))}}


def adapter_meta(folder: Path) -> dict:
    meta = json.loads((folder / META).read_text(encoding="utf-8"))
    return {k: meta.get(k) for k in ("examples", "steps", "planned_steps", "best_step", "examples_seen",
                                     "stopped_early")} | {"final_loss": (meta.get("loss_curve") or [None])[-1]}
