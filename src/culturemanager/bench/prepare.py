"""The bench's first two phases: the split of every task, the inputs checked, and the pipeline's synthetic samples.

1. split     per task a seeded stratified split: `demo_share` of the inputs (labels withheld) are the pipeline's
             demonstrations, the rest (capped, stratified) the test set          -> data/<task>/{demos,test}.jsonl
2. pipeline  queries, search and synthesis for every culture and task, with the test inputs as evaluation data
             (so leaking samples are dropped)                                      -> pipeline/ (a normal run dir)

Each phase returns a typed record (`Split`, `Corpus`) that the later phases take as their input.
Entry points: `split(cfg, tasks_file)`, `check_inputs(cfg, split)`, `pipeline(cfg, split)`.
Run: imported by `bench/run.py` (`culturemanager bench`); no entry point of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from culturemanager.bench.config import BenchConfig
from culturemanager.bench.data import TaskData, pipeline_config, split_task
from culturemanager.bench.methods import CM_METHODS, NOT_APPLICABLE, jobs, with_checks_on
from culturemanager.bench.score import FAMILIES
from culturemanager.bench.tasks import TasksFile, TasksFileError
from culturemanager.records import Sample, read_jsonl


@dataclass
class Split:
    """The split phase's hand-off: every task read (one that cannot be benchmarked keeps its reason in `info`),
    how this run's tasks are answered and scored (bench/score.py FAMILIES), the methods run, and the prompt
    template of the tasks file."""
    tasks: list[TaskData]
    family: str
    methods: list[str]  # bench.methods, less those the family has no meaning for and ablations whose check is off
    prompt_template: str

    @property
    def ok_tasks(self) -> list[TaskData]:
        return [t for t in self.tasks if t.ok]

    @property
    def cultures(self) -> list[str]:
        return list(dict.fromkeys(t.spec.culture for t in self.ok_tasks))

    def culture_of(self) -> dict[str, str]:
        return {t.spec.id: t.spec.culture for t in self.ok_tasks}


@dataclass
class Corpus:
    """The pipeline phase's hand-off: each culture's synthetic samples, the same before synthesis.select and the
    judge (the "no selection" ablation's data), and the pipeline stages' counts. Empty when no CultureManager
    method runs."""
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    unchecked: dict[str, list[Sample]] = field(default_factory=dict)
    counts: dict = field(default_factory=dict)


def split(cfg: BenchConfig, tf: TasksFile, write: bool = True) -> Split:
    """Every wanted task of the tasks file split as the protocol says (written under bench.dir/data unless
    `write` is False); one run's tasks must be of one scoring family."""
    b = cfg.bench
    wanted = b.task_ids or [t.id for t in tf.tasks]
    unknown = sorted(set(wanted) - {t.id for t in tf.tasks})
    if unknown:
        raise ValueError(f"bench.task_ids {unknown} are not in {b.tasks}")
    families = {FAMILIES[t.format] for t in tf.tasks if t.id in wanted}
    if len(families) > 1:  # one run's averages and verdicts are over one kind of score
        mixed = [f"{t.id} ({t.format})" for t in tf.tasks if t.id in wanted]
        raise TasksFileError(f"{b.tasks}: tasks {mixed} mix formats scored differently (binary and true_false "
                             f"by P(positive), multiple_choice by accuracy, free_text by soft match): run one "
                             f"kind per bench, choosing its tasks with bench.task_ids")
    family = families.pop() if families else "labels"
    tasks = [split_task(spec, tf.prompt_template, cfg, b.dir, write) for spec in tf.tasks if spec.id in wanted]
    methods = [m for m in with_checks_on(b.methods, cfg) if m not in NOT_APPLICABLE[family]]
    return Split(tasks, family, methods, tf.prompt_template)


def check_inputs(cfg: BenchConfig, split: Split) -> dict[str, int]:
    """What the bench needs after its split, checked before the pipeline's first LLM call: a task left to
    benchmark, the models (preflight.py), and every survey file the survey baselines will train on, read by the
    function their training reads it with (`data.chat_lines`). Returns what was read, counted."""
    from culturemanager.bench.data import read_survey_files
    from culturemanager.preflight import check_models

    ok = split.ok_tasks
    if not ok:
        raise ValueError("no task is left to benchmark: " + "; ".join(
            f"{t.spec.id}: {t.info.get('skip_reason')}" for t in split.tasks))
    llm = ("queries", "search", "synthesize") if CM_METHODS & set(split.methods) else ()
    check_models(pipeline_config(cfg, ok, cfg.bench.dir / "pipeline"), (*llm, "train"))
    todo = jobs(set(split.methods), [t.spec.id for t in ok], split.cultures, [0])
    return {"tasks": len(ok), "demonstrations": sum(len(t.demos) for t in ok),
            "test inputs": sum(len(t.test) for t in ok),
            "survey examples": read_survey_files(cfg, todo, split.cultures)}


def pipeline(cfg: BenchConfig, split: Split, progress: bool = True) -> Corpus:
    """The pipeline's LLM stages (queries, search, synthesize) in bench.dir/pipeline, resumed from what is there;
    each culture's samples read back from its files."""
    from culturemanager.pipeline import Run

    run = Run(pipeline_config(cfg, split.ok_tasks, cfg.bench.dir / "pipeline"), progress=progress)
    out = Corpus()
    for stage in ("queries", "search", "synthesize"):
        out.counts[stage] = run.stage(stage)
    for c in split.cultures:
        path, unchecked = run.rd.samples(c), run.rd.unchecked(c)
        out.samples[c] = read_jsonl(path, Sample) if path.exists() else []
        # before selection and the judge (written when either is on): the "no selection" ablation's data
        out.unchecked[c] = read_jsonl(unchecked, Sample) if unchecked.exists() else out.samples[c]
    return out
