"""The benchmark's data side: each task's protocol split written to disk, the pipeline's config built from the
tasks, and training examples from labelled demonstrations or from CultureLLM's chat-format survey files.

Run: imported by `culturemanager bench`; no entry point of its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from culturemanager.backends.schedule import Example
from culturemanager.backends.target import encode, option_ids
from culturemanager.bench.config import BenchConfig
from culturemanager.bench.methods import SURVEY_KINDS, Job
from culturemanager.bench.score import FAMILIES
from culturemanager.bench.split import stratified_split
from culturemanager.bench.tasks import BenchTask, TaskRows, read_task_rows
from culturemanager.config import PIPELINE_TABLES, Config, Task
from culturemanager.records import Sample, write_jsonl
from culturemanager.rundir import safe_name

log = logging.getLogger(__name__)


@dataclass
class TaskData:
    spec: BenchTask
    task: Task  # the pipeline's view: label, template, labels ["0", "1"]
    demos: list[tuple[str, str]] = field(default_factory=list)  # (text, label): TaskSFT only sees the labels
    test: list[tuple[str, str]] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    test_answers: list[list[str]] = field(default_factory=list)  # free_text: each test input's accepted answers

    @property
    def family(self) -> str:
        return FAMILIES[self.task.format]

    def task_label(self, y: str) -> str:
        """A bench gold label in the task's own spelling: true_false's "1" / "0" are "true" / "false"."""
        if self.task.format == "true_false":
            return self.task.positive_label if y == "1" else next(x for x in self.task.labels or []
                                                                   if x != self.task.positive_label)
        return y

    @property
    def ok(self) -> bool:
        return self.info.get("status") == "ok"


def split_task(spec: BenchTask, template: str, cfg: BenchConfig, root: Path, write: bool = True) -> TaskData:
    b = cfg.bench
    rows = read_task_rows(spec, cfg.data_dir)
    task = pipeline_task(spec, template, rows)
    td = TaskData(spec, task)
    info = {"id": spec.id, "culture": spec.culture, "task": spec.task, "language": spec.language,
            "file": spec.file, "sha256": file_sha256(cfg.data_dir / spec.file), "rows_used": len(rows.texts),
            "skipped": dict(rows.skipped), "status": "ok", "skip_reason": None}
    # free-text answers are (nearly) all distinct: stratifying by them would leave no demonstration
    strata = rows.labels if td.family != "free_text" else ["answer"] * len(rows.labels)
    demo_idx, test_idx = stratified_split(strata, b.demo_share, b.split_seed, b.test_cap)
    td.demos = [(rows.texts[i], rows.labels[i]) for i in demo_idx]
    td.test = [(rows.texts[i], rows.labels[i]) for i in test_idx]
    td.test_answers = [rows.answers[i] for i in test_idx] if td.family == "free_text" else []
    info.update(demos=len(td.demos), test=len(td.test), format=spec.format)
    if td.family == "labels":
        info["test_positive"] = sum(y == "1" for _, y in td.test)
        if info["test_positive"] == 0:
            info.update(status="skipped", skip_reason="no positive example in the test split: F1 is undefined")
        elif info["test_positive"] == len(td.test):
            info.update(status="skipped", skip_reason="no negative example in the test split")
    if info["status"] == "ok" and not td.demos:
        info.update(status="skipped", skip_reason="too few rows for a demonstration split")
    elif info["status"] == "ok" and len(td.test) < 2:
        info.update(status="skipped", skip_reason="fewer than two test inputs")
    if info["status"] != "ok":
        log.warning("task %s skipped: %s", spec.id, info["skip_reason"])
    if write:
        folder = root / "data" / safe_name(spec.id)
        write_jsonl(folder / "demos.jsonl", [{"text": x} for x, _ in td.demos])  # no labels for the pipeline
        write_jsonl(folder / "test.jsonl", [{"text": x, "label": y} | ({"answers": td.test_answers[i]}
                                                                        if td.test_answers else {})
                                            for i, (x, y) in enumerate(td.test)])
    td.info = info
    return td


def pipeline_task(spec: BenchTask, file_template: str, rows: TaskRows) -> Task:
    """The pipeline's view of a bench task: its format, label set and template (the task's own; else the tasks
    file's template for binary tasks, the format's default for the others). The bench's gold labels stay "1" /
    "0" for the two-label formats (`TaskData.task_label` turns them into the task's labels)."""
    template = spec.template or (file_template if spec.format == "binary" else None)
    labels = rows.options if spec.format == "multiple_choice" else None  # else the format's default (or none)
    return Task(id=spec.id, label=spec.task, format=spec.format, labels=labels, template=template,
                cultures=[spec.culture])


def pipeline_config(cfg: BenchConfig, tasks: list[TaskData], run_dir: Path) -> Config:
    hints = {c.name: c for c in cfg.bench.cultures}
    cultures = []
    for name in dict.fromkeys(t.spec.culture for t in tasks):
        lang = next((t.spec.language for t in tasks if t.spec.culture == name and t.spec.language), None)
        h = hints.get(name)
        cultures.append({"name": name, "language": lang, "country": h.country if h else None,
                         "description": h.description if h else ""})
    folder = lambda t: run_dir.parent / "data" / safe_name(t.spec.id)  # noqa: E731
    raw = {"run": {"dir": str(run_dir), "seed": cfg.bench.split_seed}, "cultures": cultures,
           "tasks": [{**t.task.model_dump(), "demonstrations": [{"path": str(folder(t) / "demos.jsonl")}],
                      "evaluation": [{"path": str(folder(t) / "test.jsonl")}]} for t in tasks]}
    for sect in PIPELINE_TABLES:
        raw[sect] = getattr(cfg, sect).model_dump()
    return Config.model_validate(raw)


def chat_examples(tok, path: Path, max_length: int) -> list[Example]:
    """CultureLLM's chat files ({"messages": [system, user, assistant]}) as plain prompt -> answer examples."""
    out = []
    for where, prompt, text in chat_lines(path):
        try:
            answer = option_ids(tok, [text])[0]
        except ValueError as e:
            raise ValueError(f"{where}: the answer {text!r} cannot be tokenized ({e})") from None
        enc = encode(tok, prompt, "", "", max_length - len(answer))
        out.append((enc.ids + answer, [-100] * len(enc.ids) + answer))
    return out


def chat_lines(path: Path) -> list[tuple[str, str, str]]:
    """(where, prompt, answer) of each line of a chat file; a missing file or a line that is not a chat example
    with user and assistant messages is an error naming it. The bench's check before the pipeline
    (`prepare.check_inputs`) reads them through this too."""
    if not path.is_file():
        raise FileNotFoundError(f"survey training file not found: {path} (see bench.survey in the config)")
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                msgs = {m["role"]: m["content"] for m in json.loads(line)["messages"]}
                prompt = "\n".join(x for x in (msgs.get("system"), msgs["user"]) if x) + "\nAnswer: "
                answer = str(msgs["assistant"]).strip()
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}:{lineno}: not a chat example with user and assistant messages ({e})"
                                 ) from None
            if not answer:
                raise ValueError(f"{path}:{lineno}: not a chat example with user and assistant messages (the "
                                 f"assistant's answer is empty)")
            out.append((f"{path}:{lineno}", prompt, answer))
    return out


