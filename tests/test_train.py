"""LoRA adapters: base frozen, adapter learns, standard PEFT folder, reuse, and resume after a kill."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from culturemanager import load_config
from culturemanager.backends import trainer as train_mod
from culturemanager.pipeline import Run


def prepare(cfg_path, *overrides):
    run = Run(load_config(cfg_path, list(overrides)), progress=False)
    for stage in ("queries", "search", "synthesize"):
        run.stage(stage)
    return run


def test_adapter_trains_lora_only_and_is_a_standard_peft_folder(task_config, tiny_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run = prepare(task_config)
    base_before = {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(tiny_model).state_dict().items()}
    counts = run.stage("train")
    assert counts["trained"] == ["Spanish", "Turkish"]
    folder = run.rd.adapter("Spanish")
    assert {p.name for p in folder.iterdir()} == {"adapter_config.json", "adapter_model.safetensors",
                                                 "culturemanager.json", "README.md", "validation.jsonl"}
    conf = json.loads((folder / "adapter_config.json").read_text())
    assert conf["peft_type"] == "LORA" and conf["r"] == 4 and set(conf["target_modules"]) == {"q_proj", "v_proj"}
    weights = load_file(folder / "adapter_model.safetensors")
    assert weights and all("lora_" in k for k in weights)
    # lora_B starts at zero: training must have moved it
    assert any(v.abs().sum() > 0 for k, v in weights.items() if "lora_B" in k)
    meta = json.loads((folder / "culturemanager.json").read_text())
    assert meta["culture"] == "Spanish" and meta["samples"] == 16 and len(meta["loss_curve"]) == meta["steps"]
    assert meta["versions"]["peft"] and meta["data_hash"]
    assert (folder / "validation.jsonl").read_text(encoding="utf-8") == ""  # train.validation = 0: no slice
    # the base weights on disk are untouched, and the adapter loads onto them with peft as is
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert all(torch.equal(base_before[k], v) for k, v in base.state_dict().items())
    model = PeftModel.from_pretrained(base, str(folder))
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        with_adapter = model(input_ids=ids).logits
        with model.disable_adapter():
            without = model(input_ids=ids).logits
    assert not torch.allclose(with_adapter, without)


def test_the_validation_slice_is_written_beside_the_adapter(task_config):
    """The held-out samples (train.validation), as samples of the adapter's culture: an operating point's data
    (predict.calibration = "validation")."""
    run = prepare(task_config, "train.validation=0.25")
    run.stage("train")
    folder = run.rd.adapter("Spanish")
    meta = json.loads((folder / "culturemanager.json").read_text())
    held = [json.loads(x) for x in (folder / "validation.jsonl").read_text(encoding="utf-8").splitlines()]
    samples = {json.loads(x)["id"]: json.loads(x) for x in run.rd.samples("Spanish").read_text().splitlines()}
    assert len(held) == meta["validation_examples"] == meta["examples"] - meta["train_examples"] > 0
    assert all(samples[r["id"]]["text"] == r["text"] and samples[r["id"]]["label"] == r["label"] for r in held)
    assert {r["label"] for r in held} == {s["label"] for s in samples.values()}  # stratified: both labels


def test_finished_adapter_is_reused_and_changed_data_retrains(task_config):
    run = prepare(task_config)
    run.stage("train")
    stamp = (run.rd.adapter("Turkish") / "adapter_model.safetensors").stat().st_mtime_ns
    assert run.stage("train")["reused"] == ["Spanish", "Turkish"]
    assert (run.rd.adapter("Turkish") / "adapter_model.safetensors").stat().st_mtime_ns == stamp
    run2 = Run(load_config(task_config, ["train.rank=2"]), progress=False)
    assert run2.stage("train")["trained"] == ["Spanish", "Turkish"]


def test_too_few_samples_means_no_adapter(task_config):
    run = prepare(task_config, "train.min_samples=100")
    counts = run.stage("train")
    assert counts["skipped_too_few_samples"] == ["Spanish", "Turkish"]
    assert not run.rd.adapter("Spanish").exists()


def test_killed_training_resumes_from_checkpoint_and_matches_uninterrupted(task_config, monkeypatch):
    overrides = ["train.dropout=0.0", "train.epochs=3", "train.checkpoint_every=2", "train.min_samples=1"]
    run = prepare(task_config, *overrides)
    run.stage("train")
    clean = load_file(run.rd.adapter("Spanish") / "adapter_model.safetensors")
    clean_meta = json.loads((run.rd.adapter("Spanish") / "culturemanager.json").read_text())
    for c in ("Spanish", "Turkish"):
        (run.rd.adapter(c) / "culturemanager.json").unlink()  # force retraining

    real_step = train_mod.train_step
    calls = {"n": 0}

    def dying_step(*args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # the run is killed during step 4
        return real_step(*args)

    monkeypatch.setattr(train_mod, "train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        run.stage("train")
    ckpt = run.rd.adapters_dir / ".Spanish.checkpoint" / "state.pt"
    saved = torch.load(ckpt, weights_only=True)
    assert saved["step"] == 2 and saved["seconds"] > 0  # the time spent so far travels with the checkpoint
    monkeypatch.setattr(train_mod, "train_step", real_step)
    steps = {"n": 0}

    def counting_step(*args):
        steps["n"] += 1
        return real_step(*args)

    monkeypatch.setattr(train_mod, "train_step", counting_step)
    run.stage("train")
    resumed_meta = json.loads((run.rd.adapter("Spanish") / "culturemanager.json").read_text())
    assert steps["n"] == 2 * clean_meta["steps"] - 2  # Spanish resumed at step 2, Turkish from scratch
    assert resumed_meta["loss_curve"][:2] == clean_meta["loss_curve"][:2]
    assert clean_meta["seconds"] > 0 and resumed_meta["seconds"] >= saved["seconds"]  # the killed run's time counts
    resumed = load_file(run.rd.adapter("Spanish") / "adapter_model.safetensors")
    assert all(torch.allclose(clean[k], resumed[k], atol=1e-6) for k in clean)
    assert not ckpt.parent.exists()


def test_train_step_loss_on_the_answer_span_equals_the_full_logits_loss(tiny_model):
    """The step computes logits only for the answer tokens of left-padded rows; its loss must be the loss a
    plain right-padded forward with -100 on prompt and padding gives."""
    from transformers import AutoModelForCausalLM

    batch = [([1, 5, 9, 12, 30, 31], [-100, -100, -100, -100, 30, 31]),
             ([1, 7, 8, 40], [-100, -100, -100, 40]),
             ([1, 3, 4, 5, 6, 7, 8, 50, 51, 52], [-100] * 7 + [50, 51, 52])]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    width = max(len(x) for x, _ in batch)
    ids = torch.full((3, width), 2)
    labels = torch.full((3, width), -100)
    mask = torch.zeros((3, width), dtype=torch.long)
    for r, (x, y) in enumerate(batch):
        ids[r, :len(x)], labels[r, :len(y)], mask[r, :len(x)] = torch.tensor(x), torch.tensor(y), 1
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, labels=labels).loss.item()

    class NoStep:
        def step(self):
            pass

        def zero_grad(self, set_to_none=True):
            pass

    got = train_mod.train_step(model, NoStep(), batch, pad_id=2)
    assert got == pytest.approx(expected, rel=1e-4)


def test_two_shard_processes_train_disjoint_adapters_and_nothing_twice(task_config):
    """`culturemanager train --shard I/N` in two processes at once on one run directory: each trains its own
    culture, the manifest keeps both entries, and a third run trains nothing."""
    import os
    import subprocess
    import sys

    run = prepare(task_config, "train.min_samples=1")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-m", "culturemanager", "train", str(task_config), "--shard", f"{i}/2",
                               "--no-progress", "--set", "train.min_samples=1"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    stages = json.loads(run.rd.manifest.read_text())["stages"]
    assert stages["train@0/2"]["counts"]["trained"] == ["Spanish"]
    assert stages["train@1/2"]["counts"]["trained"] == ["Turkish"]
    again = run.stage("train")
    assert again["trained"] == [] and again["reused"] == ["Spanish", "Turkish"]


def test_an_adapter_locked_by_another_process_is_skipped_not_trained_twice(task_config):
    from culturemanager.rundir import file_lock

    run = prepare(task_config, "train.min_samples=1")
    with file_lock(run.rd.lock("adapter-Spanish"), blocking=False) as held:  # another trainer holds Spanish
        assert held
        counts = run.stage("train")
    assert counts["locked_elsewhere"] == ["Spanish"] and counts["trained"] == ["Turkish"]
    assert not (run.rd.adapter("Spanish") / "adapter_model.safetensors").exists()


def test_small_loss_keep_by_hand():
    from culturemanager.stages.train import small_loss_keep

    losses = [0.1, 2.0, 0.3, 0.2, 5.0, 0.4, 0.9]
    labels = ["1", "1", "1", "1", "0", "0", "0"]
    # label "1": round(0.5 x 4) = 2 dropped, the losses 2.0 and 0.3; label "0": round(1.5) = 2, losses 5.0, 0.9
    assert small_loss_keep(losses, labels, 0.5) == [True, False, False, True, False, True, False]
    # a label with one sample always keeps it; ties drop the later sample first
    assert small_loss_keep([1.0, 1.0, 3.0], ["a", "a", "b"], 0.5) == [True, False, True]


def test_small_loss_check_drops_the_high_loss_samples_and_trains_again_on_the_rest(task_config):
    run = prepare(task_config, "train.small_loss.enabled=true", "train.small_loss.drop_share=0.25")
    counts = run.stage("train")
    assert counts["trained"] == ["Spanish", "Turkish"]
    folder = run.rd.adapter("Spanish")
    rows = [json.loads(x) for x in (folder / "small_loss.jsonl").read_text(encoding="utf-8").splitlines()]
    meta = json.loads((folder / "culturemanager.json").read_text())
    first = json.loads((folder.parent / ".Spanish.first" / "culturemanager.json").read_text())
    assert [r["loss"] for r in rows] == first["example_losses"] and len(rows) == first["examples"] == 16
    dropped = [r for r in rows if not r["kept"]]
    assert counts["small_loss_dropped"]["Spanish"] == len(dropped) == meta["small_loss"]["dropped"] > 0
    assert meta["samples"] == 16 - len(dropped)  # the final adapter trained on the kept samples only
    for key in {(r["task"], r["label"]) for r in rows}:  # within each label the dropped ones had the highest loss
        mine = [r for r in rows if (r["task"], r["label"]) == key]
        if any(not r["kept"] for r in mine):
            assert min(r["loss"] for r in mine if not r["kept"]) >= max(r["loss"] for r in mine if r["kept"])
    # a second run trains neither adapter again
    assert run.stage("train")["reused"] == ["Spanish", "Turkish"]


def test_small_loss_finds_the_flipped_labels_a_first_adapter_cannot_fit(tiny_model, tmp_path):
    """Twelve inputs of one kind answered "x", twelve of another answered "y", and two of the first kind mislabelled
    "y": after a first adapter, those two have the highest loss among the "y" samples, and the check drops them."""
    from culturemanager.backends.trainer import fit_adapter
    from culturemanager.config import TargetConfig, TrainConfig
    from culturemanager.stages.train import small_loss_keep

    a, b, x, y = [5, 6, 7, 8], [40, 41, 42, 43], 20, 21
    examples = [(a + [50 + i], [-100] * 5) for i in range(12)] + [(b + [60 + i], [-100] * 5) for i in range(12)]
    examples = [(ids + [x if ids[0] == 5 else y], labels + [x if ids[0] == 5 else y]) for ids, labels in examples]
    flipped = [(a + [70 + i, y], [-100] * 5 + [y]) for i in range(2)]
    examples += flipped
    settings = TrainConfig(rank=4, alpha=8, epochs=30, lr=5e-3, batch_size=8, target_modules=["q_proj", "v_proj"])
    record = fit_adapter(TargetConfig(model=str(tiny_model), max_length=32, batch_size=8), settings, 0, examples,
                         tmp_path / "first", "d", {}, progress=False, score=True)
    losses = record["example_losses"]
    labels = [str(lab[-1]) for _, lab in examples]
    keep = small_loss_keep(losses, labels, 2 / 14)  # label y: 14 samples, 2 dropped (label x: 12, also 2)
    assert [i for i, k in enumerate(keep) if not k and labels[i] == str(y)] == [24, 25]  # exactly the flipped ones
    assert min(losses[24:]) > max(losses[12:24])


def test_a_diverged_training_stops_with_the_adapter_and_step_named_and_saves_nothing(task_config, capsys):
    """train.lr = 1e6 takes the tiny model's LoRA weights past float32 within a few steps: the loss went NaN and
    every answer was "0" while the run said it had trained (exit 0). Now the stage stops at that step (exit 4)."""
    from culturemanager.cli import main
    from culturemanager.errors import EXIT_STAGE_FAILED

    run = prepare(task_config)
    assert main(["train", str(task_config), "--set", "train.lr=1e6", "--no-progress"]) == EXIT_STAGE_FAILED
    err = capsys.readouterr().err
    assert "adapter 'Spanish' diverged at step" in err and "non-finite" in err, err
    step = int(err.split("diverged at step ")[1].split(":")[0])
    assert 1 <= step <= 4  # the tiny run's four steps
    assert not run.rd.adapters_dir.exists() or not any(run.rd.adapters_dir.iterdir())  # no adapter, no checkpoint
    assert "train" not in run.rd.read_manifest()["stages"]


def test_a_step_with_non_finite_gradients_is_never_applied(tiny_model):
    from peft import get_peft_model

    from culturemanager.backends.target import load_target
    from culturemanager.config import TargetConfig, TrainConfig

    base, tok = load_target(TargetConfig(model=str(tiny_model)))
    model = get_peft_model(base, train_mod.lora_config(TrainConfig(rank=4, alpha=8)))
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    params[0].register_hook(lambda g: g * float("inf"))
    opt = torch.optim.AdamW(params, lr=1e-3)
    with pytest.raises(train_mod.NonFinite, match="gradients"):
        train_mod.train_step(model, opt, [([5, 6, 7, 8], [-100, -100, -100, 8])], tok.pad_token_id)
    assert all(torch.equal(a, p) for a, p in zip(before, params))


def test_fit_or_reuse_reuses_a_current_adapter_and_trains_on_what_the_small_loss_check_keeps(tmp_path):
    """The wrap-up the train stage and the bench share (stages/train.fit_or_reuse): a current adapter is neither
    trained nor checked; with the check off the training gets every example; with it on the first pass runs once
    and the training gets the check's verdict (per key, the highest loss dropped)."""
    from culturemanager.backends.trainer import META
    from culturemanager.config import SmallLossConfig
    from culturemanager.stages.train import fit_or_reuse

    calls: list = []

    def first_pass() -> list[float]:
        calls.append("first pass")
        return [0.1, 3.0, 0.2, 0.4]

    def train(keep):
        calls.append(keep)

    out, on = tmp_path / "adapter", SmallLossConfig(enabled=True, drop_share=0.5)
    keys = ["1", "1", "0", "0"]
    fitted = fit_or_reuse(out, "d1", on, keys, first_pass, train)
    assert calls == ["first pass", [True, False, True, False]] and not fitted.reused
    assert fitted.keep == [True, False, True, False] and fitted.losses == [0.1, 3.0, 0.2, 0.4]
    calls.clear()
    assert not fit_or_reuse(out, "d1", SmallLossConfig(), keys, first_pass, train).reused and calls == [None]
    out.mkdir()
    (out / "adapter_model.safetensors").write_bytes(b"")
    (out / META).write_text(json.dumps({"data_hash": "d1"}), encoding="utf-8")
    calls.clear()
    assert fit_or_reuse(out, "d1", on, keys, first_pass, train).reused and calls == []
    assert not fit_or_reuse(out, "d2", on, keys, first_pass, train).reused and calls[0] == "first pass"
