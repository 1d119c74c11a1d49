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


# ------------------------------------------------------------------------------------------ every format

def test_a_binary_task_without_format_reads_as_before(tmp_path):
    tf = load_tasks(write(tmp_path, [TASK], [{"t": "hola", "l": "HS"}]))
    assert tf.tasks[0].format == "binary" and tf.tasks[0].template is None


def test_true_false_rows_take_strings_any_case_and_json_booleans(tmp_path):
    task = {**TASK, "format": "true_false", "positive_labels": [], "negative_labels": []}
    rows = [{"t": "Madrid is the capital of Spain.", "l": "true"}, {"t": "Cairo is the capital of Spain.", "l": False},
            {"t": "Ankara is the capital of Turkey.", "l": "TRUE"}]
    spec = load_tasks(write(tmp_path, [task], rows)).tasks[0]
    assert read_task_rows(spec, tmp_path).labels == ["1", "0", "1"]
    write(tmp_path, [task], rows + [{"t": "Maybe.", "l": "perhaps"}])
    with pytest.raises(TasksFileError, match=r"x.jsonl:4: label 'perhaps' is neither positive \['true'\]"):
        read_task_rows(spec, tmp_path)


def test_multiple_choice_options_per_task(tmp_path):
    task = {**TASK, "format": "multiple_choice", "options": ["Madrid", "Paris", "Rome"]}
    spec = load_tasks(write(tmp_path, [task], [{"t": "Capital of Spain?", "l": "Madrid"}])).tasks[0]
    r = read_task_rows(spec, tmp_path)
    assert r.labels == ["Madrid"] and r.options == ["Madrid", "Paris", "Rome"]
    write(tmp_path, [task], [{"t": "Capital of Spain?", "l": "Lisbon"}])
    with pytest.raises(TasksFileError, match=r"x.jsonl:1: label 'Lisbon' is not one of the options"):
        read_task_rows(spec, tmp_path)


def test_multiple_choice_options_per_row_are_lettered(tmp_path):
    task = {**TASK, "format": "multiple_choice", "options_field": "o"}
    rows = [{"t": "Capital of Spain?", "o": ["Paris", "Madrid", "Rome", "Cairo"], "l": "Madrid"},
            {"t": "Capital of Turkey?", "o": ["Ankara", "Rome", "Dhaka", "Cairo"], "l": "a"}]
    spec = load_tasks(write(tmp_path, [task], rows)).tasks[0]
    r = read_task_rows(spec, tmp_path)
    assert r.texts[0] == "Capital of Spain? A) Paris B) Madrid C) Rome D) Cairo"
    assert r.labels == ["B", "A"] and r.options == ["A", "B", "C", "D"]
    for bad, msg in [({"o": ["Paris", "Rome"]}, "2 options, the task's earlier rows have 4"),
                     ({"o": ["x", "x", "y", "z"]}, "not a list of 2 to 26 distinct options"),
                     ({"l": "Lisbon"}, "neither one of the row's options nor their letter")]:
        write(tmp_path, [task], rows + [{**rows[0], "t": "Another?", **bad}])
        with pytest.raises(TasksFileError, match=rf"x.jsonl:3: .*{msg}"):
            read_task_rows(spec, tmp_path)


def test_multiple_choice_needs_options_one_way(tmp_path):
    for task in [{**TASK, "format": "multiple_choice"},
                 {**TASK, "format": "multiple_choice", "options": ["a", "b"], "options_field": "o"}]:
        with pytest.raises(TasksFileError, match="either options .* or options_field"):
            load_tasks(write(tmp_path, [task]))


def test_free_text_rows_carry_their_accepted_answers(tmp_path):
    task = {**TASK, "format": "free_text", "answers_field": "a", "label_field": None,
            "template": "Q: {input}\nA: "}
    rows = [{"t": "¿Qué se come en Nochevieja?", "a": ["doce uvas", "uvas"]}, {"t": "首都?", "a": "北京"}]
    spec = load_tasks(write(tmp_path, [task], rows)).tasks[0]
    r = read_task_rows(spec, tmp_path)
    assert r.answers == [["doce uvas", "uvas"], ["北京"]] and r.labels == ["doce uvas", "北京"]
    assert spec.template == "Q: {input}\nA: "
    write(tmp_path, [task], rows + [{"t": "vacío", "a": []}])
    with pytest.raises(TasksFileError, match=r"x.jsonl:3: field 'a' is \[\], not accepted answers"):
        read_task_rows(spec, tmp_path)


def test_the_pipeline_task_follows_the_bench_tasks_format(tmp_path):
    from culturemanager.bench.data import TaskData, pipeline_task

    tf_task = {**TASK, "format": "true_false", "positive_labels": [], "negative_labels": []}
    mc_task = {**TASK, "id": "mc", "format": "multiple_choice", "options_field": "o"}
    tf = load_tasks(write(tmp_path, [tf_task, mc_task], [{"t": "x?", "l": "true", "o": ["true", "b", "c"]}]))
    t = pipeline_task(tf.tasks[0], tf.prompt_template, read_task_rows(tf.tasks[0], tmp_path))
    assert t.format == "true_false" and t.labels == ["true", "false"] and t.positive_label == "true"
    assert "true or false" in t.template  # the format's default, not the file's binary template
    td = TaskData(tf.tasks[0], t)
    assert [td.task_label(y) for y in ("1", "0")] == ["true", "false"]  # TaskSFT trains on the task's labels
    mc = pipeline_task(tf.tasks[1], tf.prompt_template, read_task_rows(tf.tasks[1], tmp_path))
    assert mc.labels == ["A", "B", "C"] and mc.format == "multiple_choice"
    binary = pipeline_task(load_tasks(write(tmp_path, [TASK])).tasks[0], "{task}: {input}", None)
    assert binary.template == "{task}: {input}" and binary.labels == ["0", "1"]


def test_the_factbook_tasks_file_reads(tmp_path):
    from test_factbook_tasks import FOLDERS, profile

    from culturemanager.bench.factbook_tasks import build

    for code, folder in FOLDERS.items():
        (tmp_path / "fb" / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / "fb" / folder / f"{code}.json").write_text(json.dumps(profile(code)), encoding="utf-8")
    build(tmp_path / "fb", tmp_path / "out")
    tf = load_tasks(tmp_path / "out" / "tasks.json")
    for spec in tf.tasks:
        r = read_task_rows(spec, tmp_path / "out")
        assert r.texts and not r.skipped
        if spec.format == "true_false":
            assert r.labels.count("1") == r.labels.count("0")
        elif spec.format == "free_text":
            assert all(a for a in r.answers) and len(r.answers) == len(r.texts)
        else:
            assert r.options == ["A", "B", "C", "D"] and set(r.labels) <= set("ABCD")
