"""Stage 4: the generator turns each material into labeled samples in the task's own format.

For each material it asks for `synthesis.samples_per_material` samples (labels round-robin over the label
set, so every culture gets every label), in the culture's language where the material allows. Items that do
not parse or fail validation (label outside the set, empty, too short or long) are dropped with their reason
(`records.DropReason`), also when no item of an answer is valid; an answer with no valid item is retried with
another seed, then the material is skipped and counted. Kept samples carry full provenance, are deduplicated
by a normalized sha1, and any sample that equals or shares a `synthesis.leakage_ngram`-token n-gram with an
evaluation input of any task of the run is dropped (the paper's leakage check, leakage.py).

With `synthesis.seed = "demonstrations"` (or "both") each unlabeled demonstration of a labelled task is a job of
its own: the generator rewrites it once per label, same topic, language and register, and a rewrite that is the
demonstration (nearly) unchanged is dropped as a copy (`rewrite_max_similarity`). With `synthesis.pseudo_label`
real texts of the task (demonstrations, posts of the retrieved documents) labelled by a probe of the kept samples
are added to them (stages/pseudo.py).

Finished work is never replaced by a failure: when no job of the stage got a valid answer (the generator is
down, or answers nothing usable) the stage fails (`StageFailed`) and writes nothing; a culture none of whose
jobs got a valid answer keeps the samples file of an earlier run (counted as `cultures_failed`), so `train`
keeps its adapter. Only a culture whose synthesis succeeded and kept too few samples loses its adapter.

Entry point: `synthesize(cfg, rd, llm)`; reads `materials.jsonl`, writes `samples/<culture>.jsonl` and
`samples/dropped.jsonl`.
Run: `culturemanager synthesize CONFIG.toml`.
"""

from __future__ import annotations

import difflib
import logging
import random
from collections import Counter

from culturemanager.backends.llm import CachedLLM, ChatRequest
from culturemanager.config import Config, Task
from culturemanager.errors import StageFailed
from culturemanager.records import (
    DroppedSample,
    DropReason,
    Material,
    Sample,
    make_sample,
    read_jsonl,
    sha1_text,
    stable_seed,
    write_jsonl,
)
from culturemanager.rundir import RunDir
from culturemanager.stages.checks import check_samples
from culturemanager.stages.pseudo import pseudo_label
from culturemanager.stages.spec import demonstrations_by_culture, evaluation_index
from culturemanager.text.leakage import LeakIndex
from culturemanager.text.prompts import (
    build_rewrite_messages,
    build_synthesis_compact_messages,
    build_synthesis_messages,
    parse_samples,
)

log = logging.getLogger(__name__)


