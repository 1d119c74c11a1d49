"""Stage 5: one LoRA adapter per culture on the frozen target model, trained on that culture's samples.

Each sample is laid out with the task's own template (the one used at inference) and the loss is on the
answer tokens only. The adapter is saved as a standard PEFT folder (adapter_config.json +
adapter_model.safetensors, servable by vLLM's `--lora-modules` unchanged) plus `culturemanager.json`
(culture, data hash, resolved settings, library versions, loss curve). A finished adapter whose data hash is
unchanged is not retrained; a killed training resumes from its last checkpoint (weights + optimizer + step).

Entry point: `train(cfg, rd)`; reads `samples/<culture>.jsonl`, writes `adapters/<culture>/`.
Run: `culturemanager train CONFIG.toml`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from culturemanager.backends.schedule import Example
from culturemanager.backends.target import answer_reserve, encode_task, load_target, option_ids
from culturemanager.backends.trainer import META, fit_adapter, read_meta, settings_key
from culturemanager.config import Config, SmallLossConfig, Task
from culturemanager.records import Sample, read_jsonl, write_jsonl
from culturemanager.rundir import RunDir, file_lock

log = logging.getLogger(__name__)


def train(cfg: Config, rd: RunDir, progress: bool = True, shard: tuple[int, int] = (0, 1)) -> dict:
    """Train (or reuse) each culture's adapter. An adapter is removed only when its culture's samples file,
    which synthesis writes only for a culture whose synthesis succeeded, holds too few samples; a culture
    without a samples file keeps whatever adapter it has.

    `shard` (I, N): only every N-th culture from the I-th, so N processes (a Slurm array, one per GPU) train a
    run's adapters side by side. Each adapter is trained under a lock: one that another process is training
    is skipped (counted as `locked_elsewhere`), and a finished one is reused, never trained twice."""
    rd.need(rd.samples_dir, "synthesize")
    counts: dict = {"trained": [], "reused": [], "skipped_too_few_samples": [], "no_samples_file": [],
                    "locked_elsewhere": [], "truncated": 0}
    i, n = shard
    for culture in cfg.cultures[i::n]:
        with file_lock(rd.lock(f"adapter-{culture.name}"), blocking=False) as mine:
            if not mine:
                log.warning("adapter %s is being trained by another process: skipped here", culture.name)
                counts["locked_elsewhere"].append(culture.name)
                continue
            train_culture(cfg, rd, culture.name, counts, progress)
    return counts


def train_culture(cfg: Config, rd: RunDir, culture: str, counts: dict, progress: bool) -> None:
    """One culture's adapter: trained, reused, removed (too few samples) or kept (no samples file)."""
    path, out = rd.samples(culture), rd.adapter(culture)
    if not path.exists():
        log.warning("%s not found (synthesis wrote nothing for %s): nothing trained, an existing adapter is kept",
                    path, culture)
        counts["no_samples_file"].append(culture)
        return
    samples = read_jsonl(path, Sample)
    if len(samples) < cfg.train.min_samples:
        log.warning("culture %s has %d samples (< train.min_samples=%d): no adapter, base model serves it",
                    culture, len(samples), cfg.train.min_samples)
        counts["skipped_too_few_samples"].append(culture)
        shutil.rmtree(out, ignore_errors=True)  # a stale adapter must not outlive its data
        return
    digest = data_hash(cfg, samples)
    extra: dict = {}

    def train_on(keep: list[bool] | None) -> None:
        kept = samples
        if keep is not None:  # train.small_loss: the first pass's high-loss samples are left out
            kept = [s for s, k in zip(samples, keep) if k]
            extra["small_loss"] = {"samples": len(keep), "dropped": len(keep) - sum(keep),
                                   "drop_share": cfg.train.small_loss.drop_share}
            log.info("small-loss check for %s: %d of %d samples dropped (highest answer loss per label)", culture,
                     extra["small_loss"]["dropped"], len(keep))
            counts.setdefault("small_loss_dropped", {})[culture] = extra["small_loss"]["dropped"]
        counts["truncated"] += train_adapter(cfg, culture, kept, out, digest, progress, extra)

    fitted = fit_or_reuse(out, digest, cfg.train.small_loss, [f"{s.task}\x00{s.label}" for s in samples],
                          lambda: first_pass_losses(out, digest, lambda first, first_digest: train_adapter(
                              cfg, culture, samples, first, first_digest, progress, {"small_loss_first": True},
                              score=True)), train_on)
    if fitted.reused:
        counts["reused"].append(culture)
        return
    counts["trained"].append(culture)
    if fitted.keep is not None:  # one row per sample (loss, kept) beside the adapter
        write_jsonl(out / SMALL_LOSS_FILE, [{"task": s.task, "text": s.text, "label": s.label, "loss": loss, "kept": k}
                                            for s, loss, k in zip(samples, fitted.losses, fitted.keep)])


SMALL_LOSS_FILE = "small_loss.jsonl"


@dataclass
class Fitted:
    """What `fit_or_reuse` did with one adapter."""
    reused: bool
    keep: list[bool] | None = None  # the small-loss check's verdict per example (None: the check is off)
    losses: list[float] | None = None  # each example's answer loss under the check's first pass


