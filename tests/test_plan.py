"""The plan's arithmetic against the code it predicts: the trainer's steps and validation passes, an adapter's
seconds, and the prompt router's forward passes."""

from __future__ import annotations

import pytest
from conftest import DATA, REPO

from culturemanager.backends.schedule import plan_batches, split_validation
from culturemanager.config import TrainConfig
from culturemanager.plan import (
    KNOWN_SHAPES,
    REFERENCE,
    Rates,
    adapter_seconds,
    plan_rates,
    planned_steps,
    validation_passes,
    validation_size,
)


def labelled(pos: int, neg: int) -> list:
    return [([2, 10 + i, 3], [-100, -100, 41]) for i in range(pos)] + \
           [([2, 90 + i, 3], [-100, -100, 40]) for i in range(neg)]


@pytest.mark.parametrize("n_pos,n_neg,max_examples", [(20, 80, 320), (20, 80, 336), (7, 93, 160), (30, 30, None)])
def test_validation_passes_are_the_sequences_the_trainer_validates(n_pos, n_neg, max_examples):
    ex = labelled(n_pos, n_neg)
    t = TrainConfig(epochs=8, batch_size=8, max_examples=max_examples, validation=0.15, eval_every=5)
    train, val = split_validation(ex, t.validation, 0)
    steps = len(plan_batches([ex[i] for i in train], t, 0))
    assert planned_steps(len(train), t.epochs, t.batch_size, t.max_examples, t.max_steps) == steps
    # fit_adapter validates every `eval_every` steps and after the last step
    evaluations = sum(1 for s in range(1, steps + 1) if s % t.eval_every == 0 or s == steps)
    assert validation_passes(len(val), steps, t.eval_every) == len(val) * evaluations
    # the estimate for examples not written yet (synthetic samples) is off by at most the per-label rounding
    assert abs(validation_size(len(ex), t.validation) - len(val)) <= 1


def test_no_validation_below_ten_examples_or_without_a_share():
    assert validation_size(9, 0.15) == 0 and split_validation(labelled(3, 6), 0.15, 0)[1] == []
    assert validation_size(100, 0.0) == 0
    assert validation_passes(15, 0, 5) == 0 and validation_passes(0, 40, 5) == 0


def test_an_adapters_seconds_are_steps_validation_and_overhead():
    rates = Rates(layer_token_train_s=1.0, layer_token_forward_upper_s=0.5, adapter_overhead_s=3.0)
    # 16 examples seen x 10 tokens x 2 layers x 1 s + 3 s + 4 validation sequences x 10 tokens x 2 layers x 0.5 s
    assert adapter_seconds(16, 10, 2, rates, validation_forwards=4) == pytest.approx(320 + 3 + 40)
    assert adapter_seconds(16, 10, 2, rates) == pytest.approx(323)


def test_the_measured_rates_order():
    r = Rates()
    # a training step (forward + backward) costs more than a forward; a forward through two adapted layers on
    # stored states carries the embedding and output layer, so it costs more per layer than a full pass
    assert r.layer_token_train_s > r.layer_token_forward_upper_s > r.layer_token_forward_s


def test_a_layers_shape_and_the_rates_scaled_to_it():
    # Gemma-3-270m by hand: q and o 640 x (4 x 256), k and v 640 x 256, gate/up/down 640 x 2048
    assert REFERENCE.layer_params == 2 * 640 * 1024 + 2 * 640 * 256 + 3 * 640 * 2048
    llama = KNOWN_SHAPES["meta-llama/Llama-3.1-8B-Instruct"]
    assert llama.layers == 32 and llama.layer_params == 2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336
    rates, note = plan_rates({}, "gpt-4o", llama)
    scale = llama.layer_params / REFERENCE.layer_params
    assert rates.layer_token_train_s == pytest.approx(Rates().layer_token_train_s * scale)
    assert "scaled" in note and "set bench.rates.output_token_s" in note  # an API's rates are not known here
    # a config's rates are its own machine's and model's: used as given
    rates, note = plan_rates({"layer_token_train_s": 0.01, "output_token_s": 0.02}, "gpt-4o", llama)
    assert (rates.layer_token_train_s, rates.output_token_s) == (0.01, 0.02) and "the config's" in note
    # a packaged generator has its own measured rates
    assert plan_rates({}, "qwen2.5-coder-0.5b-instruct", REFERENCE)[0].output_token_s < Rates().output_token_s


