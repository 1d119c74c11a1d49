"""Benchmark tasks files (the shape of ../shared/data/tasks.json) and their rows, checked.

`load_tasks(path)` validates the file (a missing or mistyped field is an error naming the task and the file);
`read_task_rows(task, data_dir)` reads one task's labelled rows and maps raw labels to "1"/"0". Bad rows never
become silent wrong numbers: a raw label that is neither positive nor negative is an error naming file and line;
a row whose text is not text (one Bengali row holds a number) and repeated texts are skipped and counted.

Run: `python -m culturemanager.bench.tasks [TASKS.json]` prints each task's rows, labels and skips.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from culturemanager.records import normalize_text


class BenchTask(BaseModel):
    model_config = ConfigDict(extra="ignore")  # tasks.json carries documentation fields (counts, hashes)

    id: str
    culture: str
    language: str | None = None
    task: str
    file: str
    text_field: str
    label_field: str
    positive_labels: list[str]
    negative_labels: list[str]


class TasksFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt_template: str
    tasks: list[BenchTask]


class TasksFileError(ValueError):
    """A problem in a tasks file or a task's data file; the message names the file (and line)."""


@dataclass
class TaskRows:
    texts: list[str]
    labels: list[str]  # "1" positive, "0" negative
    skipped: Counter = field(default_factory=Counter)  # reason -> rows


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
    pos, neg = set(task.positive_labels), set(task.negative_labels)
    rows = TaskRows([], [])
    seen: dict[str, str] = {}
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise TasksFileError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            raw = str(obj.get(task.label_field))
            if raw not in pos | neg:
                raise TasksFileError(f"{path}:{lineno}: label {raw!r} is neither positive {sorted(pos)} nor "
                                     f"negative {sorted(neg)} for task {task.id!r}")
            text = obj.get(task.text_field)
            if not isinstance(text, str) or not text.strip():
                rows.skipped["not_text"] += 1
                continue
            key, label = normalize_text(text), "1" if raw in pos else "0"
            if key in seen:  # the first occurrence is kept; a repeat with the other label is counted apart
                rows.skipped["duplicate_text" if seen[key] == label else "duplicate_conflicting_label"] += 1
                continue
            seen[key] = label
            rows.texts.append(text.strip())
            rows.labels.append(label)
    return rows


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/data/tasks.json")
    tf = load_tasks(path)
    for t in tf.tasks:
        r = read_task_rows(t, path.parent)
        print(f"{t.id:14s} {len(r.texts):5d} rows  {Counter(r.labels)}  skipped {dict(r.skipped)}")


if __name__ == "__main__":
    main()
