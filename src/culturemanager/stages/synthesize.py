"""Stage 4: the generator turns each material into labeled samples in the task's own format.

For each material it asks for `synthesis.samples_per_material` samples (labels round-robin over the label
set, so every culture gets every label), in the culture's language where the material allows. Items that do
not parse or fail validation (label outside the set, empty, too short or long) are dropped with a reason; an
answer with no valid item is retried with another seed, then the material is skipped and counted. Kept
samples carry full provenance, are deduplicated by a normalized sha1, and any sample that equals or shares a
`synthesis.leakage_ngram`-token n-gram with an evaluation input is dropped (the paper's leakage check).

Entry point: `synthesize(cfg, rd, llm)`; reads `materials.jsonl`, writes `samples/<culture>.jsonl` and
`samples/dropped.jsonl`.
Run: `culturemanager synthesize CONFIG.toml`.
"""

from __future__ import annotations

import logging
import random
from collections import Counter

from culturemanager.backends.llm import CachedLLM, ChatRequest
from culturemanager.config import Config, Task
from culturemanager.datafiles import read_texts
from culturemanager.prompts import build_synthesis_compact_messages, build_synthesis_messages, parse_samples
from culturemanager.records import (
    DroppedSample,
    Material,
    Provenance,
    Sample,
    normalize_text,
    read_jsonl,
    sample_id,
    stable_seed,
    write_jsonl,
)
from culturemanager.rundir import RunDir
from culturemanager.stages.checks import check_samples
from culturemanager.stages.queries import demonstrations_by_culture

log = logging.getLogger(__name__)


def synthesize(cfg: Config, rd: RunDir, llm: CachedLLM) -> tuple[dict[str, list[Sample]], dict]:
    materials = read_jsonl(rd.need(rd.materials, "search"), Material)
    cultures = {c.name: c for c in cfg.cultures}
    demos = {t.id: demonstrations_by_culture(cfg, t) for t in cfg.tasks}
    counts: Counter = Counter()
    kept: list[Sample] = []
    dropped: list[DroppedSample] = []
    # the copy checks, built once per material (a material has one job per label)
    copies = {m.id: copy_checks(m, demos[m.task].get(m.culture, []), cfg) for m in materials}
    # one job per material, or per material x label; a material's jobs are adjacent, so a local engine
    # reuses the shared prompt prefix (everything up to the material) between them
    pending = [(i, m, lab, part) for i, m in enumerate(materials)
               for lab, part in job_labels(cfg, cfg.task(m.task))]
    for attempt in range(cfg.synthesis.max_attempts):
        if not pending:
            break
        requests = [synthesis_request(cfg, m, i, attempt, demos[m.task].get(m.culture, []), cultures, lab, part)
                    for i, m, lab, part in pending]
        answers = llm.complete(requests, stage="synthesize")
        retry = []
        for (i, m, lab, part), req, ans in zip(pending, requests, answers):
            task = cfg.task(m.task)
            parsed = parse_samples(ans.text, task, cfg.synthesis, lab) if ans else None
            if parsed is None or not parsed.items:
                counts["failed_calls" if ans is None else "unparsable_answers"] += 1
                retry.append((i, m, lab, part))
                continue
            items = []
            for text, label in parsed.items:
                reason = next((why for why, index in copies[m.id] if index.leaks(text)), None)
                if reason:
                    parsed.dropped.append((reason, text, label))
                else:
                    items.append((text, label))
            for reason, text, label in parsed.dropped:
                dropped.append(DroppedSample(culture=m.culture, task=m.task, material_id=m.id, reason=reason,
                                             text=text[:500], label=label[:100]))
            kept += [make_sample(m, text, label, llm.name, req.prompt_hash()) for text, label in items]
        pending = retry
    counts["jobs_skipped"] = len(pending)
    for _, m, *_ in pending:
        dropped.append(DroppedSample(culture=m.culture, task=m.task, material_id=m.id, reason="no_valid_answer"))
    kept, more = filter_samples(cfg, kept)
    dropped += more
    kept, more, checked = check_samples(cfg, llm, kept, demos)  # synthesis.select and .judge (off by default)
    dropped += more
    counts.update(checked)
    counts.update(d.reason for d in dropped)
    by_culture = {c: [s for s in kept if s.culture == c] for c in cultures}
    for c, samples in by_culture.items():
        write_jsonl(rd.samples(c), samples)
        counts[f"kept[{c}]"] = len(samples)
        counts.update(f"label[{c}][{s.label}]" for s in samples)
    write_jsonl(rd.dropped, dropped)
    counts["kept"], counts["dropped"] = len(kept), len(dropped)
    return by_culture, dict(counts)


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
    style = random.Random(stable_seed(cfg.run.seed, "style", m.id)).sample(demos, min(2, len(demos)))
    if compact_output(cfg, label):
        messages = build_synthesis_compact_messages(cultures[m.culture], task, m.text, style, label, n,
                                                    cfg.synthesis)
    else:
        messages = build_synthesis_messages(cultures[m.culture], task, m.text, style, order, cfg.synthesis)
    return ChatRequest(messages, cfg.generator.temperature, cfg.generator.max_new_tokens, seed)


