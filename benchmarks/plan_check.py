"""`culturemanager bench --plan` against what a bench run measured: the plan's rates (plan.Rates) applied to the work
the run really did, item by item, beside the seconds each item took, and the rates that would have fitted.

Measured seconds come from the run directory, not from wall clocks around whole phases (a resumed run's phase
timings cover only its own process):
- training: each adapter's `seconds` in its culturemanager.json (written since 2026-12-01); for adapters trained
  before that, the time since the adapter written just before it, when that was under `--gap` seconds earlier
  (so the first adapter after a pause or a new process, which also loads models and the frozen prefix, is left
  out and counted);
- evaluation: each cached answer file's `seconds` (preds/VARIANT/TASK.json), adapters and base model apart;
- the pipeline: each generator call's `latency_s` in pipeline/calls.jsonl (calls answered from the cache cost 0).

An adapter's recorded seconds leave out its share of the frozen prefix (`seconds_by_part`), which `--plan` counts
as a phase of its own. Estimated seconds use the plan's formulas with the run's own counts (each adapter's
examples seen, each answer file's inputs), so a ratio far from 1 says a rate is wrong, not that the run did other
work than planned. Adapters trained since `seconds_by_part` was recorded also show where their time went
(loading, steps, validation, checkpoints, the frozen prefix of examples first seen in that process, the rest), as
a mean per kind.

Run: `python benchmarks/plan_check.py examples/bench.toml [--seeds 1] [--set key=value ...]`; prints the tables
for docs/benchmarks.md and writes benchmarks/results/plan_check.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

from culturemanager.bench.config import load_bench_config
from culturemanager.bench.data import split_task
from culturemanager.bench.format import duration, table
from culturemanager.bench.methods import jobs
from culturemanager.bench.tasks import load_tasks
from culturemanager.plan import (
    Rates,
    adapter_seconds,
    forward_seconds,
    mean_tokens,
    plan_rates,
    target_shape,
    upper_forward_seconds,
    validation_passes,
)

ROOT = Path(__file__).resolve().parents[1]
META = "culturemanager.json"
PARTS = ("load", "prefix", "steps", "validation", "checkpoints", "rest")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--seeds", type=int, nargs="*", help="training seeds to compare (default: every seed trained)")
    ap.add_argument("--gap", type=float, default=900.0, help="longest gap between two adapters' files that "
                                                             "still counts as the second one's training time")
    ap.add_argument("--since", help="only adapters written at or after this local time (YYYY-MM-DDTHH:MM): the "
                                     "ones one quiet process trained")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "plan_check.json")
    args = ap.parse_args()
    cfg = load_bench_config(args.config, args.overrides)
    root = Path(cfg.bench.dir)
    rates, _ = plan_rates(cfg.bench.rates, cfg.generator.model, target_shape(cfg.target.model))
    from culturemanager.backends.target import load_tokenizer

    tf = load_tasks(cfg.bench.tasks)
    wanted = cfg.bench.task_ids or [t.id for t in tf.tasks]
    tasks = [t for t in (split_task(s, tf.prompt_template, cfg, root, write=False) for s in tf.tasks
                         if s.id in wanted) if t.ok]
    tok = load_tokenizer(cfg.target)
    layers = target_shape(cfg.target.model).layers
    adapted = min(cfg.train.layers or layers, layers)
    ml = cfg.target.max_length
    demo_tokens = statistics.fmean(mean_tokens(tok, t.task, [x for x, _ in t.demos], ml) for t in tasks)
    test_tokens = {t.spec.id: mean_tokens(tok, t.task, [x for x, _ in t.test], ml) for t in tasks}
    cultures = list(dict.fromkeys(t.spec.culture for t in tasks))
    all_jobs = jobs(set(cfg.bench.methods), [t.spec.id for t in tasks], cultures, cfg.bench.seeds)

    since = time.mktime(time.strptime(args.since, "%Y-%m-%dT%H:%M")) if args.since else 0.0
    adapters = adapter_rows(root, all_jobs, args.gap, since)
    seeds = set(args.seeds) if args.seeds else {r["seed"] for r in adapters}
    adapters = [r for r in adapters if r["seed"] in seeds]
    for r in adapters:
        r["estimated"] = adapter_seconds(r["seen"], demo_tokens, adapted, rates, r["validation_forwards"])
    timed = [r for r in adapters if r["seconds"] is not None]
    by_kind = defaultdict(list)
    for r in timed:
        by_kind[r["kind"]].append(r)
    train_rows = [[k, len(v), f"{statistics.fmean(r['seen'] for r in v):.0f}",
                   f"{statistics.fmean(r['seconds'] for r in v):.1f}",
                   f"{statistics.fmean(r['estimated'] for r in v):.1f}",
                   ratio(sum(r["seconds"] for r in v), sum(r["estimated"] for r in v))] for k, v in by_kind.items()]
    measured, estimated = sum(r["seconds"] for r in timed), sum(r["estimated"] for r in timed)
    prefix_s = sum(r["parts"].get("prefix", 0.0) for r in timed if r.get("parts"))
    train_rows.append(["all", len(timed), "", duration(measured), duration(estimated), ratio(measured, estimated)])
    parts_rows = [[k] + [f"{statistics.fmean(r['parts'][p] for r in v):.1f}" for p in PARTS]
                  for k, v in by_kind.items() if all(r.get("parts") for r in v)]

    evals = eval_rows(root, seeds, test_tokens, adapted, layers, rates)
    calls = call_rows(root / "pipeline" / "calls.jsonl", rates)
    out = {"config": str(args.config), "dir": str(root), "seeds": sorted(seeds), "rates": rates.__dict__,
           "tokens": {"training": round(demo_tokens, 1), "adapted_layers": adapted, "layers": layers},
           "adapters": adapters, "untimed_adapters": len(adapters) - len(timed),
           "train": {"measured_s": round(measured, 1), "estimated_s": round(estimated, 1),
                     "prefix_measured_s": round(prefix_s, 1),
                     "ratio": round(measured / estimated, 3) if estimated else None},
           "evaluate": evals, "pipeline": calls}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"Training, seeds {sorted(seeds)}: {len(timed)} adapters timed, {len(adapters) - len(timed)} not "
          f"(the first after a pause or a new process)\n")
    print(table(["kind", "adapters", "examples seen", "measured s", "plan s", "measured / plan"], cells(train_rows)))
    if prefix_s:
        print(f"\nThe frozen prefix, inside those adapters' records (left out of their seconds above): "
              f"{duration(prefix_s)}; `--plan` has it as the phase \"train: frozen prefix\"")
    if parts_rows:
        print("\nWhere an adapter's time went (mean seconds per adapter)\n")
        print(table(["kind", *PARTS], parts_rows))
    print("\nEvaluation (cached answer files of the compared seeds; the base model's once)\n")
    print(table(["answers of", "files", "inputs", "measured", "plan", "measured / plan"], cells(
                [[k, v["files"], v["inputs"], duration(v["measured_s"]), duration(v["estimated_s"]),
                  ratio(v["measured_s"], v["estimated_s"])] for k, v in evals.items()])))
    print("\nGenerator calls (pipeline/calls.jsonl, answered calls only)\n")
    print(table(["stage", "calls", "prompt tokens", "answer tokens", "measured", "plan", "measured / plan"], cells(
                [[k, v["calls"], v["prompt_tokens"], v["completion_tokens"], duration(v["measured_s"]),
                  duration(v["estimated_s"]), ratio(v["measured_s"], v["estimated_s"])] for k, v in calls.items()])))
    print(f"\nwrote {args.out}")


def adapter_rows(root: Path, all_jobs, gap: float, since: float = 0.0) -> list[dict]:
    """Every trained adapter of the run's jobs written at or after `since`: kind, seed, examples seen, and its
    seconds (None: not known)."""
    found = []
    for job in all_jobs:
        meta_path = job.folder(root) / META
        if meta_path.exists():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta_path.stat().st_mtime >= since:
                found.append((meta_path.stat().st_mtime, job, meta))
    found.sort(key=lambda x: x[0])
    rows, previous = [], None
    for mtime, job, meta in found:
        seconds, parts = meta.get("seconds"), meta.get("seconds_by_part")
        if seconds is not None and parts:  # the plan counts the frozen prefix as a phase of its own
            seconds = round(seconds - parts.get("prefix", 0.0), 2)
        if seconds is None and previous is not None and mtime - previous < gap:
            seconds = round(mtime - previous, 2)
        rows.append({"slug": job.slug, "kind": job.kind, "seed": job.seed, "seen": meta["examples_seen"],
                     "steps": meta["steps"], "seconds": seconds, "parts": meta.get("seconds_by_part"),
                     "validation_forwards": validation_passes(meta.get("validation_examples", 0), meta["steps"],
                                                              meta["train"].get("eval_every", 5)),
                     "timed_by": "record" if "seconds" in meta else
                     ("file times" if seconds is not None else None)})
        previous = mtime
    return rows


def eval_rows(root: Path, seeds: set[int], test_tokens: dict[str, float], adapted: int, layers: int, rates: Rates
              ) -> dict:
    """Measured and estimated seconds of the cached answers: adapters (through the adapted layers) and the
    base model's variants (every layer; the prompt variant's preamble is not counted). An adapter's answers run
    through its adapted layers on the frozen prefix; the prefix itself is counted with training."""
    out = {"adapters": [0, 0, 0.0, 0.0], "base model": [0, 0, 0.0, 0.0]}
    for f in sorted((root / "preds").glob("*/*.json")):
        variant, task = f.parent.name, f.stem
        saved = json.loads(f.read_text(encoding="utf-8"))
        if "seconds" not in saved or task not in test_tokens:
            continue
        is_adapter = "_s" in variant and variant.rsplit("_s", 1)[1].isdigit()
        if is_adapter and int(variant.rsplit("_s", 1)[1]) not in seeds:
            continue
        n = len(saved.get("p_positive") or saved.get("probs") or saved.get("answers") or [])
        row = out["adapters" if is_adapter else "base model"]
        est = (upper_forward_seconds if is_adapter else forward_seconds)(n + 3, test_tokens[task],
                                                                         adapted if is_adapter else layers, rates)
        row[0] += 1
        row[1] += n
        row[2] += saved["seconds"]
        row[3] += est
    return {k: {"files": v[0], "inputs": v[1], "measured_s": round(v[2], 1), "estimated_s": round(v[3], 1)}
            for k, v in out.items()}


def call_rows(path: Path, rates: Rates) -> dict:
    """The generator's answered calls per stage: tokens, measured latency and the plan's estimate of it."""
    out: dict = {}
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        c = json.loads(line)
        if c.get("outcome") != "ok" or not c.get("latency_s"):
            continue
        row = out.setdefault(c["stage"], {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                          "measured_s": 0.0, "estimated_s": 0.0})
        row["calls"] += 1
        row["prompt_tokens"] += c.get("prompt_tokens") or 0
        row["completion_tokens"] += c.get("completion_tokens") or 0
        row["measured_s"] = round(row["measured_s"] + c["latency_s"], 2)
        row["estimated_s"] = round(row["estimated_s"] + (c.get("prompt_tokens") or 0) * rates.prompt_token_s
                                   + (c.get("completion_tokens") or 0) * rates.output_token_s, 2)
    return out


def cells(rows: list[list]) -> list[list[str]]:
    return [[str(x) for x in row] for row in rows]


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "–"


if __name__ == "__main__":
    main()
