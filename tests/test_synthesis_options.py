"""The throughput options of synthesis: `samples_per_call` (a label's samples in several calls that share the
whole prompt) and `output = "compact"` ({"text"} objects only); the default path's requests stay as they were.

Run: .venv/bin/pytest tests/test_synthesis_options.py -q
"""

from __future__ import annotations

import json

import pytest

from culturemanager.backends.llamaserver import sibling_groups
from culturemanager.config import ConfigError, Culture, SynthesisConfig, Task, load_config
from culturemanager.records import Material, stable_seed
from culturemanager.stages.synthesize import job_labels, label_counts, synthesis_request
from culturemanager.text.prompts import (
    COMPACT_ANSWER,
    JSON_ANSWER,
    build_synthesis_compact_messages,
    build_synthesis_messages,
    parse_samples,
)

HATE = Task(id="hate", label="hate speech")
SPANISH = Culture(name="Spanish", language="es")
MATERIAL = Material(id="m1", culture="Spanish", task="hate", mode="task_specific", query_id="q1", query="q",
                    text="In Spain, 'moro' is used as a slur for Moroccans. " * 20, documents=[], summarized=False)


def cfg_with(task_config, *overrides):
    return load_config(task_config, list(overrides))


def test_default_requests_are_unchanged(task_config):
    cfg = cfg_with(task_config, "synthesis.samples_per_material=6")
    assert job_labels(cfg, cfg.task("hate")) == [("0", 0), ("1", 0)]
    r = synthesis_request(cfg, MATERIAL, 0, 0, ["demo"], {c.name: c for c in cfg.cultures}, "1")
    assert r.seed == stable_seed(cfg.run.seed, "synth", "m1", "1", 0)  # the seed (and cache key) of before
    assert r.messages == build_synthesis_messages(SPANISH.model_copy(update={"country": "es"}), cfg.task("hate"),
                                                  MATERIAL.text, ["demo"], ["1"] * 3, cfg.synthesis)


def test_samples_per_call_splits_a_label_into_calls_that_share_the_prompt(task_config):
    cfg = cfg_with(task_config, "synthesis.samples_per_material=20", "synthesis.samples_per_call=4")
    task = cfg.task("hate")
    assert label_counts(cfg, task) == [4, 4, 2]  # 10 per label
    jobs = job_labels(cfg, task)
    assert jobs == [("0", 0), ("0", 1), ("0", 2), ("1", 0), ("1", 1), ("1", 2)]
    cultures = {c.name: c for c in cfg.cultures}
    reqs = [synthesis_request(cfg, MATERIAL, 0, 0, ["demo"], cultures, lab, part) for lab, part in jobs]
    assert len({r.seed for r in reqs}) == 6  # distinct calls, distinct cache keys
    assert reqs[0].messages == reqs[1].messages  # the parts of a label differ only in the seed
    assert "Write 2 new" in reqs[2].messages[-1][1] and "Write 4 new" in reqs[0].messages[-1][1]
    assert sibling_groups(reqs) == [[0, 1, 2, 3, 4, 5]]  # one material: one slot of a llama-server


def test_compact_prompt_and_answers(task_config):
    cfg = cfg_with(task_config, "synthesis.output=compact")
    messages = build_synthesis_compact_messages(SPANISH, HATE, MATERIAL.text, ["demo"], "1", 3, cfg.synthesis)
    user = messages[-1][1]
    assert user.endswith(COMPACT_ANSWER) and JSON_ANSWER not in user
    assert "All 3 must have the label \"1\"" in user
    assert '"label"' not in messages[2][1]  # the example answer shows the shape asked for
    default = build_synthesis_messages(SPANISH, HATE, MATERIAL.text, ["demo"], ["1"] * 3, cfg.synthesis)[-1][1]
    assert user[:-len(COMPACT_ANSWER)] == default[:-len(JSON_ANSWER)]  # the same request otherwise
    answer = '{"text": "Los moros fuera de aquí"}\n{"text": "Vete a tu país, sudaca", "label": "0"}'
    got = parse_samples(answer, HATE, cfg.synthesis, "1")
    assert got.items == [("Los moros fuera de aquí", "1"), ("Vete a tu país, sudaca", "0")]


def test_compact_is_used_by_the_stage_for_per_label_calls(task_config):
    cfg = cfg_with(task_config, "synthesis.output=compact")
    r = synthesis_request(cfg, MATERIAL, 0, 0, [], {c.name: c for c in cfg.cultures}, "0")
    assert r.messages[-1][1].endswith(COMPACT_ANSWER)


def test_compact_needs_per_label(task_config):
    with pytest.raises(ConfigError, match="per_label"):
        cfg_with(task_config, "synthesis.output=compact", "synthesis.label_mode=round_robin")
    assert SynthesisConfig(output="compact").label_mode == "per_label"


def test_the_stage_with_both_options_keeps_provenance(task_config):
    from culturemanager.pipeline import run

    cfg = cfg_with(task_config, "synthesis.output=compact", "synthesis.samples_per_material=8",
                   "synthesis.samples_per_call=2", "queries.per_mode=1", "queries.modes=['task_agnostic']")
    counts = run(cfg, ["queries", "search", "synthesize"], progress=False)
    assert counts["synthesize"]["llm"]["calls"] == 2 * 2 * 2  # two materials x two labels x two calls
    kept = [json.loads(line) for line in (cfg.run.dir / "samples" / "Spanish.jsonl").read_text().splitlines()]
    assert kept and all(s["provenance"]["material_id"] and s["label"] in ("0", "1") for s in kept)


def test_the_demo_config_serves_its_generator_with_llama_server():
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[1] / "examples" / "demo.toml")
    assert cfg.generator.backend == "llama_server" and cfg.generator.concurrency == 4
