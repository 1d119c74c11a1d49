"""The benchmark's numbers from its predictions: small pure functions, tested against hand-worked examples.

Per task: positive-class F1 (the paper's F1), macro-F1 and accuracy; per culture the mean over its tasks; overall
the mean over all tasks. Each is computed per training seed, then summarised as mean, sample std and the values.
Router accuracy per task is the share of a task's test inputs routed to the task's culture; the C-SPEC score is
`evaluate.c_spec` of the matrix F1(culture i's adapter, culture j's tasks).

Run: imported by `culturemanager bench`; no entry point of its own.
"""

from __future__ import annotations

import math
import statistics

from culturemanager.metrics import accuracy, c_spec, calibrate, confusion, f1_for, log_odds, macro_f1

METRICS = ("f1_positive", "macro_f1", "accuracy", "positive_rate", "auc", "soft_match", "exact_match",
           "empty_share", "judge_match", "judge_agreement", "judge_no_verdict")
FAMILIES = {"binary": "labels", "true_false": "labels", "multiple_choice": "options", "free_text": "free_text"}
"""How a task format is answered and scored by the bench: labels (P(positive) of a two-label task: positive-class
F1, macro-F1, AUC), options (a probability per option: accuracy, macro-F1 over the options' letters) or
free_text (a generated answer: soft and exact match against the accepted answers)."""
PRIMARY = {"labels": "macro_f1", "options": "accuracy", "free_text": "soft_match"}
"""The metric a family's verdicts are read from."""
CI_METRICS = {"labels": ("macro_f1", "f1_positive", "auc"), "options": ("accuracy", "macro_f1"),
              "free_text": ("soft_match", "exact_match")}
"""The metrics that get paired bootstrap intervals, per family."""


def option_scores(gold: list[str], probs: list[list[float]], labels: list[str]) -> dict[str, float]:
    """Multiple choice: the likeliest option per input against the gold letter: accuracy and macro-F1 over the
    options."""
    pred = [labels[max(range(len(p)), key=p.__getitem__)] for p in probs]
    return {"macro_f1": macro_f1(gold, pred, labels), "accuracy": accuracy(gold, pred), "n": len(gold)}


def free_text_task_scores(answers: list[str], accepted: list[list[str]], language: str | None) -> dict[str, float]:
    """Free text: soft and exact match of each answer against its own accepted answers (answers.py), and the share
    of empty answers."""
    from culturemanager.text.answers import exact_match, soft_match

    n = len(answers)
    return {"soft_match": sum(soft_match(a, acc, language) for a, acc in zip(answers, accepted)) / n if n else 0.0,
            "exact_match": sum(exact_match(a, acc) for a, acc in zip(answers, accepted)) / n if n else 0.0,
            "empty_share": sum(not a.strip() for a in answers) / n if n else 0.0, "n": n}


def task_scores(gold: list[str], pred: list[str], positive: str = "1", labels: tuple[str, ...] = ("0", "1")
                ) -> dict[str, float]:
    return {"f1_positive": f1_for(gold, pred, positive), "macro_f1": macro_f1(gold, pred, list(labels)),
            "accuracy": accuracy(gold, pred), "n": len(gold),
            # the share answered positive: a model answering "1" to everything has a non-zero F1 of the positive
            # class (2p / (1 + p) for a positive share p) and a rate of 1.0, which this makes visible
            "positive_rate": sum(p == positive for p in pred) / len(pred) if pred else 0.0}


