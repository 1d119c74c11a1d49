"""What a training run will do, fixed before its first step: which examples are held out for validation
(`validation_split`), every step's batch (`plan_batches`) and the learning rate's multiplier at each step
(`lr_factor`). Pure functions of the examples, the `[train]` settings and the seed, with their own seeded random
generators and no torch, so that the trainer, a resumed run, the bench's validation.jsonl and `--plan`'s estimate
all compute the same plan.

Run: imported by backends/trainer.py, bench/plan.py and the benchmarks; no entry point of its own.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable

from culturemanager.config import TrainConfig

Example = tuple[list[int], list[int]]  # input ids, labels (-100 on the prompt tokens)


def answer_key(example: Example) -> tuple[int, ...]:
    """An example's label: its answer tokens (the ones with a loss)."""
    return tuple(t for t in example[1] if t != -100)


def validation_split(examples: list[Example], t: TrainConfig, seed: int) -> tuple[list[int], list[int]]:
    """An adapter's (training, validation) indices under its settings (`validation`, `validation_min`): the one
    call for the trainer, the bench's validation.jsonl, its plan and the threshold check."""
    return split_validation(examples, t.validation, seed, t.validation_min)


def split_validation(examples: list[Example], share: float, seed: int, min_per_label: int = 0
                     ) -> tuple[list[int], list[int]]:
    """(training, validation) indices: `share` of each label's examples held out (at least one of a label with
    three or more examples, and at least `min_per_label` where that leaves the label half its examples), by a
    seeded shuffle. No validation below 10 examples or with share 0."""
    if share <= 0 or len(examples) < 10:
        return list(range(len(examples))), []
    by_label: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, e in enumerate(examples):
        by_label[answer_key(e)].append(i)
    rng = random.Random(seed * 7919 + 1)
    train, val = [], []
    for key in sorted(by_label):
        idx = by_label[key][:]
        rng.shuffle(idx)
        k = max(1, round(len(idx) * share), min(min_per_label, len(idx) // 2)) if len(idx) >= 3 else 0
        val += idx[:k]
        train += idx[k:]
    return sorted(train), sorted(val)


def plan_batches(examples: list[Example], t: TrainConfig, seed: int) -> list[list[int]]:
    """Every step's batch (indices into `examples`), fixed by the seed. The budget is `epochs` passes, capped by
    `max_examples` and `max_steps`. With `balance`, each label is drawn equally often (a label's examples are
    cycled in reshuffled order, rare labels oversampled); otherwise each epoch is a shuffled pass."""
    n = len(examples)
    budget = n * t.epochs if t.max_examples is None else min(n * t.epochs, t.max_examples)
    steps = max(1, math.ceil(budget / t.batch_size))
    if t.max_steps is not None:
        steps = min(steps, t.max_steps)
    rng = random.Random(seed * 1000 + 17)
    if t.balance:
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, e in enumerate(examples):
            groups[answer_key(e)].append(i)
        streams = [_cycle(groups[key], rng) for key in sorted(groups)]
        start = rng.randrange(len(streams))
        flat = [next(streams[(start + j) % len(streams)]) for j in range(steps * t.batch_size)]
    else:
        flat = []
        while len(flat) < steps * t.batch_size:
            order = list(range(n))
            rng.shuffle(order)
            flat += order
    return [flat[s * t.batch_size:(s + 1) * t.batch_size] for s in range(steps)]


def _cycle(items: list[int], rng: random.Random):
    while True:
        order = items[:]
        rng.shuffle(order)
        yield from order


def lr_factor(t: TrainConfig, steps: int) -> Callable[[int], float]:
    """The learning rate's multiplier at each step: linear warm-up over `warmup` of the steps, then constant,
    linear decay to 0 or cosine decay to 0."""
    warm = int(round(t.warmup * steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if t.schedule == "constant":
            return 1.0
        progress = (step - warm) / max(1, steps - warm)
        return max(0.0, 1 - progress) if t.schedule == "linear" else 0.5 * (1 + math.cos(math.pi * min(1, progress)))

    return factor
