"""Shared fixtures: a tiny randomly initialised llama model with a locally trained byte-level tokenizer
(no hub), and a small two-culture task on disk."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CULTUREMANAGER_DATA", REPO.parent / "shared" / "data"))

TOKENIZER_TEXT = [
    "If the following sentence has hate speech, respond with '1'. If not, respond with '0'. Sentence: Response:",
    "Which culture does the following text come from? Options: Spanish, Turkish, Others. Text: Culture:",
    "La corrida de toros y la siesta son costumbres de España. El fútbol une a los vecinos.",
    "Türk kahvesi ve çay misafirlere ikram edilir. Bayramda büyükler ziyaret edilir.",
    "0 1 true false yes no A B C D hate speech offensive spam insult",
]


def interruptible() -> None:
    """Popen's preexec_fn for a child that a test stops with SIGINT: a shell that runs the tests in the background
    (`make test &`, a CI runner) starts them with SIGINT ignored, which children inherit; Python then installs no
    KeyboardInterrupt handler and the signal would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def build_tiny_model(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token=None))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(TOKENIZER_TEXT * 3, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.chat_template = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
                         "{% if add_generation_prompt %}<s>assistant: {% endif %}")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


CORPUS = {
    "spain.md": "# Spain\n\nSpanish culture values family meals, the siesta and local festivals such as La "
                "Tomatina. Insults about regions, like jokes about Andalusians or Catalans, can be hurtful.\n\n"
                "Football rivalries between Real Madrid and Barcelona often lead to heated language online.",
    "turkey.txt": "Turkish culture\n\nTurkish hospitality means offering tea and Turkish coffee to guests. "
                  "Religious holidays such as Ramazan Bayrami bring families together.\n\nInsulting someone's "
                  "mother or family honour is a grave offence in Turkish slang.",
    "notes.jsonl": json.dumps({"title": "Flamenco", "text": "Flamenco is an art form from Andalusia in Spain.",
                               "url": "https://example.org/flamenco"}) + "\n",
}


def write_corpus(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in CORPUS.items():
        (folder / name).write_text(text, encoding="utf-8")


def write_task(root: Path, model: Path, backend: str = "fake", extra: str = "") -> Path:
    """A two-culture hate-speech run on disk; returns the config path."""
    write_corpus(root / "corpus")
    (root / "demos_es.jsonl").write_text("\n".join(json.dumps({"text": t}, ensure_ascii=False) for t in [
        "Los andaluces no trabajan nunca", "Qué buen partido del Barça ayer", "Vete a tu país"]) + "\n",
        encoding="utf-8")
    (root / "demos_tr.txt").write_text("Bu maç harikaydı\nSenin ananı\nBayramınız kutlu olsun\n", encoding="utf-8")
    (root / "inputs.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"text": "Los catalanes son tacaños", "label": "1"}, {"text": "Me encanta la paella", "label": "0"},
        {"text": "Defol git buradan", "label": "1"}, {"text": "Çay ister misin?", "label": "0"},
        {"text": "A long text " * 200, "label": "0"}]) + "\n", encoding="utf-8")
    cfg = root / "run.toml"
    cfg.write_text(f"""
[run]
dir = "run"
seed = 0

[generator]
backend = "{backend}"
temperature = 0.0

[target]
model = "{model}"
max_length = 96
batch_size = 4

[[cultures]]
name = "Spanish"
language = "es"
country = "es"

[[cultures]]
name = "Turkish"
language = "tr"

[[tasks]]
id = "hate"
label = "hate speech"
demonstrations = [{{path = "demos_es.jsonl", culture = "Spanish"}}, {{path = "demos_tr.txt", culture = "Turkish"}}]
evaluation = [{{path = "inputs.jsonl"}}]

[queries]
per_mode = 2

[search]
corpus = ["corpus"]
top_k = 2

[synthesis]
samples_per_material = 4

[train]
epochs = 1
batch_size = 4
rank = 4
alpha = 8
checkpoint_every = 2

[predict]
inputs = [{{path = "inputs.jsonl", label_field = "label"}}]
{extra}
""", encoding="utf-8")
    return cfg


def random_adapters(cfg, rd):
    """Two LoRA adapters with random (non-zero) weights, saved where training would put them."""
    import torch
    from peft import LoraConfig, get_peft_model

    from culturemanager.backends.target import load_target

    for i, culture in enumerate(("Spanish", "Turkish")):
        torch.manual_seed(i + 1)
        base, _ = load_target(cfg.target)
        model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                                                task_type="CAUSAL_LM"))
        model.save_pretrained(rd.adapter(culture))


@pytest.fixture
def task_config(tmp_path, tiny_model) -> Path:
    return write_task(tmp_path, tiny_model)
