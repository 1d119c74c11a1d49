"""A run directory moves: copied to another folder (another machine) and the original deleted, the copy still
predicts, serves (real HTTP, the official openai client) and prints its `vllm serve` line, all from its own files."""

from __future__ import annotations

import json
import shutil

import pytest
from servers import CULTURES, openai_client, served_run, serving

from culturemanager.cli import main


@pytest.fixture(scope="module")
def moved(tmp_path_factory, tiny_model):
    """(config file, the copy) of a finished tiny run whose original run directory no longer exists."""
    original = served_run(tmp_path_factory.mktemp("original"), tiny_model)
    copy = tmp_path_factory.mktemp("elsewhere") / "run"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    return original.parent / "run.toml", copy


def test_the_run_directory_names_its_own_files_relative_to_itself(moved):
    _, copy = moved
    router = json.loads((copy / "router.json").read_text())
    assert router["adapters"] == {c: f"adapters/{c}" for c in CULTURES}
    assert router["model"] == "router.npz"
    assert json.loads((copy / "config.json").read_text())["run"]["dir"] == "."


def test_a_copied_run_predicts_from_its_own_files(moved, capsys):
    config, copy = moved
    assert main(["predict", str(config), "--set", f"run.dir={copy}", "--no-progress"]) == 0
    rows = [json.loads(x) for x in (copy / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and {r["culture"] for r in rows} <= {*CULTURES, "Others"}
    assert not (config.parent / "run").exists()


def test_a_copied_run_serves_with_the_openai_client(moved):
    _, copy = moved
    with serving(copy) as s:
        client = openai_client(s.url)
        assert {m.id for m in client.models.list().data} >= {"auto", *CULTURES}
        for model in ("auto", *CULTURES):
            out = client.completions.create(model=model, prompt="Me encanta la paella", max_tokens=2)
            assert out.choices[0].text is not None
        assert all(str(copy) in p for p in s.svc.cultures.values())


def test_a_copied_run_prints_its_vllm_command(moved, capsys, monkeypatch):
    _, copy = moved
    monkeypatch.chdir(copy.parent)
    assert main(["serve", str(copy), "--print-vllm-command"]) == 0
    line = capsys.readouterr().out
    assert all(f"{c}=run/adapters/{c}" in line for c in CULTURES), line


def test_a_router_written_with_absolute_paths_still_reads(moved, tmp_path):
    """router.json from before paths were relative: absolute paths are read while they exist; once the run they
    name is gone, this run's own files stand in."""
    from culturemanager.rundir import RunDir
    from culturemanager.stages.route import read_router

    _, copy = moved
    old = tmp_path / "run"
    shutil.copytree(copy, old)
    data = json.loads((old / "router.json").read_text())
    data.update(adapters={c: str(copy / f"adapters/{c}") for c in CULTURES}, model=str(copy / "router.npz"))
    (old / "router.json").write_text(json.dumps(data))
    assert read_router(RunDir(old)).adapters == data["adapters"]  # still there: read where they are
    data.update(adapters={c: f"/gone/run/adapters/{c}" for c in CULTURES}, model="/gone/run/router.npz")
    (old / "router.json").write_text(json.dumps(data))
    router = read_router(RunDir(old))
    assert router.adapters == {c: str(old / f"adapters/{c}") for c in CULTURES}
    assert router.model == str(old / "router.npz")
