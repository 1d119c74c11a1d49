"""The embedding router: which culture a text belongs to, or "Others", learned from examples of each culture, in
milliseconds per text on a CPU (no language model runs).

Per text three signals (`signals`): its multilingual sentence embedding (USE multilingual v3, 512-d, of its first
`max_chars` characters), py3langid's probability of every language, and its letters per script.

Choosing a culture: a multinomial logistic regression on the embeddings, trained on each culture's examples, times
a language prior where every culture names its language (`[[cultures]] language`):

    log p(c | x) = log P_LR(c | embedding) + w * log(P_lid(language of c | x) + 1e-4), renormalised over cultures

USE maps a meaning to nearby vectors whatever its language, which is what retrieval wants and a router does not
(on the bench's inputs the embedding alone confuses Turkish and Spanish tweets); the language prior fixes that.
`w` is chosen by cross-validation on the examples.

"Others": a logistic regression on five signals of a text — the classifier's confidence, the language mass on the
run's languages, the cosine to the nearest example, the likeliest language that is no culture's, the share of its
letters in scripts no example uses — trained on held-out examples only: in-set ones scored by routers fitted
without their fold (cross-validation), out-of-set ones scored by routers fitted without their culture
(leave-one-culture-out). The threshold keeps `keep` of every culture's held-out examples in-set. No test input and
no test label takes part in any of it.

Entry points: `fit(examples, languages, ...)` -> `EmbeddingRouter`; `EmbeddingRouter.decide(texts)`;
`save(router, path)` / `load(path)` (one .npz of arrays; the settings go in router.json).
Run: imported by stages/route.py and bench/routing.py; no entry point of its own.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from culturemanager.backends.textsignals import LanguageId, common_scripts, script_counts, unseen_share

EPS = 1e-4
WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)  # language-prior weights tried by cross-validation
FEATURES = ("confidence", "run_languages", "nearest_example", "other_language", "unseen_script")
SIGNS = np.array([-1, -1, -1, 1, 1])  # which way each feature can point to Others (more: less / more likely)
ARRAYS = ("coef", "intercept", "examples", "detector")


@dataclass
class Signals:
    emb: np.ndarray  # [n, dim], L2-normalized
    lang: np.ndarray  # [n, len(codes)] language probabilities
    codes: list[str]  # the languages' ISO codes
    scripts: list[Counter]

    def take(self, rows: np.ndarray) -> Signals:
        return Signals(self.emb[rows], self.lang[rows], self.codes, [self.scripts[i] for i in rows])


@dataclass
class Decision:
    probs: np.ndarray  # [n, len(cultures)]: each culture's probability (rows sum to 1)
    others: np.ndarray  # [n] bool: sent to "Others"
    outness: np.ndarray  # [n] the Others detector's score (above `threshold`: Others)


@dataclass
class EmbeddingRouter:
    cultures: list[str]
    languages: list[str | None]
    weight: float  # the language prior's weight w (0: no prior)
    coef: np.ndarray  # [K, dim] multinomial logistic regression on the embeddings
    intercept: np.ndarray  # [K]
    examples: np.ndarray  # [N, dim] the examples' embeddings (nearest-example cosine)
    scripts: list[str]  # the scripts the examples write in
    detector: np.ndarray  # [len(FEATURES) + 1] Others detector weights and bias (empty: never Others)
    threshold: float | None
    max_chars: int = 1000
    embedder: object | None = None
    lid: LanguageId = field(default_factory=LanguageId)

    def decide(self, texts: list[str]) -> Decision:
        return self.decide_signals(signals(texts, self._embedder(), self.lid, self.max_chars))

    def decide_signals(self, sig: Signals) -> Decision:
        log_lr = log_softmax(sig.emb @ self.coef.T + self.intercept)
        log_p = log_softmax(log_lr + self.weight * self._log_prior(sig))
        outness = np.full(len(sig.emb), -np.inf)
        if self.threshold is not None and len(sig.emb):
            f = features(log_lr, sig, self.languages, self.examples, set(self.scripts), self.weight > 0)
            outness = f @ self.detector[:-1] + self.detector[-1]
        others = outness > self.threshold if self.threshold is not None else np.zeros(len(sig.emb), bool)
        return Decision(np.exp(log_p), others, outness)

    def _log_prior(self, sig: Signals) -> np.ndarray:
        if self.weight == 0:
            return np.zeros((len(sig.emb), len(self.cultures)))
        return np.log(language_mass(sig.lang, sig.codes, self.languages) + EPS)

    def _embedder(self):
        if self.embedder is None:
            from culturemanager.backends.retrieval.dense import UseMultilingual

            self.embedder = UseMultilingual()
        return self.embedder


# ---------------------------------------------------------------------------------------------- fitting

def fit(examples: dict[str, list[str]], languages: dict[str, str | None], *, keep: float = 0.99,
        language_prior: bool = True, max_chars: int = 1000, embedder=None, seed: int = 0
        ) -> tuple[EmbeddingRouter, dict]:
    """The router for `examples` (culture -> texts, at least two per culture) and a report of the fit: the
    cross-validated accuracy per prior weight, the chosen weight, and per culture the held-out share kept in-set
    and (left out) sent to Others."""
    from culturemanager.backends.retrieval.dense import UseMultilingual

    t0 = time.time()
    cultures = list(examples)
    embedder = embedder or UseMultilingual()
    lid = LanguageId()
    sig = signals([t for c in cultures for t in examples[c]], embedder, lid, max_chars)
    y = np.array([k for k, c in enumerate(cultures) for _ in examples[c]])
    router, report = fit_signals(sig, y, cultures, [languages.get(c) for c in cultures], keep=keep,
                                 language_prior=language_prior, seed=seed)
    router.max_chars, router.embedder, router.lid = max_chars, embedder, lid
    report["fit_seconds"] = round(time.time() - t0, 2)
    return router, report


def fit_signals(sig: Signals, y: np.ndarray, cultures: list[str], langs: list[str | None], *, keep: float = 0.99,
                language_prior: bool = True, seed: int = 0) -> tuple[EmbeddingRouter, dict]:
    """`fit` on signals already computed (y: each example's culture index): the benchmark fits a router per
    left-out culture from one set of signals."""
    counts = np.bincount(y, minlength=len(cultures))
    if len(cultures) == 0 or counts.min() < 2:
        raise ValueError(f"every culture needs at least 2 route examples: {dict(zip(cultures, counts.tolist()))}")
    prior = language_prior and all(langs)
    router = EmbeddingRouter(cultures, langs, 0.0, *_logreg(sig.emb, y, len(cultures), seed), sig.emb.astype(
        np.float16), sorted(common_scripts(sig.scripts)), np.zeros(0), None)
    report: dict = {"examples": {c: int((y == k).sum()) for k, c in enumerate(cultures)}, "language_prior": prior}
    if len(cultures) < 2:
        report["others"] = "not fitted: one culture, so no culture can be left out to learn what Others looks like"
        return router, report
    folds = _folds(y, seed)
    oof = np.zeros((len(y), len(cultures)))
    for train, held in folds:
        oof[held] = _log_lr(sig.emb[train], y[train], len(cultures), seed, sig.emb[held])
    log_prior = np.log(language_mass(sig.lang, sig.codes, langs) + EPS) if prior else np.zeros_like(oof)
    cv = {w: balanced_accuracy(y, (oof + w * log_prior).argmax(1), len(cultures)) for w in WEIGHTS}
    router.weight = min((w for w in WEIGHTS if prior or w == 0), key=lambda w: (-round(cv[w], 4), w))
    f_in = np.zeros((len(y), len(FEATURES)))
    for train, held in folds:
        f_in[held] = features(oof[held], sig.take(held), langs, sig.emb[train],
                              common_scripts([sig.scripts[i] for i in train]), prior)
    f_out, y_out = [], []
    for k in range(len(cultures)):
        rest = np.flatnonzero(y != k)
        held = np.flatnonzero(y == k)
        lp = _log_lr(sig.emb[rest], y[rest] - (y[rest] > k), len(cultures) - 1, seed, sig.emb[held])
        f_out.append(features(lp, sig.take(held), [langs[j] for j in range(len(cultures)) if j != k],
                              sig.emb[rest], common_scripts([sig.scripts[i] for i in rest]), prior))
        y_out.append(np.full(len(held), k))
    f_out_all, y_out_all = np.vstack(f_out), np.concatenate(y_out)
    router.detector = _detector(f_in, f_out_all, seed)
    s_in = f_in @ router.detector[:-1] + router.detector[-1]
    s_out = f_out_all @ router.detector[:-1] + router.detector[-1]
    router.threshold = others_threshold(s_in, y, keep)
    report.update({
        "cv_accuracy_by_weight": {str(w): round(cv[w], 4) for w in WEIGHTS if prior or w == 0},
        "weight": router.weight, "keep": keep, "threshold": round(router.threshold, 4),
        "detector": dict(zip([*FEATURES, "bias"], np.round(router.detector, 4).tolist())),
        "heldout_kept": {c: round(float((s_in[y == k] <= router.threshold).mean()), 4) for k, c in enumerate(cultures)},
        "heldout_left_out_to_others": {c: round(float((s_out[y_out_all == k] > router.threshold).mean()), 4)
                                       for k, c in enumerate(cultures)}})
    return router, report


def others_threshold(s_in: np.ndarray, y: np.ndarray, keep: float) -> float:
    """The lowest detector score above which a text goes to Others while every culture keeps at least `keep` of its
    held-out examples in-set (a per-culture rule: a culture with noisy examples must not lose them to Others)."""
    # per culture the smallest score with at least `keep` of the culture's scores at or below it
    return float(max(np.quantile(s_in[y == k], keep, method="inverted_cdf") for k in np.unique(y)))


def features(log_lr: np.ndarray, sig: Signals, languages: list[str | None], examples: np.ndarray,
             known_scripts: set[str], prior: bool) -> np.ndarray:
    """The Others detector's inputs per text (FEATURES), relative to a set of cultures and their examples."""
    n = len(sig.emb)
    if prior:
        codes = sig.codes
        mass = language_mass(sig.lang, codes, languages)
        run = np.log(mass.sum(1) + EPS)
        mask = np.ones(sig.lang.shape[1], bool)
        mask[[codes.index(x) for x in languages if x in codes]] = False
        other = np.log(sig.lang[:, mask].max(1) + EPS)
    else:
        run, other = np.zeros(n), np.zeros(n)
    nearest = (sig.emb @ examples.T.astype(np.float32)).max(1) if len(examples) else np.zeros(n)
    return np.stack([log_lr.max(1), run, nearest, other, unseen_share(sig.scripts, known_scripts)], 1)


def language_mass(lang: np.ndarray, codes: list[str], languages: list[str | None]) -> np.ndarray:
    """[n, K]: the probability of each culture's language (0 for a language py3langid does not know)."""
    cols = [lang[:, codes.index(x)] if x in codes else np.zeros(len(lang)) for x in languages]
    return np.stack(cols, 1) if cols else np.zeros((len(lang), 0))


def signals(texts: list[str], embedder, lid: LanguageId, max_chars: int) -> Signals:
    heads = [t[:max_chars] for t in texts]
    emb = embedder.encode(heads) if heads else np.zeros((0, embedder.dim), np.float32)
    lang = lid.probs(heads, max_chars)
    return Signals(np.asarray(emb, np.float32), lang, lid.codes, [script_counts(t) for t in heads])


def balanced_accuracy(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    return float(np.mean([(pred[y == j] == j).mean() for j in range(k) if (y == j).any()]))


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def _log_lr(x: np.ndarray, y: np.ndarray, k: int, seed: int, x_new: np.ndarray) -> np.ndarray:
    coef, intercept = _logreg(x, y, k, seed)
    return log_softmax(x_new @ coef.T + intercept)


def _logreg(x: np.ndarray, y: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression (C=1) as [k, dim] weights and [k] biases; one class: all zeros (p = 1).
    sklearn's two-class model (one weight vector z) becomes two rows, -z/2 and z/2, whose softmax is its sigmoid."""
    if k < 2:
        return np.zeros((k, x.shape[1]), np.float32), np.zeros(k, np.float32)
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1.0, max_iter=5000, random_state=seed).fit(x, y)
    coef, intercept = clf.coef_, clf.intercept_
    if k == 2:
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    return coef.astype(np.float32), intercept.astype(np.float32)


def _folds(y: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    n = min(5, int(np.bincount(y).min()))
    return list(StratifiedKFold(n, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def _detector(f_in: np.ndarray, f_out: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    x = np.vstack([f_in, f_out])
    t = np.r_[np.zeros(len(f_in)), np.ones(len(f_out))]
    clf = LogisticRegression(class_weight="balanced", max_iter=5000, random_state=seed).fit(x, t)
    # a weight pointing the wrong way (nearer to an example = more likely Others) is an artifact of few examples
    coef = np.where(SIGNS * clf.coef_[0] < 0, 0.0, clf.coef_[0])
    return np.r_[coef, clf.intercept_[0]].astype(np.float64)


# ---------------------------------------------------------------------------------------------- on disk

def save(router: EmbeddingRouter, path: Path) -> None:
    """The router's arrays, atomically (temp file + rename); its settings go in router.json (`settings`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **{name: getattr(router, name) for name in ARRAYS})
    tmp.replace(path)


def settings(router: EmbeddingRouter) -> dict:
    return {"cultures": router.cultures, "languages": router.languages, "weight": router.weight,
            "scripts": router.scripts, "threshold": router.threshold, "max_chars": router.max_chars}


def load(path: Path, meta: dict) -> EmbeddingRouter:
    with np.load(path, allow_pickle=False) as z:
        arrays = {name: z[name] for name in ARRAYS}
    return EmbeddingRouter(meta["cultures"], meta["languages"], meta["weight"], arrays["coef"], arrays["intercept"],
                           arrays["examples"], meta["scripts"], arrays["detector"], meta["threshold"],
                           meta["max_chars"])
