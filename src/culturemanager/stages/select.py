"""Selection by culture: which synthetic samples are worth training a culture's adapter on.

After CAReDiO (Yao et al. 2025): a sample should be *representative* of its culture and *distinctive* from the
others. Over L2-normalized multilingual sentence embeddings (USE multilingual, backends/retrieval/dense.py):

- near-duplicate: cosine above `near_duplicate` with an earlier kept sample of the same culture and task
  (first one wins, as for exact duplicates);
- representativeness: cosine with the mean of the culture's own demonstrations of the task (real inputs);
  below `min_representativeness`: dropped as `unrepresentative`;
- distinctiveness: cosine with the mean of the culture's other samples of the task minus the highest cosine
  with another culture's sample mean; below `min_distinctiveness` (the sample sits closer to another
  culture's samples than to its own culture's): dropped as `not_distinctive`;
- label balance (`balance_labels`, run after the judge): each label of a culture x task is capped at the
  count of its rarest label present, the most representative samples kept; dropped as `label_balance`.

The scoring and the decisions are pure functions over arrays (tested on hand-made vectors); `select_by_culture`
embeds and applies them per task. Entry points: `select_by_culture(cfg, samples, demos, embedder)`,
`balance_labels(samples, scores)`; stages/checks.py calls them.
Run: `python -m culturemanager.stages.select CONFIG.toml [KEY=VALUE ...]` scores a run's kept samples (prints them).
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from culturemanager.config import SelectConfig
from culturemanager.records import DropReason, Sample

NEAR_DUPLICATE, UNREPRESENTATIVE, NOT_DISTINCTIVE, LABEL_BALANCE = (
    DropReason.NEAR_DUPLICATE, DropReason.UNREPRESENTATIVE, DropReason.NOT_DISTINCTIVE, DropReason.LABEL_BALANCE)


@dataclass
class Scored:
    """The selection's view of one sample: why it is dropped (None: kept) and its scores."""

    reason: str | None
    representativeness: float | None
    distinctiveness: float | None
    nearest: float  # highest cosine with an earlier kept sample of the same culture and task (0.0: none)

    def scores(self) -> dict[str, float]:
        out = {"representativeness": self.representativeness, "distinctiveness": self.distinctiveness,
               "nearest": self.nearest}
        return {k: round(float(v), 4) for k, v in out.items() if v is not None}


def select_by_culture(cfg: SelectConfig, samples: list[Sample], demos: dict[str, dict[str, list[str]]],
                      embedder) -> list[Scored]:
    """One `Scored` per sample, in order. `demos[task][culture]` are the real demonstrations."""
    out: list[Scored | None] = [None] * len(samples)
    by_task: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        by_task[s.task].append(i)
    for task, idx in by_task.items():
        emb = embedder.encode([samples[i].text for i in idx])
        cultures = [samples[i].culture for i in idx]
        demo_means = {c: mean_direction(embedder.encode(texts)) for c, texts in demos.get(task, {}).items()
                      if texts and c in set(cultures)}
        for i, scored in zip(idx, score_samples(emb, cultures, demo_means, cfg)):
            out[i] = scored
    return [s for s in out if s is not None]


def score_samples(emb: np.ndarray, cultures: list[str], demo_means: dict[str, np.ndarray],
                  cfg: SelectConfig) -> list[Scored]:
    """The decisions for the samples of one task: rows of `emb` (L2-normalized), their cultures, and the mean
    direction of each culture's demonstrations. Near-duplicates first, then representativeness; distinctiveness
    is computed among the samples that passed both (a dropped sample does not shape a culture's mean)."""
    nearest, dup = near_duplicates(emb, cultures, cfg.near_duplicate)
    rep = representativeness(emb, cultures, demo_means)
    low = [r is not None and r < cfg.min_representativeness for r in rep]
    alive = [i for i in range(len(cultures)) if not dup[i] and not low[i]]
    dist_of = dict(zip(alive, distinctiveness(emb[alive], [cultures[i] for i in alive])))
    out = []
    for i in range(len(cultures)):
        d = dist_of.get(i)
        if dup[i]:
            reason = NEAR_DUPLICATE
        elif low[i]:
            reason = UNREPRESENTATIVE
        elif d is not None and d < cfg.min_distinctiveness:
            reason = NOT_DISTINCTIVE
        else:
            reason = None
        out.append(Scored(reason, rep[i], d, nearest[i]))
    return out


