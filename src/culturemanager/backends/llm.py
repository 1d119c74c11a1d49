"""LLM backends behind one small interface, plus the disk cache and call log every call goes through.

Backends (`BACKENDS` below, chosen by `generator.backend`):
- `local`: a transformers model (or llama.cpp when `engine = "llama_cpp"`), resolved by `models.py`;
- `openai`: any OpenAI-compatible endpoint (GPT-4o, vLLM, Ollama, llama.cpp server), in openai_chat.py: key
  from the environment, bounded concurrency, our own retries with backoff, a wall-clock deadline per call;
- `fake`: a deterministic stand-in that writes well-formed answers from the prompt alone (tests, dry runs).

`CachedLLM` wraps a backend: each request is keyed by its full content (model, messages, sampling settings,
seed); a cached answer is returned without a call, so a re-run or a resumed run repeats no finished call. Every
request, cached or not, is appended to `calls.jsonl`, and so is every attempt that was retried. A backend
reports the failures it expects (HTTP, timeouts, unparsable answers) as exception objects in its answer list:
they are counted per stage (`CachedLLM.failures`, `first_error`), and the stage decides what they mean; an
exception a backend raises is a bug and stops the run.

Run: `python -m culturemanager.backends.llm MODEL "prompt"` answers one prompt with the local backend.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import MofNCompleteColumn, Progress

from culturemanager.backends.chat import Attempt, BackendError, CallFailed, ChatRequest, Completion, LLMBackend
from culturemanager.backends.secrets import redact
from culturemanager.config import LLMConfig
from culturemanager.records import CallRecord, append_jsonl_line, read_json_lines

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------- the cached LLM

@dataclass
class CachedLLM:
    """Cache + call log around a backend. One per run directory."""

    backend: LLMBackend
    cache_path: Path
    log_path: Path
    progress: bool = False
    counts: dict[str, int] = field(default_factory=lambda: {"calls": 0, "cached": 0, "errors": 0, "retries": 0})
    failures: Counter = field(default_factory=Counter)  # failed requests per stage
    first_error: dict[str, str] = field(default_factory=dict)  # per stage
    unreadable_cache_lines: int = 0
    _cache: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self._cache, self.unreadable_cache_lines = read_cache(self.cache_path)
        if self.unreadable_cache_lines:
            log.warning("%s: %d line(s) could not be read (a killed run's half-written line?): those calls "
                        "are made again", self.cache_path, self.unreadable_cache_lines)

    @property
    def name(self) -> str:
        return self.backend.name

    def complete(self, requests: list[ChatRequest], stage: str) -> list[Completion | None]:
        """Answers in request order; None where the backend reported a failure (logged and counted per stage;
        the stage decides whether it can go on without the answer)."""
        keys = [self.key(r) for r in requests]
        out: list[Completion | None] = [None] * len(requests)
        todo = []
        for i, k in enumerate(keys):
            hit = self._cache.get(k)
            if hit is not None:
                out[i] = Completion(hit["text"], hit.get("prompt_tokens"), hit.get("completion_tokens"), True)
                self._log(stage, requests[i], Attempt(time.time(), 0.0), out[i], None)
            else:
                todo.append(i)
        if not todo:
            return out
        # answers are stored chunk by chunk, so a run killed mid-stage keeps every finished call
        chunk = max(1, getattr(self.backend, "parallel", 1))
        each = getattr(self.backend, "complete_each", None)
        with Progress(*Progress.get_default_columns(), MofNCompleteColumn(), disable=not self.progress,
                      transient=True) as bar:
            job = bar.add_task(f"{stage} ({self.backend.name})", total=len(todo))

            def settle(i: int, a: Completion | Exception, latency: float, started: float) -> None:
                if isinstance(a, Exception):
                    self._log(stage, requests[i], Attempt(started, latency), None, a)
                else:
                    if a.text.strip():  # an empty answer is a server's hiccup, not worth keeping
                        self._store(keys[i], a)
                    out[i] = a
                    self._log(stage, requests[i], Attempt(started, latency), a, None)
                bar.update(job, advance=1)

            if each is not None:  # each answer is stored as it finishes: no chunk waits for its slowest call
                each([requests[i] for i in todo],
                     lambda j, a, latency: settle(todo[j], a, latency, time.time() - latency))
                return out
            for start in range(0, len(todo), chunk):
                part = todo[start:start + chunk]
                t0 = time.time()
                answers = self.backend.complete([requests[i] for i in part])
                # what a backend that does not time its own attempts is credited with: a chunk of one (local,
                # fake) is exact; the openai backend times each attempt itself (Completion.attempt)
                latency = (time.time() - t0) / len(part)
                for i, a in zip(part, answers):
                    settle(i, a, latency, t0)
        return out

    def key(self, r: ChatRequest) -> str:
        body = {"model": self.backend.name, "messages": r.messages, "temperature": r.temperature,
                "max_tokens": r.max_tokens, "seed": r.seed}
        return hashlib.sha256(json.dumps(body, ensure_ascii=False, sort_keys=True).encode()).hexdigest()

    def _store(self, key: str, c: Completion) -> None:
        entry = {"key": key, "text": c.text, "prompt_tokens": c.prompt_tokens,
                 "completion_tokens": c.completion_tokens}
        with self._lock:
            self._cache[key] = entry
            append_jsonl_line(self.cache_path, entry)

    def _log(self, stage: str, r: ChatRequest, measured: Attempt, c: Completion | None,
             err: Exception | None) -> None:
        """One line per attempt: each retried one with its own start, latency and error, then the outcome's own
        attempt with its tokens (`measured`, the caller's timing, where the backend did not time it)."""
        result = err if err is not None else c
        retried: list[Attempt] = getattr(result, "retried", None) or []
        final: Attempt = getattr(result, "attempt", None) or measured
        outcome = "error" if err else ("cached" if c and c.cached else "ok")
        self.counts[{"error": "errors", "cached": "cached", "ok": "calls"}[outcome]] += 1
        self.counts["retries"] += len(retried)

        def line(a: Attempt, kind: str, error: str | None, n: int, done: Completion | None = None) -> CallRecord:
            return CallRecord(stage=stage, model=self.backend.name, prompt_hash=r.prompt_hash(),
                              latency_s=round(a.seconds, 3), prompt_tokens=done.prompt_tokens if done else None,
                              completion_tokens=done.completion_tokens if done else None, outcome=kind,
                              error=error, attempt=n, time=a.started)

        records = [line(a, "retry", a.error, n) for n, a in enumerate(retried, 1)]
        records.append(line(final, outcome, redact(str(err) if isinstance(err, CallFailed) else repr(err))
                            if err else None, len(retried) + 1, c))
        with self._lock:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write("".join(rec.model_dump_json() + "\n" for rec in records))
            if err:
                self.failures[stage] += 1
                self.first_error.setdefault(stage, records[-1].error or "")
        if err:
            log.warning("LLM call failed in %s: %s", stage, (records[-1].error or "")[:300])


def read_cache(path: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """The cached answers by key, and how many lines could not be used (a killed run's half line, stray
    bytes, a line without a key): those calls are simply made again."""
    entries, bad = read_json_lines(path)
    cache: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("key"), str) and isinstance(entry.get("text"), str):
            cache[entry["key"]] = entry
        else:
            bad += 1
    return cache, bad


def load_cache(path: Path) -> dict[str, dict[str, Any]]:
    return read_cache(path)[0]


# ------------------------------------------------------------------------------------------ backends

def make_backend(cfg: LLMConfig) -> LLMBackend:
    return BACKENDS[cfg.backend](cfg)


class LocalBackend:
    """A local chat model. transformers by default; llama.cpp (much faster on CPU) for GGUF models."""

    def __init__(self, cfg: LLMConfig):
        self.cfg = cfg
        self.name = cfg.model
        self._generate: Callable[[ChatRequest], Completion] | None = None

    def complete(self, requests: list[ChatRequest]) -> list[Completion | Exception]:
        if self._generate is None:
            self._generate = self._load_llama_cpp() if self.cfg.engine == "llama_cpp" else self._load_hf()
        out: list[Completion | Exception] = []
        for r in requests:
            try:
                out.append(self._generate(r))
            except (RuntimeError, ValueError) as e:
                out.append(e)
        return out

    def _load_hf(self) -> Callable[[ChatRequest], Completion]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from culturemanager.backends.models import resolve_hf

        path, local = resolve_hf(self.cfg.model)
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        tok = AutoTokenizer.from_pretrained(path, local_files_only=local)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=local).eval()

        def generate(r: ChatRequest) -> Completion:
            msgs = [{"role": role, "content": c} for role, c in r.messages]
            enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True)
            torch.manual_seed(r.seed)
            sample = r.temperature > 0
            with torch.no_grad():
                ids = model.generate(**enc, max_new_tokens=r.max_tokens, do_sample=sample,
                                     temperature=r.temperature if sample else None, top_p=0.95 if sample else None,
                                     repetition_penalty=1.1, pad_token_id=tok.pad_token_id or tok.eos_token_id)
            new = ids[0, enc["input_ids"].shape[1]:]
            return Completion(tok.decode(new, skip_special_tokens=True), enc["input_ids"].shape[1], len(new))

        return generate

    def _load_llama_cpp(self) -> Callable[[ChatRequest], Completion]:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise BackendError("engine = 'llama_cpp' needs llama-cpp-python: "
                               "CMAKE_ARGS='-DGGML_NATIVE=OFF' pip install 'culturemanager[llamacpp]'") from None
        from culturemanager.backends.models import resolve_gguf

        llm = Llama(model_path=str(resolve_gguf(self.cfg.model)), n_ctx=4096, n_threads=self.cfg.threads,
                    verbose=False)

        def generate(r: ChatRequest) -> Completion:
            resp = llm.create_chat_completion(
                messages=[{"role": role, "content": c} for role, c in r.messages],
                temperature=r.temperature, max_tokens=r.max_tokens, seed=r.seed, repeat_penalty=1.1)
            u = resp.get("usage", {})
            return Completion(resp["choices"][0]["message"]["content"] or "", u.get("prompt_tokens"),
                              u.get("completion_tokens"))

        return generate