def synthesize(cfg: Config, rd: RunDir, llm: CachedLLM) -> tuple[dict[str, list[Sample]], dict]:
    cultures = {c.name: c for c in cfg.cultures}
    demos = {t.id: demonstrations_by_culture(cfg, t) for t in cfg.tasks}
    seed = cfg.synthesis.seed
    seeded = demonstration_materials(cfg, demos) if seed != "material" else []
    unlabeled = any(not t.labels for t in cfg.tasks)
    retrieved = read_jsonl(rd.need(rd.materials, "search"), Material) if seed != "demonstrations" or unlabeled \
        else []
    if seed == "demonstrations":  # a task without a label set has no counterfactual versions: it keeps its material
        retrieved = [m for m in retrieved if not cfg.task(m.task).labels]
    materials = retrieved + seeded
    leaks = evaluation_index(cfg)  # read before any call: a bad evaluation file costs no generator time
    counts: Counter = Counter()
    kept: list[Sample] = []
    dropped: list[DroppedSample] = []
    first_problem: str | None = None
    # the copy checks, built once per material (a material has one job per label)
    # (a rewrite may keep much of its own demonstration, but not all of it, nor another's n-grams)
    copies = {m.id: (rewrite_checks if m.mode == "demonstration" else copy_checks)(
        m, demos[m.task].get(m.culture, []), cfg) for m in materials}
    # one job per material, or per material x label; a material's jobs are adjacent, so a local engine
    # reuses the shared prompt prefix (everything up to the material) between them
    pending = [(i, m, lab, part) for i, m in enumerate(materials)
               for lab, part in (job_labels(cfg, cfg.task(m.task)) if m.mode != "demonstration" else [(None, 0)])]
    jobs = Counter(m.culture for _, m, _, _ in pending)
    answered: Counter = Counter()  # per culture: jobs that got at least one valid item
    for attempt in range(cfg.synthesis.max_attempts):
        if not pending:
            break
        requests = [synthesis_request(cfg, m, i, attempt, demos[m.task].get(m.culture, []), cultures, lab, part)
                    for i, m, lab, part in pending]
        answers = llm.complete(requests, stage="synthesize")
        counts["requests"] += len(requests)
        retry = []
        for (i, m, lab, part), req, ans in zip(pending, requests, answers):
            parsed = parse_samples(ans.text, cfg.task(m.task), cfg.synthesis, lab) if ans else None
            items = []
            for text, label in parsed.items if parsed else []:
                reason = next((why for why, index in copies[m.id] if index.leaks(text)), None)
                if reason:
                    parsed.dropped.append((reason, text, label))
                else:
                    items.append((text, label))
            for reason, text, label in parsed.dropped if parsed else []:  # also when no item is valid
                dropped.append(DroppedSample(culture=m.culture, task=m.task, material_id=m.id, reason=reason,
                                             text=text[:500], label=label[:100]))
            if parsed is None or not parsed.items:
                # a failed call, no JSON object at all, or objects none of which is a valid sample: retried
                kind = "failed_calls" if parsed is None else "unparsable_answers" if not parsed.dropped \
                    else "answers_without_valid_items"
                counts[kind] += 1
                if parsed is not None and first_problem is None:
                    first_problem = describe_unusable(ans.text, parsed.dropped)
                retry.append((i, m, lab, part))
                continue
            answered[m.culture] += 1
            kept += [make_sample(m, text, label, llm.name, req.prompt_hash()) for text, label in items]
        pending = retry
    if jobs and not answered:
        raise StageFailed("synthesize", counts["requests"],
                          llm.first_error.get("synthesize") or first_problem or "?")
    counts["jobs_skipped"] = len(pending)
    for _, m, *_ in pending:
        dropped.append(DroppedSample(culture=m.culture, task=m.task, material_id=m.id,
                                     reason=DropReason.NO_VALID_ANSWER))
    kept, more = filter_samples(kept, leaks)
    dropped += more
    unchecked = kept
    kept, more, checked = check_samples(cfg, llm, kept, demos)  # select, ratio_check, judge (off by default)
    dropped += more
    counts.update(checked)
    if cfg.synthesis.pseudo_label.enabled:  # real texts labelled by a probe of the kept samples (stages/pseudo.py)
        pseudo, more_counts = pseudo_label(cfg, kept, retrieved, demos)
        pseudo, more = filter_samples(pseudo, leaks, seen={s.id for s in kept})
        kept += pseudo
        dropped += more
        counts.update(more_counts)
    counts.update(str(d.reason) for d in dropped)
    by_culture = {c: [s for s in kept if s.culture == c] for c in cultures}
    for c, samples in by_culture.items():
        if jobs[c] and not answered[c]:
            # every job of this culture failed: its samples (and so its adapter) from an earlier run stay
            log.warning("no synthesis job of culture %s got a valid answer: %s keeps what an earlier run wrote",
                        c, rd.samples(c))
            counts["cultures_failed"] += 1
            continue
        write_jsonl(rd.samples(c), samples)
        if cfg.synthesis.select.enabled or cfg.synthesis.judge.enabled:  # for the "no selection" ablation
            write_jsonl(rd.unchecked(c), [s for s in unchecked if s.culture == c])
        counts[f"kept[{c}]"] = len(samples)
        counts.update(f"label[{c}][{s.label}]" for s in samples)
    write_jsonl(rd.dropped, dropped)
    counts["kept"], counts["dropped"] = len(kept), len(dropped)
    return by_culture, dict(counts)


def describe_unusable(answer: str, dropped: list[tuple[DropReason, str, str]]) -> str:
    if not dropped:
        return f"unparsable answer {answer[:120]!r}"
    reason, text, label = dropped[0]
    return f"{reason}: {text[:80]!r} with label {label[:40]!r}"


def job_labels(cfg: Config, task: Task) -> list[tuple[str | None, int]]:
    """(label, part) of each call for a material. per_label: one call per label, each asking for samples of that
    label only (weak generators label far better when the label is given than when they must choose it), or
    several (parts 0, 1, ...) of at most `samples_per_call` samples; otherwise one call per material."""
    if cfg.synthesis.label_mode == "per_label" and task.labels:
        return [(lab, part) for lab in task.labels for part in range(len(label_counts(cfg, task)))]
    return [(None, 0)]


