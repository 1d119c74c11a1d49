"""End to end through the CLI: the exact run directory, a second run that calls and trains nothing, and a
run killed during synthesis that resumes without repeating finished calls or duplicating samples."""

from __future__ import annotations

import json

import pytest

from culturemanager import load_config
from culturemanager.backends.llm import FakeBackend
from culturemanager.cli import main
from culturemanager.pipeline import Run
from culturemanager.records import Sample, read_jsonl

ARTIFACTS = {
    "config.json", "versions.json", "manifest.json", "calls.jsonl", "cache/llm.jsonl",
    "index/meta.json", "index/documents.jsonl", "index/bm25/data.csc.index.npy",
    "index/bm25/indices.csc.index.npy", "index/bm25/indptr.csc.index.npy", "index/bm25/params.index.json",
    "index/bm25/vocab.index.json", "queries.jsonl", "materials.jsonl", "samples/Spanish.jsonl",
    "samples/Turkish.jsonl", "samples/dropped.jsonl", "router.json", "router.npz", "predictions.jsonl",
    "metrics.json", ".locks/manifest.lock", ".locks/adapter-Spanish.lock", ".locks/adapter-Turkish.lock",
    *(f"adapters/{c}/{f}" for c in ("Spanish", "Turkish")
      for f in ("adapter_config.json", "adapter_model.safetensors", "culturemanager.json", "README.md",
                "validation.jsonl")),
}


def files(root):
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_cli_run_writes_exactly_the_documented_run_directory_and_rerun_does_nothing(task_config, capsys):
    assert main(["run", str(task_config), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "run directory" in out and "kept" in out
    root = task_config.parent / "run"
    assert files(root) == ARTIFACTS
    manifest = json.loads((root / "manifest.json").read_text())
    assert list(manifest["stages"]) == ["queries", "search", "synthesize", "train", "route", "predict"]
    first_calls = [json.loads(x) for x in (root / "calls.jsonl").read_text().splitlines()]
    assert first_calls and all(c["outcome"] == "ok" for c in first_calls)
    stamp = (root / "adapters/Spanish/adapter_model.safetensors").stat().st_mtime_ns

    assert main(["run", str(task_config), "--no-progress"]) == 0
    calls = [json.loads(x) for x in (root / "calls.jsonl").read_text().splitlines()]
    again = calls[len(first_calls):]
    assert len(again) == len(first_calls) and all(c["outcome"] == "cached" for c in again)
    manifest = json.loads((root / "manifest.json").read_text())
    assert all(manifest["stages"][s]["counts"]["llm"]["calls"] == 0 for s in ("queries", "search", "synthesize"))
    assert manifest["stages"]["train"]["counts"]["reused"] == ["Spanish", "Turkish"]
    assert (root / "adapters/Spanish/adapter_model.safetensors").stat().st_mtime_ns == stamp
    assert files(root) == ARTIFACTS


def test_each_stage_runs_alone_from_disk(task_config, capsys):
    for stage in ("queries", "search", "synthesize"):
        assert main([stage, str(task_config), "--no-progress"]) == 0
    counts = json.loads(capsys.readouterr().out.split("\n}\n")[-2] + "\n}")
    assert counts["kept"] == 32


class DiesAfter(FakeBackend):
    """The fake LLM, killed (KeyboardInterrupt) when it is asked for its n-th answer."""

    def __init__(self, n):
        super().__init__()
        self.left = n

    def complete(self, requests):
        out = []
        for r in requests:
            if self.left == 0:
                raise KeyboardInterrupt
            self.left -= 1
            out += super().complete([r])
        return out


def test_killed_synthesis_resumes_without_repeating_calls_or_duplicating(task_config, tmp_path):
    cfg = load_config(task_config)
    run = Run(cfg, progress=False)
    run.stage("queries")
    run.stage("search")
    reference = Run(load_config(task_config, [f"run.dir={tmp_path / 'ref'}"]), progress=False)
    for s in ("queries", "search", "synthesize"):
        reference.stage(s)
    n_synth = reference.rd.read_manifest()["stages"]["synthesize"]["counts"]["llm"]["calls"]
    assert n_synth > 3

    run.llm.backend = DiesAfter(3)
    with pytest.raises(KeyboardInterrupt):
        run.stage("synthesize")
    assert not run.rd.samples("Spanish").exists()  # no half-written stage output

    resumed = Run(cfg, progress=False)
    counts = resumed.stage("synthesize")
    assert counts["llm"]["cached"] == 3 and counts["llm"]["calls"] == n_synth - 3
    for culture in ("Spanish", "Turkish"):
        got = read_jsonl(resumed.rd.samples(culture), Sample)
        want = read_jsonl(reference.rd.samples(culture), Sample)
        assert len({s.id for s in got}) == len(got)
        assert [(s.text, s.label) for s in got] == [(s.text, s.label) for s in want]


def test_bad_config_key_is_reported_with_file_and_key(task_config, capsys):
    task_config.write_text(task_config.read_text().replace("[train]\nepochs", "[train]\nepoch"))
    assert main(["run", str(task_config)]) == 2
    err = capsys.readouterr().err
    assert "train.epoch" in err and str(task_config) in err


def test_run_plan_prints_the_stages_and_runs_nothing(task_config, capsys):
    assert main(["run", str(task_config), "--plan"]) == 0
    out = capsys.readouterr().out
    for phase in ("| queries |", "| synthesize |", "| train |", "| predict |", "| total |"):
        assert phase in out
    assert "5 inputs" in out and not (task_config.parent / "run").exists()
