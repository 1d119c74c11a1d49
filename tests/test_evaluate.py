"""The scoring functions against hand-computed examples."""

import pytest

from culturemanager.metrics import accuracy, f1_for, macro_f1


def test_f1_of_the_positive_class_by_hand():
    gold = ["1", "1", "0", "0", "1"]
    pred = ["1", "0", "1", "0", "1"]
    # tp=2, fp=1, fn=1 -> precision 2/3, recall 2/3, F1 2/3
    assert f1_for(gold, pred, "1") == pytest.approx(2 / 3)
    # class 0: tp=1, fp=1, fn=1 -> 1/2
    assert f1_for(gold, pred, "0") == pytest.approx(0.5)
    assert macro_f1(gold, pred, ["0", "1"]) == pytest.approx((2 / 3 + 0.5) / 2)
    assert accuracy(gold, pred) == pytest.approx(3 / 5)


def test_degenerate_cases():
    assert f1_for(["0", "0"], ["0", "0"], "1") == 0.0  # no positive anywhere: F1 is 0, not undefined
    assert accuracy([], []) == 0.0
    with pytest.raises(ValueError):
        accuracy(["1"], ["1", "0"])


def test_confusion_matrix_by_hand():
    from culturemanager.metrics import confusion

    gold = ["Spanish", "Spanish", "Turkish", "Turkish", "Turkish"]
    pred = ["Spanish", "Others", "Spanish", "Turkish", "Turkish"]
    assert confusion(gold, pred, ["Spanish", "Turkish", "Others"]) == [[1, 0, 1], [1, 2, 0], [0, 0, 0]]


def test_c_spec_by_hand():
    from culturemanager.metrics import c_spec

    # columns: max 0.8, 0.6, 0.5 -> diagonal 0.8/0.8, 0.3/0.6, 0.5/0.5 -> mean (1 + 0.5 + 1) / 3
    m = [[0.8, 0.6, 0.1],
         [0.4, 0.3, 0.2],
         [0.2, 0.1, 0.5]]
    assert c_spec(m) == pytest.approx(2.5 / 3)
    assert c_spec([[1.0, 0.0], [0.0, 1.0]]) == 1.0
    assert c_spec([[0.0]]) == 0.0
    with pytest.raises(ValueError):
        c_spec([[1.0, 2.0]])


def test_calibration_divides_by_the_content_free_probabilities():
    from culturemanager.metrics import calibrate

    # a lean to the first label of 0.8: an input with the same 0.8 becomes neutral, 0.5 tips to the second label
    assert calibrate([0.8, 0.2], [0.8, 0.2]) == pytest.approx([0.5, 0.5])
    assert calibrate([0.5, 0.5], [0.8, 0.2]) == pytest.approx([0.2, 0.8])
    assert calibrate([0.2, 0.3, 0.5], [1 / 3, 1 / 3, 1 / 3]) == pytest.approx([0.2, 0.3, 0.5])


def test_free_text_scores_by_hand():
    from culturemanager.metrics import free_text_scores

    # row 1 exact; row 2 soft only (lemmas: ciudades -> ciudad); row 3 neither; row 4 empty; row 5 CJK soft
    got = free_text_scores(["Madrid", "Las ciudades santas", "Barcelona", "", "首都是北京"],
                           [["madrid"], ["la ciudad santa"], ["Madrid"], ["Sevilla"], ["北京"]],
                           ["es", "es", "es", "es", "zh"])
    assert got["n"] == 5 and got["exact_match"] == pytest.approx(1 / 5) and got["empty_answers"] == 1
    from culturemanager.text.answers import lemmatizer

    if lemmatizer("es"):
        assert got["soft_match"] == pytest.approx(3 / 5) and got["lemmatized"] == 4
    assert free_text_scores([], [], [])["n"] == 0


def test_judge_agreement_with_soft_match_by_hand():
    from culturemanager.metrics import free_text_scores, judge_agreement

    # judge T T F F, soft T F F F: agree on 3 of 4; chance pj=.5, ps=.25 -> pe=.5; kappa=(.75-.5)/.5=.5
    assert judge_agreement([True, True, False, False], [True, False, False, False]) == pytest.approx(
        {"agreement": 0.75, "kappa": 0.5})
    assert judge_agreement([True, True], [True, True]) == {"agreement": 1.0, "kappa": None}  # chance is already 1
    assert judge_agreement([], []) == {"agreement": None, "kappa": None}
    # a row without a verdict is counted, not scored
    got = free_text_scores(["Madrid", "Barcelona", "Sevilla"], [["madrid"], ["Madrid"], ["Sevilla"]],
                           ["es", "es", "es"], [True, True, None])
    assert got["judge"] == pytest.approx({"judged": 2, "no_verdict": 1, "judge_match": 1.0, "agreement": 0.5,
                                          "kappa": 0.0})
    assert "judge" not in free_text_scores(["x"], [["x"]], [None])