def label_counts(cfg: Config, task: Task) -> list[int]:
    """per_label: how many samples each call of one label asks for (samples_per_material shared by the labels,
    then cut into calls of at most samples_per_call)."""
    total = max(1, -(-cfg.synthesis.samples_per_material // len(task.labels or [None])))
    step = cfg.synthesis.samples_per_call or total
    return [min(step, total - k) for k in range(0, total, step)]


def compact_output(cfg: Config, label: str | None) -> bool:
    """synthesis.output = "compact" applies to calls whose label is given (their answers carry no label)."""
    return cfg.synthesis.output == "compact" and label is not None


def synthesis_request(cfg: Config, m: Material, index: int, attempt: int, demos: list[str], cultures,
                      label: str | None = None, part: int = 0) -> ChatRequest:
    task = cfg.task(m.task)
    # a label's later parts differ from its first call only in the seed: the whole prompt is shared
    seed = stable_seed(cfg.run.seed, "synth", m.id, label, attempt, *([part] if part else []))
    labels = task.labels or []
    n = cfg.synthesis.samples_per_material
    if label is not None:
        n = label_counts(cfg, task)[part]
        order = [label] * n
    elif labels and cfg.synthesis.label_mode == "round_robin":
        # from a per-material offset: across materials every label is asked for equally often
        order = [labels[(index + j) % len(labels)] for j in range(n)]
    else:
        order = [""] * n
    if m.mode == "demonstration":
        messages = build_rewrite_messages(cultures[m.culture], task, m.text, cfg.synthesis)
        return ChatRequest(messages, cfg.generator.temperature, cfg.generator.max_new_tokens, seed)
    style = random.Random(stable_seed(cfg.run.seed, "style", m.id)).sample(demos, min(2, len(demos)))
    if compact_output(cfg, label):
        messages = build_synthesis_compact_messages(cultures[m.culture], task, m.text, style, label, n,
                                                    cfg.synthesis)
    else:
        messages = build_synthesis_messages(cultures[m.culture], task, m.text, style, order, cfg.synthesis)
    return ChatRequest(messages, cfg.generator.temperature, cfg.generator.max_new_tokens, seed)


def copy_checks(m: Material, demos: list[str], cfg: Config) -> list[tuple[DropReason, LeakIndex]]:
    """A sample that repeats a demonstration (it would get a made-up label) or copies a long stretch of the
    material verbatim (not an input of the task) is no training sample. Small generators do both."""
    return [(DropReason.COPIES_DEMONSTRATION, LeakIndex(demos, cfg.synthesis.leakage_ngram)),
            (DropReason.COPIES_MATERIAL, LeakIndex([], cfg.synthesis.copy_ngram, [m.text]))]


def demonstration_materials(cfg: Config, demos: dict[str, dict[str, list[str]]]) -> list[Material]:
    """synthesis.seed: each demonstration of a task with a label set (at most `seed_limit` per culture, a seeded
    sample) as a material of its own, mode "demonstration"; its id is the text's hash, so a resumed run or a
    larger limit asks the same calls again (from the answer cache)."""
    out = []
    for task in cfg.tasks:
        if not task.labels:
            continue
        for culture, texts in demos[task.id].items():
            texts = list(dict.fromkeys(t for t in texts if t.strip()))
            limit = cfg.synthesis.seed_limit
            if limit is not None and len(texts) > limit:
                texts = random.Random(stable_seed(cfg.run.seed, "seed", task.id, culture)).sample(texts, limit)
            out += [Material(id=sha1_text(f"demonstration|{task.id}|{culture}|{t}")[:12], culture=culture,
                             task=task.id, mode="demonstration", query_id="", query="", text=t, documents=[],
                             summarized=False) for t in texts]
    return out


def rewrite_checks(m: Material, demos: list[str], cfg: Config) -> list[tuple[DropReason, object]]:
    """A rewrite too similar to its own demonstration (`rewrite_max_similarity`), or sharing an n-gram with
    another demonstration, copies a demonstration: it would carry a made-up label."""
    others = [d for d in demos if d != m.text]
    return [(DropReason.COPIES_DEMONSTRATION, NearCopy(m.text, cfg.synthesis.rewrite_max_similarity)),
            (DropReason.COPIES_DEMONSTRATION, LeakIndex(others, cfg.synthesis.leakage_ngram))]


class NearCopy:
    """`leaks(text)`: the text's character similarity to `original` (difflib's ratio over case-folded,
    whitespace-folded text) is at least `threshold`."""

    def __init__(self, original: str, threshold: float):
        self.original, self.threshold = fold(original), threshold

    def leaks(self, text: str) -> bool:
        return similarity_folded(self.original, fold(text)) >= self.threshold


def fold(text: str) -> str:
    return " ".join(text.casefold().split())


def similarity(a: str, b: str) -> float:
    """difflib's ratio of the case- and whitespace-folded texts: 1.0 for a copy, 0.0 for nothing in common."""
    return similarity_folded(fold(a), fold(b))


def similarity_folded(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def filter_samples(samples: list[Sample], leaks: LeakIndex, seen: set[str] | None = None
                   ) -> tuple[list[Sample], list[DroppedSample]]:
    """Deduplicate (first occurrence wins; `seen`: ids already kept elsewhere) and drop samples leaking an
    evaluation input of the run."""
    seen = set(seen or ())
    kept, dropped = [], []
    for s in samples:
        reason = None
        if s.id in seen:
            reason = DropReason.DUPLICATE
        elif leaks.leaks(s.text):
            reason = DropReason.LEAKS_EVALUATION
        if reason:
            dropped.append(DroppedSample(culture=s.culture, task=s.task, material_id=s.provenance.material_id,
                                         reason=reason, text=s.text[:500], label=s.label))
        else:
            seen.add(s.id)
            kept.append(s)
    return kept, dropped
