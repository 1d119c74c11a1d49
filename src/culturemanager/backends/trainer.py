"""Training one LoRA adapter on token examples: the trainer the pipeline's train stage and the benchmark share.

What a run of `fit_adapter` does, each part a setting of `[train]`:
- **Budget** in examples seen: `epochs` passes over the examples, capped by `max_examples` (and `max_steps`), so
  that a 50-example survey set and a 1,000-sample synthetic set get budgets that mean the same thing.
- **Batches** from a plan fixed by the seed (backends/schedule.py, with the validation split and the learning
  rate), so a killed run resumes at the same batch: shuffled epochs, or with `balance` every label (the answer
  tokens) drawn equally often, rare ones oversampled: a task with 5% positives would otherwise teach "always 0".
- **Learning rate** constant, or linear / cosine decay after a linear warm-up (`schedule`, `warmup`).
- **Early stopping** on a validation slice held out from the adapter's *own* examples (`validation`, stratified
  by label; never test data): every `eval_every` steps the class-balanced validation loss is measured, the best
  weights are kept, and `patience` evaluations without improvement end the training.
- **LoRA on the top `layers` decoder layers only**: the frozen lower layers' states come from a `FrozenPrefix`
  computed once per example (shared across adapters when the caller passes one), so a step runs the top layers.

The adapter is saved as a PEFT folder plus `culturemanager.json` (settings, data hash, loss and validation
curves, steps, examples seen). A checkpoint every `checkpoint_every` steps holds weights, optimizer, step and the
early-stopping state (backends/checkpoint.py).

Run: imported by `stages/train.py` and `bench/train.py`; no entry point of its own.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from culturemanager.backends.checkpoint import load_checkpoint, save_checkpoint
from culturemanager.backends.prefix import FrozenPrefix, decoder_layers, left_pad
from culturemanager.backends.schedule import Example, answer_key, lr_factor, plan_batches, validation_split
from culturemanager.backends.target import lm_forward, load_target
from culturemanager.config import TargetConfig, TrainConfig
from culturemanager.errors import TrainingDiverged
from culturemanager.records import write_json, write_jsonl
from culturemanager.rundir import library_versions

log = logging.getLogger(__name__)

META = "culturemanager.json"
VALIDATION = "validation.jsonl"  # the held-out examples' task, text and label (`rows`): an operating point's data


def read_meta(folder: str | Path) -> dict:
    """An adapter's culturemanager.json; one that does not parse, or is not an object, is a `RecordFileError`
    naming it (delete the adapter folder and train again)."""
    from culturemanager.records import RecordFileError, read_json

    path = Path(folder) / META
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise RecordFileError(f"{path}: not an adapter record (a JSON object): delete {Path(folder)} and train again")
    return meta


def validation_slice(folder: str | Path | None, task) -> list[dict] | None:
    """An adapter's held-out rows of one two-label task when they hold both labels (a cut can be chosen on them),
    else None: the one rule for the engine's validation operating point and for predict's record of it."""
    from culturemanager.records import read_json_lines

    if folder is None or task.format not in ("binary", "true_false") or len(task.labels or []) != 2:
        return None
    rows = [r for r in read_json_lines(Path(folder) / VALIDATION)[0] if r.get("task") == task.id]
    return rows if {r.get("label") for r in rows} >= set(task.labels) else None


def fit_adapter(target: TargetConfig, settings: TrainConfig, seed: int, examples: list[Example], out: Path,
                digest: str, meta: dict, progress: bool = True, label: str = "adapter", loaded=None,
                prefix: FrozenPrefix | None = None, init: Path | None = None, score: bool = False,
                rows: list[dict] | None = None) -> dict:
    """Train one adapter and save it to `out`; returns its `culturemanager.json` record. `loaded` is a (base
    model, tokenizer) pair the caller already loaded (modified in place); `prefix` a shared frozen-prefix cache
    (for `settings.layers`); `init` an adapter folder to continue from (same LoRA settings). With `score`, the
    record also holds every training example's answer loss under the finished adapter (`example_losses`, the
    small-loss check's input). `rows` (one per example: task, text, label) are written for the validation slice to
    `validation.jsonl` beside the adapter, where an operating point can be chosen on them (`predict.calibration
    = "validation"`)."""
    from peft import get_peft_model, set_peft_model_state_dict
    from peft.utils import get_peft_model_state_dict
    from rich.progress import Progress

    if not examples:
        raise ValueError(f"no training examples for adapter {label!r}")
    if rows is not None and len(rows) != len(examples):
        raise ValueError(f"{len(rows)} rows for {len(examples)} examples of adapter {label!r}")
    torch.manual_seed(seed)
    t0 = time.time()
    base, tok = loaded or load_target(target)
    n_layers = len(decoder_layers(base))
    model = get_peft_model(base, lora_config(settings, n_layers))
    parts = {"load": time.time() - t0, "steps": 0.0, "validation": 0.0, "checkpoints": 0.0, "prefix": 0.0}
    if init is not None:
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(str(Path(init) / "adapter_model.safetensors")))
    k = n_layers - settings.layers if settings.layers else 0
    if k > 0 and (prefix is None or prefix.k != k):
        prefix = FrozenPrefix(model, k, target.batch_size, tok.pad_token_id)
    elif k == 0:
        prefix = None
    train_idx, val_idx = validation_split(examples, settings, seed)
    batches = plan_batches([examples[i] for i in train_idx], settings, seed)
    val = [examples[i] for i in val_idx]
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(settings, len(batches)))
    ckpt = out.parent / f".{out.name}.checkpoint"
    state = load_checkpoint(ckpt, digest, model, opt, sched, set_peft_model_state_dict)
    train_rows = [examples[i] for i in train_idx]
    with Progress(disable=not progress, transient=True) as bar:
        job = bar.add_task(f"train {label}", total=len(batches), completed=state["step"])
        while state["step"] < len(batches) and not state["stopped"]:
            batch = [train_rows[i] for i in batches[state["step"]]]
            with timed(parts, "steps", prefix), stop_if_diverged(label, state["step"] + 1, ckpt):
                loss = train_step(model, opt, batch, tok.pad_token_id, prefix, settings.micro_batch)
                finite_weights(model)
                sched.step()
            state["losses"].append(round(loss, 5))
            state["step"] += 1
            bar.update(job, advance=1, description=f"train {label} loss {loss:.3f}")
            if val and (state["step"] % settings.eval_every == 0 or state["step"] == len(batches)):
                with timed(parts, "validation", prefix), stop_if_diverged(label, state["step"], ckpt):
                    early_stopping(state, finite(validation_loss(model, val, tok.pad_token_id, prefix),
                                                 "validation loss"), lambda: get_peft_model_state_dict(model), settings)
            if state["step"] % settings.checkpoint_every == 0 and state["step"] < len(batches):
                with timed(parts, "checkpoints", prefix):
                    save_checkpoint(ckpt, digest, {**state, "seconds": state.get("seconds", 0.0) + time.time() - t0},
                                    get_peft_model_state_dict(model), opt, sched)
    if state["best"] is not None:
        set_peft_model_state_dict(model, state["best"])
    losses = example_losses(model, examples, tok.pad_token_id, prefix, target.batch_size) if score else None
    record = {**meta, "data_hash": digest, "examples": len(examples), "train_examples": len(train_idx),
              "validation_examples": len(val_idx), "steps": state["step"], "planned_steps": len(batches),
              "best_step": state["best_step"], "examples_seen": sum(len(b) for b in batches[:state["step"]]),
              "stopped_early": state["stopped"], "seed": seed, "loss_curve": state["losses"],
              "validation_curve": state["val_curve"], "layers": settings.layers,
              "effective_batch": settings.batch_size, "micro_batch": settings.micro_batch or settings.batch_size,
              "target": target.model_dump(mode="json"), "train": settings.model_dump(mode="json"),
              "versions": library_versions()} | ({"example_losses": [round(x, 5) for x in losses]}
                                                  if losses is not None else {})
    record["seconds"] = round(state.get("seconds", 0.0) + time.time() - t0, 2)  # a resumed run adds the checkpoint's
    parts["rest"] = time.time() - t0 - sum(parts.values())  # this process's time: load, steps, validation, ...
    record["seconds_by_part"] = {k: round(v, 2) for k, v in parts.items()}
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    write_json(tmp / META, record)
    if rows is not None:
        write_jsonl(tmp / VALIDATION, [rows[i] for i in val_idx])
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(out)
    shutil.rmtree(ckpt, ignore_errors=True)
    log.info("adapter %s: %d examples, %d of %d steps of effective batch %d (micro-batches of %d), final loss %.3f",
             label, len(examples), state["step"], len(batches), settings.batch_size,
             settings.micro_batch or settings.batch_size, state["losses"][-1] if state["losses"] else float("nan"))
    return record


@contextmanager
def stop_if_diverged(label: str, step: int, ckpt: Path) -> Iterator[None]:
    """A non-finite value in the block (`NonFinite`) ends the training as `TrainingDiverged` naming the adapter and
    the step. Nothing of it is saved (the adapter is written only at the end) and its checkpoint is removed (it
    could only resume the same divergence); an adapter an earlier run finished stays, as after any failed stage."""
    try:
        yield
    except NonFinite as e:
        shutil.rmtree(ckpt, ignore_errors=True)
        raise TrainingDiverged(label, step, str(e)) from None


class NonFinite(ArithmeticError):
    """A NaN or infinity where training needs a number; its message says which quantity."""


def finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise NonFinite(what)
    return value


def finite_weights(model) -> None:
    """Every trainable weight finite after a step, else `NonFinite`: a huge learning rate can overflow the weights
    from finite gradients, and every later loss would be NaN."""
    if not all(torch.isfinite(p).all() for p in model.parameters() if p.requires_grad):
        raise NonFinite("weights")


@contextmanager
def timed(parts: dict[str, float], key: str, prefix: FrozenPrefix | None) -> Iterator[None]:
    """Adds the block's seconds to parts[key], less the frozen prefix's work for examples first seen in it
    (which goes to parts["prefix"]): where an adapter's training time goes, for `--plan`'s rates."""
    t0, p0 = time.time(), prefix.seconds if prefix is not None else 0.0
    try:
        yield
    finally:
        spent = (prefix.seconds if prefix is not None else 0.0) - p0
        parts["prefix"] += spent
        parts[key] += time.time() - t0 - spent


def settings_key(t: TrainConfig) -> dict:
    """The training settings as they enter an adapter's data hash; the small-loss check only when it is on and
    `validation_min` only when set, so adapters trained before those settings existed stay current."""
    left_out = {k for k, off in (("small_loss", not t.small_loss.enabled), ("validation_min", not t.validation_min))
                if off}
    return t.model_dump(mode="json", exclude=left_out)


def lora_config(t: TrainConfig, n_layers: int | None = None):
    """The one translation from our settings to peft's (`layers`: LoRA on the top layers only)."""
    from peft import LoraConfig

    layers = None
    if t.layers is not None and n_layers is not None and t.layers < n_layers:
        layers = list(range(n_layers - t.layers, n_layers))
    return LoraConfig(r=t.rank, lora_alpha=t.alpha, lora_dropout=t.dropout, target_modules=list(t.target_modules),
                      layers_to_transform=layers, task_type="CAUSAL_LM")


