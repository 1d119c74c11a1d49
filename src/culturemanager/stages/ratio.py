"""The likelihood-ratio label check (`synthesis.ratio_check`): a label that does not rest on the generator's word.

The noisy-channel idea of DINO and SuperGen, for a binary task: a causal LM reads each text twice, once after a
description of the positive label ("A social media post with hate speech:") and once after one of the negative
("An ordinary social media post:"). The text's mean log-probability per token after the first minus after the
second is its ratio: above zero the text fits the positive description better (with `center = "median"`, above
the median of its culture x task's samples: a description pair can lean one way for every text). A synthetic
sample whose ratio points at the other label is dropped (`ratio_disagrees`), one within `margin` of zero (an
assistant's phrase fits both) too (`ratio_near_zero`); every kept sample's provenance records its ratio. Only
binary tasks are scored.

The scoring model is loaded through the inference core (engine.py), the target by default.
benchmarks/label_ratio.py measures the ratio's AUC on real labelled rows (`ratio_scores` is what it calls).

Entry point: `ratio_check(cfg, samples)`, called by stages/checks.py.
Run: `python -m culturemanager.stages.ratio MODEL "hate speech" "text" ...` prints each text's ratio.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence

from culturemanager.config import Config, Culture, RatioCheckConfig, TargetConfig, Task
from culturemanager.records import Check, DroppedSample, DropReason, Sample, drop, with_check

# (positive description, negative description); {task} is the task's label, {language} the culture's language
RATIO_PREFIXES: dict[str, tuple[str, str]] = {
    "plain": ("A social media post with {task}:\n", "An ordinary social media post:\n"),
    "language": ("A social media post in {language} with {task}:\n",
                 "An ordinary social media post in {language}:\n"),
    "contrast": ("A social media post with {task}:\n", "A social media post without {task}:\n"),
}


def build_ratio_prefixes(task: str, language: str, wording: str = "plain") -> tuple[str, str]:
    """The two descriptions a text is scored after: (positive, negative)."""
    pos, neg = RATIO_PREFIXES[wording]
    return pos.format(task=task, language=language), neg.format(task=task, language=language)


def ratio_label(ratio: float, task: Task, margin: float) -> str | None:
    """The label a ratio says (the positive above `margin`, the other label below `-margin`), None in between."""
    if abs(ratio) <= margin:
        return None
    negative = next(x for x in task.labels or [] if x != task.positive_label)
    return task.positive_label if ratio > 0 else negative


def centered(groups: Sequence[tuple[str, str]], ratios: Sequence[float]) -> list[float]:
    """Each ratio minus the median ratio of its group (culture, task): `ratio_check.center = "median"`."""
    from statistics import median

    medians = {g: median(r for h, r in zip(groups, ratios) if h == g) for g in set(groups)}
    return [r - medians[g] for g, r in zip(groups, ratios)]


def ratio_scores(engine, items: Sequence[tuple[str, str, str]], max_tokens: int = 64) -> list[float]:
    """The ratio of each (positive description, negative description, text), one mixed batch for both."""
    n = len(items)
    scores, _ = engine.continuation_logprobs([p for p, _, _ in items] + [q for _, q, _ in items],
                                             [t for _, _, t in items] * 2, max_tokens)
    return (scores[:n] - scores[n:]).tolist()


def scoring_target(cfg: Config) -> TargetConfig:
    """The scoring model's settings: the run's target, or another model on the target's device and dtype."""
    rc = cfg.synthesis.ratio_check
    if rc.model == "target":
        return cfg.target
    return cfg.target.model_copy(update={"model": rc.model, "load_in_4bit": False})


def ratio_check(cfg: Config, samples: list[Sample], engine=None) -> tuple[list[Sample | DroppedSample], Counter]:
    """Per sample, in order: the sample with its ratio in its provenance where the ratio agrees with its label
    (or it is not scored), else its drop with the reason; and counts that are not drops
    (ratio_skipped_not_binary)."""
    from culturemanager.text.prompts import language_name

    rc: RatioCheckConfig = cfg.synthesis.ratio_check
    tasks = {t.id: t for t in cfg.tasks}
    cultures: dict[str, Culture] = {c.name: c for c in cfg.cultures}
    counts: Counter = Counter()
    scored = [i for i, s in enumerate(samples) if tasks[s.task].format == "binary"]
    counts["ratio_skipped_not_binary"] = len(samples) - len(scored)
    if not scored:
        return list(samples), +counts
    target = scoring_target(cfg)
    if engine is None:
        from culturemanager.engine import Engine

        engine = Engine.load(target)
    items = []
    for i in scored:
        s = samples[i]
        pos, neg = build_ratio_prefixes(tasks[s.task].label, language_name(cultures[s.culture]), rc.wording)
        items.append((pos, neg, s.text))
    raw = ratio_scores(engine, items, rc.max_tokens)
    ratios = dict(zip(scored, centered([(samples[i].culture, samples[i].task) for i in scored], raw)
                      if rc.center == "median" else raw))
    out: list[Sample | DroppedSample] = []
    for i, s in enumerate(samples):
        said = ratio_label(ratios[i], tasks[s.task], rc.margin) if i in ratios else s.label
        if i not in ratios:
            out.append(s)
        elif said != s.label:
            out.append(drop(s, DropReason.RATIO_NEAR_ZERO if said is None else DropReason.RATIO_DISAGREES))
        else:
            out.append(with_check(s, Check(name="ratio", by=target.model, verdict=said,
                                           scores={"ratio": round(ratios[i], 6)})))
    return out, +counts


def main() -> None:
    from culturemanager.engine import Engine

    engine = Engine.load(TargetConfig(model=sys.argv[1]))
    pos, neg = build_ratio_prefixes(sys.argv[2], "")
    for text, r in zip(sys.argv[3:], ratio_scores(engine, [(pos, neg, t) for t in sys.argv[3:]])):
        print(f"{r:+.3f}  {text}")


if __name__ == "__main__":
    main()
