"""Which training learns the benchmark's tasks on this CPU, and what it costs: TaskSFT under several settings at an
equal number of examples seen, against a linear probe on the same frozen features, in one run.

For each task (the bench's protocol: 10% of the inputs, with labels, are TaskSFT's training data; a stratified
test set of `--test` inputs) and each training setting below, one LoRA adapter is trained on the demonstrations
and scored on the test set (macro-F1 with and without contextual calibration and at the cut chosen on the
adapter's own validation slice, ROC-AUC, the share answered positive), with the wall time of training and of
scoring. The probe is a logistic regression (scikit-learn, class-balanced) on the base model's mean final hidden
state of the same prompts. The share of inputs that
`target.max_length` truncates is measured per task for several lengths.

Run: `make bench-train-budget` (or `python benchmarks/train_budget.py [--tasks a,b] [--test 100] [--budget 320]`);
writes benchmarks/results/train_budget.json and prints the tables docs/benchmarks.md shows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from culturemanager.backends.target import load_target
from culturemanager.backends.trainer import fit_adapter
from culturemanager.bench.score import calibrated, task_scores
from culturemanager.bench.split import stratified_split
from culturemanager.bench.stats import auc
from culturemanager.bench.tasks import load_tasks, read_task_rows
from culturemanager.config import TargetConfig, Task, TrainConfig
from culturemanager.engine import Engine
from culturemanager.stages.route import CONTENT_FREE
from culturemanager.stages.train import training_example

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CULTUREMANAGER_DATA", ROOT.parent / "shared" / "data"))
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# the bench's recipe (examples/bench.toml [train]) apart from what a setting changes: early stopping on 15% of the
# adapter's own demonstrations, which also give the validation cut (the bench's "validation" answer kind)
COMMON = dict(rank=8, alpha=16, dropout=0.05, batch_size=8, balance=True, schedule="cosine", warmup=0.1,
              epochs=100, checkpoint_every=10_000, validation=0.15, eval_every=5, patience=4)
SETTINGS = {
    "all18-linear": dict(target_modules=ALL_LINEAR, lr=1e-3),  # every layer, every linear module
    "all18-qv": dict(target_modules=["q_proj", "v_proj"], lr=1e-3),  # every layer, q and v: the old default
    "top4-linear": dict(target_modules=ALL_LINEAR, layers=4, lr=1e-3),  # the top 4 layers, every linear module
    "top2-linear": dict(target_modules=ALL_LINEAR, layers=2, lr=1e-3),
}
DEFAULT_TASKS = "es-stereotype,tr-abusive,zh-spam,ar-offensive"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default=DEFAULT_TASKS)
    ap.add_argument("--test", type=int, default=100, help="test inputs per task (stratified)")
    ap.add_argument("--budget", type=int, default=320, help="training examples seen per adapter (the bench's)")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated names of SETTINGS")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train_budget.json")
    args = ap.parse_args()
    target = TargetConfig(model="gemma3-270m", max_length=args.max_length, batch_size=16)
    tf = load_tasks(DATA / "tasks.json")
    specs = {t.id: t for t in tf.tasks}
    wanted = [s for s in args.settings.split(",") if s]
    results: dict = {"command": "python benchmarks/train_budget.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"), "created":
        time.strftime("%Y-%m-%dT%H:%M:%S"), "budget": args.budget, "test": args.test, "target": target.model_dump(),
        "common": COMMON, "settings": {k: SETTINGS[k] for k in wanted}, "tasks": {}}
    _, tok = load_target(target)
    for tid in args.tasks.split(","):
        spec = specs[tid]
        rows = read_task_rows(spec, DATA)
        demo_idx, test_idx = stratified_split(rows.labels, 0.1, 0, args.test)
        task = Task(id=tid, label=spec.task, template=tf.prompt_template, cultures=[spec.culture])
        demos = [(rows.texts[i], rows.labels[i]) for i in demo_idx]
        test = [(rows.texts[i], rows.labels[i]) for i in test_idx]
        gold = [y for _, y in test]
        entry: dict = {"demos": len(demos), "demo_positives": sum(y == "1" for _, y in demos), "test": len(test),
                       "test_positives": sum(y == "1" for y in gold),
                       "truncated_share": truncation(tok, task, demos + test), "settings": {}}
        examples = [training_example(tok, task, x, y, target.max_length)[0] for x, y in demos]
        for name in wanted:
            settings = TrainConfig(**{**COMMON, **SETTINGS[name], "max_examples": args.budget})
            folder = ROOT / "runs" / "train-budget" / tid / name
            t0 = time.time()
            record = fit_adapter(target, settings, 0, examples, folder, f"{tid}|{name}|{args.budget}", {},
                                 progress=False, rows=[{"task": tid, "text": x, "label": y} for x, y in demos])
            train_s = time.time() - t0
            engine = Engine.load(target, {"a": folder})
            t0 = time.time()
            p = positive(engine, task, [x for x, _ in test], "a")
            prior = statistics.fmean(positive(engine, task, list(CONTENT_FREE), "a"))
            score_s = time.time() - t0
            cut = engine.validation_prior(task, "a")
            entry["settings"][name] = scores(gold, p, prior, cut) | {
                "train_s": round(train_s, 1), "score_s": round(score_s, 1), "steps": record["steps"],
                "s_per_step": round(train_s / max(1, record["steps"]), 2), "final_loss": record["loss_curve"][-1]}
            print(tid, name, entry["settings"][name], flush=True)
        entry["probe"] = probe(target, task, demos, test)
        print(tid, "probe", entry["probe"], flush=True)
        results["tasks"][tid] = entry
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print_tables(results)


def positive(engine: Engine, task: Task, texts: list[str], adapter: str | None) -> list[float]:
    probs, _ = engine.label_probs(task, texts, [adapter] * len(texts))
    return probs[:, (task.labels or []).index(task.positive_label or "1")].tolist()


def scores(gold: list[str], p: list[float], prior: float, validation: list[float] | None = None) -> dict:
    """Macro-F1 at the raw 0.5 cut, content-free calibrated, and (given the adapter's validation prior,
    `Engine.validation_prior`) at the cut chosen on its own validation slice; AUC; the share answered positive."""
    raw = task_scores(gold, ["1" if x > 0.5 else "0" for x in p])
    cal = task_scores(gold, ["1" if x > 0.5 else "0" for x in calibrated(p, prior)])
    out = {"macro_f1": round(raw["macro_f1"], 4), "macro_f1_calibrated": round(cal["macro_f1"], 4),
           "f1_positive": round(raw["f1_positive"], 4), "auc": round(auc(gold, p), 4),
           "positive_rate": round(raw["positive_rate"], 3), "prior": round(prior, 4)}
    if validation is not None:
        at = calibrated(p, validation[1])  # the bench's rule: its "validation" kind keeps P(positive) of the prior
        val = task_scores(gold, ["1" if x > 0.5 else "0" for x in at])
        out |= {"macro_f1_validation": round(val["macro_f1"], 4), "positive_rate_validation":
                round(val["positive_rate"], 3)}
    return out


def probe(target: TargetConfig, task: Task, demos: list, test: list) -> dict:
    """Logistic regression on the frozen base model's mean final hidden state, trained on the labelled demos."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    engine = Engine.load(target)
    t0 = time.time()
    x_train = engine.features(task, [x for x, _ in demos]).numpy()
    x_test = engine.features(task, [x for x, _ in test]).numpy()
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
    clf.fit(scaler.transform(x_train), np.array([y == "1" for _, y in demos]))
    p = clf.predict_proba(scaler.transform(x_test))[:, 1].tolist()
    gold = [y for _, y in test]
    out = scores(gold, p, 0.5)
    return out | {"seconds": round(time.time() - t0, 1)}


