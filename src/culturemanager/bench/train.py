"""The bench's train phase: one LoRA adapter per method, culture/task and seed (bench/methods.py).

An adapter whose data and settings did not change is reused, a killed training resumes from its checkpoint, and
the small-loss check runs as in the train stage (one wrap-up for both: stages/train.fit_or_reuse). With
`train.layers` every adapter trains on the top layers only, and the frozen lower layers' states of an example are
computed once for all adapters and seeds (the prefix travels in `Trained` from one seed's call to the next).
                                                                                 -> adapters/<kind>/<name>/seed<k>/
Entry point: `train(cfg, split, corpus, seeds, before)`; returns the `Trained` record the evaluate phase reads.
Run: imported by `bench/run.py` (`culturemanager bench`); no entry point of its own.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from culturemanager.backends.schedule import answer_key, validation_split
from culturemanager.backends.target import load_target, load_tokenizer
from culturemanager.backends.trainer import META, VALIDATION, fit_adapter, settings_key
from culturemanager.bench.config import BenchConfig
from culturemanager.bench.data import job_data, stable_hash
from culturemanager.bench.methods import Job, job_settings, jobs
from culturemanager.bench.prepare import Corpus, Split
from culturemanager.records import write_jsonl
from culturemanager.rundir import file_lock
from culturemanager.stages.train import first_pass_losses, fit_or_reuse

log = logging.getLogger(__name__)


@dataclass
class Trained:
    """The train phase's hand-off: each job's adapter folder (None: too few examples, the base model stands in),
    the adapters this process trained (a shard reports them), and the frozen prefix (backends/prefix.py) that
    every later training shares."""
    adapters: dict[Job, Path | None] = field(default_factory=dict)
    trained: list[str] = field(default_factory=list)
    prefix: object = None


def train(cfg: BenchConfig, split: Split, corpus: Corpus, seeds: list[int], before: Trained | None = None,
          shard: tuple[int, int] = (0, 1), progress: bool = True) -> Trained:
    """Every job's adapter for `seeds`, reused when its examples, settings and starting point are unchanged; the
    adapters of `before` (earlier seeds) are kept in the result and serve as starting points. `shard` (I, N): only
    every N-th group of jobs from the I-th, each under a lock (a shard skips one another process is training)."""
    got = Trained(dict(before.adapters), list(before.trained), before.prefix) if before else Trained()
    todo = jobs(set(split.methods), [t.spec.id for t in split.ok_tasks], split.cultures, seeds)
    fitting = _Fitting(cfg, split, corpus, load_tokenizer(cfg.target), progress, got)
    i, n = shard
    groups = list(dict.fromkeys((j.init or j) for j in todo))  # a job and the one it continues from together
    for k, job in enumerate(todo, 1):
        if groups.index(job.init or job) % n != i:
            continue
        # a shard skips an adapter another process is training; the full run waits for it
        with file_lock(cfg.bench.dir / ".locks" / f"{job.slug}.lock", blocking=n == 1) as mine:
            if not mine:
                log.warning("%s is being trained by another process: skipped here", job.slug)
                continue
            train_job(fitting, job, k, len(todo))
    return got


@dataclass
class _Fitting:
    """What every training of one train call reads; `got` is the phase's result, filled in as adapters finish."""
    cfg: BenchConfig
    split: Split
    corpus: Corpus
    tok: object
    progress: bool
    got: Trained


def train_job(f: _Fitting, job: Job, k: int, total: int) -> None:
    """Train (or reuse) one job's adapter; too few examples: no adapter, the base model stands in."""
    samples = f.corpus.unchecked if job.kind == "cm-nosel" else f.corpus.samples
    examples, rows = job_data(job, f.cfg, f.split.ok_tasks, samples, f.split.cultures, f.tok)
    settings = settings_for(f.cfg, job)
    if len(examples) < settings.min_samples:
        log.warning("%s: %d examples (< train.min_samples): no adapter, the base model stands in",
                    job.slug, len(examples))
        f.got.adapters[job] = None
        return
    fit(f, job, examples, rows, settings, f"{job.slug} ({k}/{total})")


