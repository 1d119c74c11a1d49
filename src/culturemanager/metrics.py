"""Scoring functions: small and pure, checked against hand-computed examples in the tests.

Run: imported by `predict` (and the benchmark); no entry point of its own.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence


def f1_for(gold: list[str], pred: list[str], positive: str) -> float:
    """F1 of one class (the paper's F1 is the positive class's)."""
    tp = sum(g == positive and p == positive for g, p in zip(gold, pred, strict=True))
    fp = sum(g != positive and p == positive for g, p in zip(gold, pred, strict=True))
    fn = sum(g == positive and p != positive for g, p in zip(gold, pred, strict=True))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def macro_f1(gold: list[str], pred: list[str], labels: list[str]) -> float:
    return sum(f1_for(gold, pred, lab) for lab in labels) / len(labels) if labels else 0.0


def accuracy(gold: list[str], pred: list[str]) -> float:
    return sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold) if gold else 0.0


def confusion(gold: list[str], pred: list[str], labels: list[str]) -> list[list[int]]:
    """Counts, rows = gold label, columns = predicted label, both in `labels` order (e.g. router cultures)."""
    index = {lab: i for i, lab in enumerate(labels)}
    m = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, pred, strict=True):
        m[index[g]][index[p]] += 1
    return m


def c_spec(matrix: list[list[float]]) -> float:
    """The culture-specificity score: matrix[i][j] = F1 of culture i's adapter on culture j's tasks. Each column
    is divided by its maximum, then the diagonal is averaged: 1.0 means every culture is served best by its own
    adapter. A column whose maximum is 0 contributes 0."""
    n = len(matrix)
    if n == 0 or any(len(row) != n for row in matrix):
        raise ValueError("c_spec needs a non-empty square matrix")
    col_max = [max(matrix[i][j] for i in range(n)) for j in range(n)]
    return sum(matrix[j][j] / col_max[j] if col_max[j] > 0 else 0.0 for j in range(n)) / n


def calibrate(probs: list[float], prior: list[float], eps: float = 1e-6) -> list[float]:
    """Contextual calibration (Zhao et al. 2021): each label's probability divided by the one the same model gives
    it on content-free input, renormalised. A model that leans to one label whatever the text is then judged on
    what the text adds to that lean."""
    w = [p / max(q, eps) for p, q in zip(probs, prior, strict=True)]
    total = sum(w)
    return [x / total for x in w] if total > 0 else list(probs)


def log_odds(p: float) -> float:
    """log(p / (1 - p)), with p kept inside (1e-9, 1 - 1e-9)."""
    q = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(q / (1 - q))


def best_cut(gold: list[bool], p_positive: list[float]) -> float | None:
    """The log-odds cut (answer positive above it) with the highest macro-F1 on (gold, P(positive)), the median of
    the tied best cuts; None when gold holds one label only (no cut can be chosen from it)."""
    if not gold or all(gold) or not any(gold):
        return None
    z = sorted(set(log_odds(x) for x in p_positive))
    cuts = [z[0] - 1.0] + [(a + b) / 2 for a, b in zip(z, z[1:])] + [z[-1] + 1.0]
    g = ["1" if x else "0" for x in gold]
    scored = [(macro_f1(g, ["1" if log_odds(x) > c else "0" for x in p_positive], ["0", "1"]), c) for c in cuts]
    top = max(f for f, _ in scored)
    return statistics.median(c for f, c in scored if f == top)


def bagged_cut(gold: list[bool], p_positive: list[float], draws: int = 200, seed: int = 0) -> float | None:
    """`best_cut`'s median over `draws` bootstrap resamples of (gold, P(positive)), each label resampled within
    itself (so every resample keeps both labels and the slice's label counts): on a slice of a dozen examples the
    best cut jumps between the gaps of a few scores, and the median over resamples settles it. None where
    `best_cut` is None."""
    if not gold or all(gold) or not any(gold):
        return None
    rng = random.Random(seed)
    pos = [x for g, x in zip(gold, p_positive, strict=True) if g]
    neg = [x for g, x in zip(gold, p_positive, strict=True) if not g]
    labels = [True] * len(pos) + [False] * len(neg)
    cuts = [best_cut(labels, rng.choices(pos, k=len(pos)) + rng.choices(neg, k=len(neg))) for _ in range(draws)]
    return statistics.median(c for c in cuts if c is not None)


def share_cut(p_positive: list[float], share: float) -> float | None:
    """The log-odds cut with `share` of the scores above it (round(share * n) of them; half-way between the two
    scores it separates): answer positive as often as the labels say positives occur. None for no scores."""
    if not p_positive:
        return None
    z = sorted((log_odds(x) for x in p_positive), reverse=True)
    k = round(share * len(z))
    if k <= 0:
        return z[0] + 1.0
    if k >= len(z):
        return z[-1] - 1.0
    return (z[k - 1] + z[k]) / 2


def validation_cut(rule: str, gold: list[bool], p_positive: list[float]) -> float | None:
    """The log-odds operating point an adapter gets from its own held-out labelled slice, by `rule`:
    "share" (`share_cut` at the slice's positive share: as many answered positive as the slice has positives) or
    "best_f1" (`best_cut`: the cut with the best macro-F1 there). None when the slice holds one label only."""
    if not gold or all(gold) or not any(gold):
        return None
    if rule == "share":
        return share_cut(p_positive, sum(gold) / len(gold))
    if rule == "best_f1":
        return best_cut(gold, p_positive)
    raise ValueError(f"unknown validation cut rule {rule!r} (share, best_f1)")


def cut_prior(cut: float, positive: int) -> list[float]:
    """The two-label prior whose contextual calibration (`calibrate`) answers positive exactly where P(positive)'s
    log-odds is above `cut`: calibrated P(positive) > 1/2 iff p / prior_pos > (1 - p) / prior_neg."""
    pos = 1 / (1 + math.exp(-cut))
    return [pos, 1 - pos] if positive == 0 else [1 - pos, pos]


def free_text_scores(answers: list[str], accepted: list[Sequence[str]], languages: list[str | None],
                     judged: list[bool | None] | None = None) -> dict:
    """Exact- and soft-match rates of generated answers, each against its own accepted answers, soft match
    lemmatized in that row's language (answers.py). `lemmatized`: the rows whose language has a lemmatizer.
    With `judged` (an LLM judge's verdict per row, None where it gave none) also the judge's rate and its
    agreement with soft match (`judge_agreement`)."""
    from culturemanager.text.answers import exact_match, lemmatizer, soft_match

    rows = list(zip(answers, accepted, languages, strict=True))
    n = len(rows)
    soft = [soft_match(a, acc, lang) for a, acc, lang in rows]
    out = {"n": n,
           "exact_match": sum(exact_match(a, acc) for a, acc, _ in rows) / n if n else 0.0,
           "soft_match": sum(soft) / n if n else 0.0,
           "empty_answers": sum(not a.strip() for a, _, _ in rows),
           "lemmatized": sum(lemmatizer(lang) is not None for _, _, lang in rows)}
    if judged is not None:
        pairs = [(j, s) for j, s in zip(judged, soft, strict=True) if j is not None]
        out["judge"] = {"judged": len(pairs), "no_verdict": n - len(pairs),
                        "judge_match": sum(j for j, _ in pairs) / len(pairs) if pairs else None,
                        **judge_agreement([j for j, _ in pairs], [s for _, s in pairs])}
    return out


def judge_agreement(judge: list[bool], soft: list[bool]) -> dict:
    """How often an LLM judge and soft match agree on the same answers: the share of equal verdicts and Cohen's
    kappa (agreement beyond what the two rates give by chance; None when chance agreement is already 1)."""
    n = len(judge)
    if n == 0:
        return {"agreement": None, "kappa": None}
    po = sum(j == s for j, s in zip(judge, soft, strict=True)) / n
    pj, ps = sum(judge) / n, sum(soft) / n
    pe = pj * ps + (1 - pj) * (1 - ps)
    return {"agreement": po, "kappa": (po - pe) / (1 - pe) if pe < 1 else None}
