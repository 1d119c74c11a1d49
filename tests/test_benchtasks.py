"""Benchmark tasks files: validation errors name the file, bad rows are errors or counted skips."""

from __future__ import annotations

import json

import pytest
from conftest import DATA

from culturemanager.bench.tasks import TasksFileError, load_tasks, read_task_rows

TASK = {"id": "xx-hate", "culture": "X", "task": "hate speech", "file": "x.jsonl", "text_field": "t",
        "label_field": "l", "positive_labels": ["HS"], "negative_labels": ["NOT"]}


def write(tmp_path, tasks, rows=None):
    (tmp_path / "tasks.json").write_text(json.dumps({"prompt_template": "{task}: {input}", "tasks": tasks}))
    if rows is not None:
        (tmp_path / "x.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return tmp_path / "tasks.json"


def test_missing_field_names_the_task_and_the_file(tmp_path):
    broken = {k: v for k, v in TASK.items() if k != "text_field"}
    path = write(tmp_path, [broken])
    with pytest.raises(TasksFileError, match=r"tasks.json: task 'xx-hate': `tasks.0.text_field` field required"):
        load_tasks(path)


def test_rows_labels_skips_and_unknown_labels(tmp_path):
    rows = [{"t": "hola", "l": "HS"}, {"t": "adiós", "l": "NOT"}, {"t": 123, "l": "NOT"},
            {"t": "Hola!", "l": "HS"}, {"t": "hola", "l": "NOT"}]
    tf = load_tasks(write(tmp_path, [TASK], rows))
    r = read_task_rows(tf.tasks[0], tmp_path)
    assert r.texts == ["hola", "adiós"] and r.labels == ["1", "0"]
    assert r.skipped == {"not_text": 1, "duplicate_text": 1, "duplicate_conflicting_label": 1}
    write(tmp_path, [TASK], rows + [{"t": "otra", "l": "MAYBE"}])
    with pytest.raises(TasksFileError, match=r"x.jsonl:6: label 'MAYBE' is neither positive"):
        read_task_rows(tf.tasks[0], tmp_path)


@pytest.mark.skipif(not (DATA / "tasks.json").exists(), reason="shared data not present")
def test_the_real_tasks_file_loads_and_every_task_reads():
    tf = load_tasks(DATA / "tasks.json")
    assert len(tf.tasks) == 10
    bn = read_task_rows(next(t for t in tf.tasks if t.id == "bn-racism"), DATA)
    assert bn.skipped["not_text"] == 1 and set(bn.labels) == {"0", "1"}