def fit_or_reuse(out: Path, digest: str, check: SmallLossConfig, keys: list[str],
                 first_pass: Callable[[], list[float]], train: Callable[[list[bool] | None], object]) -> Fitted:
    """The training wrap-up that the train stage and the bench share. The adapter at `out` is reused when its data
    hash is `digest`. Otherwise, with the small-loss check on, `first_pass()` gives each example's answer loss under
    a first adapter on all of them (`first_pass_losses`, or an adapter that is already that first pass) and the
    check keeps all but the highest-loss share per answer (`keys`, `small_loss_keep`); then `train(keep)` trains
    the adapter on the kept examples (`keep` is None with the check off)."""
    if adapter_is_current(out, digest):
        return Fitted(reused=True)
    if not check.enabled:
        train(None)
        return Fitted(reused=False)
    losses = first_pass()
    keep = small_loss_keep(losses, keys, check.drop_share)
    train(keep)
    return Fitted(reused=False, keep=keep, losses=losses)


def first_pass_losses(out: Path, digest: str, train_first: Callable[[Path, str], object]) -> list[float]:
    """The small-loss check's first adapter for the adapter at `out` (data hash `digest`): trained by
    `train_first(folder, its digest)` into a hidden folder beside `out` unless it is current there, then each
    training example's loss from its culturemanager.json. The train stage and the bench both use it."""
    first = out.parent / f".{out.name}.first"
    first_digest = hashlib.sha256(f"{digest}:small-loss-first".encode()).hexdigest()
    if not adapter_is_current(first, first_digest):
        train_first(first, first_digest)
    return read_meta(first)["example_losses"]


def small_loss_keep(losses: list[float], labels: list[str], share: float) -> list[bool]:
    """Per label, the round(share x n) samples with the highest loss are dropped (ties: the later sample first),
    and at least one sample of each label is kept."""
    keep = [True] * len(losses)
    for label in dict.fromkeys(labels):
        idx = [i for i, y in enumerate(labels) if y == label]
        k = min(round(share * len(idx)), len(idx) - 1)
        for i in sorted(idx, key=lambda i: (-losses[i], -i))[:k]:
            keep[i] = False
    return keep


def data_hash(cfg: Config, samples: list[Sample]) -> str:
    """Everything that changes the adapter: the samples, the templates, the target and the LoRA settings."""
    body = {"samples": [(s.task, s.text, s.label) for s in samples], "train": settings_key(cfg.train),
            "target": cfg.target.model, "max_length": cfg.target.max_length, "seed": cfg.run.seed,
            "templates": {t.id: t.template for t in cfg.tasks}}
    return hashlib.sha256(json.dumps(body, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def adapter_is_current(folder: Path, digest: str) -> bool:
    meta = folder / META
    return ((folder / "adapter_model.safetensors").exists() and meta.exists()
            and read_meta(folder).get("data_hash") == digest)


def build_examples(cfg: Config, tok, samples: list[Sample]) -> tuple[list[Example], int]:
    """(input ids, labels with -100 on the prompt) per sample, and how many inputs were truncated."""
    examples, truncated = [], 0
    for s in samples:
        example, cut = training_example(tok, cfg.task(s.task), s.text, s.label, cfg.target.max_length)
        examples.append(example)
        truncated += cut
    return examples, truncated


def sample_row(s: Sample) -> dict:
    """What an adapter's validation.jsonl keeps of a held-out sample: enough to score it again."""
    return {"task": s.task, "text": s.text, "label": s.label, "id": s.id}


def training_example(tok, task: Task, text: str, answer: str, max_length: int) -> tuple[Example, bool]:
    """The task's prompt for `text` (encoded exactly as at inference), then the answer; the loss is on the answer
    only. Free-text answers end with the tokenizer's end-of-sequence token, so generation learns to stop.
    Returns the example and whether the input was truncated."""
    ids = option_ids(tok, [answer])[0]
    if task.format == "free_text" and tok.eos_token_id is not None:
        ids = ids + [tok.eos_token_id]
    reserve = len(ids) if task.format == "free_text" else answer_reserve(tok, task, len(ids))
    enc = encode_task(tok, task, text, max_length, reserve)
    return (enc.ids + ids, [-100] * len(enc.ids) + ids), enc.truncated


def train_adapter(cfg: Config, culture: str, samples: list[Sample], out: Path, digest: str,
                  progress: bool, extra: dict | None = None, score: bool = False) -> int:
    base, tok = load_target(cfg.target)
    examples, truncated = build_examples(cfg, tok, samples)
    meta = {"culture": culture, "samples": len(samples), "tasks": sorted({s.task for s in samples}),
            "truncated_inputs": truncated, "templates": {t.id: t.template for t in cfg.tasks},
            **(extra or {})}
    fit_adapter(cfg.target, cfg.train, cfg.run.seed, examples, out, digest, meta, progress, label=culture,
                loaded=(base, tok), score=score, rows=[sample_row(s) for s in samples])
    return truncated
