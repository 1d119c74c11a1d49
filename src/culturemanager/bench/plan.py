"""The benchmark's plan: what `culturemanager bench CONFIG` will do and how long it will take, before it runs
(`culturemanager bench CONFIG --plan`). The split is made in memory, the tokenizer measures the inputs, the
rest is counting (plan.py has the rules and the rates).

Run: `culturemanager bench CONFIG.toml --plan [--set bench.rates.layer_token_train_s=...]`.
"""

from __future__ import annotations

from dataclasses import replace

from culturemanager.backends.schedule import validation_split
from culturemanager.bench.config import BenchConfig
from culturemanager.bench.data import TaskData, job_examples, split_task
from culturemanager.bench.methods import (
    CM_METHODS,
    FIXED_VARIANT,
    ROUTED,
    Job,
    answering,
    job_settings,
    jobs,
    with_checks_on,
)
from culturemanager.bench.tasks import load_tasks
from culturemanager.plan import (
    SELECT_KEEP_RATE,
    Phase,
    Plan,
    adapter_seconds,
    forward_seconds,
    generator_phase,
    mean_tokens,
    plan_rates,
    plan_tokenizer,
    planned_steps,
    prefix_seconds,
    speedup,
    synthesis_work,
    target_shape,
    upper_forward_seconds,
    validation_passes,
    validation_size,
)


