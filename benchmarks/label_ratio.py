"""How well does the likelihood ratio tell the labels apart? `synthesis.ratio_check`'s score on real labelled rows.

The ratio (stages/ratio.py) is a text's mean log-probability per token after a description of the positive label
("A social media post with hate speech:") minus after one of the negative ("An ordinary social media post:").
Before it drops a single synthetic sample, this measures it where the truth is known: for each task of the tasks
file (../shared/data/tasks.json, the ten CultureLLM tasks), `--rows` balanced rows (half positive, drawn with a
fixed seed, the same rows as `benchmarks/judge.py` draws), every wording of `--wordings`, the ratio's ROC-AUC
against the gold labels with a bootstrap 95% interval over the rows (bench/stats.py), and the accuracy of its
sign (ratio > 0 says positive) and of its side of the median (`ratio_check.center = "median"`; the rows are
balanced, as synthesis's samples are), beside the synthesis judge's accuracy on its own balanced rows
(benchmarks/results/judge.json). AUC 0.5 is chance; a ratio that ranks positives first has AUC > 0.5 even when
its sign is off by a constant (then `margin`/a shifted cut is what it needs).

Every (model, description, text) log-probability is kept in `runs/bench-label-ratio/<model>/scores.jsonl`, so a
rerun with more rows or another wording computes only what is new.

Run: `make bench-label-ratio` (or `python benchmarks/label_ratio.py [--model gemma3-270m] [--rows 40]
[--wordings plain,language,contrast] [--max-tokens 48]`); writes benchmarks/results/label_ratio.json (or
label_ratio-<model>.json for another model) and prints the table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from culturemanager.bench.stats import auc, bootstrap_weights, interval, weighted_auc
from culturemanager.bench.tasks import load_tasks, read_task_rows
from culturemanager.config import TargetConfig
from culturemanager.rundir import safe_name
from culturemanager.stages.ratio import RATIO_PREFIXES, build_ratio_prefixes

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CULTUREMANAGER_DATA", ROOT.parent / "shared" / "data"))
TARGET = "gemma3-270m"
LANGUAGES = {"ar": "Arabic", "bn": "Bengali", "zh": "Chinese", "es": "Spanish", "tr": "Turkish"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=Path, default=DATA / "tasks.json")
    ap.add_argument("--model", default=TARGET, help="packaged short name, transformers folder or hub id")
    ap.add_argument("--rows", type=int, default=40, help="balanced rows per task (half positive)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wordings", default=",".join(RATIO_PREFIXES))
    ap.add_argument("--max-tokens", type=int, default=48, help="a text is scored on its first this many tokens")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--draws", type=int, default=2000, help="bootstrap resamples")
    args = ap.parse_args()
    wordings = args.wordings.split(",")
    from judge import balanced  # the judge's rows for the same seed: both instruments read the same inputs

    tf = load_tasks(args.tasks)
    rows: dict[str, tuple[list[str], list[str]]] = {}
    jobs: set[tuple[str, str]] = set()
    for spec in tf.tasks:
        read = read_task_rows(spec, args.tasks.parent)
        picked = balanced(read.labels, args.rows, args.seed)
        rows[spec.id] = ([read.texts[i] for i in picked], [read.labels[i] for i in picked])
        language = LANGUAGES.get(spec.language or "", spec.language or "")
        for w in wordings:
            for prefix in build_ratio_prefixes(spec.task, language, w):
                jobs |= {(prefix, t) for t in rows[spec.id][0]}
    run_dir = ROOT / "runs" / "bench-label-ratio" / safe_name(args.model)
    t0 = time.time()
    cache = score_all(args.model, sorted(jobs), run_dir / f"scores-{args.max_tokens}.jsonl", args.max_tokens,
                      args.batch_size)
    seconds = time.time() - t0
    rng = np.random.default_rng(args.seed)
    judge_path = ROOT / "benchmarks" / "results" / "judge.json"
    judge = json.loads(judge_path.read_text())["tasks"] if judge_path.exists() else {}
    results = {"date": time.strftime("%Y-%m-%d"), "model": args.model, "rows_per_task": args.rows,
               "seed": args.seed, "max_tokens": args.max_tokens, "draws": args.draws,
               "scored_sequences": len(jobs), "seconds": round(seconds, 1),
               "wordings": {w: list(RATIO_PREFIXES[w]) for w in wordings}, "tasks": {}}
    per_resample: dict[str, list[np.ndarray]] = {}  # wording -> each task's AUC per resample
    for spec in tf.tasks:
        texts, gold = rows[spec.id]
        language = LANGUAGES.get(spec.language or "", spec.language or "")
        W = bootstrap_weights(len(texts), args.draws, rng)  # one resample set per task: the wordings are paired
        out = {"rows": len(texts), "positives": gold.count("1"),
               "judge_accuracy": judge.get(spec.id, {}).get("accuracy")}
        for w in wordings:
            pos, neg = build_ratio_prefixes(spec.task, language, w)
            ratio = np.array([cache[(pos, t)] - cache[(neg, t)] for t in texts])
            g = np.array(gold) == "1"
            resampled = weighted_auc(g, ratio, W)
            per_resample.setdefault(w, []).append(resampled)
            lo, hi = interval(resampled)
            out[w] = {"auc": round(auc(gold, ratio), 3), "auc_95": [round(lo, 3), round(hi, 3)],
                      "sign_accuracy": round(float(np.mean((ratio > 0) == g)), 3),
                      # ratio_check.center = "median": the rows are balanced, as synthesis's samples are
                      "median_accuracy": round(float(np.mean((ratio > np.median(ratio)) == g)), 3),
                      "said_positive": round(float(np.mean(ratio > 0)), 3),
                      "mean_ratio": {"1": round(float(ratio[g].mean()), 3), "0": round(float(ratio[~g].mean()), 3)}}
        results["tasks"][spec.id] = out
    results["mean"] = {}
    for w in wordings:  # the mean over tasks per resample (each task's rows resampled on their own)
        lo, hi = interval(np.nanmean(np.stack(per_resample[w]), 0))
        tasks = results["tasks"].values()
        results["mean"][w] = {"auc": round(float(np.mean([r[w]["auc"] for r in tasks])), 3),
                              "auc_95": [round(lo, 3), round(hi, 3)],
                              "sign_accuracy": round(float(np.mean([r[w]["sign_accuracy"] for r in tasks])), 3),
                              "median_accuracy": round(float(np.mean([r[w]["median_accuracy"] for r in tasks])),
                                                       3)}
    name = "label_ratio.json" if args.model == TARGET else f"label_ratio-{safe_name(args.model)}.json"
    path = ROOT / "benchmarks" / "results" / name
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(table(results, wordings))
    print(f"wrote {path} ({len(jobs)} sequences scored or read from the cache, {seconds:.0f} s)")


def score_all(model: str, jobs: list[tuple[str, str]], cache_path: Path, max_tokens: int, batch_size: int
              ) -> dict[tuple[str, str], float]:
    """Mean log-probability per token of every (description, text), read from the cache file or computed through
    the engine (and appended to the file in chunks, so an interrupted run keeps what it did)."""
    cache: dict[tuple[str, str], float] = {}
    if cache_path.exists():
        for line in cache_path.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            cache[(r["prompt"], r["text"])] = r["logprob"]
    todo = [j for j in jobs if j not in cache]
    if not todo:
        return cache
    from culturemanager.engine import Engine

    engine = Engine.load(TargetConfig(model=model, batch_size=batch_size))
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    chunk = 20 * batch_size
    with cache_path.open("a", encoding="utf-8") as f:
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            scores, _ = engine.continuation_logprobs([p for p, _ in part], [t for _, t in part], max_tokens)
            for (p, t), s in zip(part, scores.tolist()):
                cache[(p, t)] = s
                f.write(json.dumps({"prompt": p, "text": t, "logprob": s}, ensure_ascii=False) + "\n")
            f.flush()
            print(f"  {min(start + chunk, len(todo))}/{len(todo)} sequences", flush=True)
    return cache


def table(results: dict, wordings: list[str]) -> str:
    head = " | ".join(f"{w}: AUC [95%] / acc. at 0 / at median" for w in wordings)
    lines = [f"| task | rows (pos.) | judge acc. | {head} |", "|---|---|---|" + "---|" * len(wordings)]
    for tid, r in results["tasks"].items():
        judge = f"{r['judge_accuracy']:.2f}" if r["judge_accuracy"] is not None else "–"
        cells = " | ".join(f"{r[w]['auc']:.2f} [{r[w]['auc_95'][0]:.2f}, {r[w]['auc_95'][1]:.2f}] / "
                           f"{r[w]['sign_accuracy']:.2f} / {r[w]['median_accuracy']:.2f}" for w in wordings)
        lines.append(f"| {tid} | {r['rows']} ({r['positives']}) | {judge} | {cells} |")
    judged = [r["judge_accuracy"] for r in results["tasks"].values() if r["judge_accuracy"] is not None]
    judge_mean = f"{np.mean(judged):.2f}" if judged else "–"
    cells = " | ".join(f"{m['auc']:.2f} [{m['auc_95'][0]:.2f}, {m['auc_95'][1]:.2f}] / {m['sign_accuracy']:.2f} / "
                       f"{m['median_accuracy']:.2f}" for m in (results["mean"][w] for w in wordings))
    lines.append(f"| mean of {len(results['tasks'])} tasks | | {judge_mean} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
