"""The config's content identity, pinned: a run's config.json (bytes and key order), its digest, the bench's
config and the run config the bench builds from it are byte-identical for the same TOML, whatever the config
classes look like inside. Finished work (stages, adapters, answer caches) is reused by hashes of this content,
so a refactor that reorders or renames keys would silently redo or mislabel finished work.

The pinned values were computed by the code before the bench's config took its tables from the run config
(issue 30.3); a change that alters them must be deliberate, and then the finished runs are stale. Re-pinned once
since, when `[synthesis.pseudo_label]` was added (issue 29): with that table removed from the JSON, every text
hashed as pinned before.

Run: .venv/bin/pytest tests/test_config_identity.py -q
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from culturemanager.config import Config, Task, dump_config, load_config
from culturemanager.pipeline import config_digest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# the top-level key order of config.json (a run) and of the bench's config, as they have always been
RUN_KEYS = ["run", "generator", "target", "cultures", "tasks", "queries", "search", "synthesis", "train", "router",
            "predict", "serve"]
BENCH_KEYS = ["bench", "generator", "target", "queries", "search", "synthesis", "train", "router"]

# sha256 of the JSON text below and the run's digest of it (examples folder written as <examples>, so that neither
# depends on where the checkout is; CULTUREMANAGER_DATA = /data)
RUN_FILES = {
    "demo.toml": ("4a09d470939cdbaa6b4c5eb1186ffd673170fea8832ebbb221882b0cc4615420", "a3876b3e2db12690"),
    "culturellm.toml": ("ea7a9bcaebc7f334082b791594111e045fbb9c32cabd625c26ebbffad993e4a4", "245919fd654e481e"),
    "factbook-run.toml": ("fadde697a43b53ad60e3c2e5434d914cf3e89f0ca9d1aee76663889f722c519d", "77328f765a481d52"),
}
BENCH_FILES = {
    ("bench.toml", False): (
        "99a592d43337fbd80b4b892c7bf19265335642a2ea782f3f7b21ec89a38f55f9",
        "c9723788e4df9856d667a9d2bd1e912fe871b1a2fd617f6e3f46ed9c52070b2d"),
    ("bench.toml", True): (
        "bb5f7852f46fb37ecf51b990ffce9ce5dc9d981aaebfa9b29bc3e45e9579fb71",
        "afcad72073bb1d19cd8eb6012e6b93d2224bc76d287d3caf2d0413875288c167"),
    ("paper.toml", False): (
        "917d0e748d70fb10b9f262aa44faced918e643966902bae3d237475a5d4b7dc7",
        "b4adfae1c05f50f96d84898bd11674654ae35469e9e423ae54354daaffb46d7a"),
    ("factbook.toml", False): (
        "17d3ca710ae3f4bf66c1ea0f828454f9b658adb5a89a3e6d3c7bd3a4a8ad48b9",
        "b771c75204ae4789efcad2a0f62936b83b44fbeea678489f307d3aa8756e2f5c"),
}
CONFIG_DOC = "f823b64753d945733563943484097a94c91ab7d293574c48b75f7d6db010a3ec"


def canonical(data: object) -> str:
    """The text as `write_json` writes config.json, with this checkout's examples folder made a placeholder."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
    return text.replace(str(EXAMPLES), "<examples>")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_json(name: str) -> dict:
    resolved = dump_config(load_config(EXAMPLES / name))
    resolved["run"]["dir"] = "."  # as pipeline.Run.stage writes it
    return resolved


def bench_pipeline(name: str, quick: bool) -> tuple[dict, dict]:
    """(the bench's config as JSON, the run config.json the bench writes for two tasks of two cultures)."""
    from culturemanager.bench.config import load_bench_config
    from culturemanager.bench.data import TaskData, pipeline_config
    from culturemanager.bench.tasks import BenchTask

    cfg = load_bench_config(EXAMPLES / name, quick=quick)
    tasks = []
    for tid, culture, lang in (("es-hate", "Spanish", "es"), ("tr-spam", "Turkish", "tr")):
        spec = BenchTask(id=tid, culture=culture, language=lang, task="hate speech", file=f"{tid}.jsonl",
                         text_field="text", label_field="label", positive_labels=["1"], negative_labels=["0"])
        tasks.append(TaskData(spec, Task(id=tid, label="hate speech", cultures=[culture])))
    run = dump_config(pipeline_config(cfg, tasks, Path("/bench/runs/pipeline")))
    return json.loads(cfg.model_dump_json()), run


@pytest.fixture(autouse=True)
def _data(monkeypatch):
    monkeypatch.setenv("CULTUREMANAGER_DATA", "/data")


@pytest.mark.parametrize("name", list(RUN_FILES))
def test_a_runs_config_json_and_its_digest_are_unchanged(name):
    resolved = run_json(name)
    assert list(resolved) == RUN_KEYS
    assert (sha(canonical(resolved)), config_digest(json.loads(canonical(resolved)))) == RUN_FILES[name]


@pytest.mark.parametrize("name,quick", list(BENCH_FILES))
def test_the_bench_config_and_the_run_config_it_builds_are_unchanged(name, quick):
    bench, run = bench_pipeline(name, quick)
    assert list(bench) == BENCH_KEYS and list(run) == RUN_KEYS
    assert (sha(canonical(bench)), sha(canonical(run))) == BENCH_FILES[(name, quick)]


def test_the_run_configs_reference_is_unchanged():
    """`config --explain`'s run part: the same fields in the same order with the same text."""
    from culturemanager.config.doc import field_lines

    assert sha("\n".join(field_lines(Config, "", None))) == CONFIG_DOC


if __name__ == "__main__":  # prints the values to pin (run on the code whose output is the reference)
    import os

    os.environ["CULTUREMANAGER_DATA"] = "/data"
    from culturemanager.config.doc import field_lines

    for name in RUN_FILES:
        r = run_json(name)
        print(f"    {name!r}: ({sha(canonical(r))!r}, {config_digest(json.loads(canonical(r)))!r}),")
    for name, quick in BENCH_FILES:
        b, r = bench_pipeline(name, quick)
        print(f"    ({name!r}, {quick}): ({sha(canonical(b))!r}, {sha(canonical(r))!r}),")
    print(f"CONFIG_DOC = {sha(chr(10).join(field_lines(Config, '', None)))!r}")
