"""The trainer's plan (budget, balanced batches, validation split, schedule) and early stopping."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from culturemanager.backends.checkpoint import load_checkpoint, new_state, save_checkpoint
from culturemanager.backends.schedule import answer_key, lr_factor, plan_batches, split_validation
from culturemanager.backends.trainer import early_stopping, fit_adapter, validation_loss
from culturemanager.config import TargetConfig, TrainConfig


def examples(pos: int, neg: int) -> list:
    """`pos` examples answering token 31 and `neg` answering token 30, each with its own prompt."""
    return [([1, 5 + i % 40, 9], [-100, -100, 31]) for i in range(pos)] + \
           [([1, 6 + i % 40, 8], [-100, -100, 30]) for i in range(neg)]


def test_the_budget_is_epochs_capped_by_examples_and_steps():
    ex = examples(10, 30)
    assert len(plan_batches(ex, TrainConfig(epochs=3, batch_size=4), 0)) == 30
    assert len(plan_batches(ex, TrainConfig(epochs=3, batch_size=4, max_examples=50), 0)) == 13
    assert len(plan_batches(ex, TrainConfig(epochs=3, batch_size=4, max_examples=50, max_steps=5), 0)) == 5
    plain = plan_batches(ex, TrainConfig(epochs=2, batch_size=8), 3)
    assert Counter(i for b in plain for i in b) == Counter({i: 2 for i in range(40)})  # each example twice
    assert plain == plan_batches(ex, TrainConfig(epochs=2, batch_size=8), 3)  # fixed by the seed
    assert plain != plan_batches(ex, TrainConfig(epochs=2, batch_size=8), 4)


def test_balanced_batches_draw_every_label_equally_often():
    ex = examples(4, 36)  # 10% positives
    plan = plan_batches(ex, TrainConfig(epochs=2, batch_size=8, balance=True), 0)
    labels = Counter(answer_key(ex[i]) for b in plan for i in b)
    assert labels[(31,)] == labels[(30,)] == 40
    assert all(sum(answer_key(ex[i]) == (31,) for i in b) == 4 for b in plan)  # half of every batch
    # the rare examples are cycled through evenly
    assert set(Counter(i for b in plan for i in b if i < 4).values()) == {10}


def test_the_validation_slice_is_stratified_and_held_out():
    ex = examples(10, 40)
    train, val = split_validation(ex, 0.2, 0)
    assert sorted(train + val) == list(range(50)) and not set(train) & set(val)
    assert Counter(answer_key(ex[i]) for i in val) == {(31,): 2, (30,): 8}
    assert split_validation(ex[:9], 0.2, 0) == (list(range(9)), [])  # too few to hold any out
    assert split_validation(ex, 0.0, 0)[1] == []


def test_a_rare_label_gets_at_least_the_minimum_held_out_never_more_than_half():
    ex = examples(5, 95)  # 5% positives, as bn-racism's demonstrations
    held = lambda m: Counter(answer_key(ex[i]) for i in split_validation(ex, 0.15, 0, m)[1])  # noqa: E731
    assert held(0) == {(31,): 1, (30,): 14}  # the share alone: one positive
    assert held(2) == {(31,): 2, (30,): 14}  # the common label's share is already above the minimum
    assert held(4) == {(31,): 2, (30,): 14}  # at most half of the 5 positives
    train, val = split_validation(ex, 0.15, 3, 2)
    assert not set(train) & set(val) and len(train) + len(val) == 100


def test_learning_rate_schedules():
    warm = lr_factor(TrainConfig(warmup=0.2, schedule="linear"), 10)
    assert [round(warm(s), 3) for s in range(10)] == [0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]
    cos = lr_factor(TrainConfig(schedule="cosine"), 4)
    assert [round(cos(s), 3) for s in range(4)] == [1.0, 0.854, 0.5, 0.146]
    assert lr_factor(TrainConfig(), 5)(3) == 1.0


def test_early_stopping_keeps_the_best_weights_and_stops_after_patience():
    state, t = new_state(), TrainConfig(patience=2)
    for step, loss in [(10, 0.9), (20, 0.5), (30, 0.6), (40, 0.55)]:
        state["step"] = step
        early_stopping(state, loss, lambda s=step: {"w": torch.tensor([float(s)])}, t)
    assert state["best_step"] == 20 and state["best"]["w"].item() == 20.0 and state["stopped"]
    assert state["val_curve"] == [[10, 0.9], [20, 0.5], [30, 0.6], [40, 0.55]]


def test_fit_adapter_saves_the_best_validation_weights(tiny_model, tmp_path):
    from peft import PeftModel

    from culturemanager.backends.target import load_target

    target = TargetConfig(model=str(tiny_model))
    ex = examples(12, 12)
    # a learning rate far too high, so that the validation loss rises after the first step: the best weights are
    # not the last ones
    t = TrainConfig(rank=4, alpha=8, epochs=4, batch_size=4, lr=3.0, validation=0.25, eval_every=1, layers=1,
                    dropout=0.0)
    record = fit_adapter(target, t, 0, ex, tmp_path / "a", "h", {}, progress=False)
    curve = record["validation_curve"]
    assert len(curve) == record["steps"] == 18 and record["validation_examples"] == 6
    best = min(loss for _, loss in curve)
    assert record["best_step"] == next(s for s, loss in curve if loss == best) < record["steps"]
    assert json.loads((tmp_path / "a" / "adapter_config.json").read_text())["layers_to_transform"] == [1]
    # where the time went: every part counted once, the frozen prefix (layers=1 of 2) split out of the steps
    parts = record["seconds_by_part"]
    assert set(parts) == {"load", "steps", "validation", "checkpoints", "prefix", "rest"}
    assert parts["prefix"] > 0 and parts["steps"] > 0 and parts["validation"] > 0
    assert sum(parts.values()) == pytest.approx(record["seconds"], abs=0.05)
    base, tok = load_target(target)
    model = PeftModel.from_pretrained(base, tmp_path / "a")
    _, val = split_validation(ex, 0.25, 0)
    assert validation_loss(model, [ex[i] for i in val], tok.pad_token_id, None) == pytest.approx(best, abs=1e-4)


def test_gradient_accumulation_gives_the_whole_batchs_step(tiny_model):
    import copy

    from peft import LoraConfig, get_peft_model

    from culturemanager.backends.target import load_target
    from culturemanager.backends.trainer import train_step

    base, tok = load_target(TargetConfig(model=str(tiny_model)))
    batch = [([1, 5, 9, 12, 30, 31], [-100, -100, -100, -100, 30, 31]), ([1, 7, 8, 40], [-100, -100, -100, 40]),
             ([1, 3, 4, 5, 6, 7, 8, 50], [-100] * 7 + [50]), ([1, 2, 3, 60, 61], [-100, -100, -100, 60, 61])]
    models = []
    for micro in (None, 1, 2):  # 2: pieces cut in length order, lengths (4, 5) and (6, 8), not (6, 4) and (8, 5)
        torch.manual_seed(0)
        m = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                           init_lora_weights=False, task_type="CAUSAL_LM"))
        opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
        losses = [train_step(m, opt, batch, tok.pad_token_id, None, micro) for _ in range(2)]
        models.append((m, losses))
    (a, la), *rest = models
    wa = {k: v for k, v in a.named_parameters() if v.requires_grad}
    for b, lb in rest:
        assert la == pytest.approx(lb, rel=1e-5)
        wb = {k: v for k, v in b.named_parameters() if v.requires_grad}
        assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_device_selection_on_this_machine(tiny_model):
    from culturemanager.backends.target import load_target, resolve_device, resolve_dtype
    from culturemanager.errors import ConfigError

    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type in ("cpu", "mps")
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda:1")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    model, _ = load_target(TargetConfig(model=str(tiny_model), device="cpu"))
    assert next(model.parameters()).device.type == "cpu"
    with pytest.raises(Exception, match="device"):
        TargetConfig(device="gpu")  # not a device name


class Killed(BaseException):
    """What a kill -9 at that instant amounts to for the files: nothing after it runs."""


def checkpointed(step: int):
    torch.manual_seed(step)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), {**new_state(), "step": step}


def resumed_step(folder) -> int:
    model, opt, sched, _ = checkpointed(0)
    return load_checkpoint(folder, "h", model, opt, sched, lambda m, w: m.load_state_dict(w))["step"]


def test_a_kill_while_a_checkpoint_is_saved_leaves_the_old_one_or_the_new_one(tmp_path, monkeypatch):
    """save_checkpoint deleted the old checkpoint, then renamed the new one into place: a kill between the two lost
    both, and the training started again from step 0. Now: write, fsync, rename over the old one."""
    import os
    import pathlib

    folder = tmp_path / ".Spanish.checkpoint"
    model, opt, sched, state = checkpointed(2)
    save_checkpoint(folder, "h", state, model.state_dict(), opt, sched)
    assert resumed_step(folder) == 2
    model, opt, sched, state = checkpointed(4)

    def killed(*args, **kw):
        raise Killed

    with monkeypatch.context() as m:  # killed at the rename
        for owner, name in ((os, "replace"), (os, "rename"), (pathlib.Path, "replace"), (pathlib.Path, "rename")):
            m.setattr(owner, name, killed)
        with pytest.raises(Killed):
            save_checkpoint(folder, "h", state, model.state_dict(), opt, sched)
    assert resumed_step(folder) == 2

    with monkeypatch.context() as m:  # killed halfway through writing the new one
        def half(obj, f, *args, **kw):
            f.write(b"PK\x03\x04 half a checkpoint")
            raise Killed

        m.setattr(torch, "save", half)
        with pytest.raises(Killed):
            save_checkpoint(folder, "h", state, model.state_dict(), opt, sched)
    assert resumed_step(folder) == 2

    order: list[str] = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (order.append("fsync"), fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (order.append("replace"), replace(a, b))[1])
    save_checkpoint(folder, "h", state, model.state_dict(), opt, sched)
    assert order[:2] == ["fsync", "replace"]  # the new file is on disk before it takes the old one's place
    assert resumed_step(folder) == 4
