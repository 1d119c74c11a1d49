"""This machine's rates for `--plan` (plan.Rates): seconds per token and decoder layer of the target model, for
inference (a forward pass) and for training (forward + backward through adapted layers), on real task prompts.

It times, on the packaged Gemma-3-270m and benchmark inputs of every task (the bench's template): in batches of
`target.batch_size` (16) shortest first, as evaluation runs them, a full forward pass through every layer, the
frozen prefix's lower layers, and a forward through the top `--layers` layers on the stored states; in batches of
8 of one task, as training draws them, a training step on the top `--layers` layers (LoRA on every linear module)
on the stored states; and loading a target + saving an adapter (the per-adapter overhead). Each is divided by
tokens x layers.

Run: `make bench-rates` (or `python benchmarks/rates.py [--layers 2] [--model M --device cuda]`); prints the rates
to put in `plan.Rates` (this CPU's, for Gemma-3-270m) or in a config's `[bench.rates]` (another machine or target:
run it there, with that config's `train.layers`, `target.max_length` and `target.batch_size`), and writes
benchmarks/results/rates.json (`--out` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from culturemanager.backends.prefix import FrozenPrefix
from culturemanager.backends.target import lm_forward, load_target, model_device
from culturemanager.backends.trainer import lora_config, train_step
from culturemanager.bench.split import stratified_split
from culturemanager.bench.tasks import load_tasks, read_task_rows
from culturemanager.config import TargetConfig, Task, TrainConfig
from culturemanager.stages.train import training_example

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CULTUREMANAGER_DATA", ROOT.parent / "shared" / "data"))
LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=2, help="adapted (LoRA) layers: the bench's train.layers")
    ap.add_argument("--model", default="gemma3-270m", help="the target (another one's rates go in a config's "
                                                           "[bench.rates], e.g. measured on a GPU)")
    ap.add_argument("--device", default="auto", help="target.device: auto, cpu, cuda, cuda:N, mps")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16, help="target.batch_size (evaluation batches)")
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rates.json")
    args = ap.parse_args()
    from peft import get_peft_model

    target = TargetConfig(model=args.model, device=args.device, max_length=args.max_length,
                          batch_size=args.batch_size)
    tf = load_tasks(DATA / "tasks.json")
    rows = []
    for spec in tf.tasks:  # a few inputs of every task: the bench's mix of lengths
        r = read_task_rows(spec, DATA)
        task = Task(id=spec.id, label=spec.task, template=tf.prompt_template)
        _, test = stratified_split(r.labels, 0.1, 0, 8)
        rows += [(task, r.texts[i], r.labels[i]) for i in test[:8]]
    t0 = time.time()
    base, tok = load_target(target)
    load_s = time.time() - t0
    n_layers = base.config.num_hidden_layers
    examples = [training_example(tok, t, x, y, target.max_length)[0] for t, x, y in rows]
    # training batches: train.batch_size (8) of one task's examples, as the bench's adapters draw them
    batches = [examples[i:i + 8] for i in range(0, len(examples), 8)][:args.batches]
    # evaluation batches: target.batch_size (16) prompts, shortest first, as Engine.option_scores runs them
    prompts = sorted((x for x, _ in examples), key=len)
    chunks = [prompts[i:i + target.batch_size] for i in range(0, len(prompts), target.batch_size)]
    k = n_layers - args.layers  # 0: LoRA on every layer, no frozen prefix
    model = get_peft_model(base, lora_config(TrainConfig(layers=args.layers, target_modules=LINEAR), n_layers))
    prefix = FrozenPrefix(model, k, target.batch_size, tok.pad_token_id) if k else None
    device = model_device(model)

    def now() -> float:  # a GPU runs asynchronously: wait for it before reading the clock
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    full, upper, lower, train = [], [], [], []
    with torch.no_grad():
        model.eval()
        for seqs in chunks:  # alternating, in one run: the shared machine's load hits every case alike
            tokens = sum(map(len, seqs))
            t0 = now()
            lm_forward(model, seqs, tok.pad_token_id, 1)
            full.append((now() - t0) / (tokens * n_layers))
            if prefix is None:
                continue
            prefix.clear()
            t0 = now()
            prefix.states(seqs)
            lower.append((now() - t0) / (tokens * k))
            t0 = now()
            lm_forward(model, seqs, tok.pad_token_id, 1, prefix=prefix)
            upper.append((now() - t0) / (tokens * args.layers))
    if prefix is not None:
        prefix.states([x for b in batches for x, _ in b])  # stored before the steps are timed, as in the bench
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    for b in batches:
        tokens = sum(len(x) for x, _ in b)
        t0 = now()
        train_step(model, opt, b, tok.pad_token_id, prefix)
        train.append((now() - t0) / (tokens * args.layers))
    with tempfile.TemporaryDirectory() as d:
        t0 = time.time()
        model.save_pretrained(d)
        save_s = time.time() - t0
    result = {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": "python benchmarks/rates.py "
              f"--model {args.model} --device {args.device} --layers {args.layers} --batches {args.batches} "
              f"--max-length {args.max_length} --batch-size {args.batch_size}", "model": args.model,
              "device": str(model_device(base)), "layers": args.layers,
              "mean_tokens": statistics.fmean(len(x) for x, _ in examples),
              "layer_token_forward_s": statistics.median(full),
              "layer_token_forward_upper_s": statistics.median(upper or full),
              "layer_token_prefix_s": statistics.median(lower or full),
              "layer_token_train_s": statistics.median(train), "adapter_overhead_s": load_s + save_s}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