def near_duplicates(emb: np.ndarray, cultures: list[str], threshold: float) -> tuple[list[float], list[bool]]:
    """In order: each row's highest cosine with an earlier kept row of its culture, and whether that is above
    `threshold` (then the row is a near-duplicate and is not kept, so a chain of them keeps only its first)."""
    kept: dict[str, list[int]] = defaultdict(list)
    nearest, dup = [], []
    for i, c in enumerate(cultures):
        best = float(np.max(emb[kept[c]] @ emb[i])) if kept[c] else 0.0
        nearest.append(best)
        dup.append(best > threshold)
        if not dup[-1]:
            kept[c].append(i)
    return nearest, dup


def representativeness(emb: np.ndarray, cultures: list[str], demo_means: dict[str, np.ndarray]
                       ) -> list[float | None]:
    """Cosine of each row with its culture's demonstration mean direction (None: no demonstrations)."""
    return [float(emb[i] @ demo_means[c]) if c in demo_means else None for i, c in enumerate(cultures)]


def distinctiveness(emb: np.ndarray, cultures: list[str]) -> list[float | None]:
    """Per row: cosine with the mean direction of its culture's *other* rows minus the highest cosine with
    another culture's mean direction. None where there is no other culture, or no other row of its own."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(cultures):
        groups[c].append(i)
    sums = {c: emb[idx].sum(axis=0) for c, idx in groups.items()}
    means = {c: mean_direction(emb[idx]) for c, idx in groups.items()}
    out: list[float | None] = []
    for i, c in enumerate(cultures):
        others = [means[o] for o in groups if o != c]
        if not others or len(groups[c]) < 2:
            out.append(None)
            continue
        own = _unit(sums[c] - emb[i])  # leave-one-out: a sample does not vouch for itself
        out.append(float(emb[i] @ own - max(float(emb[i] @ m) for m in others)))
    return out


def balance_labels(samples: list[Sample], rank: list[float]) -> list[bool]:
    """Which samples to keep so that, per culture x task, no label outnumbers the rarest label present: the
    `rank` highest of each label are kept (ties: earlier first)."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        groups[(s.culture, s.task)].append(i)
    keep = [True] * len(samples)
    for idx in groups.values():
        by_label: dict[str, list[int]] = defaultdict(list)
        for i in idx:
            by_label[samples[i].label].append(i)
        cap = min(len(v) for v in by_label.values())
        for members in by_label.values():
            for i in sorted(members, key=lambda i: (-rank[i], i))[cap:]:
                keep[i] = False
    return keep


def mean_direction(x: np.ndarray) -> np.ndarray:
    return _unit(np.asarray(x, dtype=np.float32).sum(axis=0))


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def main() -> None:
    from culturemanager.backends.retrieval.dense import UseMultilingual
    from culturemanager.config import load_config
    from culturemanager.records import read_jsonl
    from culturemanager.rundir import RunDir
    from culturemanager.stages.queries import demonstrations_by_culture

    cfg = load_config(sys.argv[1], sys.argv[2:])
    rd = RunDir(cfg.run.dir)
    samples = [s for c in cfg.cultures if rd.samples(c.name).exists() for s in read_jsonl(rd.samples(c.name), Sample)]
    demos = {t.id: demonstrations_by_culture(cfg, t) for t in cfg.tasks}
    scored = select_by_culture(cfg.synthesis.select, samples, demos, UseMultilingual())
    for s, sc in zip(samples, scored):
        print(f"{sc.reason or 'kept':16s} {sc.scores()}  [{s.culture}/{s.label}] {s.text[:80]}")
    print(dict(Counter(sc.reason or "kept" for sc in scored)))


if __name__ == "__main__":
    main()
