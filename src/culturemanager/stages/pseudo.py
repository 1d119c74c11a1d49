"""Real texts labelled by what the synthetic samples teach (`synthesis.pseudo_label`): self-training.

The generator's samples are few and many read like an assistant's phrases, so an adapter trained on them alone
learns where to put its threshold, not how to rank the task's inputs. Real unlabeled texts of the task are at hand:
the task's demonstrations (the paper's few unlabeled examples) and the posts of the retrieved documents. Per
culture x task of a binary task, a linear probe (the bench probe's recipe: the target model's mean hidden state over
the task prompt, standardized, class-balanced logistic regression) is fitted on the kept synthetic samples; it
scores the real texts, and the `share` it is surest of at each end become samples of the positive and of the
negative label, their probe score in their provenance (`Check(name="probe")`). No real label is read and no one's
opinion is asked: the labels are the synthetic samples' own, carried onto texts that look like the task's inputs.
The new samples go through the same duplicate and leakage filters as the generator's.

How far it carries the task is measured by `make bench-label-quality` (lever "pseudo": the referee's AUC of the
pseudo labels beside its AUC on real held-out rows).

Entry point: `pseudo_label(cfg, kept, materials, demos)`, called by stages/synthesize.py after the checks.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from culturemanager.config import Config, Task
from culturemanager.records import (
    Check,
    Material,
    Provenance,
    Sample,
    make_sample,
    sample_id,
    sha1_text,
    stable_seed,
    with_check,
)


def posts_of(material: Material, min_chars: int, max_chars: int) -> list[str]:
    """The posts of a material's documents: each document split at blank lines (a page of posts, or a web page's
    paragraphs), whitespace folded, those outside [min_chars, max_chars] left out."""
    out = []
    for doc in material.documents:
        for part in doc.text.split("\n\n"):
            text = " ".join(part.split())
            if min_chars <= len(text) <= max_chars:
                out.append(text)
    return out


def real_pool(cfg: Config, task: Task, culture: str, materials: Sequence[Material], demos: Sequence[str]
              ) -> list[tuple[str, Material | None]]:
    """The real texts of one culture x task, each with the material it came from (None: a demonstration):
    distinct, at most `pool_limit` (a seeded sample), in a fixed order."""
    pl = cfg.synthesis.pseudo_label
    lo, hi = cfg.synthesis.min_chars, cfg.synthesis.max_chars
    found: dict[str, Material | None] = {}
    if "demonstrations" in pl.sources:
        for text in demos:
            text = " ".join(text.split())
            if lo <= len(text) <= hi:
                found.setdefault(text, None)
    if "material" in pl.sources:
        for m in materials:
            if m.culture == culture and m.task == task.id:
                for text in posts_of(m, lo, hi):
                    found.setdefault(text, m)
    pool = list(found.items())
    if pl.pool_limit is not None and len(pool) > pl.pool_limit:
        pool = random.Random(stable_seed(cfg.run.seed, "pseudo", task.id, culture)).sample(pool, pl.pool_limit)
    return pool


def confident_ends(scores: Sequence[float], share: float) -> tuple[list[int], list[int]]:
    """The indices of the `share` lowest and the `share` highest scores (each at least one, never overlapping)."""
    k = max(1, min(int(share * len(scores)), len(scores) // 2))
    order = sorted(range(len(scores)), key=lambda i: (scores[i], i))
    return order[:k], order[len(order) - k:]


def pseudo_sample(task: Task, culture: str, text: str, label: str, score: float, source: Material | None,
                  scorer: str) -> Sample:
    """A real text with the probe's label; its provenance names where the text came from (the material, as the
    generator's samples do, or the demonstration) and the probe's score."""
    if source is None:
        prov = Provenance(culture=culture, task=task.id, mode="demonstration", query="",
                          material_id=f"demonstration:{sha1_text(text)[:12]}", source_ids=[], source_urls=[],
                          generator=f"probe:{scorer}", prompt_hash="-")
        s = Sample(id=sample_id(task.id, text), culture=culture, task=task.id, text=text, label=label,
                   provenance=prov)
    else:
        s = make_sample(source, text, label, f"probe:{scorer}", "-")
    return with_check(s, Check(name="probe", by=scorer, verdict=label, scores={"p": round(score, 6)}))


def pseudo_label(cfg: Config, kept: Sequence[Sample], materials: Sequence[Material],
                 demos: dict[str, dict[str, list[str]]], engine=None) -> tuple[list[Sample], Counter]:
    """The pseudo-labelled real texts of every binary culture x task with enough synthetic samples of each label,
    and counts (pseudo_kept, pseudo_skipped_few_samples, pseudo_skipped_no_texts)."""
    pl = cfg.synthesis.pseudo_label
    counts: Counter = Counter()
    groups: dict[tuple[str, str], list[Sample]] = {}
    for s in kept:
        groups.setdefault((s.culture, s.task), []).append(s)
    jobs = []
    for (culture, task_id), samples in groups.items():
        task = cfg.task(task_id)
        if task.format != "binary":
            continue
        labels = Counter(s.label for s in samples)
        if len(labels) < 2 or min(labels.values()) < pl.min_per_label:
            counts["pseudo_skipped_few_samples"] += 1
            continue
        pool = real_pool(cfg, task, culture, materials, demos.get(task_id, {}).get(culture, []))
        if len(pool) < 2:
            counts["pseudo_skipped_no_texts"] += 1
            continue
        jobs.append((culture, task, samples, pool))
    if not jobs:
        return [], +counts
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if engine is None:
        from culturemanager.engine import Engine

        engine = Engine.load(cfg.target)
    out: list[Sample] = []
    for culture, task, samples, pool in jobs:
        positive = task.positive_label
        negative = next(x for x in task.labels or [] if x != positive)
        x = engine.features(task, [s.text for s in samples]).numpy()
        y = np.array([s.label == positive for s in samples])
        probe = make_pipeline(StandardScaler(),
                              LogisticRegression(C=pl.c, class_weight="balanced", max_iter=2000)).fit(x, y)
        scores = probe.predict_proba(engine.features(task, [t for t, _ in pool]).numpy())[:, 1].tolist()
        low, high = confident_ends(scores, pl.share)
        for idx, label in [(i, negative) for i in low] + [(i, positive) for i in high]:
            text, source = pool[idx]
            out.append(pseudo_sample(task, culture, text, label, scores[idx], source, cfg.target.model))
        counts[f"pseudo_kept[{culture}]"] += len(low) + len(high)
    counts["pseudo_kept"] = len(out)
    return out, +counts
