"""Fail before spending: a bad row in any file a run reads stops `culturemanager run` before its first LLM call
(the fake generator is asked nothing, nothing is trained), `run --check` reports the same in seconds, and
`predict.on_unscorable = "skip"` scores the rows that have gold and counts the others.

Run: .venv/bin/python -m pytest tests/test_preflight.py -q
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import random_adapters, write_task

from culturemanager import load_config
from culturemanager.backends import llm
from culturemanager.cli import main
from culturemanager.errors import EXIT_INPUT

HATE = 'inputs = [{path = "inputs.jsonl", label_field = "label"}]'


def jsonl(path: Path, rows: list) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")


def with_task(cfg: Path, task: str, inputs: str) -> None:
    """A second task appended to the run, and predict.inputs replaced (each file naming its task)."""
    text = cfg.read_text(encoding="utf-8").replace(HATE, inputs)
    cfg.write_text(text + "\n" + task, encoding="utf-8")


def bad_demonstration(root: Path, cfg: Path) -> str:
    jsonl(root / "demos_es.jsonl", [{"text": "Los andaluces no trabajan nunca"}, {"text": 5}])
    return "demos_es.jsonl:2: field 'text' is a int, not text"


def bad_evaluation(root: Path, cfg: Path) -> str:
    jsonl(root / "eval.jsonl", [{"text": "uno"}, {"text": "dos"}, '{"text": "tres"'])
    cfg.write_text(cfg.read_text().replace('evaluation = [{path = "inputs.jsonl"}]', 'evaluation = ["eval.jsonl"]'))
    return "eval.jsonl:3: not valid JSON"


def missing_label(root: Path, cfg: Path) -> str:
    with open(root / "inputs.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"text": "Sin etiqueta", "label": None}) + "\n")
    return "inputs.jsonl:6: no label in field 'label'"


def label_outside_the_set(root: Path, cfg: Path) -> str:
    with open(root / "inputs.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"text": "Etiqueta rara", "label": "HS"}) + "\n")
    return "inputs.jsonl:6: gold label 'HS' is not in task 'hate' labels"


def empty_answers(root: Path, cfg: Path) -> str:
    jsonl(root / "qa.jsonl", [{"text": "¿Qué se come en Nochevieja?", "answers": ["uvas"]},
                              {"text": "¿Qué se come en Navidad?", "answers": []}])
    with_task(cfg, '[[tasks]]\nid = "qa"\nlabel = "everyday life"\nformat = "free_text"\n',
              'inputs = [{path = "inputs.jsonl", label_field = "label", task = "hate"}, '
              '{path = "qa.jsonl", answers_field = "answers", task = "qa"}]')
    return "qa.jsonl:2: answers field 'answers' is [], no accepted answer"


def bad_options(root: Path, cfg: Path) -> str:
    jsonl(root / "mc.jsonl", [{"q": "¿Capital?", "opts": ["Madrid", "Roma", "Lima"], "ans": "Madrid"},
                              {"q": "¿Río?", "opts": "Ebro, Tajo", "ans": "Ebro"}])
    with_task(cfg, '[[tasks]]\nid = "mc"\nlabel = "geography"\nformat = "multiple_choice"\nlabels = ["A", "B", "C"]\n',
              'inputs = [{path = "mc.jsonl", text_field = "q", label_field = "ans", options_field = "opts", '
              'task = "mc"}]')
    return "mc.jsonl:2: options field 'opts' is 'Ebro, Tajo', not a list of 2 to 26"


def unknown_culture(root: Path, cfg: Path) -> str:
    jsonl(root / "inputs.jsonl", [{"text": "Me encanta la paella", "label": "0", "c": "Spanish"},
                                  {"text": "Çay ister misin?", "label": "0", "c": "Turksh"}])
    cfg.write_text(cfg.read_text().replace(HATE, 'inputs = [{path = "inputs.jsonl", label_field = "label", '
                                                 'culture_field = "c"}]'))
    return "inputs.jsonl:2: culture 'Turksh' is not a culture of the run"


BAD_FILES = [bad_demonstration, bad_evaluation, missing_label, label_outside_the_set, empty_answers, bad_options,
             unknown_culture]


@pytest.fixture
def llm_calls(monkeypatch) -> list:
    """Every request the fake generator is asked, recorded (it still answers as always)."""
    asked: list = []
    complete = llm.FakeBackend.complete

    def recording(self, requests):
        asked.extend(requests)
        return complete(self, requests)

    monkeypatch.setattr(llm.FakeBackend, "complete", recording)
    return asked


@pytest.mark.parametrize("spoil", BAD_FILES, ids=[f.__name__ for f in BAD_FILES])
def test_a_bad_row_in_any_input_file_stops_the_run_before_any_llm_call(tmp_path, tiny_model, capsys, llm_calls,
                                                                         spoil):
    cfg = write_task(tmp_path, tiny_model)
    message = spoil(tmp_path, cfg)
    t0 = time.monotonic()
    assert main(["run", str(cfg), "--check"]) == EXIT_INPUT
    assert time.monotonic() - t0 < 30  # seconds, not the minutes of the stages before predict
    check_err = capsys.readouterr().err
    assert message in check_err and "Traceback" not in check_err

    assert main(["run", str(cfg), "--no-progress"]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert message in err and f"{tmp_path}" in err
    assert llm_calls == []  # no generator call, and nothing trained: the run directory was never made
    assert not (tmp_path / "run").exists()


def test_check_on_a_sound_config_reads_every_file_and_runs_nothing(task_config, capsys, llm_calls):
    assert main(["run", str(task_config), "--check"]) == 0
    out = capsys.readouterr().out
    # 3 + 3 demonstrations, the 5 evaluation inputs, the 5 prediction inputs
    assert "check ok" in out and "6 demonstrations" in out and "5 evaluation inputs" in out
    assert "5 prediction inputs" in out
    assert llm_calls == [] and not (task_config.parent / "run").exists()


def test_predict_alone_checks_its_input_file_before_loading_any_model(task_config, capsys):
    bad = task_config.parent / "other.jsonl"
    jsonl(bad, [{"text": "hola", "label": "1"}, {"text": "adiós", "label": ""}])
    assert main(["predict", str(task_config), "--input", str(bad), "--label-field", "label", "--no-progress"]) \
        == EXIT_INPUT
    err = capsys.readouterr().err
    assert f"{bad}:2: no label in field 'label'" in err and 'predict.on_unscorable = "skip"' in err


def test_the_skip_setting_scores_the_rows_with_gold_and_counts_the_others(task_config, tmp_path, capsys, llm_calls):
    from culturemanager.pipeline import Run
    from culturemanager.records import Prediction, read_jsonl

    jsonl(tmp_path / "qa.jsonl", [
        {"text": "¿Qué se come en Nochevieja?", "answers": ["doce uvas", "uvas"], "culture": "Spanish"},
        {"text": "¿Qué se come en Navidad?", "answers": [], "culture": "Spanish"},
        {"text": "Bayramda ne yenir?", "answers": ["baklava"], "culture": "Turkish"},
        {"text": "Düğünde ne giyilir?", "culture": "Turkish"}])
    overrides = ['tasks.0.format="free_text"', "predict.max_new_tokens=4", "router.enabled=false",
                 'predict.inputs=[{path="qa.jsonl", answers_field="answers", culture_field="culture"}]']
    cfg = load_config(task_config, overrides)
    run = Run(cfg, progress=False)
    random_adapters(cfg, run.rd)
    run.stage("route")
    assert main(["run", str(task_config), "--check", *(x for o in overrides for x in ("--set", o))]) == EXIT_INPUT
    assert f"{tmp_path / 'qa.jsonl'}:2: answers field 'answers' is []" in capsys.readouterr().err

    skip = [*(x for o in overrides for x in ("--set", o)), "--set", 'predict.on_unscorable="skip"']
    assert main(["run", str(task_config), "--check", *skip]) == 0
    assert "2 prediction inputs, 2 prediction inputs skipped as unscorable" in capsys.readouterr().out
    assert main(["predict", str(task_config), *skip, "--no-progress"]) == 0
    metrics = json.loads(run.rd.metrics.read_text(encoding="utf-8"))
    preds = read_jsonl(run.rd.predictions, Prediction)
    assert [p.answers for p in preds] == [["doce uvas", "uvas"], ["baklava"]]
    assert metrics["inputs"] == 2 and metrics["tasks"]["hate"]["scores"]["n"] == 2
    assert metrics["counts"]["skipped_unscorable"] == 2
    assert metrics["skipped_unscorable"] == [f"{tmp_path / 'qa.jsonl'}:2: answers field 'answers' is [], no "
                                             f"accepted answer",
                                             f"{tmp_path / 'qa.jsonl'}:4: answers field 'answers' is None, no "
                                             f"accepted answer"]
    assert llm_calls == []


@pytest.mark.parametrize("overrides, message", [
    (['tasks.0.labels=["1"]'], "a binary task needs exactly two labels"),
    (['tasks.0.labels=["", ""]'], "hold a blank label"),
    (['tasks.0.labels=["1", "1"]'], "are not distinct"),
    (['tasks.0.labels=["0", "1", "2"]'], "a binary task needs exactly two labels"),
    (['tasks.0.labels=["yes", "no"]', 'tasks.0.positive_label="1"'], "positive_label '1' is not in labels"),
    (['tasks.0.format="multiple_choice"', 'tasks.0.labels=["A"]'], "a multiple_choice task needs 2 to 26 labels"),
], ids=["one_label", "blank_labels", "repeated_label", "three_binary_labels", "positive_not_a_label",
        "one_option"])
def test_a_bad_label_set_is_a_config_error_at_load(tmp_path, tiny_model, capsys, llm_calls, overrides, message):
    cfg = write_task(tmp_path, tiny_model)
    assert main(["run", str(cfg), *(x for o in overrides for x in ("--set", o)), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "`tasks.0`" in err and message in err and str(cfg) in err
    assert llm_calls == [] and not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------- the bench

def spoil_survey_file(data: Path) -> str:
    path = data / "culturellm" / "Turkey" / "Finetune" / "WVQ_Turkey_1000.jsonl"
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"messages": [{"role": "user", "content": "question?"}]}) + "\n")
    return "WVQ_Turkey_1000.jsonl:7: not a chat example with user and assistant messages"


def spoil_task_file(data: Path) -> str:
    with open(data / "tr" / "abusive.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"tweet": "etiketsiz", "label": "MAYBE"}) + "\n")
    return "abusive.jsonl:19: label 'MAYBE' is neither positive"


@pytest.mark.parametrize("spoil", [spoil_survey_file, spoil_task_file])
def test_a_bad_row_in_a_bench_file_stops_the_bench_before_any_llm_call(tmp_path, tiny_model, capsys, llm_calls,
                                                                       spoil):
    from test_bench import write_bench

    cfg = write_bench(tmp_path, tiny_model)
    assert main(["bench", str(cfg), "--check"]) == 0
    assert "check ok: read 2 tasks" in capsys.readouterr().out and not (tmp_path / "out").exists()
    message = spoil(tmp_path / "data")
    assert main(["bench", str(cfg), "--check"]) == EXIT_INPUT
    assert message in capsys.readouterr().err
    assert main(["bench", str(cfg), "--no-progress"]) == EXIT_INPUT
    assert message in capsys.readouterr().err
    assert llm_calls == [] and not (tmp_path / "out" / "pipeline").exists()
