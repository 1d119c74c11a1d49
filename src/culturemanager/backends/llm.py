"""LLM backends behind one small interface, plus the disk cache and call log every call goes through.

Backends (`BACKENDS` below, chosen by `generator.backend`):
- `local`: a transformers model (or llama.cpp when `engine = "llama_cpp"`), resolved by `models.py`;
- `openai`: any OpenAI-compatible endpoint (GPT-4o, vLLM, Ollama, llama.cpp server); the API key is read from
  the environment variable named in the config and never logged; bounded concurrency; retries with backoff;
- `fake`: a deterministic stand-in that writes well-formed answers from the prompt alone (tests, dry runs).

`CachedLLM` wraps a backend: each request is keyed by its full content (model, messages, sampling settings,
seed); a cached answer is returned without a call, so a re-run or a resumed run repeats no finished call. Every
request, cached or not, is appended to `calls.jsonl`.

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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.progress import MofNCompleteColumn, Progress

from culturemanager.backends.secrets import redact, secret_from_env
from culturemanager.config import LLMConfig
from culturemanager.records import CallRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[tuple[str, str], ...]  # (role, content)
    temperature: float = 0.7
    max_tokens: int = 384
    seed: int = 0

    def prompt_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.messages, ensure_ascii=False).encode()).hexdigest()[:16]


@dataclass
class Completion:
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached: bool = False


class LLMBackend(Protocol):
    """`name` is the model's identity (in provenance and the cache key). A backend may set `parallel`: how
    many requests it answers at once (the cache stores answers after each such chunk); or offer
    `complete_each(requests, on_answer)`, calling `on_answer(index, answer, seconds)` as each one finishes
    (the cache stores each answer at once)."""

    name: str

    def complete(self, requests: list[ChatRequest]) -> list[Completion | Exception]: ...


class BackendError(RuntimeError):
    """A backend cannot be used (missing key, missing model); the message says what to do."""


# ------------------------------------------------------------------------------------- the cached LLM

@dataclass
class CachedLLM:
    """Cache + call log around a backend. One per run directory."""

    backend: LLMBackend
    cache_path: Path
    log_path: Path
    progress: bool = False
    counts: dict[str, int] = field(default_factory=lambda: {"calls": 0, "cached": 0, "errors": 0})
    _cache: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self._cache = load_cache(self.cache_path)

    @property
    def name(self) -> str:
        return self.backend.name

    def complete(self, requests: list[ChatRequest], stage: str) -> list[Completion | None]:
        """Answers in request order; None where the backend failed (logged and counted, never raised)."""
        keys = [self.key(r) for r in requests]
        out: list[Completion | None] = [None] * len(requests)
        todo = []
        for i, k in enumerate(keys):
            hit = self._cache.get(k)
            if hit is not None:
                out[i] = Completion(hit["text"], hit.get("prompt_tokens"), hit.get("completion_tokens"), True)
                self._log(stage, requests[i], 0.0, out[i], None)
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

            def settle(i: int, a: Completion | Exception, latency: float) -> None:
                if isinstance(a, Exception):
                    self._log(stage, requests[i], latency, None, a)
                else:
                    self._store(keys[i], a)
                    out[i] = a
                    self._log(stage, requests[i], latency, a, None)
                bar.update(job, advance=1)

            if each is not None:  # each answer is stored as it finishes: no chunk waits for its slowest call
                each([requests[i] for i in todo], lambda j, a, latency: settle(todo[j], a, latency))
                return out
            for start in range(0, len(todo), chunk):
                part = todo[start:start + chunk]
                t0 = time.time()
                answers = self.backend.complete([requests[i] for i in part])
                latency = (time.time() - t0) / len(part)
                for i, a in zip(part, answers):
                    settle(i, a, latency)
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
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.cache_path, "a+", encoding="utf-8") as f:
                if f.tell() > 0:  # a killed run may have left half a line: never append to it
                    f.seek(f.tell() - 1)
                    if f.read(1) != "\n":
                        f.write("\n")
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def _log(self, stage: str, r: ChatRequest, latency: float, c: Completion | None,
             err: Exception | None) -> None:
        outcome = "error" if err else ("cached" if c and c.cached else "ok")
        self.counts[{"error": "errors", "cached": "cached", "ok": "calls"}[outcome]] += 1
        rec = CallRecord(stage=stage, model=self.backend.name, prompt_hash=r.prompt_hash(),
                         latency_s=round(latency, 3), prompt_tokens=c.prompt_tokens if c else None,
                         completion_tokens=c.completion_tokens if c else None, outcome=outcome,
                         error=redact(repr(err)) if err else None, time=time.time())
        with self._lock:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(rec.model_dump_json() + "\n")
        if err:
            log.warning("LLM call failed in %s: %s", stage, redact(str(err))[:300])


def load_cache(path: Path) -> dict[str, dict[str, Any]]:
    cache: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return cache
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                entry = json.loads(line)
                cache[entry["key"]] = entry
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a half-written last line from a killed run: that call is simply redone
    return cache


# ------------------------------------------------------------------------------------------ backends

def make_backend(cfg: LLMConfig) -> LLMBackend:
    return BACKENDS[cfg.backend](cfg)


class OpenAIBackend:
    """Any OpenAI-compatible chat endpoint. Retries with exponential backoff are the openai client's own
    (it honours Retry-After on 429); concurrency is bounded by a thread pool."""

    def __init__(self, cfg: LLMConfig):
        from openai import OpenAI

        key = secret_from_env(cfg.api_key_env)
        if not key:
            if cfg.base_url is None:
                raise BackendError(f"the openai backend needs an API key in the environment variable "
                                   f"{cfg.api_key_env} (set generator.api_key_env to use another one)")
            key = "none"  # local servers (vLLM, Ollama, llama.cpp) usually accept any key
        self.cfg = cfg
        self.parallel = max(1, cfg.concurrency)
        self.name = cfg.model if cfg.base_url is None else f"{cfg.model}@{cfg.base_url}"
        self.client = OpenAI(api_key=key, base_url=cfg.base_url, timeout=cfg.timeout_s,
                             max_retries=cfg.max_retries)

    def complete(self, requests: list[ChatRequest]) -> list[Completion | Exception]:
        with ThreadPoolExecutor(max_workers=max(1, self.cfg.concurrency)) as pool:
            return list(pool.map(self._one, requests))

    def _one(self, r: ChatRequest) -> Completion | Exception:
        try:
            resp = self.client.chat.completions.create(
                model=self.cfg.model, messages=[{"role": role, "content": c} for role, c in r.messages],
                temperature=r.temperature, max_tokens=r.max_tokens, seed=r.seed)
            usage = resp.usage
            return Completion(resp.choices[0].message.content or "",
                              usage.prompt_tokens if usage else None, usage.completion_tokens if usage else None)
        except Exception as e:  # noqa: BLE001 - counted and logged by CachedLLM, the run goes on
            return e


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


def _llama_server(cfg: LLMConfig) -> LLMBackend:
    from culturemanager.backends.llamaserver import LlamaServerBackend  # it imports this module: import it late

    return LlamaServerBackend(cfg)


BACKENDS: dict[str, Callable[[LLMConfig], LLMBackend]] = {
    "local": LocalBackend,
    "openai": OpenAIBackend,
    "llama_server": _llama_server,
    "fake": FakeBackend,
}


def main() -> None:
    cfg = LLMConfig(backend="local", model=sys.argv[1], temperature=0.0)
    print(LocalBackend(cfg).complete([ChatRequest((("user", sys.argv[2]),), 0.0, 256)])[0])


if __name__ == "__main__":
    main()
