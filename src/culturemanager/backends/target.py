"""The target model side shared by training, routing and prediction: loading, encoding, option scoring.

One encoding rule everywhere (training, router, prediction), so that an adapter sees at inference exactly
the token layout it was trained on: `prefix + input + suffix + answer`, each part tokenized on its own.
Truncation rule: when a prompt would exceed `target.max_length`, the *input text's tail* is cut (template and
answer are never cut); every truncation is counted.

Scoring picks among fixed options by their log-likelihood after the prompt (never free text), so an answer is
always valid. All `prompts x options` sequences go through the model in batches; with a PEFT model holding
several adapters, each sequence can use its own adapter (peft's `adapter_names`, "__base__" for none).

Run: `python -m culturemanager.backends.target MODEL "prompt text" opt1 opt2` prints the option scores.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from culturemanager.backends.models import resolve_hf
from culturemanager.backends.prefix import FrozenPrefix, left_pad
from culturemanager.config import TargetConfig, Task
from culturemanager.records import BASE  # noqa: F401 - peft's name for "no adapter" in a mixed batch
from culturemanager.text.prompts import split_task_template

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_tokenizer(cfg: TargetConfig):
    return _tokenizer(*resolve_hf(cfg.model))


def load_target(cfg: TargetConfig):
    """(model in eval mode on `target.device`, tokenizer), the model name resolved once for both."""
    from transformers import AutoModelForCausalLM

    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    path, local = resolve_hf(cfg.model)
    kwargs: dict = {}
    if cfg.load_in_4bit:
        kwargs = {"quantization_config": four_bit(device, dtype), "device_map": {"": device.index or 0}}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=local, **kwargs)
    if not cfg.load_in_4bit:
        model = model.to(device)
    contiguous_head_input(model)
    return model.eval(), _tokenizer(path, local)


def contiguous_head_input(model) -> None:
    """Make the output layer's input contiguous. With `logits_to_keep`, transformers hands the output layer a
    slice of the last positions, which is not contiguous; torch's matmul then runs it as one product per batch row
    against the weight broadcast to the batch, reading Gemma's 262k x 640 output matrix once per row instead of
    once. Copying the few kept positions first makes it one matrix product: the same logits, and about 40% of a
    top-2-layer training step saved on this CPU (benchmarks/step_time.py)."""
    head = model.get_output_embeddings()
    if head is not None:
        head.register_forward_pre_hook(_contiguous_first_arg)


def _contiguous_first_arg(module, args):
    return (args[0].contiguous(), *args[1:]) if args and isinstance(args[0], torch.Tensor) else None


def resolve_device(name: str) -> torch.device:
    """"auto": the best device here (CUDA, then Apple MPS, then the CPU); an explicit device that is not here
    is an error saying what torch sees."""
    from culturemanager.errors import ConfigError

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"target.device = {name!r}, but torch sees no CUDA device here (torch "
                              f"{torch.__version__}, cuda {torch.version.cuda}): use 'auto' or 'cpu'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"target.device = {name!r}, but only {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not _mps():
        raise ConfigError(f"target.device = {name!r}, but torch sees no Apple MPS device here: use 'auto' or 'cpu'")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """"auto": bfloat16 on a CUDA device that supports it (float16 otherwise, and on MPS), float32 on the CPU."""
    if name != "auto":
        return DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if device.type == "mps" else torch.float32


def four_bit(device: torch.device, compute: torch.dtype):
    """bitsandbytes 4-bit (NF4) loading for QLoRA-style training of large targets; CUDA only."""
    from culturemanager.errors import ConfigError

    if device.type != "cuda":
        raise ConfigError("target.load_in_4bit needs a CUDA device (bitsandbytes)")
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise ConfigError("target.load_in_4bit needs bitsandbytes: pip install 'culturemanager[gpu]'") from None
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute,
                              bnb_4bit_use_double_quant=True)


def _mps() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def _tokenizer(path: str, local: bool):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, local_files_only=local)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    truncated: bool


MAX_CHARS_PER_TOKEN = 64  # above any real token's length (the longest are runs of spaces or dashes, ~32 chars)


def text_chars(max_tokens: int) -> int:
    """Characters of an input that can matter when at most `max_tokens` of its tokens are read: a few tokens more
    than that at MAX_CHARS_PER_TOKEN each, so that cutting the text there leaves its first `max_tokens` tokens as
    they were. What predict stores of an over-long input, too."""
    return (max(0, max_tokens) + 8) * MAX_CHARS_PER_TOKEN


def encode(tok, prefix: str, text: str, suffix: str, max_tokens: int) -> Encoded:
    """prefix (with the tokenizer's BOS) + text (tail cut to fit) + suffix, in at most max_tokens. The text is cut
    to `text_chars` of its token budget before it is tokenized: a 5 MB input would otherwise become millions of
    token ids (1.7 GB at predict) of which a few hundred are kept; the tokens kept are the same."""
    p = tok(prefix)["input_ids"]
    s = tok(suffix, add_special_tokens=False)["input_ids"]
    budget = max(0, max_tokens - len(p) - len(s))
    bound = text_chars(budget)
    t = tok(text[:bound], add_special_tokens=False)["input_ids"]
    return Encoded(p + t[:budget] + s, len(text) > bound or len(t) > budget)


def encode_task(tok, task: Task, text: str, max_length: int, reserve: int, preamble: str = "") -> Encoded:
    """The task's prompt for one input (`preamble` + template with the input), leaving `reserve` tokens of
    `max_length` for the answer. Training and inference both encode through here."""
    prefix, suffix = split_task_template(task)
    return encode(tok, preamble + prefix, text, suffix, max_length - reserve)


def answer_reserve(tok, task: Task, max_new_tokens: int) -> int:
    """Tokens kept free for the answer: the longest label of a label task (so that a training example and an
    inference prompt for the same input are the same tokens), `max_new_tokens` for a free-text task."""
    if task.labels:
        return max(len(x) for x in option_ids(tok, task.labels))
    return max_new_tokens


def option_ids(tok, options: list[str]) -> list[list[int]]:
    ids = [tok(o, add_special_tokens=False)["input_ids"] for o in options]
    if any(not x for x in ids):
        raise ValueError(f"an option tokenizes to nothing: {options}")
    return ids


@torch.no_grad()
def score_options(model, tok, prompts: list[list[int]], options: list[list[int]],
                  adapters: list[str] | None = None, batch_size: int = 8, normalize: bool = False,
                  prefix: FrozenPrefix | None = None) -> torch.Tensor:
    """Log-likelihood of each option after each prompt: a [len(prompts), len(options)] tensor.

    normalize=True divides by the option's token count (for options of different lengths, e.g. names). With a
    `prefix`, only the layers above it run (its stored states stand in for the frozen lower layers)."""
    if all(len(o) == 1 for o in options):
        return score_next_token(model, tok, prompts, [o[0] for o in options], adapters, batch_size, prefix)
    seqs = [(i, k, p + o) for i, p in enumerate(prompts) for k, o in enumerate(options)]
    out = torch.zeros(len(prompts), len(options))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    keep = max(len(o) for o in options) + 1
    step = batch_size * len(options)
    for start in range(0, len(seqs), step):
        chunk = seqs[start:start + step]
        # left padding puts every option at the end, so only the last `keep` positions need logits: with a
        # 262k-token vocabulary (Gemma) the full logits tensor would dominate time and memory
        names = [adapters[i] for i, _, _ in chunk] if adapters is not None else None
        logits = lm_forward(model, [s for _, _, s in chunk], pad, keep, names, prefix)
        logp = torch.log_softmax(logits[:, -keep:].float(), -1).cpu()
        for row, (i, k, _) in enumerate(chunk):
            n = len(options[k])
            # option token j sits at width-n+j and is predicted by the logits one position earlier
            lp = logp[row, torch.arange(keep - n - 1, keep - 1), torch.tensor(options[k])].sum()
            out[i, k] = lp / n if normalize else lp
    return out


@torch.no_grad()
def score_continuations(model, pairs: list[tuple[list[int], list[int]]], pad: int, batch_size: int = 8
                        ) -> torch.Tensor:
    """Summed log-likelihood of each continuation after its own prompt ([len(pairs)]): the likelihood-ratio label
    check scores one text after two label descriptions. Pairs run shortest first; left padding puts every
    continuation at the end, so only its positions need logits (with Gemma's 262k vocabulary the rest would
    dominate time and memory)."""
    if any(not p or not c for p, c in pairs):
        raise ValueError("score_continuations needs a non-empty prompt and continuation in every pair")
    out = torch.zeros(len(pairs))
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        keep = max(len(pairs[i][1]) for i in rows) + 1
        logits = lm_forward(model, [pairs[i][0] + pairs[i][1] for i in rows], pad, keep).float()
        norm = torch.logsumexp(logits, -1)  # log-softmax's denominator without a second vocabulary-sized tensor
        for r, i in enumerate(rows):
            cont = pairs[i][1]
            pos = torch.arange(keep - len(cont) - 1, keep - 1, device=logits.device)
            ids = torch.tensor(cont, device=logits.device)
            out[i] = (logits[r, pos, ids] - norm[r, pos]).sum().cpu()
    return out


def score_next_token(model, tok, prompts: list[list[int]], token_ids: list[int], adapters: list[str] | None,
                     batch_size: int, prefix: FrozenPrefix | None = None) -> torch.Tensor:
    """Single-token options ("0"/"1", most culture names): one forward per prompt scores all of them, instead of
    one per prompt x option. On a CPU the model's forward pass is the whole cost of prediction."""
    out = torch.zeros(len(prompts), len(token_ids))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        names = adapters[start:start + batch_size] if adapters is not None else None
        logits = lm_forward(model, chunk, pad, 1, names, prefix)
        out[start:start + len(chunk)] = torch.log_softmax(logits[:, -1].float(), -1)[:, token_ids].cpu()
    return out


def lm_forward(model, seqs: list[list[int]], pad: int, keep: int, adapters: list[str] | None = None,
               prefix: FrozenPrefix | None = None) -> torch.Tensor:
    """Logits at the last `keep` positions of left-padded sequences, each under its own adapter (peft's
    `adapter_names`), running only the layers above `prefix` when one is given. The one forward call of the
    package: scoring, routing and training all go through it."""
    device = model_device(model)
    ids, mask = (t.to(device) for t in left_pad(seqs, pad))
    kwargs = {"adapter_names": adapters} if adapters is not None else {}
    with prefix.inject(model, seqs, ids.shape[1]) if prefix is not None else nullcontext():
        return model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                     logits_to_keep=keep, **kwargs).logits


