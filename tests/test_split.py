"""The protocol split: stratified, deterministic, disjoint, capped."""

from collections import Counter

import pytest

from culturemanager.bench.split import stratified_split


def test_split_is_stratified_deterministic_and_disjoint():
    labels = ["1"] * 48 + ["0"] * 952
    demo, test = stratified_split(labels, 0.1, seed=3)
    assert not set(demo) & set(test) and len(demo) + len(test) == 1000
    assert Counter(labels[i] for i in demo) == {"1": 5, "0": 95}
    assert stratified_split(labels, 0.1, seed=3) == (demo, test)
    assert stratified_split(labels, 0.1, seed=4) != (demo, test)


def test_cap_keeps_label_shares_and_every_label():
    labels = ["1"] * 30 + ["0"] * 970
    demo, test = stratified_split(labels, 0.1, seed=0, test_cap=100)
    counts = Counter(labels[i] for i in test)
    assert counts["0"] == 97 and counts["1"] == 3 and not set(demo) & set(test)


def test_bad_share_is_an_error():
    with pytest.raises(ValueError):
        stratified_split(["a", "b"], 1.0, seed=0)
