"""The benchmark's numbers from its answers: every method's scores with and without label calibration, their
paired bootstrap intervals, and the comparisons the report reads from. Pure functions of the answers.

`Answers` holds, per method, seed and task, the answer to each test input, uncalibrated and calibrated
(contextual calibration: each variant's lean on content-free input removed, for every method alike): P(positive)
for the two-label formats, a probability per option for multiple choice, the generated answer for free text
(bench/score.py FAMILIES; free text has no calibrated kind). The two-label formats get a third answer kind,
"base_rate" (`score.at_base_rate`): the uncalibrated P(positive) cut at the task's positive share (from its
demonstrations' labels), so the top share of a task's test inputs is answered positive, for every method alike:
how well a method ranks, read at the operating point a deployment that knows its base rate would use. And a
fourth, "validation": each adapter's P(positive) calibrated to its cut on its own validation slice (held out of
its training data: TaskSFT's labelled demonstrations, CultureManager's synthetic samples; `Engine.validation_prior`
by `bench.validation_cut`: as many answered positive as the slice holds positives, or the best macro-F1 there), the
content-free calibration for a variant without one (the base model, the probe, the survey adapters). From them:
- per method: `aggregate` of the per-task scores (positive-class F1, macro-F1, accuracy, the share answered
  positive, ROC-AUC), for both answer kinds, as mean / std over training seeds;
- per method: a 95% paired bootstrap interval of its overall scores over test inputs (the same resampled inputs
  for every method: `bench/stats.py`): macro-F1, positive-class F1 and AUC for labels, accuracy and macro-F1 for
  options, soft and exact match for free text (score.CI_METRICS);
- `comparisons`: method A minus method B per resample, its interval and a verdict (better / worse / not
  distinguishable), for the pairs the reading names.

Run: imported by `bench/assemble.py`; no entry point of its own.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np

from culturemanager.bench.methods import BASELINE, METHODS
from culturemanager.bench.score import (
    CI_METRICS,
    PRIMARY,
    aggregate,
    at_base_rate,
    free_text_task_scores,
    option_scores,
    task_scores,
)
from culturemanager.bench.stats import (
    auc,
    bootstrap_weights,
    interval,
    verdict,
    weighted_auc,
    weighted_macro_f1,
    weighted_mean,
    weighted_scores,
)

KINDS = ("raw", "calibrated", "base_rate", "validation")
STORED = {"raw": 0, "calibrated": 1, "validation": 2}  # where each kind sits in a method's answers (evaluate.both)
DRAWS = 1000


@dataclass
class Answers:
    """p[method][seed][task] = (answers uncalibrated, calibrated), one per test input: P(positive) (family
    "labels"), a probability per option ("options") or a generated answer ("free_text", where calibration does
    not apply: both are the same answers)."""
    gold: dict[str, list[str]]  # task -> gold labels of its test inputs ("1"/"0", an option's letter, an answer)
    culture_of: dict[str, str]  # task -> culture
    p: dict[str, dict[int, dict[str, tuple[list, list]]]] = field(default_factory=dict)
    family: str = "labels"
    labels: dict[str, list[str]] = field(default_factory=dict)  # options: task -> the options' letters
    accepted: dict[str, list[list[str]]] = field(default_factory=dict)  # free_text: task -> answers per input
    language: dict[str, str | None] = field(default_factory=dict)  # free_text: task -> soft match's language
    judged: dict[str, dict[tuple[int, str], bool | None]] | None = None  # free_text with bench.judge: task ->
    # (test input, answer) -> the judge's verdict
    base_rate: dict[str, float] = field(default_factory=dict)  # labels: task -> its demonstrations' positive share
    validation: bool = False  # labels: the answers carry a third kind, calibrated to each validation slice's cut

    @property
    def kinds(self) -> tuple[str, ...]:
        if self.family == "free_text":
            return ("raw",)
        if self.family != "labels" or not self.base_rate:
            return KINDS[:2]
        return KINDS if self.validation else KINDS[:3]

    def of_kind(self, task: str, answers: tuple[list, ...], kind: str) -> list:
        """One answer kind of a method's (uncalibrated, calibrated[, validation-calibrated]) answers to a task."""
        if kind == "base_rate":
            return at_base_rate(answers[0], self.base_rate[task])
        return answers[STORED[kind]]

    @property
    def ci_metrics(self) -> tuple[str, ...]:
        return CI_METRICS[self.family] + (("judge_match",) if self.family == "free_text" and self.judged else ())

    def verdicts(self, task: str, answers: list[str]) -> list[bool | None]:
        table = (self.judged or {}).get(task, {})
        return [table.get((i, a)) for i, a in enumerate(answers)]


def method_results(a: Answers, seed: int = 0, draws: int = DRAWS) -> list[dict]:
    """Every method's scores (each answer kind), spread over seeds, and bootstrap intervals of the overall
    scores. `seed` fixes the resamples (shared by all methods, so intervals of differences are paired)."""
    weights = resamples(a, seed, draws)
    out = []
    for name, per_seed in a.p.items():
        entry: dict = {"name": name, "group": METHODS[name][0], "description": METHODS[name][1]}
        for kind in a.kinds:
            scores = {s: {t: scores_of(a, t, a.of_kind(t, per_seed[s][t], kind)) for t in per_seed[s]}
                      for s in per_seed}
            agg = aggregate(scores, a.culture_of)
            entry["seeds"] = agg.pop("seeds")
            dist = overall_distribution(a, per_seed, weights, kind)
            agg["overall_ci"] = {m: interval(dist[m]) for m in a.ci_metrics}
            entry[kind] = agg
        out.append(entry)
    return out


