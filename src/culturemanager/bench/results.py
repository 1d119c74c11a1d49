"""The benchmark's numbers from its answers: every method's scores with and without label calibration, their
paired bootstrap intervals, and the comparisons the report reads from. Pure functions of the answers.

`Answers` holds, per method, seed and task, P(positive) for each test input, uncalibrated and calibrated
(contextual calibration: each variant's lean on content-free input removed, for every method alike). From them:
- per method: `aggregate` of the per-task scores (positive-class F1, macro-F1, accuracy, the share answered
  positive, ROC-AUC), for both answer kinds, as mean / std over training seeds;
- per method: a 95% paired bootstrap interval of its overall macro-F1, positive-class F1 and AUC over test inputs
  (the same resampled inputs for every method: `bench/stats.py`);
- `comparisons`: method A minus method B per resample, its interval and a verdict (better / worse / not
  distinguishable), for the pairs the reading names.

Run: imported by `bench/run.py`; no entry point of its own.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np

from culturemanager.bench.methods import BASELINE, METHODS
from culturemanager.bench.score import aggregate, task_scores
from culturemanager.bench.stats import auc, bootstrap_weights, interval, verdict, weighted_auc, weighted_scores

KINDS = ("raw", "calibrated")
CI_METRICS = ("macro_f1", "f1_positive", "auc")
DRAWS = 1000


@dataclass
class Answers:
    """p[method][seed][task] = (P(positive) uncalibrated, calibrated), one value per test input."""
    gold: dict[str, list[str]]  # task -> gold labels of its test inputs
    culture_of: dict[str, str]  # task -> culture
    p: dict[str, dict[int, dict[str, tuple[list[float], list[float]]]]] = field(default_factory=dict)


def method_results(a: Answers, seed: int = 0, draws: int = DRAWS) -> list[dict]:
    """Every method's scores (both answer kinds), spread over seeds, and bootstrap intervals of the overall
    scores. `seed` fixes the resamples (shared by all methods, so intervals of differences are paired)."""
    weights = resamples(a, seed, draws)
    out = []
    for name, per_seed in a.p.items():
        entry: dict = {"name": name, "group": METHODS[name][0], "description": METHODS[name][1]}
        for kind in KINDS:
            scores = {s: {t: scores_of(a.gold[t], per_seed[s][t][KINDS.index(kind)]) for t in per_seed[s]}
                      for s in per_seed}
            agg = aggregate(scores, a.culture_of)
            entry["seeds"] = agg.pop("seeds")
            dist = overall_distribution(a, per_seed, weights, kind)
            agg["overall_ci"] = {m: interval(dist[m]) for m in CI_METRICS}
            entry[kind] = agg
        out.append(entry)
    return out


def comparisons(a: Answers, pairs: list[tuple[str, str]], seed: int = 0, draws: int = DRAWS) -> list[dict]:
    """A minus B per resample of the test inputs (paired), for macro-F1, positive-class F1 and AUC, both answer
    kinds: the observed difference, its 95% interval and the verdict the interval gives."""
    weights = resamples(a, seed, draws)
    out = []
    for first, second in dict.fromkeys(pairs):  # a pair named twice (the best baseline is TaskSFT) is shown once
        if first not in a.p or second not in a.p or first == second:
            continue
        row: dict = {"a": first, "b": second}
        for kind in KINDS:
            da = overall_distribution(a, a.p[first], weights, kind)
            db = overall_distribution(a, a.p[second], weights, kind)
            oa, ob = observed(a, a.p[first], kind), observed(a, a.p[second], kind)
            row[kind] = {}
            for m in CI_METRICS:
                lo, hi = interval(da[m] - db[m])
                row[kind][m] = {"difference": oa[m] - ob[m], "ci": [lo, hi], "verdict": verdict(lo, hi)}
        out.append(row)
    return out


def best_baseline(results: list[dict], kind: str = "raw", metric: str = "macro_f1") -> str | None:
    """The baseline with the highest overall mean (TaskSFT included)."""
    base = [m for m in results if m["group"] == BASELINE and m[kind]["overall"]]
    return max(base, key=lambda m: m[kind]["overall"][metric]["mean"])["name"] if base else None


# ------------------------------------------------------------------------------------------------ helpers

def scores_of(gold: list[str], p: list[float]) -> dict:
    return task_scores(gold, ["1" if x > 0.5 else "0" for x in p]) | {"auc": auc(gold, p)}


def resamples(a: Answers, seed: int, draws: int) -> dict[str, np.ndarray]:
    """One set of bootstrap weights per task, the same for every method (paired)."""
    rng = np.random.default_rng(seed)
    return {t: bootstrap_weights(len(a.gold[t]), draws, rng) for t in sorted(a.gold)}


def overall_distribution(a: Answers, per_seed: dict, weights: dict[str, np.ndarray], kind: str
                         ) -> dict[str, np.ndarray]:
    """Per resample: the mean over tasks of the mean over seeds of each metric."""
    k = KINDS.index(kind)
    tasks = [t for t in a.gold if all(t in per_seed[s] for s in per_seed)]
    out = {}
    for m in CI_METRICS:
        per_task = []
        for t in tasks:
            g = np.array([y == "1" for y in a.gold[t]])
            runs = []
            for s in per_seed:
                p = np.asarray(per_seed[s][t][k], float)
                runs.append(weighted_auc(g, p, weights[t]) if m == "auc"
                            else weighted_scores(g, p > 0.5, weights[t])[m])
            per_task.append(np.mean(runs, axis=0))
        out[m] = np.nanmean(per_task, axis=0) if per_task else np.full(DRAWS, np.nan)
    return out


def observed(a: Answers, per_seed: dict, kind: str) -> dict[str, float]:
    k = KINDS.index(kind)
    tasks = [t for t in a.gold if all(t in per_seed[s] for s in per_seed)]
    return {m: statistics.fmean(statistics.fmean(scores_of(a.gold[t], per_seed[s][t][k])[m] for s in per_seed)
                                for t in tasks) for m in CI_METRICS}
