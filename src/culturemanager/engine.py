"""The inference core: the target model loaded once with any number of LoRA adapters side by side, and what every
caller asks of it — score a task's labels, score arbitrary options (the router), generate — with a different
adapter per row of one batch.

predict (stage 7), the benchmark and the server all go through an `Engine`; which inputs go to which adapter, and
how the adapters' answers become one answer, is the answering rule (`answering.answer`), never the callers'. One
encoding rule everywhere (`backends.target.encode_task`): an adapter sees at inference exactly the token layout
it was trained on.

    engine = Engine.load(cfg.target, {"Spanish": "runs/demo/adapters/Spanish"})
    probs, truncated = engine.label_probs(task, ["texto"], ["Spanish"])      # [n, len(task.labels)]

Values that depend only on the model and a fixed prompt (the router's calibration prior) are computed once per
engine (`memo`), not once per batch.

Run: `python -m culturemanager.engine MODEL "text" [ADAPTER_FOLDER]` prints the binary task's label probabilities.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from culturemanager.backends.prefix import FrozenPrefix, lowest_adapted_layer
from culturemanager.backends.target import (
    BASE,
    Encoded,
    answer_reserve,
    decode_greedy,
    encode_task,
    load_target,
    option_ids,
    score_continuations,
    score_options,
)
from culturemanager.config import TargetConfig, Task
from culturemanager.text.prompts import CONTENT_FREE


class Engine:
    """The target model, its tokenizer and the adapters loaded into it (peft names -> folders)."""

    def __init__(self, model, tok, target: TargetConfig):
        self.model, self.tok, self.target = model, tok, target
        self.adapters: dict[str, str] = {}
        self.prefix: FrozenPrefix | None = None  # the layers below every loaded adapter, computed once per input
        self._memo: dict[Any, Any] = {}

    @classmethod
    def load(cls, target: TargetConfig, adapters: Mapping[str, str | Path] | None = None) -> Engine:
        model, tok = load_target(target)
        engine = cls(model, tok, target)
        for name, folder in (adapters or {}).items():
            engine.add_adapter(name, folder)
        return engine

    def add_adapter(self, name: str, folder: str | Path) -> None:
        """Load one more adapter beside the others (a no-op when `name` is loaded already)."""
        if name in self.adapters:
            return
        if name == BASE:
            raise ValueError(f"{BASE!r} is reserved for 'no adapter'")
        from peft import PeftModel
        from safetensors import SafetensorError

        from culturemanager.errors import InputError

        try:
            if not self.adapters:
                self.model = PeftModel.from_pretrained(self.model, str(folder), adapter_name=name)
            else:
                self.model.load_adapter(str(folder), adapter_name=name)
        except SafetensorError as e:  # a truncated or overwritten weights file: name it, not a Rust traceback
            raise InputError(f"{Path(folder) / 'adapter_model.safetensors'}: not a readable safetensors file ({e}); "
                             f"train adapter {name!r} again (delete its folder, then `culturemanager train`)") from None
        self.model.eval()
        self.adapters[name] = str(folder)
        # adapters on the top layers only leave the layers below them frozen for every row: their states are
        # computed once per input and reused by every adapter (a new adapter reaching lower resets the cache)
        k = lowest_adapted_layer(self.model)
        if k == 0:
            self.prefix = None
        elif self.prefix is None or self.prefix.k != k:
            self.prefix = FrozenPrefix(self.model, k, self.target.batch_size, self.pad_id)

    @property
    def pad_id(self) -> int:
        return self.tok.pad_token_id if self.tok.pad_token_id is not None else 0

    def row_adapters(self, names: Sequence[str | None]) -> list[str] | None:
        """peft's per-row adapter names (`BASE`, or None, for the plain model); None when no adapter is loaded."""
        unknown = sorted({n for n in names if n not in (None, BASE) and n not in self.adapters})
        if unknown:
            raise KeyError(f"adapters {unknown} are not loaded (loaded: {sorted(self.adapters)})")
        return [n or BASE for n in names] if self.adapters else None

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """`compute()` once per engine and key (the model and its loaded adapters do not change underneath)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    # --------------------------------------------------------------------------------------------- scoring
    def encode(self, task: Task, texts: Sequence[str], preamble: str = "", max_new_tokens: int = 64
               ) -> list[Encoded]:
        reserve = answer_reserve(self.tok, task, max_new_tokens)
        return [encode_task(self.tok, task, t, self.target.max_length, reserve, preamble) for t in texts]

    def label_probs(self, task: Task, texts: Sequence[str], adapters: Sequence[str | None], preamble: str = ""
                    ) -> tuple[torch.Tensor, list[bool]]:
        """P(label) per text over `task.labels` ([len(texts), len(labels)], rows sum to 1), each text under its own
        adapter, and which texts were truncated. Labels are scored, never generated, so an answer is always valid."""
        if not task.labels:
            raise ValueError(f"task {task.id!r} has no label set to score ({task.format})")
        encoded = self.encode(task, texts, preamble)
        scores = self.option_scores([e.ids for e in encoded], option_ids(self.tok, task.labels), adapters)
        self.check_finite(scores, adapters, f"label scores of task {task.id!r}")
        return torch.softmax(scores, -1), [e.truncated for e in encoded]

    def check_finite(self, scores: torch.Tensor, adapters: Sequence[str | None], what: str) -> None:
        """Scores with a NaN or an infinity are an `InputError` naming the adapter (or the target model) that gave
        them: its weights are broken (e.g. saved by a diverged training), and its answers would be noise."""
        from culturemanager.errors import InputError

        rows = (~torch.isfinite(scores)).any(-1).tolist()
        bad = sorted({a or BASE for a, b in zip(adapters, rows) if b})
        if bad:
            where = [self.adapters[a] if a in self.adapters else f"the target model {self.target.model}" for a in bad]
            raise InputError(f"{', '.join(where)}: non-finite {what} (NaN or inf): the weights are broken, e.g. "
                             f"saved by a diverged training; train the adapter again (with a lower train.lr)")

    def label_prior(self, task: Task, adapter: str | None, preamble: str = "") -> list[float]:
        """P(label) on content-free input ("", "N/A", "...") under one adapter, averaged: the adapter's lean for
        this task, the reference of contextual calibration. Computed once per engine, task and adapter."""
        def compute() -> list[float]:
            probs, _ = self.label_probs(task, list(CONTENT_FREE), [adapter] * len(CONTENT_FREE), preamble)
            return probs.mean(0).tolist()

        return self.memo(("label-prior", task.id, task.template, tuple(task.labels or []), adapter, preamble),
                         compute)

    def validation_prior(self, task: Task, adapter: str | None, rule: str = "share") -> list[float] | None:
        """The two-label prior that moves the adapter's answer cut to its operating point on its own validation
        slice (the rows of this task in `validation.jsonl` beside it, written by the trainer), chosen by `rule`
        (metrics.validation_cut: "share", as many answered positive as the slice has positives, or "best_f1"):
        calibrated with it (metrics.calibrate), the adapter answers positive above that cut. None for the base
        model, other formats, an adapter without the file, or a slice of one label. Computed once per engine,
        task, adapter and rule."""
        from culturemanager.backends.trainer import validation_slice
        from culturemanager.metrics import cut_prior, validation_cut

        def compute() -> list[float] | None:
            rows = validation_slice(self.adapters.get(adapter) if adapter not in (None, BASE) else None, task)
            if rows is None:
                return None
            probs, _ = self.label_probs(task, [r["text"] for r in rows], [adapter] * len(rows))
            k = task.labels.index(task.positive_label)
            cut = validation_cut(rule, [r["label"] == task.labels[k] for r in rows], probs[:, k].tolist())
            return None if cut is None else cut_prior(cut, k)

        return self.memo(("validation-prior", task.id, task.template, adapter, rule), compute)

    def option_scores(self, prompts: Sequence[list[int]], options: list[list[int]], adapters: Sequence[str | None],
                      normalize: bool = False) -> torch.Tensor:
        """Log-likelihood of each option after each prompt ([len(prompts), len(options)]), in input order.

        Prompts are run shortest first so that a batch carries little padding (long Turkish e-mails beside tweets
        would otherwise pad every row of their batch)."""
        if len(adapters) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(adapters)} adapter names")
        if not prompts:
            return torch.zeros(0, len(options))
        names = self.row_adapters(adapters)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        scores = score_options(self.model, self.tok, [prompts[i] for i in order], options,
                               [names[i] for i in order] if names else None, self.target.batch_size, normalize,
                               self.prefix)
        out = torch.empty_like(scores)
        out[torch.tensor(order, device=scores.device)] = scores
        return out

    def continuation_logprobs(self, prompts: Sequence[str], texts: Sequence[str], max_tokens: int
                              ) -> tuple[torch.Tensor, list[bool]]:
        """Mean log-probability per token of each text after its prompt, under the plain model (no adapter): the
        likelihood-ratio label check (stages/ratio.py). A text is scored on its first `max_tokens` tokens; which
        texts were cut is returned beside. An empty text scores 0."""
        if len(prompts) != len(texts):
            raise ValueError(f"{len(prompts)} prompts but {len(texts)} texts")
        pairs, cut, rows = [], [], []
        for i, (p, t) in enumerate(zip(prompts, texts)):
            ids = self.tok(t, add_special_tokens=False)["input_ids"]
            cut.append(len(ids) > max_tokens)
            if ids:
                pairs.append((self.tok(p)["input_ids"], ids[:max_tokens]))
                rows.append(i)
        out = torch.zeros(len(texts))
        if pairs:
            from contextlib import nullcontext

            off = self.model.disable_adapter() if self.adapters else nullcontext()
            with off:
                sums = score_continuations(self.model, pairs, self.pad_id, self.target.batch_size)
            out[torch.tensor(rows)] = sums / torch.tensor([len(c) for _, c in pairs], dtype=sums.dtype)
        return out, cut

    @torch.no_grad()
    def features(self, task: Task, texts: Sequence[str]) -> torch.Tensor:
        """The base model's mean final hidden state over each text's task prompt ([len(texts), hidden]): what a
        linear probe reads (no adapter takes part)."""
        from contextlib import nullcontext

        from culturemanager.backends.prefix import left_pad

        encoded = self.encode(task, texts)
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        off = self.model.disable_adapter() if self.adapters else nullcontext()
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].ids))
        out = torch.zeros(len(encoded), base.config.hidden_size)
        with off:
            for s in range(0, len(order), self.target.batch_size):
                rows = order[s:s + self.target.batch_size]
                device = next(base.parameters()).device
                ids, mask = (t.to(device) for t in left_pad([encoded[i].ids for i in rows], self.pad_id))
                hidden = base.base_model(input_ids=ids, attention_mask=mask,
                                         position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).last_hidden_state
                m = mask.unsqueeze(-1).to(hidden.dtype)
                out[torch.tensor(rows)] = ((hidden * m).sum(1) / m.sum(1)).float().cpu()
        return out

    def generate(self, task: Task, texts: Sequence[str], adapters: Sequence[str | None], max_new_tokens: int,
                 preamble: str = "") -> tuple[list[str], list[bool]]:
        """Greedy free-text answers decoded as one batch, each under its own adapter, and which texts were
        truncated. An answer is one line: it cannot end before its first non-blank token, it stops at the end
        of its first line, and an echoed template is cut (`formats.clean_answer`)."""
        from culturemanager.text.formats import clean_answer

        encoded = self.encode(task, texts, preamble, max_new_tokens=max_new_tokens)
        newline, kept = self.newline_ids(), [0] * len(encoded)

        def on_token(row: int, token: int) -> bool:
            # a row's first token is never blank (blank_ids), so a later line break ends its first line
            kept[row] += 1
            return token in newline and kept[row] > 1

        ids = self.complete([e.ids for e in encoded], adapters, [max_new_tokens] * len(encoded), on_token,
                            blank_ids=self.blank_ids())
        answers = [clean_answer(self.tok.decode(x, skip_special_tokens=True), task, t) for x, t in zip(ids, texts)]
        return answers, [e.truncated for e in encoded]

    def blank_ids(self) -> set[int]:
        """Token ids that decode to whitespace only (newlines, spaces), and the special tokens (an answer of only
        <pad> or <bos> is empty once decoded), once per engine."""
        return self.memo("blank-ids", lambda: {i for i, s in enumerate(self.vocab_strings()) if s and not s.strip()}
                         | set(self.tok.all_special_ids))

    def newline_ids(self) -> set[int]:
        """Token ids whose text holds a line break: a free-text answer ends at the first one after its content."""
        return self.memo("newline-ids", lambda: {i for i, s in enumerate(self.vocab_strings()) if "\n" in s})

    def vocab_strings(self) -> list[str]:
        return self.memo("vocab", lambda: self.tok.batch_decode([[i] for i in range(len(self.tok))]))

    def complete(self, prompts: Sequence[list[int]], adapters: Sequence[str | None], max_new_tokens: Sequence[int],
                 on_token: Callable[[int, int], bool] | None = None, blank_ids: set[int] | None = None
                 ) -> list[list[int]]:
        """Greedy continuations (token ids) of raw prompts decoded as one batch, each under its own adapter; a row
        ends at an end-of-sequence token, at its own `max_new_tokens`, or when `on_token(row, token)` says so
        (the server streams and applies stop strings there)."""
        if not prompts:
            return []
        names = self.row_adapters(adapters)
        eos = self.model.generation_config.eos_token_id if hasattr(self.model, "generation_config") else None
        stop = {self.tok.eos_token_id} | set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        return decode_greedy(self.model, [list(p) for p in prompts], names, list(max_new_tokens),
                             {t for t in stop if t is not None}, self.pad_id, on_token, blank_ids)


def main() -> None:
    engine = Engine.load(TargetConfig(model=sys.argv[1]), {"adapter": sys.argv[3]} if len(sys.argv) > 3 else None)
    task = Task(id="demo", label="hate speech")
    probs, _ = engine.label_probs(task, [sys.argv[2]], ["adapter" if engine.adapters else None])
    print(dict(zip(task.labels or [], probs[0].tolist())))


if __name__ == "__main__":
    main()