@pytest.mark.skipif(not (DATA / "tasks.json").exists(), reason="shared data not present")
def test_the_paper_configs_plan_prints_offline(monkeypatch, capsys):
    from culturemanager.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the Llama target is a hub id the hub cannot give here
    monkeypatch.setenv("CULTUREMANAGER_DATA", str(DATA))
    assert main(["bench", str(REPO / "examples" / "paper.toml"), "--plan"]) == 0
    out = capsys.readouterr().out
    for phase in ("pipeline: summaries", "pipeline: synthesis", "train: adapters", "evaluate: adapters"):
        assert f"| {phase} |" in out
    assert "- decoder layers: 32" in out and "- seeds: 3" in out and "tokens counted with" in out
    # the paper's protocol: every input left after the demonstrations is a test input
    n_test = int(out.split("- test inputs: ")[1].split()[0])
    assert n_test > 9000


def test_requests_in_flight_speed_up_a_remote_endpoint_not_this_cpus_cores():
    from culturemanager.config import LLMConfig
    from culturemanager.plan import speedup

    rates = Rates()
    assert speedup(LLMConfig(backend="openai", model="gpt-4o", concurrency=16), rates) == 16
    # a llama-server on this machine shares its two cores: 4 sequences in flight were measured at 1.44x one
    assert speedup(LLMConfig(backend="llama_server", model="qwen2.5-coder-1.5b-instruct", concurrency=4),
                   rates) == rates.local_parallel_speedup
    assert speedup(LLMConfig(backend="llama_server", model="qwen2.5-coder-1.5b-instruct", concurrency=1), rates) == 1
    assert speedup(LLMConfig(backend="local", model="qwen2.5-coder-1.5b-instruct", concurrency=8), rates) == 1


def test_synthesis_calls_follow_the_stage_and_a_call_keeps_no_more_than_it_yields(tmp_path):
    """The plan's synthesis calls are the stage's jobs (synthesize.label_counts), and a call asked for many samples
    keeps no more than a call yields on these generators (CALL_YIELD, measured)."""
    from conftest import write_task

    from culturemanager.config import LLMConfig, SynthesisConfig, load_config
    from culturemanager.plan import CALL_YIELD, KEEP_RATE, synthesis_work
    from culturemanager.stages.synthesize import label_counts

    rates = Rates()
    server = LLMConfig(backend="llama_server", model="qwen2.5-coder-1.5b-instruct", max_new_tokens=320)
    remote = LLMConfig(backend="openai", model="gpt-4o", max_new_tokens=320)
    one, kept_one = synthesis_work(SynthesisConfig(samples_per_material=6), server, 10, 2, 500, rates)
    many, kept_many = synthesis_work(SynthesisConfig(samples_per_material=32, samples_per_call=8), server, 10, 2,
                                     500, rates)
    assert one.work.startswith("20 calls") and many.work.startswith("40 calls")  # 10 materials x 2 labels x parts
    assert kept_one == pytest.approx(20 * 3 * KEEP_RATE) and kept_many == pytest.approx(40 * CALL_YIELD)
    # the calls of one label share their prompt: a caching engine evaluates it once, a remote endpoint every time
    far, _ = synthesis_work(SynthesisConfig(samples_per_material=32, samples_per_call=8), remote, 10, 2, 500, rates)
    assert far.seconds > many.seconds
    cfg = load_config(write_task(tmp_path, tmp_path / "unused"),
                      ["synthesis.samples_per_material=32", "synthesis.samples_per_call=8"])
    assert len(label_counts(cfg, cfg.tasks[0])) * 2 * 10 == 40
