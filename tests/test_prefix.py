"""The frozen lower layers computed once: forward passes and training steps on the stored states equal full ones."""

from __future__ import annotations

import copy

import torch

from culturemanager.backends.prefix import FrozenPrefix, decoder_layers, lowest_adapted_layer
from culturemanager.backends.target import lm_forward, load_target, score_options
from culturemanager.config import TargetConfig


def lora(model, layers, seed=1):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    return get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"],
                                            layers_to_transform=layers, init_lora_weights=False,
                                            task_type="CAUSAL_LM"))


SEQS = [[1, 5, 9, 13, 40, 41], [1, 7, 8], [1, 30, 31, 32, 33, 34, 35, 36, 2]]


def test_upper_layers_on_stored_states_equal_a_full_forward(tiny_model):
    base, tok = load_target(TargetConfig(model=str(tiny_model)))
    model = lora(base, [1])
    assert lowest_adapted_layer(model) == 1 and len(decoder_layers(model)) == 2
    prefix = FrozenPrefix(model, 1)
    with torch.no_grad():
        full = lm_forward(model, SEQS, tok.pad_token_id, 3)
        fast = lm_forward(model, SEQS, tok.pad_token_id, 3, prefix=prefix)
        again = lm_forward(model, SEQS[::-1], tok.pad_token_id, 3, prefix=prefix)
    assert torch.allclose(full, fast, atol=1e-5)
    assert torch.allclose(full.flip(0)[:, -1], again[:, -1], atol=1e-5)
    assert prefix.computed == 3 and len(prefix) == 3  # each sequence ran through the lower layer once
    # the model is whole again after each call
    assert all(type(layer).__name__ != "_Pass" for layer in decoder_layers(model))


def test_scoring_with_a_prefix_equals_scoring_without(tiny_model):
    base, tok = load_target(TargetConfig(model=str(tiny_model)))
    model = lora(base, [1])
    opts = [[tok.convert_tokens_to_ids("0")], [tok.convert_tokens_to_ids("1")]]
    plain = score_options(model, tok, SEQS, opts, batch_size=2)
    fast = score_options(model, tok, SEQS, opts, batch_size=2, prefix=FrozenPrefix(model, 1))
    assert torch.allclose(plain, fast, atol=1e-5)


def test_a_training_step_on_stored_states_gives_the_same_weights(tiny_model):
    from culturemanager.backends.trainer import train_step

    base, tok = load_target(TargetConfig(model=str(tiny_model)))
    a = lora(copy.deepcopy(base), [1])
    b = lora(copy.deepcopy(base), [1])
    batch = [(s, [-100] * (len(s) - 1) + s[-1:]) for s in SEQS]
    prefix = FrozenPrefix(b, 1)
    for model, pre in ((a, None), (b, prefix)):
        model.train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        for _ in range(3):
            train_step(model, opt, batch, tok.pad_token_id, pre)
    wa = {k: v for k, v in a.named_parameters() if v.requires_grad}
    wb = {k: v for k, v in b.named_parameters() if v.requires_grad}
    assert wa.keys() == wb.keys() and wa
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)
    assert prefix.computed == len(SEQS)  # three steps, each sequence through the lower layer once
    # and training moved the LoRA weights
    fresh = {k: v for k, v in lora(copy.deepcopy(base), [1]).named_parameters() if v.requires_grad}
    assert not all(torch.allclose(fresh[k], wb[k]) for k in wb)


def test_an_adapter_on_every_layer_leaves_no_frozen_prefix(tiny_model):
    base, _ = load_target(TargetConfig(model=str(tiny_model)))
    assert lowest_adapted_layer(base) == 2  # no adapter: every layer is the base model
    assert lowest_adapted_layer(lora(base, None)) == 0


def test_the_engine_scores_top_layer_adapters_on_the_frozen_prefix(tiny_model, tmp_path):
    from culturemanager.config import Task
    from culturemanager.engine import Engine

    target = TargetConfig(model=str(tiny_model))
    for i, name in enumerate(("a", "b")):
        base, _ = load_target(target)
        lora(base, [1], seed=i + 1).save_pretrained(tmp_path / name)
    engine = Engine.load(target)
    task = Task(id="t", label="hate speech")
    texts = ["hola amigos", "Defol git buradan", "Bu maç harikaydı", "x"]
    features = engine.features(task, texts)
    engine.add_adapter("a", tmp_path / "a")
    engine.add_adapter("b", tmp_path / "b")
    assert engine.prefix is not None and engine.prefix.k == 1
    rows = ["a", "b", None, "a"]
    fast, _ = engine.label_probs(task, texts, rows)
    assert engine.prefix.computed == 4  # each prompt through the frozen layer once, whatever its adapter
    engine.label_probs(task, texts, ["b", "a", "b", None])
    assert engine.prefix.computed == 4
    engine.prefix = None
    full, _ = engine.label_probs(task, texts, rows)
    assert torch.allclose(fast, full, atol=1e-5)
    # the probe's features are the base model's, whatever adapters are loaded
    assert features.shape == (4, 32) and torch.allclose(engine.features(task, texts), features, atol=1e-5)


def test_the_output_layer_gets_the_kept_positions_as_one_contiguous_matrix(tiny_model):
    """load_target makes the output layer's input contiguous: the logits at the kept positions are those of the
    full forward, and the layer sees a contiguous tensor (one matrix product, not one per batch row)."""
    from transformers import AutoModelForCausalLM

    base, tok = load_target(TargetConfig(model=str(tiny_model)))
    seen: list[bool] = []
    base.get_output_embeddings().register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous()))
    plain = AutoModelForCausalLM.from_pretrained(str(tiny_model)).eval()  # as transformers loads it: no hook
    plain_seen: list[bool] = []
    plain.get_output_embeddings().register_forward_pre_hook(lambda m, args: plain_seen.append(args[0].is_contiguous()))
    with torch.no_grad():
        kept = lm_forward(base, SEQS, tok.pad_token_id, 2)
        full = lm_forward(plain, SEQS, tok.pad_token_id, 0)  # logits_to_keep=0: every position
        plain_kept = lm_forward(plain, SEQS, tok.pad_token_id, 2)
    assert seen == [True] and plain_seen == [True, False]  # transformers' own slice is not contiguous
    assert torch.allclose(kept, full[:, -2:], atol=1e-5) and torch.allclose(kept, plain_kept, atol=1e-5)
