"""The benchmark: the paper's experiment on a tasks file, every baseline, router accuracy and culture specificity.

Phases, each a module with a typed record as its output and resumable from the files it leaves in `bench.dir`:
1. split      bench/prepare.py  per task a seeded stratified split (demonstrations, test set)   -> data/<task>/
2. pipeline   bench/prepare.py  queries, search and synthesis for every culture and task      -> pipeline/
3. train      bench/train.py    one LoRA adapter per method, culture/task and seed              -> adapters/
4. evaluate   bench/evaluate.py the routers, then every (model variant, task) pair's answers    -> router/, preds/
   judge      bench/judge.py    free text with bench.judge: the judge's verdict per distinct answer -> judge/
5. results    bench/assemble.py methods assembled from those answers, with intervals and verdicts
                                                                                 -> results.json, report.md, PNGs
This module only runs them in order: split and pipeline once, then per training seed train, evaluate (judge) and
results, so an interrupted run keeps a complete report of the seeds it finished.

Entry points: `bench(cfg)`, `check(cfg)`. Run: `culturemanager bench CONFIG.toml [--quick] [--check]`
(`make bench`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from culturemanager.bench import assemble, prepare
from culturemanager.bench.config import BenchConfig
from culturemanager.bench.evaluate import Evaluated, evaluate
from culturemanager.bench.judge import Judged, judge
from culturemanager.bench.methods import CM_METHODS
from culturemanager.bench.report import write_report
from culturemanager.bench.tasks import load_tasks
from culturemanager.bench.train import Trained, train
from culturemanager.records import write_json
from culturemanager.rundir import file_lock

log = logging.getLogger(__name__)
T = TypeVar("T")


def bench(cfg: BenchConfig, progress: bool = True, command: str = "", quick: bool = False,
          shard: tuple[int, int] = (0, 1)) -> dict:
    """Split and pipeline once; then per training seed: train, evaluate, and write results.json + report.md with the
    seeds finished so far. A training shard (`shard` (I, N), N > 1) trains its share of every seed's adapters and
    returns {"shard", "trained"}; the full run after it evaluates."""
    tf = load_tasks(cfg.bench.tasks)
    timings: dict[str, float] = {}
    t0 = time.time()
    root = cfg.bench.dir
    root.mkdir(parents=True, exist_ok=True)
    split = timed(timings, "split", prepare.split, cfg, tf)
    prepare.check_inputs(cfg, split)
    corpus = prepare.Corpus()
    if CM_METHODS & set(split.methods):
        with file_lock(root / ".locks" / "pipeline.lock"):  # shards wait: the LLM calls are made once
            corpus = timed(timings, "pipeline", prepare.pipeline, cfg, split, progress)
    seeds = cfg.bench.seeds
    if shard[1] > 1:  # a training shard: its share of the adapters, then the last run evaluates
        trained = timed(timings, "train", train, cfg, split, corpus, seeds, None, shard, progress)
        return {"shard": list(shard), "trained": trained.trained}
    trained, ev, judged = Trained(), Evaluated(), Judged()
    for k, seed in enumerate(seeds):
        log.info("bench: seed %d (%d of %d)", seed, k + 1, len(seeds))
        trained = timed(timings, "train", train, cfg, split, corpus, [seed], trained, shard, progress)
        ev = ev.then(timed(timings, "evaluate", evaluate, cfg, split, corpus, trained.adapters, [seed], progress))
        if split.family == "free_text" and cfg.bench.judge.enabled:
            judged = timed(timings, "judge", judge, cfg, split, ev.answers, judged, progress)
        timings["total"] = round(time.time() - t0, 1)
        results = assemble.results(cfg, split, corpus, trained, ev, judged, seeds[:k + 1], command, quick, timings)
        write_json(root / "results.json", results)
        write_report(results, root)
    return results


def check(cfg: BenchConfig) -> dict[str, int]:
    """`culturemanager bench CONFIG --check`: every task file read and split as the run would (nothing written),
    then the inputs checked (prepare.check_inputs); what was read, counted."""
    return prepare.check_inputs(cfg, prepare.split(cfg, load_tasks(cfg.bench.tasks), write=False))


def timed(timings: dict[str, float], name: str, phase: Callable[..., T], *args) -> T:
    """Run one phase, adding its wall-clock seconds to `timings[name]` (results.json "timings")."""
    t0 = time.time()
    log.info("bench: %s", name)
    out = phase(*args)
    timings[name] = round(timings.get(name, 0.0) + time.time() - t0, 1)
    return out
