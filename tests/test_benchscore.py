"""The benchmark's numbers against hand-worked examples."""

from __future__ import annotations

import pytest

from culturemanager.bench.score import (
    aggregate,
    c_spec_summary,
    culture_matrix,
    routed_labels,
    router_summary,
    spread,
    task_scores,
)


def test_task_scores_by_hand():
    gold = ["1", "1", "0", "0", "0"]
    pred = ["1", "0", "1", "0", "0"]
    s = task_scores(gold, pred)
    # positive: tp 1, fp 1, fn 1 -> 2/4; negative: tp 2, fp 1, fn 1 -> 4/6
    assert s["f1_positive"] == pytest.approx(0.5)
    assert s["macro_f1"] == pytest.approx((0.5 + 4 / 6) / 2)
    assert s["accuracy"] == pytest.approx(0.6) and s["n"] == 5 and s["positive_rate"] == pytest.approx(0.4)


def test_spread_is_mean_and_sample_std():
    assert spread([0.2, 0.4]) == {"mean": pytest.approx(0.3), "std": pytest.approx(0.1414213, rel=1e-5),
                                  "values": [0.2, 0.4]}
    assert spread([0.7])["std"] == 0.0


def test_aggregate_averages_cultures_within_a_seed_then_spreads_over_seeds():
    def s(f1):
        return {"f1_positive": f1, "macro_f1": f1 / 2, "accuracy": 1 - f1, "positive_rate": 0.5, "n": 10}

    per_seed = {0: {"a1": s(0.2), "a2": s(0.4), "b1": s(0.9)}, 1: {"a1": s(0.4), "a2": s(0.6), "b1": s(0.7)}}
    out = aggregate(per_seed, {"a1": "A", "a2": "A", "b1": "B"})
    assert out["seeds"] == [0, 1]
    assert out["tasks"]["a1"]["f1_positive"]["values"] == [0.2, 0.4] and out["tasks"]["a1"]["n"] == 10
    assert out["cultures"]["A"]["f1_positive"]["values"] == pytest.approx([0.3, 0.5])
    assert out["cultures"]["B"]["macro_f1"]["mean"] == pytest.approx(0.4)
    # overall = mean over the three tasks: seed 0 (0.2+0.4+0.9)/3 = 0.5, seed 1 (0.4+0.6+0.7)/3 = 0.5667
    assert out["overall"]["f1_positive"]["values"] == pytest.approx([0.5, 1.7 / 3])


def test_routed_labels_take_the_routed_cultures_adapter_or_the_base_model():
    from culturemanager.records import BASE
    from culturemanager.stages.route import Router

    router = Router(True, ["A", "B", "C", "Others"], "{input}", {"A": "a/", "B": "b/", "C": None}, 64)
    by_adapter = {"A": [0.9, 0.9, 0.9, 0.9], "B": [0.1, 0.1, 0.1, 0.1], BASE: [0.5, 0.6, 0.7, 0.8]}
    # "C" has no adapter and "Others" means none: both fall back to the base model's answer
    rows = [router.adapter_for(c) for c in ["A", "B", "Others", "C"]]
    assert routed_labels(by_adapter, rows) == [0.9, 0.1, 0.7, 0.8]


def test_router_summary_accuracy_per_task_and_confusion():
    routed = {"a1": ["A", "A", "B", "Others"], "b1": ["B", "A"]}
    out = router_summary(routed, {"a1": "A", "b1": "B"}, ["A", "B", "Others"])
    assert out["per_task"] == {"a1": 0.5, "b1": 0.5}
    assert out["accuracy"] == pytest.approx(3 / 6)
    assert out["confusion"] == {"rows": ["A", "B"], "cols": ["A", "B", "Others"], "counts": [[2, 1, 1], [1, 1, 0]]}


