"""TaskSFT's operating point from its own training data, on a finished bench run: does a threshold chosen without
test labels lift its macro-F1? (issue 11: TaskSFT ranks well, AUC ~69, but its class-balanced threshold answers
"1" to 39-55% of the inputs of tasks with 5-7% positives.)

For every TaskSFT adapter of the run (task x seed) and its cached P(positive) on the test inputs, three answers:
- raw: P(positive) >= 0.5, as the bench scores it;
- prior-corrected: the log-odds shifted by log(pi / (1 - pi)), pi the positive share of the adapter's own training
  examples: the textbook correction for training on class-balanced batches (the model then estimates P(y | x)
  under a 50/50 prior);
- validation-tuned: the log-odds cut that maximizes macro-F1 on the adapter's validation slice (the examples the
  trainer held out of its labelled demonstrations for early stopping; never test data), the median of the tied
  best cuts (`metrics.best_cut`; the bench's "validation" answer kind under `bench.validation_cut = "best_f1"`,
  its rule until 2026-12-07). The slice's P(positive) is computed here with the saved adapter.
- validation-bagged: the median of that cut over 200 bootstrap resamples of the slice, each label resampled
  within itself (`metrics.bagged_cut`): the same rule, less at the mercy of one example in a slice of a dozen.
- validation-share: the cut that answers positive to as many of the slice's examples as it has positives
  (`metrics.share_cut`): the slice's ranking at the labels' own share, without macro-F1's choice between gaps
  (the bench's default rule since 2026-12-07, chosen on split_seed 1: docs/benchmarks.md).
Macro-F1 is the mean over tasks and seeds, with paired bootstrap 95% intervals over the test inputs (the same
resamples for every answer kind).

Run: `python benchmarks/threshold_check.py examples/bench.toml [--set bench.dir=...] [--out FILE]` after `make bench`
(reads the run's data, adapters and cached answers; trains nothing); writes benchmarks/results/threshold_check.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from culturemanager.backends.schedule import validation_split
from culturemanager.backends.target import load_tokenizer
from culturemanager.bench.config import load_bench_config
from culturemanager.bench.data import job_examples, split_task
from culturemanager.bench.methods import Job
from culturemanager.bench.stats import bootstrap_weights, interval, weighted_scores
from culturemanager.bench.tasks import load_tasks
from culturemanager.engine import Engine
from culturemanager.metrics import bagged_cut, log_odds, macro_f1, validation_cut

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("raw", "prior-corrected", "validation-tuned", "validation-bagged", "validation-share")
LABELS = ["0", "1"]
DIFFERENCES = [(k, "raw") for k in KINDS[1:]] + [(k, "validation-tuned") for k in KINDS[3:]]


def as_labels(positive: list[bool]) -> list[str]:
    return ["1" if x else "0" for x in positive]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "threshold_check.json")
    args = ap.parse_args()
    cfg = load_bench_config(args.config, args.overrides)
    root = Path(cfg.bench.dir)
    tf = load_tasks(cfg.bench.tasks)
    wanted = cfg.bench.task_ids or [t.id for t in tf.tasks]
    tasks = [t for t in (split_task(s, tf.prompt_template, cfg, root, write=False) for s in tf.tasks
                         if s.id in wanted) if t.ok]
    cultures = list(dict.fromkeys(t.spec.culture for t in tasks))
    tok = load_tokenizer(cfg.target)
    engine = Engine.load(cfg.target)
    rng = np.random.default_rng(0)
    per_task, draws = {}, {k: [] for k in KINDS}
    for t in tasks:
        gold = [y == "1" for _, y in t.test]
        W = bootstrap_weights(len(gold), args.draws, rng)
        rows, resampled = [], {k: [] for k in KINDS}
        for seed in cfg.bench.seeds:
            job = Job("tasksft", t.spec.id, seed)
            cached = root / "preds" / job.slug / f"{t.spec.id}.json"
            if not cached.exists():
                raise SystemExit(f"{cached} is missing: run the bench first (make bench)")
            p = json.loads(cached.read_text(encoding="utf-8"))["p_positive"][:len(gold)]
            examples = job_examples(job, cfg, tasks, {}, cultures, tok)
            train, val = validation_split(examples, cfg.train, seed)
            pi = sum(t.demos[i][1] == "1" for i in train) / len(train)
            engine.add_adapter(job.slug, job.folder(root))
            probs, _ = engine.label_probs(t.task, [t.demos[i][0] for i in val], [job.slug] * len(val))
            positive = (t.task.labels or []).index(t.task.positive_label or "1")
            val_gold, val_p = [t.demos[i][1] == "1" for i in val], probs[:, positive].tolist()
            cuts = {"validation-tuned": validation_cut("best_f1", val_gold, val_p),
                    "validation-bagged": bagged_cut(val_gold, val_p),
                    "validation-share": validation_cut("share", val_gold, val_p)}
            cuts = {k: 0.0 if c is None else c for k, c in cuts.items()}  # a slice of one label: the raw cut
            answers = {"raw": [x >= 0.5 for x in p],
                       "prior-corrected": [log_odds(x) + log_odds(pi) >= 0 for x in p],
                       **{k: [log_odds(x) > c for x in p] for k, c in cuts.items()}}
            cut = cuts["validation-tuned"]
            for k, pred in answers.items():
                resampled[k].append(weighted_scores(np.array(gold), np.array(pred), W)["macro_f1"])
            rows.append({"seed": seed, "train_positive_share": round(pi, 3), "validation": len(val),
                         "validation_positives": sum(t.demos[i][1] == "1" for i in val), "cut": round(cut, 3),
                         "cuts": {k: round(c, 3) for k, c in cuts.items()},
                         **{k: {"macro_f1": round(macro_f1(as_labels(gold), as_labels(pred), LABELS), 4),
                                "answered_positive": round(sum(pred) / len(pred), 3)} for k, pred in answers.items()}})
        per_task[t.spec.id] = rows
        for k in KINDS:
            draws[k].append(np.mean(resampled[k], axis=0))  # mean over seeds, per resample
    overall = {k: np.mean(draws[k], axis=0) for k in KINDS}  # mean over tasks, per resample
    point = {k: statistics.fmean(r[k]["macro_f1"] for rows in per_task.values() for r in rows) for k in KINDS}
    out = {"config": str(args.config), "dir": str(root), "seeds": cfg.bench.seeds, "per_task": per_task,
           "overall": {k: {"macro_f1": round(point[k], 4), "ci": [round(x, 4) for x in interval(overall[k])]}
                       for k in KINDS},
           "differences": {f"{k} - {b}": {"ci": [round(x, 4) for x in interval(overall[k] - overall[b])]}
                           for k, b in DIFFERENCES}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print("| task | " + " | ".join(f"{k} (answered positive)" for k in KINDS) + " |")
    print("|---|" + "---|" * len(KINDS))
    for task, rows in per_task.items():
        cells = [f"{100 * statistics.fmean(r[k]['macro_f1'] for r in rows):.1f} "
                 f"({100 * statistics.fmean(r[k]['answered_positive'] for r in rows):.0f}%)" for k in KINDS]
        print(f"| {task} | " + " | ".join(cells) + " |")
    lo_hi = {k: out["overall"][k]["ci"] for k in KINDS}
    print("| **mean** | " + " | ".join(f"**{100 * point[k]:.1f}** [{100 * lo_hi[k][0]:.1f}, {100 * lo_hi[k][1]:.1f}]"
                                       for k in KINDS) + " |")
    for k, b in DIFFERENCES:
        lo, hi = out["differences"][f"{k} - {b}"]["ci"]
        print(f"{k} - {b}: {100 * (point[k] - point[b]):+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
