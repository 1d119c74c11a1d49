"""Scoring functions: small and pure, checked against hand-computed examples in the tests.

Run: imported by `predict` (and the benchmark); no entry point of its own.
"""

from __future__ import annotations


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
