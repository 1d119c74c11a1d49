"""The benchmark: the paper's experiment on a tasks file, every baseline, router accuracy and culture specificity.

Phases, each resumable from the files it leaves in `bench.dir`:
1. split   per task a seeded stratified split: `demo_share` of the inputs (labels withheld) are the pipeline's
           demonstrations, the rest (capped, stratified) the test set      -> data/<task>/{demos,test}.jsonl
2. pipeline  queries, search and synthesis for every culture and task, with the test inputs as evaluation data
           (so leaking samples are dropped)                                  -> pipeline/ (a normal run dir)
3. train   one LoRA adapter per method, culture/task and seed; an adapter whose data and settings did not change
           is reused, a killed training resumes from its checkpoint           -> adapters/<kind>/<name>/seed<k>/
4. evaluate  the router once on the base model, then every (model variant, task) pair, scoring the labels
           with the task's template; each pair's answers are kept            -> router/<task>.json, preds/...
5. report  methods assembled from those answers, metrics, C-SPEC, contamination -> results.json, report.md, PNGs

Entry point: `bench(cfg)`. Run: `culturemanager bench CONFIG.toml [--quick]` (`make bench`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

from culturemanager.backends.target import load_tokenizer
from culturemanager.backends.trainer import META, Example, fit_adapter
from culturemanager.bench.config import BenchConfig
from culturemanager.bench.data import TaskData, chat_examples, pipeline_config, split_task
from culturemanager.bench.report import paper_numbers, write_report
from culturemanager.bench.score import (
    aggregate,
    c_spec_summary,
    culture_matrix,
    routed_labels,
    router_summary,
    task_scores,
)
from culturemanager.bench.tasks import TasksFile, load_tasks
from culturemanager.records import BASE, Sample, read_jsonl, write_json
from culturemanager.rundir import library_versions, safe_name
from culturemanager.stages.route import OTHERS, Router, route
from culturemanager.stages.train import adapter_is_current, training_example

log = logging.getLogger(__name__)

BASELINE, CM_GROUP, ABLATION = "baseline", "culturemanager", "ablation"
METHODS: dict[str, tuple[str, str]] = {  # name -> (group, description)
    "Original": (BASELINE, "the target model as is"),
    "Prompt": (BASELINE, "anthropological prompting: answer as a person of the task's culture"),
    "TaskSFT": (BASELINE, "LoRA per task on its demonstrations with their labels"),
    "CultureSFT": (BASELINE, "LoRA per culture on its World Values Survey answers (50 questions)"),
    "CultureSFT-all": (BASELINE, "one LoRA on every culture's survey answers"),
    "CultureLLM": (BASELINE, "LoRA per culture on CultureLLM's augmented survey data (1000 sets)"),
    "CultureLLM-all": (BASELINE, "one LoRA on all cultures' augmented survey data"),
    "CultureManager": (CM_GROUP, "per-culture adapters on synthetic task data, the router picks per input"),
    "CultureManager (known culture)": (CM_GROUP, "the same adapters, the task's culture given"),
    "CultureManager-all": (ABLATION, "one adapter on all cultures' synthetic data (no culture management)"),
    "CultureManager task-specific only": (ABLATION, "adapters on samples from task-specific queries, culture given"),
    "CultureManager task-agnostic only": (ABLATION, "adapters on samples from task-agnostic queries, culture given"),
}
TRAINED = {m for m in METHODS if m not in ("Original", "Prompt")}
CM_METHODS = {m for m in METHODS if m.startswith("CultureManager")}


@dataclass(frozen=True)
class Job:
    """One adapter to train: kind (tasksft, culturesft, culturellm, cm, cm-ts, cm-ta, *-all), name, seed."""
    kind: str
    name: str
    seed: int

    @property
    def slug(self) -> str:  # a valid peft adapter name
        return safe_name(f"{self.kind}_{self.name}_s{self.seed}")

    def folder(self, root: Path) -> Path:
        return root / "adapters" / self.kind / safe_name(self.name) / f"seed{self.seed}"


class Bench:
    def __init__(self, cfg: BenchConfig, progress: bool = True, command: str = "", quick: bool = False):
        self.cfg, self.progress, self.command, self.quick = cfg, progress, command, quick
        self.root = cfg.bench.dir
        self.timings: dict[str, float] = {}
        self.tf: TasksFile = load_tasks(cfg.bench.tasks)
        self.tasks: list[TaskData] = []
        self.samples: dict[str, list[Sample]] = {}
        self.adapters: dict[Job, Path | None] = {}  # None: too few examples, the base model stands in
        self.pipeline_counts: dict = {}
        self.router_options: list[str] = []

    # ------------------------------------------------------------------------------------------ phases
    def run(self) -> dict:
        """Split and pipeline once; then per training seed: train, evaluate, and write results.json + report.md
        with the seeds finished so far (an interrupted run keeps a complete report of its finished seeds)."""
        t0 = time.time()
        self.root.mkdir(parents=True, exist_ok=True)
        self._timed("split", self.split)
        if not self.ok_tasks:
            raise ValueError("no task is left to benchmark: " + "; ".join(
                f"{t.spec.id}: {t.info.get('skip_reason')}" for t in self.tasks))
        if CM_METHODS & set(self.cfg.bench.methods):
            self._timed("pipeline", self.pipeline)
        routed: dict = {}
        answers: dict = {}
        seeds = self.cfg.bench.seeds
        for k, seed in enumerate(seeds):
            log.info("bench: seed %d (%d of %d)", seed, k + 1, len(seeds))
            self._timed("train", self.train, [seed])
            r, a = self._timed("evaluate", self.evaluate, [seed])
            routed.update(r)
            answers.update(a)
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
    def ok_tasks(self) -> list[TaskData]:
        return [t for t in self.tasks if t.ok]

    @property
    def cultures(self) -> list[str]:
        return list(dict.fromkeys(t.spec.culture for t in self.ok_tasks))

    def culture_of(self) -> dict[str, str]:
        return {t.spec.id: t.spec.culture for t in self.ok_tasks}

    def split(self) -> None:
        b = self.cfg.bench
        wanted = b.task_ids or [t.id for t in self.tf.tasks]
        unknown = sorted(set(wanted) - {t.id for t in self.tf.tasks})
        if unknown:
            raise ValueError(f"bench.task_ids {unknown} are not in {b.tasks}")
        for spec in (t for t in self.tf.tasks if t.id in wanted):
            self.tasks.append(split_task(spec, self.tf.prompt_template, self.cfg, self.root))

    def pipeline(self) -> None:
        from culturemanager.pipeline import Run

        cfg = pipeline_config(self.cfg, self.ok_tasks, self.root / "pipeline")
        run = Run(cfg, progress=self.progress)
        for stage in ("queries", "search", "synthesize"):
            self.pipeline_counts[stage] = run.stage(stage)
        for c in self.cultures:
            path = run.rd.samples(c)
            self.samples[c] = read_jsonl(path, Sample) if path.exists() else []

    def train(self, seeds: list[int]) -> None:
        jobs = self.jobs(seeds)
        tok = load_tokenizer(self.cfg.target)
        for k, job in enumerate(jobs, 1):
            examples = self.examples(job, tok)
            out = job.folder(self.root)
            if len(examples) < self.cfg.train.min_samples:
                log.warning("%s: %d examples (< train.min_samples): no adapter, the base model stands in",
                            job.slug, len(examples))
                self.adapters[job] = None
                continue
            digest = examples_hash(examples, self.cfg, job.seed)
            if not adapter_is_current(out, digest):
                log.info("[%d/%d] training %s on %d examples", k, len(jobs), job.slug, len(examples))
                fit_adapter(self.cfg.target, self.cfg.train, job.seed, examples, out, digest,
                            {"job": job.__dict__}, self.progress, label=f"{job.slug} ({k}/{len(jobs)})")
            self.adapters[job] = out

    def jobs(self, seeds: list[int]) -> list[Job]:
        methods, out = set(self.cfg.bench.methods), []
        for seed in seeds:
            if "TaskSFT" in methods:
                out += [Job("tasksft", t.spec.id, seed) for t in self.ok_tasks]
            for method, kind in [("CultureSFT", "culturesft"), ("CultureLLM", "culturellm"), ("CultureManager", "cm"),
                                 ("CultureManager (known culture)", "cm"),
                                 ("CultureManager task-specific only", "cm-ts"),
                                 ("CultureManager task-agnostic only", "cm-ta")]:
                if method in methods:
                    out += [Job(kind, c, seed) for c in self.cultures]
            for method, kind in [("CultureSFT-all", "culturesft-all"), ("CultureLLM-all", "culturellm-all"),
                                 ("CultureManager-all", "cm-all")]:
                if method in methods:
                    out.append(Job(kind, "all", seed))
        return list(dict.fromkeys(out))

    def examples(self, job: Job, tok) -> list[Example]:
        ml = self.cfg.target.max_length
        s = self.cfg.bench.survey
        survey_dir = s.dir if s.dir.is_absolute() else self.cfg.data_dir / s.dir
        folder = lambda c: s.folders.get(c, c)  # noqa: E731
        tasks = {t.spec.id: t.task for t in self.ok_tasks}
        if job.kind == "tasksft":
            td = next(t for t in self.ok_tasks if t.spec.id == job.name)
            return [training_example(tok, td.task, text, label, ml)[0] for text, label in td.demos]
        if job.kind in ("culturesft", "culturellm"):
            pattern = s.survey if job.kind == "culturesft" else s.augmented
            return chat_examples(tok, survey_dir / pattern.format(folder=folder(job.name)), ml)
        if job.kind == "culturesft-all":
            return [e for c in self.cultures for e in chat_examples(
                tok, survey_dir / s.survey.format(folder=folder(c)), ml)]
        if job.kind == "culturellm-all":
            return chat_examples(tok, survey_dir / s.augmented_all, ml)
        mode = {"cm-ts": "task_specific", "cm-ta": "task_agnostic"}.get(job.kind)
        pool = [x for c in self.cultures for x in self.samples.get(c, [])] if job.kind == "cm-all" \
            else self.samples.get(job.name, [])
        return [training_example(tok, tasks[x.task], x.text, x.label, ml)[0] for x in pool
                if x.task in tasks and (mode is None or x.provenance.mode == mode)]

    # ------------------------------------------------------------------------------------------ evaluation
    def variants(self, seeds: list[int]) -> dict[str, set[str]]:
        """model variant ("base", "prompt" or an adapter job slug) -> the task ids it must answer."""
        methods, need = set(self.cfg.bench.methods), {}
        ids = [t.spec.id for t in self.ok_tasks]
        for task in self.ok_tasks:
            for method in methods:
                for seed in seeds:
                    for v in self.method_variants(method, task, seed):
                        need.setdefault(v, set()).add(task.spec.id)
        if CM_METHODS & methods:  # the C-SPEC matrix: every culture adapter on every task
            for seed in seeds:
                for c in self.cultures:
                    need.setdefault(self.variant(Job("cm", c, seed)), set()).update(ids)
        return need

    def variant(self, job: Job) -> str:
        return job.slug if self.adapters.get(job) else "base"

    def method_variants(self, method: str, task: TaskData, seed: int) -> list[str]:
        c, t = task.spec.culture, task.spec.id
        fixed = {"Original": "base", "Prompt": "prompt"}
        if method in fixed:
            return [fixed[method]]
        if method == "CultureManager":
            return ["base"] + [self.variant(Job("cm", x, seed)) for x in self.cultures]
        job = {"TaskSFT": Job("tasksft", t, seed), "CultureSFT": Job("culturesft", c, seed),
               "CultureSFT-all": Job("culturesft-all", "all", seed), "CultureLLM": Job("culturellm", c, seed),
               "CultureLLM-all": Job("culturellm-all", "all", seed),
               "CultureManager (known culture)": Job("cm", c, seed), "CultureManager-all": Job("cm-all", "all", seed),
               "CultureManager task-specific only": Job("cm-ts", c, seed),
               "CultureManager task-agnostic only": Job("cm-ta", c, seed)}[method]
        return [self.variant(job)]

    def evaluate(self, seeds: list[int]) -> tuple[dict, dict]:
        """(routed[task] -> router choice per test input, answers[(variant, task)] -> P(positive) per input)."""
        from rich.progress import Progress

        from culturemanager.engine import Engine

        engine = Engine.load(self.cfg.target)
        need = self.variants(seeds)
        routed = self.route_all(engine) if "CultureManager" in self.cfg.bench.methods else {}
        answers: dict[tuple[str, str], list[float]] = {}
        slugs = {job.slug: path for job, path in self.adapters.items() if path}
        order = sorted(need, key=lambda v: (v not in ("base", "prompt"), v))
        with Progress(disable=not self.progress, transient=True) as bar:
            job_bar = bar.add_task("evaluate", total=sum(len(need[v]) for v in order))
            for v in order:
                for t in self.ok_tasks:
                    if t.spec.id in need[v]:
                        bar.update(job_bar, description=f"evaluate {v} on {t.spec.id}")
                        answers[(v, t.spec.id)] = self.answer(engine, v, t, slugs.get(v))
                        bar.advance(job_bar)
        return routed, answers

    def answer(self, engine, variant: str, task: TaskData, folder: Path | None) -> list[float]:
        """P(positive) per test input for one model variant, cached on disk by everything that decides it."""
        adapter_hash = ""
        if variant not in ("base", "prompt"):
            adapter_hash = json.loads((self.slug_folder(variant) / META).read_text(encoding="utf-8"))["data_hash"]
        preamble = self.cfg.bench.prompt_preamble.replace("{culture}", task.spec.culture) if variant == "prompt" \
            else ""
        key = stable_hash([variant, adapter_hash, preamble, task.task.template, task.test, self.cfg.target.model,
                           self.cfg.target.max_length])
        path = self.root / "preds" / variant / f"{safe_name(task.spec.id)}.json"
        if path.exists() and json.loads(path.read_text(encoding="utf-8")).get("key") == key:
            return json.loads(path.read_text(encoding="utf-8"))["p_positive"]
        t0 = time.time()
        if folder is not None:
            engine.add_adapter(variant, folder)
        texts = [x for x, _ in task.test]
        probs, _ = engine.label_probs(task.task, texts, [variant if folder else None] * len(texts), preamble)
        positive = (task.task.labels or []).index(task.task.positive_label or "1")
        p = [round(x, 5) for x in probs[:, positive].tolist()]
        write_json(path, {"key": key, "variant": variant, "task": task.spec.id, "p_positive": p,
                          "seconds": round(time.time() - t0, 2)})
        return p

    def slug_folder(self, slug: str) -> Path:
        return next(path for job, path in self.adapters.items() if path and job.slug == slug)

    def router(self) -> Router:
        options = self.router_options = self.cultures + ([OTHERS] if self.cfg.router.others else [])
        return Router(True, options, self.cfg.router.template, {}, self.cfg.target.max_length,
                      self.cfg.router.calibrate)

    def route_all(self, engine) -> dict[str, list[str]]:
        router = self.router()
        out = {}
        for t in self.ok_tasks:
            texts = [x for x, _ in t.test]
            key = stable_hash([router.options, router.template, texts, self.cfg.target.model, router.max_length]
                              + (["calibrated"] if router.calibrate else []))
            path = self.root / "router" / f"{safe_name(t.spec.id)}.json"
            if path.exists() and json.loads(path.read_text(encoding="utf-8")).get("key") == key:
                out[t.spec.id] = json.loads(path.read_text(encoding="utf-8"))["routed"]
                continue
            routed = route(engine, router, texts).cultures
            write_json(path, {"key": key, "task": t.spec.id, "options": router.options, "routed": routed})
            out[t.spec.id] = routed
        return out

    # ------------------------------------------------------------------------------------------ results
    def method_answers(self, method: str, task: TaskData, seed: int, routed: dict, answers: dict) -> list[float]:
        variants = self.method_variants(method, task, seed)
        if method != "CultureManager":
            return answers[(variants[0], task.spec.id)]
        # the same rule as predict: the routed culture's adapter answers, the base model for "Others" and for a
        # culture without an adapter (Router.adapter_for)
        router = replace(self.router(), adapters={c: str(self.adapters.get(Job("cm", c, seed)) or "") or None
                                                  for c in self.cultures})
        by_adapter = {c: answers[(self.variant(Job("cm", c, seed)), task.spec.id)] for c in self.cultures}
        by_adapter[BASE] = answers[("base", task.spec.id)]
        return routed_labels(by_adapter, [router.adapter_for(c) for c in routed[task.spec.id]])

    def results(self, routed: dict, answers: dict, seeds_done: list[int]) -> dict:
        culture_of = self.culture_of()
        methods = []
        for name in [m for m in METHODS if m in self.cfg.bench.methods]:
            seeds = seeds_done if name in TRAINED else seeds_done[:1]
            per_seed = {s: {t.spec.id: task_scores([y for _, y in t.test], labels_of(
                self.method_answers(name, t, s, routed, answers))) for t in self.ok_tasks} for s in seeds}
            agg = aggregate(per_seed, culture_of)
            finished = agg.pop("seeds")
            methods.append({"name": name, "group": METHODS[name][0], "description": METHODS[name][1],
                            "trained": name in TRAINED, "seeds": finished if name in TRAINED else [], **agg})
        matrices = {}
        if CM_METHODS & set(self.cfg.bench.methods):
            for s in seeds_done:
                f1 = {(a, t.spec.id): task_scores([y for _, y in t.test], labels_of(
                    answers[(self.variant(Job("cm", a, s)), t.spec.id)]))["f1_positive"]
                    for a in self.cultures for t in self.ok_tasks}
                matrices[s] = culture_matrix(f1, self.cultures, culture_of)
        b = self.cfg.bench
        return {
            "schema": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": self.command, "quick": self.quick,
            "models": {"target": self.cfg.target.model, "generator": self.cfg.generator.model
                       if CM_METHODS & set(b.methods) else None},
            "protocol": {"demo_share": b.demo_share, "test_cap": b.test_cap, "split_seed": b.split_seed,
                         "seeds": seeds_done, "seeds_planned": b.seeds, "train_steps": self.cfg.train.max_steps,
                         "epochs": self.cfg.train.epochs,
                         "batch_size": self.cfg.train.batch_size, "lr": self.cfg.train.lr,
                         "max_length": self.cfg.target.max_length, "prompt_template": self.tf.prompt_template,
                         "prompt_preamble": b.prompt_preamble, "tasks_file": str(b.tasks)},
            "tasks": [t.info for t in self.tasks], "cultures": self.cultures, "methods": methods,
            "router": router_summary(routed, culture_of, self.router_options) if routed else None,
            "c_spec": c_spec_summary(matrices, self.cultures),
            "contamination": self.contamination(),
            "adapters": {j.slug: {"kind": j.kind, "name": j.name, "seed": j.seed, "trained": bool(p),
                                  **(adapter_meta(p) if p else {})} for j, p in self.adapters.items()},
            "pipeline": self.pipeline_counts,
            "paper": paper_numbers(),
            "timings": self.timings, "versions": library_versions(),
        }

    def contamination(self) -> dict | None:
        """Kept samples that leak a test input, by the one definition synthesis drops them by (leakage.py), over
        every task's test inputs, as synthesis checks every evaluation input of the run: 0 unless the two
        disagree."""
        if not self.samples:
            return None
        from culturemanager.leakage import LeakIndex
        from culturemanager.records import DropReason

        index = LeakIndex([x for t in self.ok_tasks for x, _ in t.test], self.cfg.synthesis.leakage_ngram)
        kept = [s for c in self.cultures for s in self.samples.get(c, [])]
        dropped = self.root / "pipeline" / "samples" / "dropped.jsonl"
        reasons = [json.loads(line)["reason"] for line in dropped.read_text(encoding="utf-8").splitlines()
                   if line.strip()] if dropped.exists() else []
        per = {c: {m: sum(s.provenance.mode == m for s in self.samples.get(c, []))
                   for m in ("task_specific", "task_agnostic")} for c in self.cultures}
        return {"kept_samples_matching_test": sum(index.leaks(s.text) for s in kept),
                "dropped_as_leakage": reasons.count(DropReason.LEAKS_EVALUATION), "synthetic_samples": per,
                "kept_samples": len(kept), "dropped_by_reason": {r: reasons.count(r) for r in sorted(set(reasons))}}


# ---------------------------------------------------------------------------------------------- helpers

def labels_of(p: list[float]) -> list[str]:
    return ["1" if x > 0.5 else "0" for x in p]


def examples_hash(examples: list[Example], cfg: BenchConfig, seed: int) -> str:
    return stable_hash([examples, cfg.train.model_dump(mode="json"), cfg.target.model, seed])


def stable_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str).encode()).hexdigest()


def adapter_meta(folder: Path) -> dict:
    meta = json.loads((folder / META).read_text(encoding="utf-8"))
    return {"examples": meta.get("examples"), "steps": meta.get("steps"),
            "final_loss": (meta.get("loss_curve") or [None])[-1]}


def bench(cfg: BenchConfig, progress: bool = True, command: str = "", quick: bool = False) -> dict:
    return Bench(cfg, progress, command, quick).run()