def plan_bench(cfg: BenchConfig) -> Plan:
    shape = target_shape(cfg.target.model)
    rates, note = plan_rates(cfg.bench.rates, cfg.generator.model, shape)
    tf = load_tasks(cfg.bench.tasks)
    wanted = cfg.bench.task_ids or [t.id for t in tf.tasks]
    tasks = [t for t in (split_task(s, tf.prompt_template, cfg, cfg.bench.dir, write=False)
                         for s in tf.tasks if s.id in wanted) if t.ok]
    cultures = list(dict.fromkeys(t.spec.culture for t in tasks))
    methods = set(with_checks_on(cfg.bench.methods, cfg))
    tok, tok_note = plan_tokenizer(cfg.target)
    layers = shape.layers
    adapted = min(cfg.train.layers or layers, layers)
    ml = cfg.target.max_length
    test_tokens = {t.spec.id: mean_tokens(tok, t.task, [x for x, _ in t.test], ml) for t in tasks}
    demo_tokens_of = {t.spec.id: mean_tokens(tok, t.task, [x for x, _ in t.demos], ml) for t in tasks}
    demo_tokens = _mean(list(demo_tokens_of.values()))
    plan = Plan()

    # the pipeline's LLM stages
    samples_per_culture, select_keep = 0.0, 1.0
    if CM_METHODS & methods:
        queries = sum(len(cfg.queries.modes) * cfg.queries.per_mode for _ in tasks)
        g = cfg.generator
        conc = speedup(g, rates)
        plan.phases.append(generator_phase("pipeline: queries", sum(len(cfg.queries.modes) for _ in tasks), 450,
                                           40 * cfg.queries.per_mode, rates, conc))
        if cfg.search.summarize:
            plan.phases.append(generator_phase("pipeline: summaries", queries,
                                               300 + cfg.search.top_k * cfg.search.max_doc_chars / 3.5, 200, rates,
                                               conc))
        labels = len(tasks[0].task.labels or [None]) if cfg.synthesis.label_mode == "per_label" else 1
        phase, kept = synthesis_work(cfg.synthesis, g, queries, labels,
                                     cfg.search.top_k * cfg.search.max_doc_chars / 3.5, rates, conc)
        plan.phases.append(replace(phase, name="pipeline: synthesis"))
        select_keep = SELECT_KEEP_RATE if cfg.synthesis.select.enabled else 1.0
        samples_per_culture = kept / len(cultures) * select_keep
        plan.counts["synthetic samples per culture (expected)"] = round(samples_per_culture)

    # training: every adapter of every seed
    todo = jobs(methods, [t.spec.id for t in tasks], cultures, cfg.bench.seeds)
    seen = steps = 0
    distinct: set[tuple[int, ...]] = set()  # the frozen prefix runs once per distinct training example
    synthetic = 0  # CultureManager's adapters share each culture's samples
    train_s = 0.0
    fits: list[tuple[int, int, object]] = []  # (examples, held out, settings) of every training, first passes too
    for job in todo:
        t = job_settings(job, cfg.train, cfg.bench.survey_train)
        if job.kind.startswith("cm"):  # synthetic samples: not written yet, so their expected number
            n = round(samples_per_culture * (len(cultures) if job.kind == "cm-all" else 1)
                      * (0.5 if job.kind in ("cm-ts", "cm-ta") else 1)
                      / (select_keep if job.kind == "cm-nosel" else 1))
            synthetic += n if job.kind in ("cm", "cm-nosel") and job.seed == cfg.bench.seeds[0] else 0
            if t.small_loss.enabled:  # a first pass on all n (the no-label-check adapter's, when that row runs)
                if not (job.kind == "cm" and Job("cm-nolc", job.name, job.seed) in todo):
                    fits.append((n, validation_size(n, t.validation), t))
                n -= round(n * t.small_loss.drop_share)
            fits.append((n, validation_size(n, t.validation), t))
        else:
            examples = job_examples(job, cfg, tasks, {}, cultures, tok)
            fits.append((len(examples), len(validation_split(examples, t, job.seed)[1]), t))
            distinct.update(tuple(ids) for ids, _ in examples)
    for n, held_out, t in fits:
        s = planned_steps(n - held_out, t.epochs, t.batch_size, t.max_examples, t.max_steps)
        steps += s
        seen += s * t.batch_size
        train_s += adapter_seconds(s * t.batch_size, demo_tokens, adapted, rates,
                                   validation_passes(held_out, s, t.eval_every))
    lower = layers - adapted
    unique = len(distinct) + synthetic
    plan.phases.append(Phase("train: frozen prefix", f"{unique} distinct examples through {lower} frozen layers",
                             prefix_seconds(unique, demo_tokens, lower, rates)))
    first = f" (+ {len(fits) - len(todo)} small-loss first passes)" if len(fits) > len(todo) else ""
    plan.phases.append(Phase("train: adapters", f"{len(todo)} adapters{first}, {steps} steps, {seen} examples seen "
                             f"through {adapted} adapted layers", train_s))

    # evaluation: every (variant, task) pair the methods need, each once (bench/evaluate.py `variants`), the prompt
    # router, the probe; each task's inputs at their own length
    answers = {(v if isinstance(v, str) else v.slug, t.spec.id)
               for t in tasks for seed in cfg.bench.seeds for m in methods
               for v in answering(m, t.spec.id, t.spec.culture, seed, cultures)}
    size = {t.spec.id: (len(t.test) + 3) * test_tokens[t.spec.id] for t in tasks}  # + 3 content-free inputs
    adapter_pairs = [task for v, task in answers if v not in FIXED_VARIANT.values()]
    upper = sum(size[task] for task in adapter_pairs)
    prefix_tokens = sum(len(t.test) * test_tokens[t.spec.id] for t in tasks) if adapter_pairs else 0.0
    plan.phases.append(Phase("evaluate: adapters", f"{len(adapter_pairs)} (adapter, task) pairs through {adapted} "
                             f"adapted layers; test inputs once through {lower} frozen layers",
                             (upper_forward_seconds(1, upper, adapted, rates) if lower else
                              forward_seconds(1, upper, layers, rates))  # LoRA on every layer: full passes
                             + prefix_seconds(1, prefix_tokens, lower, rates)))
    full = sum(size[task] for v, task in answers if v in ("base", "prompt"))
    if ROUTED.keys() & methods:
        full += router_passes(tok, cfg, cultures) * sum(size.values())
    if "Probe (linear)" in methods:
        full += sum(len(t.test) * test_tokens[t.spec.id] + len(t.demos) * demo_tokens_of[t.spec.id] for t in tasks)
    plan.phases.append(Phase("evaluate: base model", "Original, Prompt, the prompt router and the probe's "
                             "features, through every layer",
                             forward_seconds(1, full, layers, rates)))
    n_test = sum(len(t.test) for t in tasks)
    plan.counts.update({"tasks": len(tasks), "test inputs": n_test, "seeds": len(cfg.bench.seeds),
                        "adapters": len(todo), "decoder layers": layers, "adapted layers": adapted,
                        "mean tokens (test / training)":
                            f"{_mean(list(test_tokens.values())):.0f} / {demo_tokens:.0f}", "rates": note}
                       | ({"tokens": tok_note} if tok_note else {}))
    return plan


def router_passes(tok, cfg: BenchConfig, cultures: list[str]) -> int:
    """Forward passes of the prompt router per input: one when every option (culture name, "Others") is one
    token (`score_next_token` reads them all from one pass), else one per option."""
    from culturemanager.stages.route import OTHERS, router_option_ids

    options = cultures + ([OTHERS] if cfg.router.others else [])
    return 1 if all(len(o) == 1 for o in router_option_ids(tok, options)) else len(options)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def describe(tasks: list[TaskData]) -> str:
    return ", ".join(f"{t.spec.id} {len(t.demos)}+{len(t.test)}" for t in tasks)