# ------------------------------------------------------------------------------------------------ steps

def train_step(model, opt, batch: list[Example], pad_id: int, prefix: FrozenPrefix | None = None,
               micro_batch: int | None = None) -> float:
    """One optimizer step. Sequences are left-padded so every answer ends at the last position; the model then
    computes logits only for the answer span (`logits_to_keep`): with Gemma's 262k-token vocabulary the output
    layer over every prompt token would be most of the step's time and memory. The loss is the mean over the
    batch's answer tokens, as with full logits. With a `prefix` (LoRA on the top layers only), the frozen lower
    layers' states come from it and only the upper layers run, forward and backward. With `micro_batch`, the
    batch runs in pieces of that size whose gradients add up to the whole batch's (gradient accumulation); the
    pieces are cut in length order, so each is padded only to its own longest sequence (a batch of 8 real task
    inputs is about 1.4x its tokens padded whole, about 1.05x in sorted pieces of 2)."""
    size = micro_batch or len(batch)
    if size < len(batch):
        batch = sorted(batch, key=lambda e: len(e[0]))
    tokens = sum(len(answer_key(e)) for e in batch)
    total = 0.0
    for start in range(0, len(batch), size):
        loss = answer_loss(model, batch[start:start + size], pad_id, prefix).sum() / tokens
        loss.backward()
        total += loss.item()
    finite(total, "loss")
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if grads and not torch.isfinite(torch.stack([torch.linalg.vector_norm(g) for g in grads])).all():
        raise NonFinite("gradients")  # before the step: weights updated by them would be NaN from here on
    opt.step()
    opt.zero_grad(set_to_none=True)
    return total


