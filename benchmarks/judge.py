"""How far can the synthesis judge be trusted? The same judge, on real labelled inputs of the benchmark tasks.

`synthesis.judge` (stages/checks.py) drops synthetic samples whose label an LLM disagrees with. Whether that
removes noise or adds it depends on the judge, so this measures it: for each task of the tasks file
(../shared/data/tasks.json: the ten CultureLLM tasks of five cultures), `--rows` balanced rows (half positive,
half negative, drawn with a fixed seed) go through exactly the judge's prompt and parser (`judge_labels`:
culture, task, label meanings, the text cut to 600 characters, temperature 0), and its verdicts are scored
against the gold labels: accuracy, macro-F1 over "0"/"1", the share it answers "1", and the rows it gave no
parsable verdict (scored as wrong). On balanced rows, chance is accuracy 0.50, and a judge that always gives
the same label has macro-F1 0.33.

The judge is the demo's generator (Qwen2.5-Coder-1.5B-Instruct) served by llama-server unless `--set`
overrides say otherwise, e.g. `--set generator.backend=openai --set generator.model=gpt-4o`. Answers are kept
in the run's cache (`runs/bench-judge/<model>/`), so an interrupted run resumes where it stopped.

Run: `make bench-judge` (or `python benchmarks/judge.py [--rows 40] [--set generator.concurrency=4 ...]`);
writes benchmarks/results/judge.json (or judge-<model>.json for another judge) and prints the table for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

from culturemanager.backends.llm import CachedLLM, make_backend
from culturemanager.bench.tasks import load_tasks, read_task_rows
from culturemanager.config import Culture, LLMConfig, Task
from culturemanager.config.file import apply_override
from culturemanager.metrics import accuracy, macro_f1
from culturemanager.rundir import safe_name
from culturemanager.stages.checks import judge_labels

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CULTUREMANAGER_DATA", ROOT.parent / "shared" / "data"))
JUDGE = {"backend": "llama_server", "model": "qwen2.5-coder-1.5b-instruct", "threads": 2, "concurrency": 4,
         "timeout_s": 600.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=Path, default=DATA / "tasks.json")
    ap.add_argument("--rows", type=int, default=40, help="balanced rows per task (half positive)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-chars", type=int, default=600)
    ap.add_argument("--set", action="append", default=[], metavar="generator.KEY=VALUE",
                    help="override the judge's [generator] settings")
    args = ap.parse_args()
    raw = {"generator": dict(JUDGE)}
    for item in args.set:
        apply_override(raw, item)
    cfg = LLMConfig.model_validate(raw["generator"])
    tf = load_tasks(args.tasks)
    items, gold, task_of = [], [], []
    for spec in tf.tasks:
        rows = read_task_rows(spec, args.tasks.parent)
        picked = balanced(rows.labels, args.rows, args.seed)
        task = Task(id=spec.id, label=spec.task)
        culture = Culture(name=spec.culture, language=spec.language)
        items += [(task, culture, rows.texts[i]) for i in picked]
        gold += [rows.labels[i] for i in picked]
        task_of += [spec.id] * len(picked)
    run_dir = ROOT / "runs" / "bench-judge" / safe_name(cfg.model)
    llm = CachedLLM(make_backend(cfg), run_dir / "cache" / "llm.jsonl", run_dir / "calls.jsonl", progress=True)
    t0 = time.time()
    try:
        verdicts = judge_labels(llm, items, args.max_chars)
    finally:
        if hasattr(llm.backend, "close"):
            llm.backend.close()
    seconds = time.time() - t0
    results = {"date": time.strftime("%Y-%m-%d"), "judge": cfg.model_dump(exclude={"api_key_env"}),
               "rows_per_task": args.rows, "seed": args.seed, "seconds": round(seconds, 1),
               "llm": dict(llm.counts), "tasks": score(task_of, gold, verdicts)}
    name = "judge.json" if cfg.model == JUDGE["model"] else f"judge-{safe_name(cfg.model)}.json"
    out = ROOT / "benchmarks" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(table(results))
    print(f"wrote {out}")


def balanced(labels: list[str], n: int, seed: int) -> list[int]:
    """n/2 rows of each label ("1", "0"), or all of a label's rows if it has fewer; sorted. Nested: the rows for
    a smaller n are among those for a larger one (same seed), so a larger run reuses the cached answers."""
    out = []
    for lab in ("1", "0"):
        idx = [i for i, g in enumerate(labels) if g == lab]
        random.Random(f"{seed}|{lab}").shuffle(idx)
        out += idx[:n // 2]
    return sorted(out)


def score(task_of: list[str], gold: list[str], verdicts: list[str | None]) -> dict[str, dict]:
    out = {}
    for tid in dict.fromkeys(task_of):
        g = [x for x, t in zip(gold, task_of) if t == tid]
        p = [v or "none" for v, t in zip(verdicts, task_of) if t == tid]
        out[tid] = {"rows": len(g), "positives": g.count("1"), "accuracy": round(accuracy(g, p), 3),
                    "macro_f1": round(macro_f1(g, p, ["0", "1"]), 3), "answered_1": round(p.count("1") / len(p), 3),
                    "no_verdict": p.count("none")}
    return out


def table(results: dict) -> str:
    tasks = results["tasks"]
    lines = ["| task | rows (positive) | accuracy | macro-F1 | answered \"1\" | no verdict |",
             "|---|---|---|---|---|---|"]
    for tid, r in tasks.items():
        lines.append(f"| {tid} | {r['rows']} ({r['positives']}) | {r['accuracy']:.2f} | {r['macro_f1']:.2f} | "
                     f"{r['answered_1']:.2f} | {r['no_verdict']} |")
    n = len(tasks)
    lines.append(f"| mean of {n} tasks | {sum(r['rows'] for r in tasks.values())} | "
                 f"{sum(r['accuracy'] for r in tasks.values()) / n:.2f} | "
                 f"{sum(r['macro_f1'] for r in tasks.values()) / n:.2f} | "
                 f"{sum(r['answered_1'] for r in tasks.values()) / n:.2f} | "
                 f"{sum(r['no_verdict'] for r in tasks.values())} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