@torch.no_grad()
def decode_greedy(model, prompts: list[list[int]], adapters: list[str] | None, max_new_tokens: list[int],
                  stop_ids: set[int], pad: int, on_token: Callable[[int, int], bool] | None = None,
                  blank_ids: set[int] | None = None) -> list[list[int]]:
    """Greedy continuations of several prompts decoded together, one token per row and step with a KV cache,
    each row under its own adapter (peft's `adapter_names`). A row stops at a token of `stop_ids` (not kept), at
    its own `max_new_tokens`, or when `on_token(row, token)` returns True (the token is kept): what a server
    needs to batch requests of different cultures and stream each one's tokens as they come.

    With `blank_ids` (tokens that are only whitespace), a row's tokens of `stop_ids` and `blank_ids` are
    ruled out until it has produced one other token: a free-text answer never ends before it began (a small
    adapter's immediate end-of-sequence was half of issue 16's empty answers)."""
    n = len(prompts)
    banned = torch.tensor(sorted(stop_ids | blank_ids)) if blank_ids is not None else None
    started = [blank_ids is None] * n
    ids, mask = left_pad(prompts, pad)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    kwargs = {"adapter_names": adapters} if adapters is not None else {}
    out: list[list[int]] = [[] for _ in range(n)]
    live = [m > 0 for m in max_new_tokens]
    cache: dict = {}  # the KV cache, under the name this transformers version uses ("cache"; 4.x: past_key_values)
    step = ids
    while any(live):
        res = model(input_ids=step, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                    **cache, **kwargs)
        name = "cache" if getattr(res, "cache", None) is not None else "past_key_values"
        logits = res.logits[:, -1]
        if banned is not None and not all(started):
            waiting = torch.tensor([r for r in range(n) if not started[r]])
            logits = logits.clone()
            logits[waiting[:, None], banned.to(logits.device)[None, :]] = float("-inf")
        cache, nxt = {name: getattr(res, name)}, logits.argmax(-1)
        for row in range(n):
            token = int(nxt[row])
            if not live[row]:
                continue
            started[row] = started[row] or token not in (blank_ids or ())
            if token in stop_ids:
                live[row] = False
                continue
            out[row].append(token)
            stop = on_token(row, token) if on_token is not None else False
            live[row] = not stop and len(out[row]) < max_new_tokens[row]
        step = nxt[:, None]
        mask = torch.cat([mask, mask.new_ones(n, 1)], 1)
        pos = pos[:, -1:] + 1
    return out


def main() -> None:
    model, tok = load_target(TargetConfig(model=sys.argv[1]))
    prompt = encode(tok, sys.argv[2], "", "", 512).ids
    print(score_options(model, tok, [prompt], option_ids(tok, sys.argv[3:])))


if __name__ == "__main__":
    main()