def truncation(tok, task: Task, rows: list) -> dict[str, float]:
    from culturemanager.backends.target import encode_task

    return {str(n): round(statistics.fmean(encode_task(tok, task, x, n, 1).truncated for x, _ in rows), 3)
            for n in (64, 96, 128, 192, 256)}


def print_tables(r: dict) -> None:
    names = list(r["settings"]) + ["probe"]
    print(f"\nmacro-F1 raw (calibrated; at the validation cut) / AUC, {r['budget']} examples seen, {r['test']} test "
          "inputs per task\n")
    print("| task | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for tid, e in r["tasks"].items():
        cells = [e["settings"][n] for n in r["settings"]] + [e["probe"]]
        print(f"| {tid} | " + " | ".join(f"{c['macro_f1']:.3f} ({c['macro_f1_calibrated']:.3f}; "
                                        f"{c.get('macro_f1_validation', c['macro_f1']):.3f}) / {c['auc']:.3f}"
                                        for c in cells) + " |")
    print("| mean | " + " | ".join(
        f"{mean_of(r, n, 'macro_f1'):.3f} ({mean_of(r, n, 'macro_f1_calibrated'):.3f}; "
        f"{mean_of(r, n, 'macro_f1_validation'):.3f}) / {mean_of(r, n, 'auc'):.3f}" for n in names) + " |")
    print("\n| setting | s per step | train s per adapter | score s per 100 inputs |")
    print("|---|---|---|---|")
    for n in r["settings"]:
        rows = [e["settings"][n] for e in r["tasks"].values()]
        print(f"| {n} | {statistics.fmean(x['s_per_step'] for x in rows):.2f} | "
              f"{statistics.fmean(x['train_s'] for x in rows):.0f} | "
              f"{statistics.fmean(x['score_s'] * 100 / r['test'] for x in rows):.1f} |")


def mean_of(r: dict, name: str, key: str) -> float:
    cells = [e["probe"] if name == "probe" else e["settings"][name] for e in r["tasks"].values()]
    return statistics.fmean(c.get(key, c["macro_f1"]) for c in cells)


if __name__ == "__main__":
    main()