def answer_loss(model, batch: list[Example], pad_id: int, prefix: FrozenPrefix | None = None) -> torch.Tensor:
    """The cross-entropy of every answer token of the batch (a flat tensor, prompt tokens excluded)."""
    width = max(len(ids) for ids, _ in batch)
    span = max(len(y) - next((k for k, v in enumerate(y) if v != -100), len(y)) for _, y in batch)
    keep = span + 1
    logits = lm_forward(model, [x for x, _ in batch], pad_id, keep, prefix=prefix)
    labels = left_pad([y for _, y in batch], -100)[0].to(logits.device)
    # logits at position t predict token t+1: the kept positions width-keep..width-2 predict the last keep-1 tokens
    pred = logits[:, :-1].float()
    target = labels[:, width - keep + 1:]
    per_token = torch.nn.functional.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1),
                                                  ignore_index=-100, reduction="none")
    return per_token[target.reshape(-1) != -100]


@torch.no_grad()
def validation_loss(model, val: list[Example], pad_id: int, prefix: FrozenPrefix | None, batch_size: int = 16
                    ) -> float:
    """The mean over labels of each label's mean answer loss: class-balanced, so a model that gets the rare
    label wrong cannot look good by getting the common one right."""
    was = model.training
    model.eval()
    by_label: dict[tuple[int, ...], list[float]] = defaultdict(list)
    val = sorted(val, key=lambda e: len(e[0]))  # batches of similar lengths: less padding, the same means
    for s in range(0, len(val), batch_size):
        chunk = val[s:s + batch_size]
        for e, loss in zip(chunk, _per_example_loss(model, chunk, pad_id, prefix)):
            by_label[answer_key(e)].append(loss)
    model.train(was)
    return sum(sum(v) / len(v) for v in by_label.values()) / len(by_label)


