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
import math
import random
import shutil
from pathlib import Path

import torch

from culturemanager.backends.prefix import FrozenPrefix
from culturemanager.backends.target import answer_reserve, encode_task, left_pad, lm_forward, load_target, option_ids
from culturemanager.config import Config, TargetConfig, Task, TrainConfig
from culturemanager.records import Sample, read_jsonl, write_json
from culturemanager.rundir import RunDir, library_versions

log = logging.getLogger(__name__)

META = "culturemanager.json"
Example = tuple[list[int], list[int]]  # input ids, labels (-100 on the prompt tokens)


def train(cfg: Config, rd: RunDir, progress: bool = True) -> dict:
    """Train (or reuse) each culture's adapter. An adapter is removed only when its culture's samples file,
    which synthesis writes only for a culture whose synthesis succeeded, holds too few samples; a culture
    without a samples file keeps whatever adapter it has."""
    rd.need(rd.samples_dir, "synthesize")
    counts: dict = {"trained": [], "reused": [], "skipped_too_few_samples": [], "no_samples_file": [],
                    "truncated": 0}
    for culture in cfg.cultures:
        path = rd.samples(culture.name)
        out = rd.adapter(culture.name)
        if not path.exists():
            log.warning("%s not found (synthesis wrote nothing for %s): nothing trained, an existing adapter "
                        "is kept", path, culture.name)
            counts["no_samples_file"].append(culture.name)
            continue
        samples = read_jsonl(path, Sample)
        if len(samples) < cfg.train.min_samples:
            log.warning("culture %s has %d samples (< train.min_samples=%d): no adapter, base model serves it",
                        culture.name, len(samples), cfg.train.min_samples)
            counts["skipped_too_few_samples"].append(culture.name)
            shutil.rmtree(out, ignore_errors=True)  # a stale adapter must not outlive its data
            continue
        digest = data_hash(cfg, samples)
        if adapter_is_current(out, digest):
            counts["reused"].append(culture.name)
            continue
        counts["truncated"] += train_adapter(cfg, culture.name, samples, out, digest, progress)
        counts["trained"].append(culture.name)
    return counts