def read_survey_files(cfg: BenchConfig, jobs: list[Job], cultures: list[str]) -> int:
    """Read every chat file the survey jobs among `jobs` train on, as their training reads them (a bad line is an
    error naming it); the examples read."""
    paths = dict.fromkeys(p for j in jobs if j.kind in SURVEY_KINDS
                          for p in survey_files(j.kind, j.name, cfg, cultures))
    return sum(len(chat_lines(p)) for p in paths)


def survey_files(kind: str, name: str, cfg: BenchConfig, cultures: list[str]) -> list[Path]:
    """The chat files a survey job trains on: its culture's survey answers (CultureSFT) or augmented set
    (CultureLLM), every culture's survey answers (CultureSFT-all), or the joint augmented set (CultureLLM-all)."""
    s = cfg.bench.survey
    survey_dir = s.dir if s.dir.is_absolute() else cfg.data_dir / s.dir
    folder = lambda c: s.folders.get(c, c)  # noqa: E731
    if kind == "culturesft":
        return [survey_dir / s.survey.format(folder=folder(name))]
    if kind == "culturellm":
        return [survey_dir / s.augmented.format(folder=folder(name))]
    if kind == "culturesft-all":
        return [survey_dir / s.survey.format(folder=folder(c)) for c in cultures]
    return [survey_dir / s.augmented_all]


def subsample(examples: list[Example], cap: int | None) -> list[Example]:
    """At most `cap` examples, the same ones for every seed (a fixed-seed sample, in file order), so that the
    survey baselines' frozen-prefix states are computed once for all seeds."""
    if cap is None or len(examples) <= cap:
        return examples
    keep = sorted(random.Random(0).sample(range(len(examples)), cap))
    return [examples[i] for i in keep]


def stable_hash(obj) -> str:
    """The key of a cached bench file (an adapter's data hash, a variant's answers): the same for equal content."""
    return hashlib.sha256(json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def job_examples(job: Job, cfg: BenchConfig, tasks: list[TaskData], samples: dict[str, list[Sample]],
                 cultures: list[str], tok) -> list[Example]:
    """A job's training examples (`job_data` without the rows)."""
    return job_data(job, cfg, tasks, samples, cultures, tok)[0]


def job_data(job: Job, cfg: BenchConfig, tasks: list[TaskData], samples: dict[str, list[Sample]],
             cultures: list[str], tok) -> tuple[list[Example], list[dict] | None]:
    """A job's training examples: a task's labelled demonstrations (TaskSFT), a culture's survey answers
    (CultureSFT / CultureLLM, or every culture's for the -all rows), or synthetic samples (CultureManager: one
    culture's, every culture's for -all, one query mode's for the ablations), each in the layout used at
    inference; and, for the task data (TaskSFT, CultureManager), one row per example (task, text, label): what the
    trainer keeps of its validation slice for an operating point. Survey answers have no task label: None."""
    from culturemanager.stages.train import training_example

    ml = cfg.target.max_length
    by_id = {t.spec.id: t.task for t in tasks}
    if job.kind == "tasksft":
        td = next(t for t in tasks if t.spec.id == job.name)
        labelled = [(td.task, text, td.task_label(label)) for text, label in td.demos]
    elif job.kind in SURVEY_KINDS:
        return subsample([e for path in survey_files(job.kind, job.name, cfg, cultures)
                          for e in chat_examples(tok, path, ml)], cfg.bench.survey_examples), None
    else:
        mode = {"cm-ts": "task_specific", "cm-ta": "task_agnostic"}.get(job.kind)
        pool = ([x for c in cultures for x in samples.get(c, [])] if job.kind == "cm-all"
                else samples.get(job.name, []))
        labelled = [(by_id[x.task], x.text, x.label) for x in pool
                    if x.task in by_id and (mode is None or x.provenance.mode == mode)]
    return ([training_example(tok, task, text, label, ml)[0] for task, text, label in labelled],
            [{"task": task.id, "text": text, "label": label} for task, text, label in labelled])
