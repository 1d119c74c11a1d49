"""Which culture router? The prompt router (the target model asked "which culture?", templates "short" and
"paper", calibrated and not) against the embedding router (USE embeddings + language prior + a fitted "Others"
threshold), on the real bench data, in one run.

Data: the ten tasks of tasks.json with the bench's split (`bench.split.stratified_split`, demo_share 0.1, split
seed 0, test_cap per task, default 100). The embedding router is fitted on the tasks' demonstrations (the culture
of each is known; their labels are not used), without any demonstration that is also a test input of some task
(Bengali racism/threat and the two Spanish files share their texts); no synthetic samples. Reported:
- routing accuracy per task, overall, and the confusion matrix, for every router;
- the embedding router without its language prior (the ablation that shows what the prior does);
- for each culture in turn, the embedding router fitted without that culture: the share of its test inputs sent
  to "Others" (and the accuracy kept on the others');
- cost per input: both routers timed in this process on the same inputs (`--time-inputs` per task), routing alone
  (the prompt router's forward passes; the embedding router's embedding, language identification and classifier).
The prompt router's scores are kept per task and template under `--cache` (a rerun reuses them; the timing inputs
are always routed afresh). Results go to benchmarks/results/router.json; the markdown printed at the end renders it.

Run:
    python benchmarks/router.py [--test-cap 100] [--templates short,paper] [--time-inputs 10]   (make bench-router)
(CULTUREMANAGER_DATA points at the shared data folder, default ../shared/data; the target model and its settings
come from examples/bench.toml, as in the bench.)
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from culturemanager.bench.config import load_bench_config
from culturemanager.bench.routing import RouteTask, embedding_routes, left_out_others, prompt_routes, route_examples
from culturemanager.bench.score import router_summary
from culturemanager.bench.split import stratified_split
from culturemanager.bench.tasks import load_tasks, read_task_rows
from culturemanager.config import RouterConfig
from culturemanager.records import write_json
from culturemanager.rundir import library_versions
from culturemanager.stages.route import OTHERS, Router
from culturemanager.text.router_prompts import router_template

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=ROOT / "examples" / "bench.toml", help="target model settings")
    ap.add_argument("--test-cap", type=int, default=100, help="test inputs per task (stratified)")
    ap.add_argument("--templates", default="short,paper", help="prompt router templates to measure")
    ap.add_argument("--time-inputs", type=int, default=10, help="inputs per task timed with both routers")
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "bench-router", help="prompt router scores")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "router.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    os.environ.setdefault("CULTUREMANAGER_DATA", str(ROOT.parent / "shared" / "data"))
    cfg = load_bench_config(args.config)
    tf = load_tasks(cfg.bench.tasks)
    tasks = []
    for spec in tf.tasks:
        rows = read_task_rows(spec, cfg.data_dir)
        demo, test = stratified_split(rows.labels, 0.1, 0, args.test_cap)
        tasks.append(RouteTask(spec.id, spec.culture, spec.language, [rows.texts[i] for i in demo],
                               [rows.texts[i] for i in test]))
    cultures = list(dict.fromkeys(t.culture for t in tasks))
    options = cultures + [OTHERS]
    culture_of = {t.id: t.culture for t in tasks}
    languages = {t.culture: t.language for t in tasks}
    examples, counts = route_examples(tasks)
    out: dict = {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": "python benchmarks/router.py "
                 + " ".join(argv or []), "protocol": {"demo_share": 0.1, "split_seed": 0, "test_cap": args.test_cap,
                 "test_inputs": {t.id: len(t.test) for t in tasks}, "route_examples": counts,
                 "target": cfg.target.model_dump(mode="json")}, "routers": {}, "versions": library_versions()}

    from culturemanager.backends.retrieval.dense import UseMultilingual

    embedder = UseMultilingual()
    for name, rc in (("embedding", RouterConfig()), ("embedding, no language prior",
                                                       RouterConfig(language_prior=False))):
        t0 = time.time()
        routes, report = embedding_routes(tasks, examples, languages, rc, 0, embedder)
        out["routers"][name] = {**router_summary(routes.routed, culture_of, options), "fit": report,
                                "seconds": round(time.time() - t0, 1)}
        logging.info("%s: accuracy %.4f", name, out["routers"][name]["accuracy"])
    t0 = time.time()
    out["left_out_others"] = left_out_others(tasks, examples, languages, RouterConfig(), 0, embedder)
    out["left_out_seconds"] = round(time.time() - t0, 1)

    from culturemanager.engine import Engine

    engine = Engine.load(cfg.target)
    prompt_routers = {}
    for template in args.templates.split(","):
        router = prompt_routers[template] = Router(True, options, router_template(template), {},
                                                   cfg.target.max_length, True)
        t0 = time.time()
        by_calibration = prompt_routes(engine, router, tasks, args.cache / template, cfg.target.model)
        for calibrated, routes in by_calibration.items():
            name = f"prompt ({template}, {'calibrated' if calibrated else 'uncalibrated'})"
            out["routers"][name] = {**router_summary(routes.routed, culture_of, options),
                                    "truncated": routes.truncated, "seconds": round(time.time() - t0, 1)}
            logging.info("%s: accuracy %.4f", name, out["routers"][name]["accuracy"])
        write_json(args.out, out)
    out["cost"] = cost(tasks, examples, languages, engine, prompt_routers, embedder, args.time_inputs)
    write_json(args.out, out)
    print(render(out))


def cost(tasks, examples, languages, engine, prompt_routers, embedder, per_task: int) -> dict:
    """ms per input of every router on the same inputs (the first `per_task` test inputs of every task), timed
    here, one task at a time, the routers in turn; the embedding router is fitted (untimed) first."""
    from culturemanager.backends import embedrouter
    from culturemanager.stages.route import prior, prompt_scores

    fitted, _ = embedrouter.fit(examples, languages, embedder=embedder)
    fitted.decide(["warm-up"])
    seconds = {"embedding": 0.0} | {f"prompt ({t})": 0.0 for t in prompt_routers}
    for r in prompt_routers.values():
        prior(engine, r)  # once per engine: not part of the per-input cost
    n = 0
    for t in tasks:
        texts = t.test[:per_task]
        n += len(texts)
        t0 = time.perf_counter()
        fitted.decide(texts)
        seconds["embedding"] += time.perf_counter() - t0
        for template, r in prompt_routers.items():
            t0 = time.perf_counter()
            prompt_scores(engine, r, texts)
            seconds[f"prompt ({template})"] += time.perf_counter() - t0
    ms = {k: round(1000 * v / n, 2) for k, v in seconds.items()}
    return {"inputs": n, "ms_per_input": ms,
            "embedding_share_of_prompt": {k: round(ms["embedding"] / v, 5) for k, v in ms.items() if k != "embedding"}}


def render(out: dict) -> str:
    names = list(out["routers"])
    tasks = list(out["protocol"]["test_inputs"])
    lines = ["| router | " + " | ".join(tasks) + " | overall |", "|---" * (len(tasks) + 2) + "|"]
    for name in names:
        r = out["routers"][name]
        lines.append(f"| {name} | " + " | ".join(f"{100 * r['per_task'][t]:.0f}" for t in tasks)
                     + f" | **{100 * r['accuracy']:.1f}** |")
    loco = out["left_out_others"]
    lines += ["", "| culture left out | " + " | ".join(loco) + " |", "|---" * (len(loco) + 1) + "|",
              "| its test inputs sent to Others (%) | " + " | ".join(f"{100 * v['to_others']:.1f}"
                                                                     for v in loco.values()) + " |",
              "| accuracy on the other cultures' inputs (%) | " + " | ".join(
                  f"{100 * v['in_set_accuracy']:.1f}" for v in loco.values()) + " |"]
    c = out.get("cost")
    if c:
        lines += ["", f"Cost per input ({c['inputs']} inputs, both routers in this run): " + ", ".join(
            f"{k} {v} ms" for k, v in c["ms_per_input"].items()) + "; embedding / prompt: " + ", ".join(
            f"{k} {v:.4f} (1/{1 / v:.0f})" for k, v in c["embedding_share_of_prompt"].items())]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
