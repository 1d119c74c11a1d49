"""Benchmark tasks files (the shape of ../shared/data/tasks.json) and their rows, checked.

`load_tasks(path)` validates the file (a missing or mistyped field is an error naming the task and the file);
`read_task_rows(task, data_dir)` reads one task's rows. Bad rows never become silent wrong numbers: a label that
is not in the task's set is an error naming file and line; a row whose text is not text (one Bengali row holds a
number) and repeated texts are skipped and counted.

Every task has a `format` (default binary, so the existing files read unchanged):
- binary: `label_field`, raw `positive_labels` / `negative_labels` mapped to "1" / "0"; the file's
  `prompt_template` is its template.
- true_false: a statement and its truth per row; `label_field` holds true/false (JSON booleans too, or the raw
  labels named by `positive_labels` / `negative_labels`, default ["true"] / ["false"]); "1" = true, "0" = false,
  the bench's positive class being "true".
- multiple_choice: the options per task (`options`: the label is one of them) or per row (`options_field`: a
  list; the row's text gets its options lettered "A) ... B) ...", the label is the letter of the correct one,
  named by text or letter in `label_field`); every row has the same number of options.
- free_text: the accepted answers per row (`answers_field`: a list or one string; `label_field` adds one).
`template` per task overrides the default (binary: the file's `prompt_template`; else the format's default,
config.DEFAULT_TEMPLATES).

Run: `python -m culturemanager.bench.tasks [TASKS.json]` prints each task's rows, labels and skips.
"""

from __future__ import annotations

import json
import string
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from culturemanager.config import ISO_639_1, Format
from culturemanager.records import json_objects, normalize_text
from culturemanager.text.formats import option_letter, valid_options, with_options


class BenchTask(BaseModel):
    model_config = ConfigDict(extra="ignore")  # tasks.json carries documentation fields (counts, hashes)

    id: str
    culture: str
    language: str | None = Field(None, pattern=ISO_639_1)
    task: str
    file: str
    text_field: str
    format: Format = "binary"
    label_field: str | None = None
    positive_labels: list[str] = []
    negative_labels: list[str] = []
    options: list[str] | None = None
    options_field: str | None = None
    answers_field: str | None = None
    template: str | None = None

    @model_validator(mode="after")
    def _per_format(self) -> BenchTask:
        if self.format == "true_false":
            self.positive_labels = self.positive_labels or ["true"]
            self.negative_labels = self.negative_labels or ["false"]
        if self.format in ("binary", "true_false", "multiple_choice") and not self.label_field:
            raise ValueError(f"a {self.format} task needs label_field")
        if self.format == "binary" and not (self.positive_labels and self.negative_labels):
            raise ValueError("a binary task needs positive_labels and negative_labels")
        if self.format == "multiple_choice" and (self.options is None) == (self.options_field is None):
            raise ValueError("a multiple_choice task needs either options (per task) or options_field (per row)")
        if self.options is not None and len(set(self.options)) < 2:
            raise ValueError(f"options must hold two or more distinct options, got {self.options}")
        if self.format == "free_text" and not (self.answers_field or self.label_field):
            raise ValueError("a free_text task needs answers_field (or label_field)")
        if self.template is not None and self.template.count("{input}") != 1:
            raise ValueError("template must contain {input} exactly once")
        return self


class TasksFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt_template: str
    tasks: list[BenchTask]


class TasksFileError(ValueError):
    """A problem in a tasks file or a task's data file; the message names the file (and line)."""


@dataclass
class TaskRows:
    texts: list[str]
    labels: list[str]  # binary, true_false: "1" positive, "0" negative; multiple_choice: the option (or letter);
    # free_text: the first accepted answer
    skipped: Counter = field(default_factory=Counter)  # reason -> rows
    answers: list[list[str]] = field(default_factory=list)  # free_text: the accepted answers of each row
    options: list[str] = field(default_factory=list)  # multiple_choice: the task's label set (options or letters)