class FakeBackend:
    """Deterministic offline stand-in: answers each stage's prompt in the expected shape, from the data the
    prompt carries. Generation quality is not the point; it makes every stage runnable without a model."""

    def __init__(self, cfg: LLMConfig | None = None):
        self.name = "fake"

    def complete(self, requests: list[ChatRequest]) -> list[Completion | Exception]:
        return [Completion(fake_answer(r)) for r in requests]


def fake_answer(r: ChatRequest) -> str:
    prompt = r.messages[-1][1]  # the last user turn: system prompts and examples mention every tag
    culture, task = _field(prompt, "Culture"), _field(prompt, "Task")
    n = int(m.group(1)) if (m := re.search(r"Write (\d+) ", prompt)) else 3
    if "<material>" in prompt:
        labels = json.loads(_field(prompt, "Labels") or "[]")
        if m := re.search(r'must have the label ("[^"]*")', prompt):
            labels = [json.loads(m.group(1))]
        material = re.sub(r"\s+", " ", _tag(prompt, "material") or "")
        parts = [p.strip() for p in re.split(r"(?<=[.!?。])\s+", material) if len(p.strip()) > 10] or [material]
        # a few words of a material sentence: grounded, but not a verbatim copy
        return "\n".join(json.dumps({"text": " ".join(parts[i % len(parts)].split()[:8]) + f" (#{i + r.seed})",
                                     "label": labels[i % len(labels)] if labels else "answer"},
                                    ensure_ascii=False) for i in range(n))
    if "<documents>" in prompt:
        # the first sentence of each document, cited as the real prompt asks
        docs = re.findall(r'<doc n="(\d+)"[^>]*>(.*?)</doc>', _tag(prompt, "documents") or "", re.S)
        firsts = [(n, re.split(r"(?<=[.!?。])\s+", text.strip())[0]) for n, text in docs]
        return " ".join(f"{s.strip().rstrip('.')} [{n}]." for n, s in firsts if s.strip())
    if "<answer>" in prompt:  # the answer judge: "yes" when an accepted answer's words are in the answer
        accepted = json.loads(_field(prompt, "Accepted answers \\(any one of them is right\\)") or "[]")
        answer = (_tag(prompt, "answer") or "").casefold()
        return "yes" if any(a.casefold() in answer for a in accepted if a.strip()) else "no"
    if culture:
        demos = re.findall(r"\w{4,}", _tag(prompt, "demonstrations") or "")
        words = list(dict.fromkeys(w.casefold() for w in demos[:n] + ["customs", "norms", "language",
                                                                       "society", "values"]))
        picks = [words[(i + r.seed) % len(words)] + (f" {i // len(words)}" if i >= len(words) else "")
                 for i in range(n)]
        return json.dumps([f"{culture} {task} {p}" for p in picks])
    return "ok"


def _tag(text: str, name: str) -> str | None:
    m = re.search(rf"<{name}>(.*?)</{name}>", text, re.DOTALL)
    return m.group(1).strip() if m else None


def _field(text: str, name: str) -> str | None:
    m = re.search(rf"^{name}: (.+)$", text, re.MULTILINE)
    return m.group(1).strip() if m else None


def _openai(cfg: LLMConfig) -> LLMBackend:
    from culturemanager.backends.openai_chat import OpenAIBackend  # imports openai only when it is used

    return OpenAIBackend(cfg)


def _llama_server(cfg: LLMConfig) -> LLMBackend:
    from culturemanager.backends.llamaserver import LlamaServerBackend  # it imports this module: import it late

    return LlamaServerBackend(cfg)


BACKENDS: dict[str, Callable[[LLMConfig], LLMBackend]] = {
    "local": LocalBackend,
    "openai": _openai,
    "llama_server": _llama_server,
    "fake": FakeBackend,
}


def main() -> None:
    cfg = LLMConfig(backend="local", model=sys.argv[1], temperature=0.0)
    print(LocalBackend(cfg).complete([ChatRequest((("user", sys.argv[2]),), 0.0, 256)])[0])


if __name__ == "__main__":
    main()
