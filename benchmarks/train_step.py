"""How much does computing logits only on the answer span save in a LoRA training step?

`train.train_step` left-pads the batch and asks the model for logits at the answer positions only
(`logits_to_keep`); the usual way is a right-padded forward with labels, which computes the output layer (Gemma:
a 262k-token vocabulary) at every position. Both give the same loss (tests/test_train.py); this measures their
time per step on the packaged Gemma-3-270m with LoRA on q_proj/v_proj, on real task prompts (Arabic tweets and
Turkish spam e-mails from ../shared/data, encoded with the benchmark's template), in one run, alternating.

Run: `make bench-train-step` (or `python benchmarks/train_step.py`); writes benchmarks/results/train_step.json.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import torch

from culturemanager.backends.target import load_target
from culturemanager.backends.trainer import lora_config, train_step
from culturemanager.bench.tasks import load_tasks, read_task_rows
from culturemanager.config import TargetConfig, Task, TrainConfig
from culturemanager.stages.train import training_example

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CULTUREMANAGER_DATA", ROOT.parent / "shared" / "data"))
REPEATS = 6


def full_logits_step(model, opt, batch, pad_id: int) -> float:
    """The usual step: right padding, labels to the model, logits at every position."""
    width = max(len(x) for x, _ in batch)
    ids = torch.full((len(batch), width), pad_id)
    labels = torch.full((len(batch), width), -100)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for r, (x, y) in enumerate(batch):
        ids[r, :len(x)], labels[r, :len(y)], mask[r, :len(x)] = torch.tensor(x), torch.tensor(y), 1
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


def main() -> None:
    from peft import get_peft_model

    torch.set_num_threads(2)
    target = TargetConfig(model="gemma3-270m", max_length=128)
    base, tok = load_target(target)
    model = get_peft_model(base, lora_config(TrainConfig()))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    tf = load_tasks(DATA / "tasks.json")
    out = {"model": target.model, "max_length": target.max_length, "repeats": REPEATS, "cases": []}
    for task_id in ("ar-offensive", "tr-spam"):
        spec = next(t for t in tf.tasks if t.id == task_id)
        task = Task(id=spec.id, label=spec.task, template=tf.prompt_template)
        rows = read_task_rows(spec, DATA)
        examples = [training_example(tok, task, x, y, target.max_length)[0] for x, y in zip(rows.texts, rows.labels)]
        for bs in (2, 4):
            times: dict[str, list[float]] = {"answer_span": [], "full_logits": []}
            for k in range(REPEATS + 1):  # the first round warms up and is not counted
                batch = examples[k * bs:(k + 1) * bs]
                for name, fn in (("answer_span", train_step), ("full_logits", full_logits_step)):
                    t0 = time.perf_counter()
                    fn(model, opt, batch, tok.pad_token_id)
                    if k:
                        times[name].append(time.perf_counter() - t0)
            tokens = statistics.fmean(len(x) for x, _ in examples[bs:(REPEATS + 1) * bs])
            case = {"task": task_id, "batch_size": bs, "mean_tokens": round(tokens, 1),
                    **{f"{n}_s": round(statistics.median(v), 3) for n, v in times.items()}}
            case["speedup"] = round(case["full_logits_s"] / case["answer_span_s"], 2)
            out["cases"].append(case)
            print(case)
    path = ROOT / "benchmarks" / "results" / "train_step.json"
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