def spread(values: list[float]) -> dict:
    """mean, sample standard deviation (0 for one value) and the values themselves."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def aggregate(per_seed: dict[int, dict[str, dict[str, float]]], culture_of: dict[str, str]) -> dict:
    """per_seed[seed][task] = task_scores(...) -> tasks / cultures / overall, each metric as `spread`.

    Culture and overall averages are taken within a seed first, then spread over seeds."""
    seeds = sorted(per_seed)
    tasks = [t for t in culture_of if all(t in per_seed[s] for s in seeds)]
    out: dict = {"seeds": seeds, "tasks": {}, "cultures": {}, "overall": {}}
    if not seeds or not tasks:
        return out
    metrics = [m for m in METRICS if m in per_seed[seeds[0]][tasks[0]]]
    for t in tasks:
        out["tasks"][t] = {m: spread([per_seed[s][t][m] for s in seeds]) for m in metrics}
        out["tasks"][t]["n"] = per_seed[seeds[0]][t]["n"]
    cultures = list(dict.fromkeys(culture_of[t] for t in tasks))
    for c in cultures:
        mine = [t for t in tasks if culture_of[t] == c]
        out["cultures"][c] = {m: spread([statistics.fmean(per_seed[s][t][m] for t in mine) for s in seeds])
                              for m in metrics}
    out["overall"] = {m: spread([statistics.fmean(per_seed[s][t][m] for t in tasks) for s in seeds])
                      for m in metrics}
    return out


def routed_labels(by_adapter: dict[str, list[float]], adapter_of_row: list[str]) -> list[float]:
    """CultureManager with its router: row i takes the answer of the adapter it was routed to
    (`Router.adapter_for` of its routed culture, the base model's name for "Others")."""
    return [by_adapter[a][i] for i, a in enumerate(adapter_of_row)]


def router_summary(routed: dict[str, list[str]], culture_of: dict[str, str], options: list[str]) -> dict:
    """routed[task] = the router's choice per test input -> overall and per-task accuracy, confusion matrix."""
    rows = list(dict.fromkeys(culture_of[t] for t in routed))
    gold = [culture_of[t] for t in routed for _ in routed[t]]
    pred = [c for t in routed for c in routed[t]]
    full = confusion(gold, pred, options)
    return {"options": options, "accuracy": accuracy(gold, pred),
            "per_task": {t: accuracy([culture_of[t]] * len(r), r) for t, r in routed.items()},
            "confusion": {"rows": rows, "cols": options, "counts": [full[options.index(c)] for c in rows]}}


def culture_matrix(f1: dict[tuple[str, str], float], cultures: list[str], culture_of: dict[str, str]
                   ) -> list[list[float]]:
    """f1[(adapter culture, task)] -> M[i][j] = mean F1 of culture i's adapter over culture j's tasks."""
    m = []
    for a in cultures:
        row = []
        for c in cultures:
            vals = [f1[(a, t)] for t, tc in culture_of.items() if tc == c and (a, t) in f1]
            row.append(statistics.fmean(vals) if vals else 0.0)
        m.append(row)
    return m


def c_spec_summary(matrices: dict[int, list[list[float]]], cultures: list[str]) -> dict | None:
    """Per-seed matrices -> the mean matrix and the C-SPEC score's spread over seeds."""
    if not matrices or len(cultures) < 2:
        return None
    seeds = sorted(matrices)
    n = len(cultures)
    mean = [[statistics.fmean(matrices[s][i][j] for s in seeds) for j in range(n)] for i in range(n)]
    return {"cultures": cultures, "matrix": mean, "score": spread([c_spec(matrices[s]) for s in seeds]),
            "seeds": seeds}


def at_base_rate(p_positive: list[float], rate: float) -> list[float]:
    """P(positive) shifted in log-odds so that the round(rate * n) highest-scored inputs, and only they, are above
    0.5: the answers at a known base rate (the task's positive share), whatever lean the model has. Monotone, so
    the ranking (AUC) is unchanged. Inputs tied at the cut all stay below it (fewer positives, never more).
    Transductive: the cut depends on the other test inputs' scores (never on their labels)."""
    n = len(p_positive)
    if not n:
        return []
    z = [log_odds(x) for x in p_positive]
    k = min(n, max(0, round(rate * n)))
    ranked = sorted(z, reverse=True)
    cut = ranked[0] if k == 0 else ranked[-1] - 1.0 if k == n else (ranked[k - 1] + ranked[k]) / 2
    return [1 / (1 + math.exp(min(max(cut - x, -700.0), 700.0))) for x in z]


def calibrated(p_positive: list[float], prior: float) -> list[float]:
    """Binary answers calibrated on the content-free P(positive) (`metrics.calibrate`, the one definition)."""
    return [calibrate([1 - p, p], [1 - prior, prior])[1] for p in p_positive]
