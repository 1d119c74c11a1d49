"""What every LLM backend speaks: a chat request, its completion, and the two ways a call fails.

`ChatRequest` is the cache key's content (messages, sampling settings, seed); `Completion` the answer with its
token counts, its own attempt's timing and the attempts retried before it; a backend returns, per request, a
Completion or a `CallFailed` (an expected failure: HTTP, timeout, malformed answer), and raises `BackendError`
when it cannot be used at all (missing key or model). Backends: `llm.py` (local, fake, and the cached wrapper
every call goes through), `openai_chat.py` (any OpenAI-compatible endpoint), `llamaserver.py` (llama.cpp's
server, run by the run).

Run: imported by the backends; no entry point of its own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[tuple[str, str], ...]  # (role, content)
    temperature: float = 0.7
    max_tokens: int = 384
    seed: int = 0

    def prompt_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.messages, ensure_ascii=False).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Attempt:
    """One try of a request, as its line in calls.jsonl tells it: when it started (Unix time), how long it took
    (the wait before the next try not included), and why it failed (None: it answered)."""

    started: float
    seconds: float
    error: str | None = None


@dataclass
class Completion:
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached: bool = False
    retried: list[Attempt] = field(default_factory=list)  # the failed attempts before this answer
    attempt: Attempt | None = None  # the try that answered; None: the backend does not time its calls


class CallFailed(Exception):
    """A request that failed in a way its backend expects (HTTP error, timeout, malformed answer), after its
    retries; `retried` holds the attempts before the last one, `attempt` the last one (when timed)."""

    def __init__(self, error: str, retried: list[Attempt] | None = None, attempt: Attempt | None = None):
        super().__init__(error)
        self.retried, self.attempt = list(retried or []), attempt


class LLMBackend(Protocol):
    """`name` is the model's identity (in provenance and the cache key). A backend may set `parallel`: how
    many requests it answers at once (the cache stores answers after each such chunk); or offer
    `complete_each(requests, on_answer)`, calling `on_answer(index, answer, seconds)` as each one finishes
    (the cache stores each answer at once)."""

    name: str

    def complete(self, requests: list[ChatRequest]) -> list[Completion | Exception]: ...


class BackendError(RuntimeError):
    """A backend cannot be used (missing key, missing model); the message says what to do."""