def test_the_share_cut_by_hand():
    from culturemanager.metrics import log_odds as lo
    from culturemanager.metrics import share_cut

    p = [0.1, 0.4, 0.35, 0.9]
    assert share_cut(p, 0.5) == pytest.approx((lo(0.4) + lo(0.35)) / 2)  # the top two above it
    assert share_cut(p, 0.3) == pytest.approx((lo(0.9) + lo(0.4)) / 2)  # round(1.2) = 1
    assert share_cut(p, 0.0) == pytest.approx(lo(0.9) + 1) and share_cut(p, 1.0) == pytest.approx(lo(0.1) - 1)
    assert share_cut([], 0.5) is None


def test_the_validation_cut_rules():
    from culturemanager.metrics import best_cut, share_cut, validation_cut

    gold, p = [False, False, True, True, False], [0.1, 0.4, 0.35, 0.9, 0.2]
    assert validation_cut("share", gold, p) == share_cut(p, 0.4)  # two of five positive: the top two answered so
    assert validation_cut("best_f1", gold, p) == best_cut(gold, p)
    assert validation_cut("share", [True, True], [0.2, 0.9]) is None  # one label: no operating point from it
    with pytest.raises(ValueError, match="unknown validation cut rule 'median'"):
        validation_cut("median", gold, p)


def test_the_bagged_cut_is_the_median_of_resampled_best_cuts():
    import math

    from culturemanager.metrics import bagged_cut, best_cut
    from culturemanager.metrics import log_odds as lo

    # one example per label: every resample is the slice itself, so the bagged cut is its best cut
    assert bagged_cut([True, False], [0.9, 0.2]) == pytest.approx(best_cut([True, False], [0.9, 0.2]))
    assert bagged_cut([True, False], [0.9, 0.2]) == pytest.approx((lo(0.9) + lo(0.2)) / 2)
    assert bagged_cut([True, True], [0.2, 0.9]) is None and bagged_cut([], []) is None
    # tied scores within each label: every resample is the same slice again
    assert bagged_cut([False] * 5 + [True] * 2, [0.2] * 5 + [0.9] * 2) == pytest.approx((lo(0.9) + lo(0.2)) / 2)
    # seeded, and it moves with the scores: every log-odds shifted by +1 shifts the cut by +1
    gold = [False] * 6 + [True] * 3
    p = [0.05, 0.1, 0.15, 0.2, 0.25, 0.8, 0.3, 0.85, 0.9]
    b = bagged_cut(gold, p, draws=400, seed=1)
    assert b == bagged_cut(gold, p, draws=400, seed=1)
    shifted = [1 / (1 + math.exp(-(lo(x) + 1))) for x in p]
    assert bagged_cut(gold, shifted, draws=400, seed=1) == pytest.approx(b + 1, abs=1e-6)
    assert lo(0.05) < b < lo(0.9)


def test_the_best_cut_by_hand_and_the_prior_that_puts_the_answer_there():
    import math

    from culturemanager.metrics import best_cut, calibrate, cut_prior, log_odds

    gold, p = [False, False, True, True], [0.1, 0.4, 0.35, 0.9]
    # cuts between sorted log-odds: answering positive above lo(0.1)..lo(0.35) or above lo(0.4)..lo(0.9) both score
    # macro-F1 0.733 (every other cut 0.5 or 0.333); the median of the two tied cuts is chosen
    lo = log_odds
    assert best_cut(gold, p) == pytest.approx(((lo(0.1) + lo(0.35)) / 2 + (lo(0.4) + lo(0.9)) / 2) / 2)
    assert best_cut([True, True], [0.2, 0.9]) is None and best_cut([], []) is None
    assert lo(0.5) == 0 and lo(0.9) == pytest.approx(math.log(9))
    for k in (0, 1):  # the positive label first or second
        prior = cut_prior(-0.7, k)
        for x in (0.2, 0.3, 0.34, 0.35, 0.4, 0.8):
            probs = [x, 1 - x] if k == 0 else [1 - x, x]
            assert (calibrate(probs, prior)[k] > 0.5) == (lo(x) > -0.7)