@torch.no_grad()
def example_losses(model, examples: list[Example], pad_id: int, prefix: FrozenPrefix | None, batch_size: int = 16
                   ) -> list[float]:
    """Each example's mean answer-token loss under the model as it is (eval mode), in batches."""
    was = model.training
    model.eval()
    out: list[float] = []
    for s in range(0, len(examples), batch_size):
        out += _per_example_loss(model, examples[s:s + batch_size], pad_id, prefix)
    model.train(was)
    return out


def _per_example_loss(model, chunk: list[Example], pad_id: int, prefix: FrozenPrefix | None) -> list[float]:
    """Each example's mean answer-token loss, the batch in one forward pass."""
    width = max(len(ids) for ids, _ in chunk)
    span = max(len(y) - next((k for k, v in enumerate(y) if v != -100), len(y)) for _, y in chunk)
    keep = span + 1
    logits = lm_forward(model, [x for x, _ in chunk], pad_id, keep, prefix=prefix)
    labels = left_pad([y for _, y in chunk], -100)[0].to(logits.device)
    pred = logits[:, :-1].float()
    target = labels[:, width - keep + 1:]
    tok_loss = torch.nn.functional.cross_entropy(pred.transpose(1, 2), target, ignore_index=-100, reduction="none")
    mask = (target != -100).float()
    return (tok_loss * mask).sum(1).div(mask.sum(1).clamp(min=1)).tolist()


def early_stopping(state: dict, loss: float, weights: Callable[[], dict], t: TrainConfig) -> None:
    """Record a validation loss; keep the weights when it is the best so far; stop after `patience` evaluations
    without improvement."""
    state["val_curve"].append([state["step"], round(loss, 5)])
    if state["best_loss"] is None or loss < state["best_loss"] - 1e-6:
        state.update(best_loss=loss, best_step=state["step"], bad=0,
                     best={k: v.detach().clone() for k, v in weights().items()})
    else:
        state["bad"] += 1
        if t.patience is not None and state["bad"] >= t.patience:
            state["stopped"] = True
