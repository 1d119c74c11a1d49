"""Where the bench's training step spends its time, and what two fixes save: the output layer's product and padding.

The bench's step (examples/bench.toml [train]: LoRA r=8 on every linear module of the top 2 layers of Gemma-3-270m,
batches of 8 drawn class-balanced by `plan_batches`, the frozen prefix's states computed once and reused) on the
ten tasks' real demonstrations, under these cases, alternating step by step on one model (an optimizer with
learning rate 0, so that every case sees the same weights; the order of the cases rotates from step to step):

- `head`: "transformers" hands the output layer the non-contiguous slice of the kept positions (torch then runs
  one product per batch row against the 262k x 640 weight broadcast to the batch); "contiguous" is
  `target.contiguous_head_input`, which `load_target` now installs.
- `micro`: the whole batch at once, or `train.micro_batch` pieces cut in length order (the same gradient, less
  padding: a batch padded whole is about 1.4x its tokens).

Reported per task and case: the median seconds a step, padded tokens per real token, and the largest difference of
the step's loss from the default case's (the cases must agree). Also the output layer alone on a batch's kept
positions, both ways.

Run: `make bench-step-time` (or `python benchmarks/step_time.py [--tasks a,b] [--steps 10] [--layers 2]`);
writes benchmarks/results/step_time.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from culturemanager.backends.prefix import FrozenPrefix, decoder_layers
from culturemanager.backends.schedule import plan_batches
from culturemanager.backends.target import load_target
from culturemanager.backends.trainer import lora_config, train_step
from culturemanager.bench.split import stratified_split
from culturemanager.bench.tasks import load_tasks, read_task_rows
from culturemanager.config import TargetConfig, Task, TrainConfig
from culturemanager.stages.train import training_example

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CULTUREMANAGER_DATA", ROOT.parent / "shared" / "data"))
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# (head, micro-batch): the first is the step before the fix, the second the one `load_target` gives now
CASES = [("transformers", None), ("contiguous", None), ("contiguous", 4), ("contiguous", 2)]


@contextmanager
def head_as(model, how: str):
    """Within the block, the output layer gets its input as transformers gives it ("transformers": the hook that
    load_target installs is taken off) or contiguous (as loaded)."""
    hooks = model.get_output_embeddings()._forward_pre_hooks
    saved = dict(hooks)
    if how == "transformers":
        hooks.clear()
    try:
        yield
    finally:
        hooks.update(saved)


def padded_tokens(batch, micro: int | None) -> int:
    """Tokens a step computes: each piece padded to its longest sequence (pieces in length order, as train_step)."""
    size = micro or len(batch)
    lens = sorted(len(x) for x, _ in batch) if size < len(batch) else [len(x) for x, _ in batch]
    return sum(max(lens[s:s + size]) * len(lens[s:s + size]) for s in range(0, len(lens), size))


def head_alone(model, batch_size: int, keep: int, repeats: int = 5) -> dict[str, float]:
    """Seconds of the output layer's forward and backward on a batch's kept positions (a slice of the last
    positions, as transformers takes it), both ways."""
    head = model.get_output_embeddings()
    hidden = torch.randn(batch_size, 100, head.weight.shape[1])
    out = {}
    for how in ("transformers", "contiguous"):
        times = []
        with head_as(model, how):
            for _ in range(repeats + 1):
                h = hidden.clone().requires_grad_(True)
                t0 = time.perf_counter()
                head(h[:, -keep:, :]).float().logsumexp(-1).sum().backward()
                times.append(time.perf_counter() - t0)
        out[how] = round(statistics.median(times[1:]), 3)
    return out


def main() -> None:
    from peft import get_peft_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="ar-offensive,es-stance,tr-abusive,zh-spam")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per task and case (after one warm-up)")
    ap.add_argument("--layers", type=int, default=2, help="LoRA on the top this many layers (the bench's 2)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "step_time.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    target = TargetConfig(model="gemma3-270m", max_length=128, batch_size=16)
    # no dropout (the bench's 0.05 costs nothing measurable) so that every case computes the same loss
    t = TrainConfig(rank=8, alpha=16, dropout=0.0, layers=args.layers, target_modules=ALL_LINEAR, batch_size=8,
                    balance=True, max_examples=8 * (args.steps + 1))
    base, tok = load_target(target)
    model = get_peft_model(base, lora_config(t, len(decoder_layers(base))))
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
    prefix = FrozenPrefix(model, len(decoder_layers(base)) - args.layers, target.batch_size, tok.pad_token_id)
    tf = load_tasks(DATA / "tasks.json")
    specs = {s.id: s for s in tf.tasks}
    names = [f"{h}, micro {m or 'whole'}" for h, m in CASES]
    out: dict = {"command": f"python benchmarks/step_time.py --tasks {args.tasks} --steps {args.steps} "
                            f"--layers {args.layers}", "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                 "model": target.model, "max_length": target.max_length, "layers": args.layers,
                 "batch_size": t.batch_size, "head_alone_s": head_alone(model, t.batch_size, 2), "tasks": {}}
    print("output layer alone (batch 8, 2 kept positions):", out["head_alone_s"])
    totals: dict[str, list[float]] = {n: [] for n in names}
    for tid in args.tasks.split(","):
        spec = specs[tid]
        rows = read_task_rows(spec, DATA)
        demo_idx, _ = stratified_split(rows.labels, 0.1, 0, 100)  # TaskSFT's demonstrations in the bench
        task = Task(id=tid, label=spec.task, template=tf.prompt_template)
        examples = [training_example(tok, task, rows.texts[i], rows.labels[i], target.max_length)[0]
                    for i in demo_idx]
        prefix.states([x for x, _ in examples])  # computed once, as in the bench: not part of a step
        batches = [[examples[i] for i in b] for b in plan_batches(examples, t, 0)]
        times: dict[str, list[float]] = {n: [] for n in names}
        losses: dict[str, list[float]] = {n: [] for n in names}
        for k, batch in enumerate(batches):
            order = list(range(len(CASES)))
            for c in order[k % len(order):] + order[:k % len(order)]:
                (how, micro), name = CASES[c], names[c]
                with head_as(model, how):
                    t0 = time.perf_counter()
                    loss = train_step(model, opt, batch, tok.pad_token_id, prefix, micro)
                    spent = time.perf_counter() - t0
                if k:  # the first batch warms up
                    times[name].append(spent)
                    losses[name].append(loss)
        real = sum(len(x) for b in batches[1:] for x, _ in b)
        entry: dict = {"demonstrations": len(examples), "steps": len(batches) - 1,
                       "mean_tokens": round(real / sum(len(b) for b in batches[1:]), 1), "cases": {}}
        for (_, micro), name in zip(CASES, names):
            entry["cases"][name] = {
                "seconds_a_step": round(statistics.median(times[name]), 3),
                "padded_per_real_token": round(sum(padded_tokens(b, micro) for b in batches[1:]) / real, 3),
                "max_loss_difference": round(max(abs(a - b) for a, b in zip(losses[name], losses[names[0]])), 7)}
            totals[name] += times[name]
        out["tasks"][tid] = entry
        print(tid, json.dumps(entry["cases"]))
    before = statistics.fmean(totals[names[0]])
    out["overall"] = {n: {"mean_seconds_a_step": round(statistics.fmean(v), 3),
                          "relative_to_before": round(statistics.fmean(v) / before, 3)} for n, v in totals.items()}
    print(json.dumps(out["overall"], indent=1))
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
