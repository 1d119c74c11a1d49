"""The config's content identity, pinned: a run's config.json (bytes and key order), its digest, the bench's
config and the run config the bench builds from it are byte-identical for the same TOML, whatever the config
classes look like inside. Finished work (stages, adapters, answer caches) is reused by hashes of this content,
so a refactor that reorders or renames keys would silently redo or mislabel finished work.

The pinned values were computed by the code before the bench's config took its tables from the run config
(issue 30.3); a change that alters them must be deliberate, and then the finished runs are stale.

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
    "demo.toml": ("dbdce38b4cf9da54ca7fc1d9212a4b4a302766842bff4055687b0b023b53960b", "1ff0bcc5c258f9d9"),
    "culturellm.toml": ("6094e855f517e1e5bdd86ae7e2f134afeeee2a0804f859323e8a8140b13f71e9", "7a061502e6179095"),
    "factbook-run.toml": ("3339162981b10e594023f7b77da53cb8833e6b456503bba39a4f1c78ce165b9f", "c7914c79045036f9"),
}
BENCH_FILES = {
    ("bench.toml", False): (
        "256257b660a34c8337adbff03123aa99c3aefe7df16fad59d28599903d7b2cea",
        "c23b494f3ea113c03d0c6169ba2977381cd1f4bc021d8309da75bf3ff808fe49"),
    ("bench.toml", True): (
        "3ffcb887fe06bd8801272f6ad0da1c9a1801f97809e37dbea633d2e16ad46805",
        "4998fe97edb3f2fc98b4bf45bc5c8076c7ff4494747168deec5b6d83384b02d9"),
    ("paper.toml", False): (
        "9e9d28c3db98f2c3bbb6da6cff5d923dc19aa721b5fec05557520fa65b485b51",
        "8e19ae4da88ceb1d5bee8f6f81d222ff94acbc70fe60bf4a8d4e5d2fe6c3cea8"),
    ("factbook.toml", False): (
        "5f0589eab6370e32c8e6e02bafe108e73712dd8337c454b0687422ffc2537f82",
        "0a9903ab66a4ad91a776c869afe0b6697ac6c8f5925884b71a85312fa44c806e"),
}
CONFIG_DOC = "109f81beb4afdd46bd3ac94383e4251b50b08624d6065ad2c6171c88fbd01ba7"


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
