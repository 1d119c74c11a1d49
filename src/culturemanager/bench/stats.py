"""Statistics for the benchmark: ROC-AUC, and paired bootstrap intervals over test inputs. Small pure numpy
functions, pinned by hand-worked examples in the tests.

- `auc(gold, scores)`: the probability that a random positive input scores above a random negative one (ties
  count half). Threshold-free: a model that gives every input the same score gets 0.5, whatever label it answers.
- `bootstrap_weights(n, draws, rng)`: how often each test input appears in each bootstrap resample (multinomial
  counts), so every metric below is computed on all resamples at once, and two methods evaluated on the same
  weights are *paired*: the same resampled inputs for both.
- `weighted_scores(gold, pred, W)`: positive-class F1, macro-F1 and accuracy of binary labels per resample;
  `weighted_auc(gold, scores, W)`: AUC per resample.
- `interval(values)`: the mean-free percentile interval (2.5%, 97.5%) of a resampled statistic.

A method's overall score per resample is the mean over tasks of (the mean over training seeds of) its per-task
score on that task's resampled inputs; the difference of two methods per resample gives the paired interval of
their difference. An interval that excludes 0 is what the report calls "better" or "worse"; one that contains 0
is "not distinguishable".

Run: imported by the benchmark; no entry point of its own.
"""

from __future__ import annotations

import numpy as np

LEVEL = 0.95


def auc(gold: list[str] | np.ndarray, scores: list[float] | np.ndarray, positive: str = "1") -> float:
    """ROC-AUC of `scores` for the positive class (Mann-Whitney); nan when one class is missing."""
    g = np.asarray(gold) == positive
    return float(weighted_auc(g, np.asarray(scores, dtype=float), np.ones((1, len(g))))[0])


def bootstrap_weights(n: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """[draws, n] counts: row b says how many times each of the n inputs appears in resample b (rows sum to n)."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=draws).astype(float)


def weighted_scores(gold: np.ndarray, pred: np.ndarray, W: np.ndarray) -> dict[str, np.ndarray]:
    """Per resample (rows of W): positive-class F1, macro-F1 (mean of both classes' F1) and accuracy of binary
    predictions. `gold` and `pred` are boolean arrays (True = positive); an F1 with no true positive is 0."""
    g, p = np.asarray(gold, bool), np.asarray(pred, bool)
    tp, fp = W @ (g & p), W @ (~g & p)
    fn, tn = W @ (g & ~p), W @ (~g & ~p)
    f1_pos = _f1(tp, fp, fn)
    f1_neg = _f1(tn, fn, fp)
    total = W.sum(1)
    return {"f1_positive": f1_pos, "macro_f1": (f1_pos + f1_neg) / 2, "accuracy": (tp + tn) / total}


def weighted_mean(values: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Per resample: the weighted mean of a per-input score (1/0 correct, soft match, ...)."""
    return (W @ np.asarray(values, float)) / W.sum(1)


def weighted_macro_f1(gold: np.ndarray, pred: np.ndarray, W: np.ndarray, classes: int) -> np.ndarray:
    """Per resample: macro-F1 over `classes` classes (integer arrays gold, pred in 0..classes-1): the mean of every
    class's F1 on the resampled inputs (a class with no true positive scores 0, as in `metrics.macro_f1`)."""
    g, p = np.asarray(gold), np.asarray(pred)
    f1s = [_f1(W @ ((g == k) & (p == k)), W @ ((g != k) & (p == k)), W @ ((g == k) & (p != k)))
           for k in range(classes)]
    return np.mean(f1s, axis=0)


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(tp, dtype=float), where=(tp > 0) & (denom > 0))


def weighted_auc(gold: np.ndarray, scores: np.ndarray, W: np.ndarray) -> np.ndarray:
    """AUC per resample: each (positive, negative) pair counts with the product of the two inputs' weights."""
    g = np.asarray(gold, bool)
    s = np.asarray(scores, float)
    pos, neg = s[g], s[~g]
    if len(pos) == 0 or len(neg) == 0:
        return np.full(W.shape[0], np.nan)
    wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])  # [npos, nneg]
    wp, wn = W[:, g], W[:, ~g]
    num = np.einsum("bi,ij,bj->b", wp, wins, wn)
    den = wp.sum(1) * wn.sum(1)
    return np.divide(num, den, out=np.full(W.shape[0], np.nan), where=den > 0)


def interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of a bootstrap distribution (nan values, from resamples without both classes,
    are left out)."""
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(v, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def verdict(lo: float, hi: float) -> str:
    """How a paired difference's interval reads: 'better' (all above 0), 'worse' (all below) or
    'not distinguishable' (it contains 0)."""
    if lo > 0:
        return "better"
    if hi < 0:
        return "worse"
    return "not distinguishable"
