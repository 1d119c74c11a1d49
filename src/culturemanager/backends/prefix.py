"""The frozen lower layers, computed once per input and reused by every adapter, seed and epoch.

With LoRA on the top layers only (`train.layers`), every layer below the lowest adapted one is the frozen base
model for every adapter. Its output for an input is therefore the same for TaskSFT, for each culture's adapter,
for every seed and every epoch: `FrozenPrefix` computes it once (stopping the forward pass there) and keeps it;
a forward pass then runs only the upper layers, with the stored states injected in place of the lower ones.
Training and evaluation both cost a fraction of a full pass (about `layers / num_hidden_layers` of it).

The injection is architecture-neutral: the decoder layers' ModuleList keeps its length (layer types and
indices stay right); the lower layers are swapped for pass-through modules for the duration of one call, and
the last of them returns the stored states. Tests check that logits and gradients equal a full forward pass.

Run: imported by `backends/target.py` (scoring), `engine.py` and `stages/train.py`; no entry point of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn


def decoder_layers(model) -> nn.ModuleList:
    """The model's decoder layers (llama, gemma, qwen...: the ModuleList as long as `num_hidden_layers`)."""
    n = model.config.num_hidden_layers
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    raise ValueError(f"cannot find the {n} decoder layers of {type(model).__name__}")


def lowest_adapted_layer(model) -> int:
    """The index of the lowest layer any loaded LoRA adapter changes (0 when one changes every layer; the
    number of layers when none is loaded)."""
    configs = getattr(model, "peft_config", {})
    n = model.config.num_hidden_layers if not hasattr(model, "get_base_model") \
        else model.get_base_model().config.num_hidden_layers
    lowest = n
    for cfg in configs.values():
        layers = getattr(cfg, "layers_to_transform", None)
        if layers is None:
            return 0
        lowest = min(lowest, min([layers] if isinstance(layers, int) else layers))
    return lowest


def left_pad(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of sequences padded on the left, so that every sequence ends at the last position."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, width - len(s):] = torch.tensor(s)
        mask[row, width - len(s):] = 1
    return ids, mask


class _Stop(Exception):
    pass


class _Pass(nn.Module):
    """Stands in for a lower layer: returns its input (or, for the last one, the stored states)."""

    def __init__(self, states: torch.Tensor | None = None):
        super().__init__()
        self.states = states

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states if self.states is None else self.states


class FrozenPrefix:
    """Layer-`k` input states of token sequences, computed on `model` once per distinct sequence."""

    def __init__(self, model, k: int, batch_size: int = 8, pad_id: int = 0):
        self.model, self.k, self.batch_size, self.pad_id = model, k, batch_size, pad_id
        self._states: dict[tuple[int, ...], torch.Tensor] = {}
        self.computed = 0  # sequences run through the lower layers (for tests and the benchmark's counts)
        self.seconds = 0.0  # time spent computing them (an adapter's record splits its time with it)

    def __len__(self) -> int:
        return len(self._states)

    def clear(self) -> None:
        """Forget the stored states (a server sees each input once: keeping them all would grow without end)."""
        self._states.clear()

    @torch.no_grad()
    def states(self, seqs: Sequence[list[int]]) -> list[torch.Tensor]:
        """[len(seq), hidden] per sequence: the input of layer k (the output of layer k-1)."""
        missing = list(dict.fromkeys(tuple(s) for s in seqs if tuple(s) not in self._states))
        if not missing:
            return [self._states[tuple(s)] for s in seqs]
        t0 = time.perf_counter()
        missing.sort(key=len)
        layer = decoder_layers(self.model)[self.k - 1]
        training = self.model.training
        self.model.eval()  # the frozen layers' states, without any dropout
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start:start + self.batch_size]
            device = next(self.model.parameters()).device
            ids, mask = (t.to(device) for t in left_pad([list(s) for s in chunk], self.pad_id))
            got: list[torch.Tensor] = []

            def grab(module, args, output, got=got):
                got.append(output[0] if isinstance(output, tuple) else output)
                raise _Stop

            handle = layer.register_forward_hook(grab)
            try:
                self.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0))
            except _Stop:
                pass
            finally:
                handle.remove()
            width = ids.shape[1]
            for row, s in enumerate(chunk):
                self._states[s] = got[0][row, width - len(s):].detach().clone()
            self.computed += len(chunk)
        self.model.train(training)
        self.seconds += time.perf_counter() - t0
        return [self._states[tuple(s)] for s in seqs]

    @contextmanager
    def inject(self, model, seqs: Sequence[list[int]], width: int) -> Iterator[None]:
        """Within the block, `model`'s forward on these left-padded sequences runs only layers k.. on the stored
        states (`model` shares the frozen lower layers with the one the states were computed on)."""
        states = self.states(seqs)
        hidden = states[0].shape[-1]
        batch = torch.zeros(len(seqs), width, hidden, dtype=states[0].dtype, device=states[0].device)
        for row, st in enumerate(states):
            batch[row, width - len(st):] = st
        layers = decoder_layers(model)
        saved = [layers[i] for i in range(self.k)]
        for i in range(self.k):
            layers[i] = _Pass(batch if i == self.k - 1 else None)
        try:
            yield
        finally:
            for i, module in enumerate(saved):
                layers[i] = module