def copy_checks(m: Material, demos: list[str], cfg: Config) -> list[tuple[str, LeakIndex]]:
    """A sample that repeats a demonstration (it would get a made-up label) or copies a long stretch of the
    material verbatim (not an input of the task) is no training sample. Small generators do both."""
    return [("copies_demonstration", LeakIndex(demos, cfg.synthesis.leakage_ngram)),
            ("copies_material", LeakIndex([], cfg.synthesis.copy_ngram, [m.text]))]


def make_sample(m: Material, text: str, label: str, generator: str, prompt_hash: str) -> Sample:
    prov = Provenance(culture=m.culture, task=m.task, mode=m.mode, query=m.query, material_id=m.id,
                      source_ids=[d.id for d in m.documents],
                      source_urls=[d.url for d in m.documents if d.url], citations=m.citations,
                      generator=generator,
                      prompt_hash=prompt_hash)
    return Sample(id=sample_id(m.task, text), culture=m.culture, task=m.task, text=text, label=label,
                  provenance=prov)


def filter_samples(cfg: Config, samples: list[Sample]) -> tuple[list[Sample], list[DroppedSample]]:
    """Deduplicate (first occurrence wins) and drop samples leaking evaluation inputs."""
    leak_index = {t.id: LeakIndex(read_texts(t.evaluation), cfg.synthesis.leakage_ngram)
                  for t in cfg.tasks if t.evaluation}
    seen: set[str] = set()
    kept, dropped = [], []
    for s in samples:
        reason = None
        if s.id in seen:
            reason = "duplicate"
        elif s.task in leak_index and leak_index[s.task].leaks(s.text):
            reason = "leaks_evaluation"
        if reason:
            dropped.append(DroppedSample(culture=s.culture, task=s.task, material_id=s.provenance.material_id,
                                         reason=reason, text=s.text[:500], label=s.label))
        else:
            seen.add(s.id)
            kept.append(s)
    return kept, dropped


class LeakIndex:
    """Normalized evaluation texts and all their n-grams: equal text, or one shared n-gram, is a leak."""

    def __init__(self, texts: list[str], n: int, ngram_only: list[str] | None = None):
        self.n = n
        self.exact = {normalize_text(t) for t in texts}
        self.grams = {g for t in texts + (ngram_only or []) for g in ngrams(leak_tokens(t), n)}

    def leaks(self, text: str) -> bool:
        return normalize_text(text) in self.exact or any(g in self.grams for g in ngrams(leak_tokens(text),
                                                                                           self.n))


def leak_tokens(text: str) -> list[str]:
    """Words for alphabetic scripts, single characters for CJK (which has no spaces)."""
    out: list[str] = []
    for word in normalize_text(text).split():
        if any(_is_cjk(ch) for ch in word):
            out += list(word)
        else:
            out.append(word)
    return out


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return 0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF or 0xF900 <= o <= 0xFAFF


