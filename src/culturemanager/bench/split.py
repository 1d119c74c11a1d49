"""The paper's protocol split: per task, a seeded stratified share of the inputs (without labels) becomes the
task's demonstrations, the rest the test set, optionally capped (stratified) to bound CPU time.

Run: imported by the benchmark; `python -m culturemanager.bench.split` prints an example split.
"""

from __future__ import annotations

import random
from collections import defaultdict


def stratified_split(labels: list[str], demo_share: float, seed: int, test_cap: int | None = None
                     ) -> tuple[list[int], list[int]]:
    """Indices of (demonstrations, test). Every label keeps its share in both parts (rounded per label, at least
    one demonstration for a label that has two or more rows); the same seed gives the same split. With
    `test_cap`, the test part is cut to about that size, each label in proportion (at least one row each)."""
    if not 0 < demo_share < 1:
        raise ValueError(f"demo_share must be in (0, 1), got {demo_share}")
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, lab in enumerate(labels):
        by_label[lab].append(i)
    rng = random.Random(seed)
    demos, test = [], []
    for lab in sorted(by_label):
        idx = by_label[lab][:]
        rng.shuffle(idx)
        k = max(1, round(len(idx) * demo_share)) if len(idx) >= 2 else 0
        demos += idx[:k]
        test += idx[k:]
    if test_cap is not None and len(test) > test_cap:
        test = cap_stratified(test, labels, test_cap, rng)
    return sorted(demos), sorted(test)


def cap_stratified(idx: list[int], labels: list[str], cap: int, rng: random.Random) -> list[int]:
    by_label: dict[str, list[int]] = defaultdict(list)
    for i in idx:
        by_label[labels[i]].append(i)
    out = []
    for lab in sorted(by_label):
        rows = by_label[lab][:]
        rng.shuffle(rows)
        out += rows[:max(1, round(cap * len(rows) / len(idx)))]
    return out


if __name__ == "__main__":
    demo, test = stratified_split(["1"] * 10 + ["0"] * 90, 0.1, seed=0, test_cap=50)
    print(len(demo), "demonstrations,", len(test), "test")
