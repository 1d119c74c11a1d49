"""The benchmark's plan: what `culturemanager bench CONFIG` will do and how long it will take, before it runs
(`culturemanager bench CONFIG --plan`). The split is made in memory, the tokenizer measures the inputs, the
rest is counting (plan.py has the rules and the rates).

Run: `culturemanager bench CONFIG.toml --plan [--set bench.rates.layer_token_train_s=...]`.
"""

from __future__ import annotations

from culturemanager.bench.config import BenchConfig
from culturemanager.bench.data import TaskData, job_examples, split_task
from culturemanager.bench.methods import CM_METHODS, METHODS, TRAINED, jobs
from culturemanager.bench.tasks import load_tasks
from culturemanager.plan import (
    Phase,
    Plan,
    Rates,
    adapter_seconds,
    forward_seconds,
    generator_phase,
    mean_tokens,
    num_layers,
    planned_steps,
)

KEEP_RATE = 0.6  # kept samples per sample asked for, measured on the bench's pipeline (docs/benchmarks.md)


def plan_bench(cfg: BenchConfig) -> Plan:
    from culturemanager.backends.target import load_tokenizer

    rates = Rates(**cfg.bench.rates)
    tf = load_tasks(cfg.bench.tasks)
    wanted = cfg.bench.task_ids or [t.id for t in tf.tasks]
    tasks = [t for t in (split_task(s, tf.prompt_template, cfg, cfg.bench.dir, write=False)
                         for s in tf.tasks if s.id in wanted) if t.ok]
    cultures = list(dict.fromkeys(t.spec.culture for t in tasks))
    methods = set(cfg.bench.methods)
    tok = load_tokenizer(cfg.target)
    layers = num_layers(cfg.target.model)
    adapted = min(cfg.train.layers or layers, layers)
    ml = cfg.target.max_length
    test_tokens = _mean([mean_tokens(tok, t.task, [x for x, _ in t.test], ml) for t in tasks])
    demo_tokens = _mean([mean_tokens(tok, t.task, [x for x, _ in t.demos], ml) for t in tasks])
    plan = Plan()

    # the pipeline's LLM stages
    samples_per_culture = 0.0
    if CM_METHODS & methods:
        queries = sum(len(cfg.queries.modes) * cfg.queries.per_mode for _ in tasks)
        g = cfg.generator
        conc = g.concurrency if g.backend in ("openai", "llama_server") else 1
        plan.phases.append(generator_phase("pipeline: queries", sum(len(cfg.queries.modes) for _ in tasks), 450,
                                           40 * cfg.queries.per_mode, rates, conc))
        if cfg.search.summarize:
            plan.phases.append(generator_phase("pipeline: summaries", queries,
                                               300 + cfg.search.top_k * cfg.search.max_doc_chars / 3.5, 200, rates,
                                               conc))
        labels = len(tasks[0].task.labels or [None]) if cfg.synthesis.label_mode == "per_label" else 1
        per_call = max(1, -(-cfg.synthesis.samples_per_material // labels))
        plan.phases.append(generator_phase("pipeline: synthesis", queries * labels,
                                           500 + cfg.search.top_k * cfg.search.max_doc_chars / 3.5,
                                           min(cfg.generator.max_new_tokens, 45 * per_call), rates, conc))
        samples_per_culture = queries / len(cultures) * cfg.synthesis.samples_per_material * KEEP_RATE
        plan.counts["synthetic samples per culture (expected)"] = round(samples_per_culture)

    # training: every adapter of every seed
    todo = jobs(methods, [t.spec.id for t in tasks], cultures, cfg.bench.seeds)
    seen = unique = steps = 0
    train_s = 0.0
    for job in todo:
        if job.kind.startswith("cm"):
            n = round(samples_per_culture * (len(cultures) if job.kind == "cm-all" else 1)
                      * (0.5 if job.kind in ("cm-ts", "cm-ta") else 1))
        else:
            n = len(job_examples(job, cfg, tasks, {}, cultures, tok))
        t = cfg.train if job.kind not in ("culturesft", "culturellm", "culturesft-all", "culturellm-all") \
            else cfg.train.model_copy(update=cfg.bench.survey_train)
        train_n = n - round(n * t.validation) if n >= 10 else n
        s = planned_steps(train_n, t.epochs, t.batch_size, t.max_examples, t.max_steps)
        steps += s
        seen += min(s * t.batch_size, 10 ** 9)
        train_s += adapter_seconds(min(s * t.batch_size, 10 ** 9), demo_tokens, adapted, rates)
        unique += n if job.seed == cfg.bench.seeds[0] else 0
    lower = layers - adapted
    plan.phases.append(Phase("train: frozen prefix", f"{unique} distinct examples through {lower} frozen layers",
                             forward_seconds(unique, demo_tokens, lower, rates)))
    plan.phases.append(Phase("train: adapters", f"{len(todo)} adapters, {steps} steps, {seen} examples seen through "
                             f"{adapted} adapted layers",
                             train_s))

    # evaluation: every (variant, task) pair, the router, the probe
    n_test = sum(len(t.test) for t in tasks)
    per_seed_pairs = 0
    for m in methods & set(METHODS):
        if m == "CultureManager":
            per_seed_pairs += len(cultures) * len(tasks)
        elif m in TRAINED:
            per_seed_pairs += len(tasks)
    fixed_pairs = len(methods & {"Original", "Prompt"}) * len(tasks)
    pairs = per_seed_pairs * len(cfg.bench.seeds)
    per_task = n_test / len(tasks) + 3
    plan.phases.append(Phase("evaluate: adapters", f"{pairs} (adapter, task) pairs x {per_task:.0f} inputs through "
                             f"{adapted} adapted layers; test inputs once through {lower} frozen layers",
                             forward_seconds(round(pairs * per_task), test_tokens, adapted, rates)
                             + forward_seconds(n_test, test_tokens, lower, rates)))
    base = fixed_pairs * per_task + (n_test * len(cultures) if "CultureManager" in methods else 0)
    if "Probe (linear)" in methods:
        base += n_test + sum(len(t.demos) for t in tasks)
    plan.phases.append(Phase("evaluate: base model", "Original, Prompt, the prompt router (one sequence per "
                             "option) and the probe's features, through every layer",
                             forward_seconds(round(base), test_tokens, layers, rates)))
    plan.counts.update({"tasks": len(tasks), "test inputs": n_test, "seeds": len(cfg.bench.seeds),
                        "adapters": len(todo), "decoder layers": layers, "adapted layers": adapted,
                        "mean tokens (test / training)": f"{test_tokens:.0f} / {demo_tokens:.0f}"})
    return plan


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def describe(tasks: list[TaskData]) -> str:
    return ", ".join(f"{t.spec.id} {len(t.demos)}+{len(t.test)}" for t in tasks)
