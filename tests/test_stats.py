"""Bootstrap and AUC functions, pinned against hand-worked examples."""

from __future__ import annotations

import numpy as np
import pytest

from culturemanager.bench.stats import (
    auc,
    bootstrap_weights,
    interval,
    verdict,
    weighted_auc,
    weighted_scores,
)


def test_auc_by_hand():
    # positives 0.9 and 0.4, negatives 0.5 and 0.1: 0.9 beats both, 0.4 beats 0.1 only -> 3 of 4 pairs
    assert auc(["1", "1", "0", "0"], [0.9, 0.4, 0.5, 0.1]) == 0.75
    assert auc(["1", "0", "1", "0"], [0.7] * 4) == 0.5  # a constant answer has no skill, whatever it is
    assert auc(["1", "0"], [0.2, 0.8]) == 0.0
    assert auc(["1", "0", "0"], [0.5, 0.5, 0.1]) == 0.75  # the tie counts half
    assert np.isnan(auc(["0", "0"], [0.1, 0.2]))


def test_weighted_scores_by_hand():
    gold = np.array([True, True, False, False])
    pred = np.array([True, False, True, False])
    W = np.array([[1.0, 1, 1, 1], [2, 0, 0, 2], [0, 2, 2, 0]])
    s = weighted_scores(gold, pred, W)
    # row 0: tp=fp=fn=tn=1 -> F1 of each class 2/4; row 1: only the right answers -> 1; row 2: only wrong ones -> 0
    assert s["f1_positive"].tolist() == [0.5, 1.0, 0.0]
    assert s["macro_f1"].tolist() == [0.5, 1.0, 0.0]
    assert s["accuracy"].tolist() == [0.5, 1.0, 0.0]
    # answering "1" to everything: F1(pos) = 2*2/(2*2+2) = 2/3, F1(neg) = 0, macro 1/3
    everything = weighted_scores(gold, np.ones(4, bool), W[:1])
    assert everything["f1_positive"][0] == pytest.approx(2 / 3) and everything["macro_f1"][0] == pytest.approx(1 / 3)


def test_weighted_auc_by_hand():
    gold = np.array([True, True, False, False])
    scores = np.array([0.9, 0.4, 0.5, 0.1])
    # row 1: 0.9 counted twice, 0.4 not at all; both negatives once: 0.9 beats both -> 4/4
    W = np.array([[1.0, 1, 1, 1], [2, 0, 1, 1]])
    assert weighted_auc(gold, scores, W).tolist() == [0.75, 1.0]
    # a resample without negatives has no AUC
    assert np.isnan(weighted_auc(gold, scores, np.array([[1.0, 1, 0, 0]]))[0])


def test_bootstrap_weights_are_resamples_of_the_inputs():
    W = bootstrap_weights(7, 500, np.random.default_rng(0))
    assert W.shape == (500, 7) and (W.sum(1) == 7).all() and (W >= 0).all()
    assert np.array_equal(W, bootstrap_weights(7, 500, np.random.default_rng(0)))
    assert abs(W.mean() - 1.0) < 0.05  # every input is drawn once per resample on average


def test_interval_and_verdict():
    assert interval(np.arange(100.0)) == pytest.approx((2.475, 96.525))
    assert interval(np.array([np.nan, 1.0, 1.0])) == (1.0, 1.0)
    assert verdict(0.01, 0.2) == "better" and verdict(-0.3, -0.1) == "worse"
    assert verdict(-0.1, 0.2) == "not distinguishable"