def load_tasks(path: Path) -> TasksFile:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TasksFileError(f"tasks file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise TasksFileError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    try:
        tf = TasksFile.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = list(err["loc"])
        where = f"task {raw['tasks'][loc[1]].get('id', loc[1])!r}" if loc[:1] == ["tasks"] and len(loc) > 1 \
            and isinstance(raw.get("tasks"), list) and isinstance(raw["tasks"][loc[1]], dict) else "top level"
        raise TasksFileError(f"{path}: {where}: `{'.'.join(map(str, loc))}` {err['msg'].lower()}") from None
    ids = [t.id for t in tf.tasks]
    if len(set(ids)) != len(ids):
        raise TasksFileError(f"{path}: task ids are not unique: {ids}")
    if "{input}" not in tf.prompt_template:
        raise TasksFileError(f"{path}: prompt_template has no {{input}}")
    return tf


def read_task_rows(task: BenchTask, data_dir: Path) -> TaskRows:
    path = Path(data_dir) / task.file
    if not path.is_file():
        raise TasksFileError(f"task {task.id!r}: data file not found: {path}")
    rows = TaskRows([], [], options=list(task.options or []))
    seen: dict[str, str] = {}
    for where, obj in json_objects(path, TasksFileError):
        label, answers = row_label(task, obj, where, rows)
        text = obj.get(task.text_field)
        if not isinstance(text, str) or not text.strip():
            rows.skipped["not_text"] += 1
            continue
        text = text.strip()
        if task.options_field:
            text = with_options(text, obj[task.options_field])
        key = normalize_text(text)
        if key in seen:  # the first occurrence is kept; a repeat with the other label is counted apart
            rows.skipped["duplicate_text" if seen[key] == label else "duplicate_conflicting_label"] += 1
            continue
        seen[key] = label
        rows.texts.append(text)
        rows.labels.append(label)
        if task.format == "free_text":
            rows.answers.append(answers)
    return rows


def row_label(task: BenchTask, obj: dict, where: str, rows: TaskRows) -> tuple[str, list[str]]:
    """(label, accepted answers) of one row, in the bench's spelling (see the module docstring)."""
    if task.format == "free_text":
        answers = accepted_answers(task, obj, where)
        return answers[0], answers
    value = obj.get(task.label_field or "")
    raw = json.dumps(value) if isinstance(value, bool) and task.format != "binary" else str(value)
    if task.format in ("binary", "true_false"):
        pos, neg = set(task.positive_labels), set(task.negative_labels)
        if task.format == "true_false":  # "True", "TRUE" and JSON true are all true
            raw = raw.lower() if raw.lower() in {x.lower() for x in pos | neg} else raw
            pos, neg = {x.lower() for x in pos}, {x.lower() for x in neg}
        if raw not in pos | neg:
            raise TasksFileError(f"{where}: label {raw!r} is neither positive {sorted(pos)} nor negative "
                                 f"{sorted(neg)} for task {task.id!r}")
        return ("1" if raw in pos else "0"), []
    if task.options is not None:
        if raw not in task.options:
            raise TasksFileError(f"{where}: label {raw!r} is not one of the options {task.options} of task "
                                 f"{task.id!r}")
        return raw, []
    options = obj.get(task.options_field or "")
    if not valid_options(options):
        raise TasksFileError(f"{where}: field {task.options_field!r} is {options!r}, not a list of 2 to 26 "
                             f"distinct options")
    letters = list(string.ascii_uppercase[:len(options)])
    if not rows.options:
        rows.options = letters
    elif rows.options != letters:
        raise TasksFileError(f"{where}: {len(options)} options, the task's earlier rows have {len(rows.options)}")
    if (letter := option_letter(options, raw)) is not None:
        return letter, []
    raise TasksFileError(f"{where}: label {raw!r} is neither one of the row's options nor their letter")


def accepted_answers(task: BenchTask, obj: dict, where: str) -> list[str]:
    out: list[str] = []
    for name in (task.answers_field, task.label_field):
        if name is None:
            continue
        raw = obj.get(name)
        raw = [raw] if isinstance(raw, str) else raw
        if not isinstance(raw, list) or not raw or not all(isinstance(x, str) and x.strip() for x in raw):
            raise TasksFileError(f"{where}: field {name!r} is {raw!r}, not accepted answers (non-empty strings)")
        out += [x.strip() for x in raw if x.strip() not in out]
    return out


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/data/tasks.json")
    tf = load_tasks(path)
    for t in tf.tasks:
        r = read_task_rows(t, path.parent)
        print(f"{t.id:14s} {len(r.texts):5d} rows  {Counter(r.labels)}  skipped {dict(r.skipped)}")


if __name__ == "__main__":
    main()
