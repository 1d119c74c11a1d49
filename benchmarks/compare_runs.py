"""One kind of adapter in two bench runs on the same split, paired: does a change of settings (more synthetic
samples, another generator, a check on or off) change what that kind's adapters score?

Both runs must have the same test inputs (the same tasks file, `bench.demo_share`, `bench.test_cap` and
`bench.split_seed`: checked input by input). For each task the adapter that answers it (a per-culture kind such as
`cm` answers its culture's tasks, `tasksft` its own task) is read from each run's answer cache
(`preds/<adapter>/<task>.json`, nothing is recomputed), and both are scored with the bench's own functions: every
answer kind, macro-F1 and ROC-AUC with paired bootstrap 95% intervals over the test inputs, and the difference B
minus A with its verdict.

Run: `python benchmarks/compare_runs.py examples/bench.toml --a RUN_A --b RUN_B [--kind cm] [--kind-b cm-nolc]
[--seeds 0]`
(RUN_A and RUN_B: two bench.dir folders); writes `--out` (JSON) and prints a table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from culturemanager.bench.config import load_bench_config
from culturemanager.bench.data import split_task
from culturemanager.bench.evaluate import both
from culturemanager.bench.methods import Job
from culturemanager.bench.results import Answers, comparisons, observed, overall_distribution, resamples
from culturemanager.bench.stats import interval
from culturemanager.bench.tasks import load_tasks
from culturemanager.records import read_json_lines
from culturemanager.rundir import safe_name

PER_TASK = {"tasksft"}


def answers_of(root: Path, job: Job, task: str, texts: list[str]) -> tuple[list, list]:
    """A run's cached (uncalibrated, calibrated) answers of one adapter to one task, after checking that the run's
    test inputs are `texts`."""
    test = [row["text"] for row in read_json_lines(root / "data" / safe_name(task) / "test.jsonl")[0]]
    if test != texts:
        raise SystemExit(f"{root}: the test inputs of {task} differ from the config's split: not comparable")
    path = root / "preds" / job.slug / f"{safe_name(task)}.json"
    if not path.exists():
        raise SystemExit(f"{path} is missing: that run has no answers of {job.slug} to {task}")
    return both(json.loads(path.read_text(encoding="utf-8")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--a", type=Path, required=True, help="the first run's bench.dir")
    ap.add_argument("--b", type=Path, required=True, help="the second run's bench.dir")
    ap.add_argument("--kind", default="cm", help="adapter kind (bench/methods.py Job.kind), e.g. cm, tasksft")
    ap.add_argument("--kind-b", default=None, help="the second run's adapter kind, if another (e.g. cm-nolc)")
    ap.add_argument("--seeds", default="0", help="comma-separated training seeds present in both runs")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    cfg = load_bench_config(args.config, args.overrides)
    tf = load_tasks(cfg.bench.tasks)
    wanted = cfg.bench.task_ids or [t.id for t in tf.tasks]
    tasks = [t for t in (split_task(s, tf.prompt_template, cfg, args.a, write=False) for s in tf.tasks
                         if s.id in wanted) if t.ok]
    seeds = [int(x) for x in args.seeds.split(",")]
    a = Answers({t.spec.id: [y for _, y in t.test] for t in tasks}, {t.spec.id: t.spec.culture for t in tasks},
                base_rate={t.spec.id: sum(y == "1" for _, y in t.demos) / len(t.demos) for t in tasks},
                validation=True)
    kinds = {"A": args.kind, "B": args.kind_b or args.kind}
    for name, root in (("A", args.a), ("B", args.b)):
        kind = kinds[name]
        a.p[name] = {s: {t.spec.id: answers_of(root, Job(kind, t.spec.id if kind in PER_TASK else t.spec.culture, s),
                                               t.spec.id, [x for x, _ in t.test]) for t in tasks} for s in seeds}
    weights = resamples(a, cfg.bench.split_seed, cfg.bench.bootstrap)
    runs = {name: {kind: {m: {"value": v, "ci": list(interval(overall_distribution(a, a.p[name], weights, kind)[m]))}
                          for m, v in observed(a, a.p[name], kind).items()} for kind in a.kinds}
            for name in ("A", "B")}
    diff = comparisons(a, [("B", "A")], cfg.bench.split_seed, cfg.bench.bootstrap)[0]
    out = {"config": str(args.config), "a": str(args.a), "b": str(args.b), "kinds": kinds, "seeds": seeds,
           "tasks": [t.spec.id for t in tasks], "runs": runs, "b_minus_a": {k: diff[k] for k in a.kinds}}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"seeds {seeds}, {len(tasks)} tasks; A = {kinds['A']} adapters of {args.a}, B = {kinds['B']} adapters of "
          f"{args.b}")
    print("| answer kind | metric | A [95% CI] | B [95% CI] | B - A [95% CI] | verdict |")
    print("|---|---|---|---|---|---|")
    for kind in a.kinds:
        for m in a.ci_metrics:
            ra, rb, d = runs["A"][kind][m], runs["B"][kind][m], diff[kind][m]
            print(f"| {kind} | {m} | {100 * ra['value']:.1f} [{100 * ra['ci'][0]:.1f}, {100 * ra['ci'][1]:.1f}] | "
                  f"{100 * rb['value']:.1f} [{100 * rb['ci'][0]:.1f}, {100 * rb['ci'][1]:.1f}] | "
                  f"{100 * d['difference']:+.1f} [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}] | {d['verdict']} |")


if __name__ == "__main__":
    main()