def comparisons(a: Answers, pairs: list[tuple[str, str]], seed: int = 0, draws: int = DRAWS) -> list[dict]:
    """A minus B per resample of the test inputs (paired), for the family's metrics (`CI_METRICS`), each answer
    kind: the observed difference, its 95% interval and the verdict the interval gives."""
    weights = resamples(a, seed, draws)
    out = []
    for first, second in dict.fromkeys(pairs):  # a pair named twice (the best baseline is TaskSFT) is shown once
        if first not in a.p or second not in a.p or first == second:
            continue
        row: dict = {"a": first, "b": second}
        for kind in a.kinds:
            da = overall_distribution(a, a.p[first], weights, kind)
            db = overall_distribution(a, a.p[second], weights, kind)
            oa, ob = observed(a, a.p[first], kind), observed(a, a.p[second], kind)
            row[kind] = {}
            for m in a.ci_metrics:
                lo, hi = interval(da[m] - db[m])
                row[kind][m] = {"difference": oa[m] - ob[m], "ci": [lo, hi], "verdict": verdict(lo, hi)}
        out.append(row)
    return out


def best_baseline(results: list[dict], kind: str = "raw", metric: str = "macro_f1") -> str | None:
    """The baseline with the highest overall mean (TaskSFT included)."""
    base = [m for m in results if m["group"] == BASELINE and (m.get(kind) or {}).get("overall", {}).get(metric)]
    return max(base, key=lambda m: m[kind]["overall"][metric]["mean"])["name"] if base else None


def primary(a: Answers) -> str:
    return PRIMARY[a.family]


# ------------------------------------------------------------------------------------------------ helpers

def scores_of(a: Answers, task: str, answers: list) -> dict:
    """One task's scores from one method's answers to its test inputs, in the family's metrics."""
    gold = a.gold[task]
    if a.family == "options":
        return option_scores(gold, answers, a.labels[task])
    if a.family == "free_text":
        out = free_text_task_scores(answers, a.accepted[task], a.language.get(task))
        if a.judged:
            out |= judge_scores(a.verdicts(task, answers), answers, a.accepted[task], a.language.get(task))
        return out
    return task_scores(gold, ["1" if x > 0.5 else "0" for x in answers]) | {"auc": auc(gold, answers)}


def judge_scores(verdicts: list[bool | None], answers: list[str], accepted: list[list[str]], language: str | None
                 ) -> dict[str, float]:
    """The judge's rate (an input without a verdict counts as not right), its agreement with soft match on the
    inputs it gave a verdict for, and the share without one."""
    from culturemanager.text.answers import soft_match

    n = len(verdicts)
    pairs = [(v, soft_match(x, acc, language)) for v, x, acc in zip(verdicts, answers, accepted) if v is not None]
    return {"judge_match": sum(v is True for v in verdicts) / n if n else 0.0,
            "judge_agreement": sum(v == m for v, m in pairs) / len(pairs) if pairs else float("nan"),
            "judge_no_verdict": (n - len(pairs)) / n if n else 0.0}


def resamples(a: Answers, seed: int, draws: int) -> dict[str, np.ndarray]:
    """One set of bootstrap weights per task, the same for every method (paired)."""
    rng = np.random.default_rng(seed)
    return {t: bootstrap_weights(len(a.gold[t]), draws, rng) for t in sorted(a.gold)}


def resampled(a: Answers, task: str, answers: list, metric: str, W: np.ndarray) -> np.ndarray:
    """One metric of one method's answers to a task, per resample (rows of W)."""
    if a.family == "options":
        labels = a.labels[task]
        g = np.array([labels.index(y) for y in a.gold[task]])
        pred = np.asarray(answers, float).argmax(1)
        return weighted_mean(g == pred, W) if metric == "accuracy" else weighted_macro_f1(g, pred, W, len(labels))
    if a.family == "free_text":
        from culturemanager.text.answers import exact_match, soft_match

        lang = a.language.get(task)
        if metric == "judge_match":
            return weighted_mean(np.array([v is True for v in a.verdicts(task, answers)]), W)
        match = soft_match if metric == "soft_match" else (lambda x, acc, _: exact_match(x, acc))
        return weighted_mean(np.array([match(x, acc, lang) for x, acc in zip(answers, a.accepted[task])]), W)
    g = np.array([y == "1" for y in a.gold[task]])
    p = np.asarray(answers, float)
    return weighted_auc(g, p, W) if metric == "auc" else weighted_scores(g, p > 0.5, W)[metric]


def overall_distribution(a: Answers, per_seed: dict, weights: dict[str, np.ndarray], kind: str
                         ) -> dict[str, np.ndarray]:
    """Per resample: the mean over tasks of the mean over seeds of each metric."""
    tasks = [t for t in a.gold if all(t in per_seed[s] for s in per_seed)]
    answers = {(s, t): a.of_kind(t, per_seed[s][t], kind) for t in tasks for s in per_seed}
    out = {}
    for m in a.ci_metrics:
        per_task = [np.mean([resampled(a, t, answers[s, t], m, weights[t]) for s in per_seed], axis=0)
                    for t in tasks]
        out[m] = np.nanmean(per_task, axis=0) if per_task else np.full(DRAWS, np.nan)
    return out


def observed(a: Answers, per_seed: dict, kind: str) -> dict[str, float]:
    tasks = [t for t in a.gold if all(t in per_seed[s] for s in per_seed)]
    return {m: statistics.fmean(statistics.fmean(scores_of(a, t, a.of_kind(t, per_seed[s][t], kind))[m]
                                                 for s in per_seed)
                                for t in tasks) for m in a.ci_metrics}