def test_c_spec_of_a_small_matrix_by_hand():
    culture_of = {"a1": "A", "a2": "A", "b1": "B"}
    f1 = {("A", "a1"): 0.6, ("A", "a2"): 0.2, ("A", "b1"): 0.3, ("B", "a1"): 0.5, ("B", "a2"): 0.5, ("B", "b1"): 0.6}
    m = culture_matrix(f1, ["A", "B"], culture_of)
    assert m[0] == pytest.approx([0.4, 0.3]) and m[1] == pytest.approx([0.5, 0.6])
    # columns / max: A column (0.4/0.5, 0.5/0.5), B column (0.3/0.6, 0.6/0.6): diagonal (0.8 + 1.0) / 2
    out = c_spec_summary({0: m, 1: [[1.0, 0.0], [0.0, 1.0]]}, ["A", "B"])
    assert out["score"]["values"] == pytest.approx([0.9, 1.0])
    assert out["matrix"][0][0] == pytest.approx(0.7) and out["seeds"] == [0, 1]
    assert c_spec_summary({0: [[1.0]]}, ["A"]) is None


def test_calibration_subtracts_the_content_free_lean():
    from culturemanager.bench.score import calibrated

    # a model that gives "1" 0.8 on content-free text: an input it also gives 0.8 is neutral after calibration
    assert calibrated([0.8, 0.9, 0.5], 0.8) == pytest.approx([0.5, 9 / 13, 0.2])
    assert calibrated([0.3, 0.7], 0.5) == pytest.approx([0.3, 0.7])  # no lean: unchanged


def test_weighted_macro_f1_and_mean_by_hand():
    import numpy as np

    from culturemanager.bench.stats import weighted_macro_f1, weighted_mean
    from culturemanager.metrics import macro_f1

    gold, pred = [0, 1, 2, 2, 1], [0, 2, 2, 2, 1]
    # unit weights: the plain macro-F1 (class 0: 1, class 1: 2/3, class 2: 4/5)
    W = np.ones((1, 5))
    assert weighted_macro_f1(np.array(gold), np.array(pred), W, 3)[0] == pytest.approx((1 + 2 / 3 + 4 / 5) / 3)
    assert weighted_macro_f1(np.array(gold), np.array(pred), W, 3)[0] == pytest.approx(
        macro_f1(list(map(str, gold)), list(map(str, pred)), ["0", "1", "2"]))
    # a resample that holds input 0 twice and inputs 3, 4 once: classes 0 and 1 perfect, class 2 (one true positive)
    W2 = np.array([[2, 0, 0, 1, 1]], float)
    assert weighted_macro_f1(np.array(gold), np.array(pred), W2, 3)[0] == pytest.approx(1.0)
    assert weighted_mean(np.array([1, 0, 1, 1, 0]), W2)[0] == pytest.approx(3 / 4)


def test_at_base_rate_answers_the_top_share_positive_and_keeps_the_ranking():
    from culturemanager.bench.score import at_base_rate

    p = [0.9, 0.8, 0.3, 0.2]
    half = at_base_rate(p, 0.5)
    assert [x > 0.5 for x in half] == [True, True, False, False]
    assert sorted(range(4), key=lambda i: -half[i]) == [0, 1, 2, 3]  # monotone: the same order, so the same AUC
    assert [x > 0.5 for x in at_base_rate(p, 0.25)] == [True, False, False, False]  # round(0.25 * 4) = 1
    # a lean does not matter: the same ranking shifted up gives the same answers
    assert [x > 0.5 for x in at_base_rate([0.99, 0.98, 0.97, 0.96], 0.5)] == [True, True, False, False]
    # a constant answer ranks nothing: the tied inputs all stay below the cut, never above
    assert not any(x > 0.5 for x in at_base_rate([0.99] * 4, 0.25))
    assert not any(x > 0.5 for x in at_base_rate(p, 0.0)) and all(x > 0.5 for x in at_base_rate(p, 1.0))
    assert at_base_rate([], 0.3) == []
