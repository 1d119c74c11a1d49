"""The scoring functions against hand-computed examples."""

import pytest

from culturemanager.evaluate import accuracy, f1_for, macro_f1


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