def fit(f: _Fitting, job: Job, examples: list, rows: list[dict] | None, settings, label: str) -> None:
    """Train `job`'s adapter unless it is current (same examples, settings, seed and starting point). `rows` (task,
    text, label per example, or None) give the adapter its validation.jsonl; a current adapter trained before that
    file existed gets it here (the slice is a pure function of the examples and the seed)."""
    out = job.folder(f.cfg.bench.dir)
    init = f.got.adapters.get(job.init) if job.init else None
    start = json.loads((init / META).read_text(encoding="utf-8"))["data_hash"] if init else ""
    digest = stable_hash([examples, settings_key(settings), f.cfg.target.model, job.seed, start])
    meta: dict = {"job": job.__dict__}

    def first_pass() -> list[float]:
        frozen_prefix(f, settings)
        return small_loss_first_pass(f, job, examples, rows, settings, digest, init)

    def train_on(keep: list[bool] | None) -> None:
        frozen_prefix(f, settings)
        kept, kept_rows = examples, rows
        if keep is not None:  # synthetic data only (settings_for): the first pass's high-loss examples left out
            meta["small_loss"] = {"examples": len(examples), "dropped": len(keep) - sum(keep)}
            kept = [e for e, k in zip(examples, keep) if k]
            kept_rows = [r for r, k in zip(rows, keep) if k] if rows is not None else None
        log.info("training %s on %d examples", label, len(kept))
        # the no-label-check adapter keeps its examples' losses: it is also the small-loss check's first pass
        fit_adapter(f.cfg.target, settings, job.seed, kept, out, digest, meta, f.progress, label=label,
                    prefix=f.got.prefix, init=init, score=job.kind == "cm-nolc", rows=kept_rows)
        f.got.trained.append(job.slug)

    keys = [str(answer_key(e)) for e in examples] if settings.small_loss.enabled else []
    fitted = fit_or_reuse(out, digest, settings.small_loss, keys, first_pass, train_on)
    if fitted.reused and rows is not None and not settings.small_loss.enabled and not (out / VALIDATION).exists():
        write_jsonl(out / VALIDATION, [rows[i] for i in validation_split(examples, settings, job.seed)[1]])
    f.got.adapters[job] = out


def frozen_prefix(f: _Fitting, settings) -> None:
    """The frozen lower layers' states (`train.layers`), created on the first training that needs them and then
    shared by every adapter and seed."""
    if f.got.prefix is None and settings.layers:
        from culturemanager.backends.prefix import FrozenPrefix, decoder_layers

        model, _ = load_target(f.cfg.target)
        f.got.prefix = FrozenPrefix(model, len(decoder_layers(model)) - settings.layers, f.cfg.target.batch_size,
                                    f.tok.pad_token_id)


def small_loss_first_pass(f: _Fitting, job: Job, examples: list, rows: list[dict] | None, settings, digest: str,
                          init: Path | None) -> list[float]:
    """The small-loss check's first pass on one CultureManager adapter's synthetic examples: each example's answer
    loss under a first adapter on all of them. A culture's CultureManager adapter takes it from the no-label-check
    ablation's adapter (the same examples and settings: one training serves both rows); the other kinds train
    theirs in a hidden folder. Both are reused on resume."""
    if job.kind == "cm":
        first = Job("cm-nolc", job.name, job.seed)
        fit(f, first, examples, rows, settings_for(f.cfg, first), f"{first.slug} (small-loss first pass)")
        return json.loads((first.folder(f.cfg.bench.dir) / META).read_text(encoding="utf-8"))["example_losses"]
    return first_pass_losses(job.folder(f.cfg.bench.dir), digest, lambda folder, first_digest: fit_adapter(
        f.cfg.target, settings, job.seed, examples, folder, first_digest, {"job": job.__dict__}, f.progress,
        label=f"{job.slug} (small-loss first pass)", prefix=f.got.prefix, init=init, score=True))


def settings_for(cfg: BenchConfig, job: Job):
    return job_settings(job, cfg.train, cfg.bench.survey_train)