def data_hash(cfg: Config, samples: list[Sample]) -> str:
    """Everything that changes the adapter: the samples, the templates, the target and the LoRA settings."""
    body = {"samples": [(s.task, s.text, s.label) for s in samples], "train": cfg.train.model_dump(),
            "target": cfg.target.model, "max_length": cfg.target.max_length, "seed": cfg.run.seed,
            "templates": {t.id: t.template for t in cfg.tasks}}
    return hashlib.sha256(json.dumps(body, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def adapter_is_current(folder: Path, digest: str) -> bool:
    meta = folder / META
    return ((folder / "adapter_model.safetensors").exists() and meta.exists()
            and json.loads(meta.read_text(encoding="utf-8")).get("data_hash") == digest)


def build_examples(cfg: Config, tok, samples: list[Sample]) -> tuple[list[Example], int]:
    """(input ids, labels with -100 on the prompt) per sample, and how many inputs were truncated."""
    examples, truncated = [], 0
    for s in samples:
        example, cut = training_example(tok, cfg.task(s.task), s.text, s.label, cfg.target.max_length)
        examples.append(example)
        truncated += cut
    return examples, truncated


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


def lora_config(t: TrainConfig):
    """The one translation from our settings to peft's."""
    from peft import LoraConfig

    return LoraConfig(r=t.rank, lora_alpha=t.alpha, lora_dropout=t.dropout, target_modules=list(t.target_modules),
                      task_type="CAUSAL_LM")


def train_adapter(cfg: Config, culture: str, samples: list[Sample], out: Path, digest: str,
                  progress: bool) -> int:
    base, tok = load_target(cfg.target)
    examples, truncated = build_examples(cfg, tok, samples)
    meta = {"culture": culture, "samples": len(samples), "tasks": sorted({s.task for s in samples}),
            "truncated_inputs": truncated, "templates": {t.id: t.template for t in cfg.tasks}}
    fit_adapter(cfg.target, cfg.train, cfg.run.seed, examples, out, digest, meta, progress, label=culture,
                loaded=(base, tok))
    return truncated


def fit_adapter(target: TargetConfig, settings: TrainConfig, seed: int, examples: list[Example], out: Path,
                digest: str, meta: dict, progress: bool = True, label: str = "adapter", loaded=None) -> None:
    """Train one LoRA adapter on token examples and save it as a PEFT folder with `culturemanager.json`
    (`meta` + data hash, settings, versions, loss curve). Resumes from `.<out>.checkpoint` when its hash matches.
    Used by the pipeline (culture samples) and by the benchmark (task and survey baselines). `loaded` is a
    (base model, tokenizer) pair the caller already loaded; the base model is modified in place."""
    from peft import get_peft_model, set_peft_model_state_dict
    from peft.utils import get_peft_model_state_dict
    from rich.progress import Progress

    if not examples:
        raise ValueError(f"no training examples for adapter {label!r}")
    torch.manual_seed(seed)
    base, tok = loaded or load_target(target)
    model = get_peft_model(base, lora_config(settings))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr)
    bs = settings.batch_size
    per_epoch = math.ceil(len(examples) / bs)
    total = per_epoch * settings.epochs
    if settings.max_steps is not None:
        total = min(total, settings.max_steps)
    ckpt = out.parent / f".{out.name}.checkpoint"
    step, losses = load_checkpoint(ckpt, digest, model, opt, set_peft_model_state_dict)
    with Progress(disable=not progress, transient=True) as bar:
        job = bar.add_task(f"train {label}", total=total, completed=step)
        while step < total:
            epoch, offset = divmod(step, per_epoch)
            order = list(range(len(examples)))
            random.Random(seed * 1000 + epoch).shuffle(order)
            batch = [examples[i] for i in order[offset * bs:(offset + 1) * bs]]
            loss = train_step(model, opt, batch, tok.pad_token_id)
            losses.append(round(loss, 5))
            step += 1
            bar.update(job, advance=1, description=f"train {label} loss {loss:.3f}")
            if step % settings.checkpoint_every == 0 and step < total:
                save_checkpoint(ckpt, digest, step, losses, get_peft_model_state_dict(model), opt)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    write_json(tmp / META, {**meta, "data_hash": digest, "examples": len(examples), "steps": total, "seed": seed,
                            "loss_curve": losses, "target": target.model_dump(mode="json"),
                            "train": settings.model_dump(mode="json"), "versions": library_versions()})
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(out)
    shutil.rmtree(ckpt, ignore_errors=True)
    log.info("adapter %s: %d examples, %d steps, final loss %.3f", label, len(examples), total,
             losses[-1] if losses else float("nan"))


def train_step(model, opt, batch: list[Example], pad_id: int, prefix: FrozenPrefix | None = None) -> float:
    """One optimizer step. Sequences are left-padded so every answer ends at the last position; the model then
    computes logits only for the answer span (`logits_to_keep`): with Gemma's 262k-token vocabulary the output
    layer over every prompt token would be most of the step's time and memory. The loss is the mean over the
    batch's answer tokens, as with full logits. With a `prefix` (LoRA on the top layers only), the frozen lower
    layers' states come from it and only the upper layers run, forward and backward."""
    width = max(len(ids) for ids, _ in batch)
    span = max(len(y) - next((k for k, v in enumerate(y) if v != -100), len(y)) for _, y in batch)
    keep = span + 1
    labels, _ = left_pad([y for _, y in batch], -100)
    logits = lm_forward(model, [x for x, _ in batch], pad_id, keep, prefix=prefix)
    # logits at position t predict token t+1: the kept positions width-keep..width-2 predict the last keep-1 tokens
    pred = logits[:, :-1].float()
    target = labels[:, width - keep + 1:]
    loss = torch.nn.functional.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), ignore_index=-100)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


def save_checkpoint(folder: Path, digest: str, step: int, losses: list[float], weights: dict, opt) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save({"weights": weights, "optimizer": opt.state_dict(), "step": step, "losses": losses,
                "data_hash": digest}, tmp / "state.pt")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def load_checkpoint(folder: Path, digest: str, model, opt, set_state) -> tuple[int, list[float]]:
    state_file = folder / "state.pt"
    if not state_file.exists():
        return 0, []
    state = torch.load(state_file, weights_only=True)
    if state.get("data_hash") != digest:
        shutil.rmtree(folder, ignore_errors=True)
        return 0, []
    set_state(model, state["weights"])
    opt.load_state_dict(state["optimizer"])
    log.info("resuming training from step %d", state["step"])
    return int(state["step"]), list(state["losses"])
