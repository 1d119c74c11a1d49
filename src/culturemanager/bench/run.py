"""The benchmark: the paper's experiment on a tasks file, every baseline, router accuracy and culture specificity.

Phases, each resumable from the files it leaves in `bench.dir`:
1. split   per task a seeded stratified split: `demo_share` of the inputs (labels withheld) are the pipeline's
           demonstrations, the rest (capped, stratified) the test set      -> data/<task>/{demos,test}.jsonl
2. pipeline  queries, search and synthesis for every culture and task, with the test inputs as evaluation data
           (so leaking samples are dropped)                                  -> pipeline/ (a normal run dir)
3. train   one LoRA adapter per method, culture/task and seed (bench/methods.py); an adapter whose data and
           settings did not change is reused, a killed training resumes from its checkpoint. With `train.layers`
           every adapter trains on the top layers only, and the frozen lower layers' states of an example are
           computed once for all adapters and seeds                        -> adapters/<kind>/<name>/seed<k>/
4. evaluate  the router once on the base model, then every (model variant, task) pair: P(positive) of every test
           input and of content-free input (for calibration); the linear probe -> router/<task>.json, preds/...
5. report  methods assembled from those answers (bench/results.py): scores with and without calibration, AUC,
           paired bootstrap intervals, comparisons with verdicts, C-SPEC, contamination, the paper's numbers
                                                                             -> results.json, report.md, PNGs

Entry point: `bench(cfg)`. Run: `culturemanager bench CONFIG.toml [--quick]` (`make bench`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import time
from pathlib import Path

from culturemanager.backends.target import load_target, load_tokenizer
from culturemanager.backends.trainer import META, VALIDATION, fit_adapter, settings_key, validation_split
from culturemanager.bench import routing
from culturemanager.bench.config import BenchConfig
from culturemanager.bench.data import TaskData, job_data, pipeline_config, split_task
from culturemanager.bench.methods import (
    CM_METHODS,
    FIXED_VARIANT,
    METHODS,
    NOT_APPLICABLE,
    ROUTED,
    TRAINED,
    Job,
    answering,
    job_settings,
    jobs,
    with_checks_on,
)
from culturemanager.bench.report import paper_numbers, write_report
from culturemanager.bench.results import Answers, best_baseline, comparisons, method_results
from culturemanager.bench.score import (
    FAMILIES,
    PRIMARY,
    c_spec_summary,
    calibrated,
    culture_matrix,
    router_summary,
)
from culturemanager.bench.tasks import TasksFile, TasksFileError, load_tasks
from culturemanager.metrics import calibrate
from culturemanager.records import BASE, Sample, read_jsonl, write_json, write_jsonl
from culturemanager.rundir import file_lock, library_versions, safe_name
from culturemanager.stages.route import CONTENT_FREE, Router
from culturemanager.stages.train import adapter_is_current

log = logging.getLogger(__name__)


class Bench:
    def __init__(self, cfg: BenchConfig, progress: bool = True, command: str = "", quick: bool = False,
                 shard: tuple[int, int] = (0, 1)):
        self.cfg, self.progress, self.command, self.quick, self.shard = cfg, progress, command, quick, shard
        self.root = cfg.bench.dir
        self.timings: dict[str, float] = {}
        self.tf: TasksFile = load_tasks(cfg.bench.tasks)
        self.tasks: list[TaskData] = []
        self.samples: dict[str, list[Sample]] = {}
        self.unchecked: dict[str, list[Sample]] = {}  # per culture, before synthesis.select and .judge
        self.adapters: dict[Job, Path | None] = {}  # None: too few examples, the base model stands in
        self.pipeline_counts: dict = {}
        self.router_options: list[str] = []
        self.trained: list[str] = []  # adapters this process trained (a shard reports them)
        self.routing: dict = {}  # both routers measured on the test inputs (bench/routing.py)
        self.family = "labels"  # how this run's tasks are answered and scored (bench/score.py FAMILIES)
        self.prefix = None  # the frozen lower layers' states (backends/prefix.py), shared by every seed's training
        self.verdicts: dict[str, dict[tuple[int, str], bool | None]] = {}  # bench.judge: task -> (input, answer)
        self.judge_name: str | None = None

    # ------------------------------------------------------------------------------------------ phases
    def run(self) -> dict:
        """Split and pipeline once; then per training seed: train, evaluate, and write results.json + report.md
        with the seeds finished so far (an interrupted run keeps a complete report of its finished seeds)."""
        t0 = time.time()
        self.root.mkdir(parents=True, exist_ok=True)
        self._timed("split", self.split)
        self.check_inputs()
        if CM_METHODS & set(self.methods):
            with file_lock(self.root / ".locks" / "pipeline.lock"):  # shards wait: the LLM calls are made once
                self._timed("pipeline", self.pipeline)
        if self.shard[1] > 1:  # a training shard: its share of the adapters, then the last run evaluates
            self._timed("train", self.train, self.cfg.bench.seeds)
            return {"shard": list(self.shard), "trained": self.trained}
        routed: dict = {}
        answers: dict = {}
        seeds = self.cfg.bench.seeds
        for k, seed in enumerate(seeds):
            log.info("bench: seed %d (%d of %d)", seed, k + 1, len(seeds))
            self._timed("train", self.train, [seed])
            r, a = self._timed("evaluate", self.evaluate, [seed])
            routed.update(r)
            answers.update(a)
            if self.family == "free_text" and self.cfg.bench.judge.enabled:
                self._timed("judge", self.judge_all, answers)
            self.timings["total"] = round(time.time() - t0, 1)
            results = self.results(routed, answers, seeds[:k + 1])
            write_json(self.root / "results.json", results)
            write_report(results, self.root)
        return results

    def _timed(self, name: str, fn, *args):
        t0 = time.time()
        log.info("bench: %s", name)
        out = fn(*args)
        self.timings[name] = round(self.timings.get(name, 0.0) + time.time() - t0, 1)
        return out

    @property
    def methods(self) -> list[str]:
        """bench.methods without those this run's scoring family has no meaning for (NOT_APPLICABLE), and without
        the ablation rows whose check is off (`with_checks_on`)."""
        return [m for m in with_checks_on(self.cfg.bench.methods, self.cfg) if m not in NOT_APPLICABLE[self.family]]

    @property
    def ok_tasks(self) -> list[TaskData]:
        return [t for t in self.tasks if t.ok]

    @property
    def cultures(self) -> list[str]:
        return list(dict.fromkeys(t.spec.culture for t in self.ok_tasks))

    def culture_of(self) -> dict[str, str]:
        return {t.spec.id: t.spec.culture for t in self.ok_tasks}

    def check(self) -> dict[str, int]:
        """`culturemanager bench CONFIG --check`: every task file read and split as the run would (nothing written),
        then `check_inputs`; what was read, counted."""
        self.split(write=False)
        return self.check_inputs()

    def check_inputs(self) -> dict[str, int]:
        """What the bench needs after its split, checked before the pipeline's first LLM call: a task left to
        benchmark, the models (preflight.py), and every survey file the survey baselines will train on, read by the
        function their training reads it with (`data.chat_lines`)."""
        from culturemanager.bench.data import read_survey_files
        from culturemanager.preflight import check_models

        if not self.ok_tasks:
            raise ValueError("no task is left to benchmark: " + "; ".join(
                f"{t.spec.id}: {t.info.get('skip_reason')}" for t in self.tasks))
        llm = ("queries", "search", "synthesize") if CM_METHODS & set(self.methods) else ()
        check_models(pipeline_config(self.cfg, self.ok_tasks, self.root / "pipeline"), (*llm, "train"))
        todo = jobs(set(self.methods), [t.spec.id for t in self.ok_tasks], self.cultures, [0])
        return {"tasks": len(self.ok_tasks), "demonstrations": sum(len(t.demos) for t in self.ok_tasks),
                "test inputs": sum(len(t.test) for t in self.ok_tasks),
                "survey examples": read_survey_files(self.cfg, todo, self.cultures)}

    def split(self, write: bool = True) -> None:
        b = self.cfg.bench
        wanted = b.task_ids or [t.id for t in self.tf.tasks]
        unknown = sorted(set(wanted) - {t.id for t in self.tf.tasks})
        if unknown:
            raise ValueError(f"bench.task_ids {unknown} are not in {b.tasks}")
        families = {FAMILIES[t.format] for t in self.tf.tasks if t.id in wanted}
        if len(families) > 1:  # one run's averages and verdicts are over one kind of score
            mixed = [f"{t.id} ({t.format})" for t in self.tf.tasks if t.id in wanted]
            raise TasksFileError(f"{b.tasks}: tasks {mixed} mix formats scored differently (binary and true_false "
                                 f"by P(positive), multiple_choice by accuracy, free_text by soft match): run one "
                                 f"kind per bench, choosing its tasks with bench.task_ids")
        self.family = families.pop() if families else "labels"
        for spec in (t for t in self.tf.tasks if t.id in wanted):
            self.tasks.append(split_task(spec, self.tf.prompt_template, self.cfg, self.root, write))

    def pipeline(self) -> None:
        from culturemanager.pipeline import Run

        cfg = pipeline_config(self.cfg, self.ok_tasks, self.root / "pipeline")
        run = Run(cfg, progress=self.progress)
        for stage in ("queries", "search", "synthesize"):
            self.pipeline_counts[stage] = run.stage(stage)
        for c in self.cultures:
            path, unchecked = run.rd.samples(c), run.rd.unchecked(c)
            self.samples[c] = read_jsonl(path, Sample) if path.exists() else []
            # before selection and the judge (written when either is on): the "no selection" ablation's data
            self.unchecked[c] = read_jsonl(unchecked, Sample) if unchecked.exists() else self.samples[c]

    def train(self, seeds: list[int]) -> None:
        """Every job's adapter, reused when its examples, settings and starting point are unchanged. One frozen
        prefix serves all of them (an example's lower-layer states are computed once per bench run: the prefix lives
        on the Bench, so the seeds after the first reuse it)."""
        todo = jobs(set(self.methods), [t.spec.id for t in self.ok_tasks], self.cultures, seeds)
        tok = load_tokenizer(self.cfg.target)
        i, n = self.shard
        groups = list(dict.fromkeys((j.init or j) for j in todo))  # a job and the one it continues from together
        for k, job in enumerate(todo, 1):
            if groups.index(job.init or job) % n != i:
                continue
            # a shard skips an adapter another process is training; the full run waits for it
            with file_lock(self.root / ".locks" / f"{job.slug}.lock", blocking=n == 1) as mine:
                if not mine:
                    log.warning("%s is being trained by another process: skipped here", job.slug)
                    continue
                self.prefix = self.train_job(job, k, len(todo), tok, self.prefix)

    def train_job(self, job: Job, k: int, total: int, tok, prefix):
        """Train (or reuse) one job's adapter; returns the frozen prefix, created on first need and shared."""
        samples = self.unchecked if job.kind == "cm-nosel" else self.samples
        examples, rows = job_data(job, self.cfg, self.ok_tasks, samples, self.cultures, tok)
        settings = self.settings_for(job)
        if len(examples) < settings.min_samples:
            log.warning("%s: %d examples (< train.min_samples): no adapter, the base model stands in",
                        job.slug, len(examples))
            self.adapters[job] = None
            return prefix
        return self.fit(job, examples, rows, settings, f"{job.slug} ({k}/{total})", tok, prefix)

    def fit(self, job: Job, examples: list, rows: list[dict] | None, settings, label: str, tok, prefix):
        """Train `job`'s adapter unless it is current (same examples, settings, seed and starting point); returns
        the frozen prefix, created on first need and shared. `rows` (task, text, label per example, or None) give
        the adapter its validation.jsonl; a current adapter trained before that file existed gets it here (the
        slice is a pure function of the examples and the seed)."""
        out = job.folder(self.root)
        init = self.adapters.get(job.init) if job.init else None
        start = json.loads((init / META).read_text(encoding="utf-8"))["data_hash"] if init else ""
        digest = stable_hash([examples, settings_key(settings), self.cfg.target.model, job.seed, start])
        if adapter_is_current(out, digest):
            if rows is not None and not settings.small_loss.enabled and not (out / VALIDATION).exists():
                write_jsonl(out / VALIDATION, [rows[i] for i in validation_split(examples, settings, job.seed)[1]])
        else:
            if prefix is None and settings.layers:
                from culturemanager.backends.prefix import FrozenPrefix, decoder_layers

                model, _ = load_target(self.cfg.target)
                prefix = FrozenPrefix(model, len(decoder_layers(model)) - settings.layers,
                                      self.cfg.target.batch_size, tok.pad_token_id)
            meta: dict = {"job": job.__dict__}
            if settings.small_loss.enabled:  # synthetic data only (settings_for): train, drop high-loss, retrain
                keep, meta["small_loss"], prefix = self.small_loss(job, examples, rows, settings, digest, tok,
                                                                   prefix, init)
                examples = [e for e, k in zip(examples, keep) if k]
                rows = [r for r, k in zip(rows, keep) if k] if rows is not None else None
            log.info("training %s on %d examples", label, len(examples))
            # the no-label-check adapter keeps its examples' losses: it is also the small-loss check's first pass
            fit_adapter(self.cfg.target, settings, job.seed, examples, out, digest, meta,
                        self.progress, label=label, prefix=prefix, init=init, score=job.kind == "cm-nolc", rows=rows)
            self.trained.append(job.slug)
        self.adapters[job] = out
        return prefix

    def small_loss(self, job: Job, examples: list, rows: list[dict] | None, settings, digest: str, tok, prefix,
                   init) -> tuple[list[bool], dict, object]:
        """The small-loss check on one CultureManager adapter's synthetic examples (stages/train.py): a first
        adapter on all of them, each example's answer loss, the high-loss ones dropped. A culture's CultureManager
        adapter takes its first pass from the no-label-check ablation's adapter (the same examples and settings:
        one training serves both rows); the other kinds train theirs in a hidden folder. Both are reused on
        resume."""
        from culturemanager.backends.trainer import answer_key
        from culturemanager.stages.train import first_pass_losses, small_loss_keep

        if job.kind == "cm":
            first = Job("cm-nolc", job.name, job.seed)
            prefix = self.fit(first, examples, rows, self.settings_for(first),
                              f"{first.slug} (small-loss first pass)", tok, prefix)
            losses = json.loads((first.folder(self.root) / META).read_text(encoding="utf-8"))["example_losses"]
        else:
            losses = first_pass_losses(job.folder(self.root), digest, lambda folder, first_digest: fit_adapter(
                self.cfg.target, settings, job.seed, examples, folder, first_digest, {"job": job.__dict__},
                self.progress, label=f"{job.slug} (small-loss first pass)", prefix=prefix, init=init, score=True))
        keep = small_loss_keep(losses, [str(answer_key(e)) for e in examples], settings.small_loss.drop_share)
        return keep, {"examples": len(examples), "dropped": len(keep) - sum(keep)}, prefix

    def settings_for(self, job: Job):
        return job_settings(job, self.cfg.train, self.cfg.bench.survey_train)

    # ------------------------------------------------------------------------------------------ evaluation
    def variant(self, job: Job | None, method: str) -> str:
        if job is None:
            return FIXED_VARIANT[method]
        return job.slug if self.adapters.get(job) else "base"

    def variants(self, seeds: list[int]) -> dict[str, set[str]]:
        """model variant ("base", "prompt", "probe" or an adapter job slug) -> the task ids it must answer."""
        methods, need = set(self.methods), {}
        for t in self.ok_tasks:
            for method in methods:
                for seed in seeds:
                    for v in self.method_variants(method, t, seed):
                        need.setdefault(v, set()).add(t.spec.id)
        return need

    def method_variants(self, method: str, task: TaskData, seed: int) -> list[str]:
        return [v if isinstance(v, str) else self.variant(v, method)
                for v in answering(method, task.spec.id, task.spec.culture, seed, self.cultures)]

    def evaluate(self, seeds: list[int]) -> tuple[dict, dict]:
        """(routed[task] -> router choice per test input, answers[(variant, task)] -> {p_positive, prior})."""
        from rich.progress import Progress

        from culturemanager.engine import Engine

        engine = Engine.load(self.cfg.target)
        need = self.variants(seeds)
        routed = self.route_all(engine) if ROUTED.keys() & set(self.methods) else {}
        answers: dict[tuple[str, str], dict] = {}
        slugs = {job.slug: path for job, path in self.adapters.items() if path}
        order = sorted(need, key=lambda v: (v not in ("base", "prompt", "probe"), v))
        with Progress(disable=not self.progress, transient=True) as bar:
            job_bar = bar.add_task("evaluate", total=sum(len(need[v]) for v in order))
            for v in order:
                for t in self.ok_tasks:
                    if t.spec.id in need[v]:
                        bar.update(job_bar, description=f"evaluate {v} on {t.spec.id}")
                        answers[(v, t.spec.id)] = self.answer(engine, v, t, slugs.get(v))
                        bar.advance(job_bar)
        return routed, answers

    def answer(self, engine, variant: str, task: TaskData, folder: Path | None) -> dict:
        """One model variant's answers to a task's test inputs, cached on disk by everything that decides them:
        P(positive) per input and on content-free input (the variant's lean, for calibration) for the two-label
        formats; a probability per option and the content-free ones for multiple choice; the generated answer
        for free text."""
        adapter_hash = ""
        if folder is not None:
            adapter_hash = json.loads((folder / META).read_text(encoding="utf-8"))["data_hash"]
        preamble = self.cfg.bench.prompt_preamble.replace("{culture}", task.spec.culture) if variant == "prompt" \
            else ""
        generation = self.cfg.bench.max_new_tokens if task.family == "free_text" else None
        key = stable_hash([variant, adapter_hash, preamble, task.task.template, task.test, self.cfg.target.model,
                           self.cfg.target.max_length, task.demos if variant == "probe" else None, "v2"]
                          + ([task.family, task.task.labels, generation] if task.family != "labels" else []))
        path = self.root / "preds" / variant / f"{safe_name(task.spec.id)}.json"
        rule = self.cfg.bench.validation_cut
        if path.exists() and (saved := json.loads(path.read_text(encoding="utf-8"))).get("key") == key:
            if task.family == "labels" and saved.get("validation_cut", "best_f1" if "prior_validation" in saved
                                                     else None) != rule:
                # a cache from before that kind, or cut by another rule: only the slice's answers are recomputed
                saved.update(prior_validation=self.validation_prior(engine, variant, task, folder, rule),
                             validation_cut=rule)
                write_json(path, saved)
            return saved
        t0 = time.time()
        texts = [x for x, _ in task.test]
        saved = {"key": key, "variant": variant, "task": task.spec.id}
        if variant == "probe":
            saved.update(p_positive=probe_answers(engine, task), prior=0.5)
        else:
            if folder is not None:
                engine.add_adapter(variant, folder)
            name = variant if folder else None
            if task.family == "free_text":
                answers, _ = engine.generate(task.task, texts, [name] * len(texts), generation, preamble)
                saved.update(answers=answers)
            else:
                probs, _ = engine.label_probs(task.task, texts + list(CONTENT_FREE), [name] * (len(texts) + 3),
                                              preamble)
                if task.family == "options":
                    saved.update(probs=[[round(x, 5) for x in row] for row in probs[:len(texts)].tolist()],
                                 prior=[round(x, 5) for x in probs[len(texts):].mean(0).tolist()])
                else:
                    positive = (task.task.labels or []).index(task.task.positive_label or "1")
                    saved.update(p_positive=[round(x, 5) for x in probs[:len(texts), positive].tolist()],
                                 prior=round(statistics.fmean(probs[len(texts):, positive].tolist()), 5),
                                 prior_validation=self.validation_prior(engine, variant, task, folder, rule),
                                 validation_cut=rule)
        saved["seconds"] = round(time.time() - t0, 2)
        write_json(path, saved)
        return saved

    @staticmethod
    def validation_prior(engine, variant: str, task: TaskData, folder: Path | None, rule: str) -> float | None:
        """P(positive)'s reference for the "validation" answer kind: the prior that puts the adapter's cut at its
        operating point on its own validation slice by `rule` (bench.validation_cut, Engine.validation_prior);
        None for the base model, the probe, the survey adapters (no task labels) and a slice of one label."""
        if folder is None:
            return None
        engine.add_adapter(variant, folder)
        prior = engine.validation_prior(task.task, variant, rule)
        positive = (task.task.labels or []).index(task.task.positive_label or "1")
        return round(prior[positive], 6) if prior else None

    @staticmethod
    def both(saved: dict) -> tuple[list, list, list]:
        """A variant's answers uncalibrated, calibrated and calibrated to its validation slice's operating point
        (the content-free calibration where it has none; free text: the same answers three times)."""
        if "answers" in saved:
            return saved["answers"], saved["answers"], saved["answers"]
        if "probs" in saved:
            cal = [calibrate(row, saved["prior"]) for row in saved["probs"]]
            return saved["probs"], cal, cal
        cal = calibrated(saved["p_positive"], saved["prior"])
        ref = saved.get("prior_validation")
        return saved["p_positive"], cal, calibrated(saved["p_positive"], ref) if ref is not None else cal

    def judge_all(self, answers: dict) -> None:
        """bench.judge: every distinct (test input, answer) that any variant gave gets the judge's verdict, once
        (its calls cached under bench.dir/judge); an empty answer is wrong without asking."""
        from culturemanager.stages.predict import judge_answers

        by_id = {t.spec.id: t for t in self.ok_tasks}
        todo: dict[tuple[str, int, str], tuple[str, str, list[str], str]] = {}
        for (_, task_id), saved in answers.items():
            t = by_id[task_id]
            for i, ans in enumerate(saved.get("answers") or []):
                known = self.verdicts.setdefault(task_id, {})
                if (i, ans) in known or (task_id, i, ans) in todo:
                    continue
                if not ans.strip():
                    known[(i, ans)] = False
                    continue
                todo[(task_id, i, ans)] = (t.spec.culture, t.test[i][0], t.test_answers[i], ans)
        jud, folder = self.cfg.bench.judge, self.root / "judge"
        verdicts, self.judge_name = judge_answers(jud.generator or self.cfg.generator, folder / "llm.jsonl",
                                                  folder / "calls.jsonl", list(todo.values()), jud.max_chars,
                                                  self.progress)
        for (task_id, i, ans), v in zip(todo, verdicts):
            self.verdicts[task_id][(i, ans)] = v

    def route_all(self, engine) -> dict:
        """{kind: {task: route per test input}, "probs": ...} for both routers, measured (bench/routing.py)."""
        routed, self.routing = routing.bench_routes(self, engine)
        return routed

    # ------------------------------------------------------------------------------------------ results
    def method_answers(self, method: str, task: TaskData, seed: int, routed: dict, answers: dict
                       ) -> tuple[list, list, list]:
        """(answers, calibrated, validation-calibrated answers) per test input of one method, seed and task
        (Bench.both)."""
        if method not in ROUTED:
            return self.both(answers[(self.method_variants(method, task, seed)[0], task.spec.id)])
        kind, top_k = ROUTED[method]
        return self.routed_answers(kind or self.cfg.router.kind, top_k, task, seed, routed, answers)

    def routed_answers(self, kind: str, top_k: int, task: TaskData, seed: int, routed: dict, answers: dict
                       ) -> tuple[list, list, list]:
        """The same rule as predict: the routed culture's adapter answers, the base model for "Others" and for a
        culture without an adapter (Router.adapter_for); with top_k > 1 the top routes' adapters together."""
        router = Router(True, self.router_options, "", {c: str(self.adapters.get(Job("cm", c, seed)) or "") or None
                                                        for c in self.cultures}, 0, top_k=top_k)
        by_adapter = {c: self.both(answers[(self.variant(Job("cm", c, seed), "CultureManager"), task.spec.id)])
                      for c in self.cultures}
        by_adapter[BASE] = self.both(answers[("base", task.spec.id)])
        return routing.routed_answers(by_adapter, router, routed[kind][task.spec.id],
                                      routed["probs"][kind][task.spec.id])

    def scoring(self) -> Answers:
        """What scores this run's answers: gold labels, and per family the options or accepted answers."""
        return Answers({t.spec.id: [y for _, y in t.test] for t in self.ok_tasks}, self.culture_of(),
                       family=self.family, labels={t.spec.id: list(t.task.labels or []) for t in self.ok_tasks},
                       accepted={t.spec.id: t.test_answers for t in self.ok_tasks},
                       language={t.spec.id: t.spec.language for t in self.ok_tasks},
                       judged=self.verdicts if self.family == "free_text" and self.cfg.bench.judge.enabled else None,
                       base_rate={t.spec.id: sum(y == "1" for _, y in t.demos) / len(t.demos) for t in self.ok_tasks}
                       if self.family == "labels" else {}, validation=self.family == "labels")

    def results(self, routed: dict, answers: dict, seeds_done: list[int]) -> dict:
        culture_of = self.culture_of()
        names = [m for m in METHODS if m in self.methods]
        a = self.scoring()
        for name in names:
            seeds = seeds_done if name in TRAINED else seeds_done[:1]
            a.p[name] = {s: {t.spec.id: self.method_answers(name, t, s, routed, answers) for t in self.ok_tasks}
                         for s in seeds}
        b = self.cfg.bench
        methods = method_results(a, b.split_seed, b.bootstrap)
        best = best_baseline(methods, metric=PRIMARY[self.family])
        pairs = [("CultureManager", "TaskSFT"), ("CultureManager", best or ""), ("CultureManager", "Original"),
                 ("CultureManager", "CultureManager (known culture)"), ("CultureManager", "CultureManager-all"),
                 ("CultureManager task-specific only", "CultureManager task-agnostic only"),
                 ("CultureManager (known culture)", "CultureManager (no label check)"),
                 ("CultureManager (known culture)", "CultureManager (no selection)"),
                 ("CultureManager", "CultureSFT"), ("CultureManager", "CultureLLM"),
                 ("CultureSFT -> CultureManager", "CultureSFT"),
                 ("CultureSFT -> CultureManager", "CultureManager (known culture)"), ("TaskSFT", "Probe (linear)"),
                 ("CultureManager (embedding router)", "CultureManager (prompt router)"),
                 ("CultureManager (top-2 mix)", "CultureManager")]
        paper = paper_numbers(b.paper) if b.paper else None
        return {
            "schema": 2, "family": self.family, "primary_metric": PRIMARY[self.family],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": self.command, "quick": self.quick,
            "models": {"target": self.cfg.target.model, "generator": self.cfg.generator.model
                       if CM_METHODS & set(self.methods) else None},
            "protocol": {"demo_share": b.demo_share, "test_cap": b.test_cap, "split_seed": b.split_seed,
                         "seeds": seeds_done, "seeds_planned": b.seeds, "bootstrap": b.bootstrap,
                         "validation_cut": b.validation_cut,
                         "train": self.cfg.train.model_dump(mode="json"), "survey_train": b.survey_train,
                         "max_length": self.cfg.target.max_length, "prompt_template": self.tf.prompt_template,
                         "prompt_preamble": b.prompt_preamble, "tasks_file": str(b.tasks)},
            "tasks": [t.info for t in self.tasks], "cultures": self.cultures, "methods": methods,
            "best_baseline": best, "comparisons": comparisons(a, pairs, b.split_seed, b.bootstrap),
            "router": router_summary(routed[self.cfg.router.kind], culture_of, self.router_options) if routed else None,
            "routers": routing.with_mixing(self.routing, self, routed, answers, seeds_done[0]) if routed and
            self.family == "labels" else (self.routing or None),
            "c_spec": c_spec_summary(self.c_spec_matrices(answers, seeds_done), self.cultures),
            "contamination": self.contamination(),
            "adapters": {j.slug: {"kind": j.kind, "name": j.name, "seed": j.seed, "trained": bool(p),
                                  **(adapter_meta(p) if p else {})} for j, p in self.adapters.items()},
            "pipeline": self.pipeline_counts, "paper": paper,
            "judge": {"by": self.judge_name, "distinct_answers": sum(len(v) for v in self.verdicts.values())}
            if self.verdicts else None,
            "timings": self.timings, "versions": library_versions(),
        }

    def c_spec_matrices(self, answers: dict, seeds_done: list[int]) -> dict:
        """Each culture's adapter on each culture's tasks, per seed (every adapter answers every task): positive-
        class F1 for the two-label formats (the paper's), the family's primary score otherwise."""
        if "CultureManager" not in self.methods:
            return {}
        from culturemanager.bench.results import scores_of

        a = self.scoring()
        metric = "f1_positive" if self.family == "labels" else PRIMARY[self.family]
        matrices = {}
        for s in seeds_done:
            f1 = {(c, t.spec.id): scores_of(a, t.spec.id, self.both(answers[(self.variant(Job("cm", c, s),
                                                                                          "CultureManager"),
                                                                             t.spec.id)])[0])[metric]
                  for c in self.cultures for t in self.ok_tasks}
            matrices[s] = culture_matrix(f1, self.cultures, self.culture_of())
        return matrices

    def contamination(self) -> dict | None:
        if not self.samples:
            return None
        from culturemanager.leakage import LeakIndex

        # one definition of a leak: the synthesis check's, over every test input of the bench
        index = LeakIndex([x for t in self.ok_tasks for x, _ in t.test], self.cfg.synthesis.leakage_ngram)
        kept = [s for c in self.cultures for s in self.samples.get(c, [])]
        dropped = self.root / "pipeline" / "samples" / "dropped.jsonl"
        reasons = [json.loads(line)["reason"] for line in dropped.read_text(encoding="utf-8").splitlines()
                   if line.strip()] if dropped.exists() else []
        per = {c: {m: sum(s.provenance.mode == m for s in self.samples.get(c, []))
                   for m in ("task_specific", "task_agnostic")} for c in self.cultures}
        return {"kept_samples_matching_test": sum(index.leaks(s.text) for s in kept),
                "dropped_as_leakage": reasons.count("leaks_evaluation"), "synthetic_samples": per,
                "kept_samples": len(kept), "dropped_by_reason": {r: reasons.count(r) for r in sorted(set(reasons))}}


# ---------------------------------------------------------------------------------------------- helpers

def probe_answers(engine, task: TaskData) -> list[float]:
    """The linear probe's P(positive) per test input: logistic regression (class-balanced, standardised features)
    on the base model's mean final hidden state, trained on the task's labelled demonstrations."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x_train = engine.features(task.task, [x for x, _ in task.demos]).numpy()
    x_test = engine.features(task.task, [x for x, _ in task.test]).numpy()
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
    clf.fit(scaler.transform(x_train), np.array([y == "1" for _, y in task.demos]))
    return [round(float(p), 5) for p in clf.predict_proba(scaler.transform(x_test))[:, 1]]


def stable_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str).encode()).hexdigest()


def adapter_meta(folder: Path) -> dict:
    meta = json.loads((folder / META).read_text(encoding="utf-8"))
    return {k: meta.get(k) for k in ("examples", "steps", "planned_steps", "best_step", "examples_seen",
                                     "stopped_early")} | {"final_loss": (meta.get("loss_curve") or [None])[-1]}


def bench(cfg: BenchConfig, progress: bool = True, command: str = "", quick: bool = False,
          shard: tuple[int, int] = (0, 1)) -> dict:
    return Bench(cfg, progress, command, quick, shard).run()
