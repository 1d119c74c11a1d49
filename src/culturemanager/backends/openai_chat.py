"""The `openai` LLM backend: any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server).

- The key is read from the environment variable `generator.api_key_env` (backends/secrets.py) and never
  logged; a local server (`base_url` set) works without one.
- Retries are ours, not the openai client's (`max_retries=0` there), so that each one is a line in
  `calls.jsonl`: connection errors, timeouts, 408/409/429 and 5xx are retried up to `generator.max_retries`
  times, waiting the server's Retry-After (`retry-after-ms` or `retry-after`, capped at MAX_WAIT_S) or else an
  exponential backoff; 4xx and malformed answers fail at once (the stage retries those with another seed).
- Deadline: `generator.timeout_s` is the wall-clock limit of one attempt, from sending the request to the
  answer's last byte (`retry.deadline_hooks`), with a watchdog thread as the backstop
  (`retry.run_with_deadline`); a server that drips bytes cannot hold a call longer.
- Only the failures this backend expects (HTTP, API, timeouts, unparsable answers) become counted call
  failures (`CallFailed`); anything else is a bug and raises.

Run: `python -m culturemanager.backends.openai_chat BASE_URL MODEL "prompt"` answers one prompt.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from culturemanager.backends.chat import Attempt, BackendError, CallFailed, ChatRequest, Completion
from culturemanager.backends.retry import (
    DeadlineExceeded,
    backoff,
    deadline_hooks,
    parse_retry_after,
    run_with_deadline,
)
from culturemanager.backends.secrets import redact, secret_from_env
from culturemanager.config import LLMConfig

MAX_WAIT_S = 30.0  # cap on one Retry-After / backoff wait, so a hostile header cannot stall the run
BACKOFF_S = 0.5  # first exponential backoff wait (0.5, 1, 2, ... s); tests set it to ~0
WATCHDOG_GRACE_S = 0.5  # the transport's deadline fires first; the watchdog only catches what it cannot
RETRY_STATUS = {408, 409, 429}
T, R = TypeVar("T"), TypeVar("R")


class MalformedAnswer(ValueError):
    """The endpoint answered 200 with something that is not a chat completion."""


class OpenAIBackend:
    """Any OpenAI-compatible chat endpoint, `concurrency` requests in flight at once."""

    def __init__(self, cfg: LLMConfig):
        import openai

        key = secret_from_env(cfg.api_key_env)
        if not key:
            if cfg.base_url is None:
                raise BackendError(f"the openai backend needs an API key in the environment variable "
                                   f"{cfg.api_key_env} (set generator.api_key_env to use another one)")
            key = "none"  # local servers (vLLM, Ollama, llama.cpp) usually accept any key
        self.cfg = cfg
        self.parallel = cfg.concurrency
        self.name = cfg.model if cfg.base_url is None else f"{cfg.model}@{cfg.base_url}"
        # an httpx client (openai takes one, whichever HTTP library it uses itself), with the deadline hooks
        http = httpx.Client(timeout=cfg.timeout_s, follow_redirects=True, event_hooks=deadline_hooks(cfg.timeout_s))
        self.client = openai.OpenAI(api_key=key, base_url=cfg.base_url, timeout=cfg.timeout_s, max_retries=0,
                                    http_client=http)
        # what a call may fail with without it being a bug in this program
        self.expected: tuple[type[BaseException], ...] = (openai.APIError, httpx.HTTPError, DeadlineExceeded,
                                                          MalformedAnswer, json.JSONDecodeError)

    def complete(self, requests: list[ChatRequest]) -> list[Completion | Exception]:
        return parallel_map(self.call, requests, self.cfg.concurrency)

    def call(self, r: ChatRequest) -> Completion | CallFailed:
        """One request with its retries; each attempt, timed on its own (the wait between them in none), travels
        with the result, so that each is its own line in calls.jsonl."""
        retried: list[Attempt] = []
        for attempt in range(self.cfg.max_retries + 1):
            started, t0 = time.time(), time.monotonic()
            try:
                answer = run_with_deadline(lambda: self.attempt(r), self.cfg.timeout_s + WATCHDOG_GRACE_S)
                answer.retried, answer.attempt = retried, Attempt(started, time.monotonic() - t0)
                return answer
            except self.expected as e:
                tried = Attempt(started, time.monotonic() - t0, redact(describe(e)))
                wait = retry_wait(e, attempt)
                if wait is None or attempt == self.cfg.max_retries:
                    return CallFailed(tried.error or "", retried, tried)
                retried.append(tried)
                time.sleep(wait)
        raise AssertionError("unreachable")  # the loop returns on its last attempt

    def attempt(self, r: ChatRequest) -> Completion:
        resp = self.client.chat.completions.create(
            model=self.cfg.model, messages=[{"role": role, "content": c} for role, c in r.messages],
            temperature=r.temperature, max_tokens=r.max_tokens, seed=r.seed)
        return completion_of(resp)


def completion_of(resp: object) -> Completion:
    """The answer of a chat completion; a body of another shape is a MalformedAnswer."""
    choices = getattr(resp, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise MalformedAnswer(f"not a chat completion with choices: {str(resp)[:120]!r}")
    message = getattr(choices[0], "message", None)
    content = getattr(message, "content", None)
    if content is not None and not isinstance(content, str):
        raise MalformedAnswer(f"message content is a {type(content).__name__}, not text")
    usage = getattr(resp, "usage", None)
    return Completion(content or "", getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None))


def retry_wait(e: BaseException, attempt: int) -> float | None:
    """Seconds to wait before retrying after `e`, or None when `e` is not worth a retry."""
    import openai

    if isinstance(e, openai.APIStatusError):
        if e.status_code not in RETRY_STATUS and e.status_code < 500:
            return None
        headers = e.response.headers
        ms = parse_retry_after(headers.get("retry-after-ms"))
        wait = ms / 1000 if ms is not None else parse_retry_after(headers.get("retry-after"))
        return min(MAX_WAIT_S, wait) if wait is not None else backoff(attempt, BACKOFF_S, MAX_WAIT_S)
    if isinstance(e, (openai.APIConnectionError, DeadlineExceeded, httpx.TransportError)):  # timeouts included
        return backoff(attempt, BACKOFF_S, MAX_WAIT_S)
    return None


def describe(e: BaseException) -> str:
    """A one-line account of a failed attempt: the error's type, its HTTP status, message and cause."""
    status = getattr(e, "status_code", None)
    cause = f" ({type(e.__cause__).__name__}: {e.__cause__})" if e.__cause__ and str(e.__cause__) else ""
    return f"{type(e).__name__}{f' (HTTP {status})' if status else ''}: {str(e)[:300]}{cause[:300]}"


def parallel_map(fn: Callable[[T], R], items: list[T], workers: int) -> list[R]:
    """fn over items, `workers` at a time, in daemon threads: Ctrl-C stops the run at once (a thread pool's
    workers would be waited for, each up to its call's deadline). An exception of fn is re-raised here."""
    results: list[Any] = [None] * len(items)
    errors: dict[int, BaseException] = {}
    todo = iter(enumerate(items))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                nxt = next(todo, None)
            if nxt is None:
                return
            i, item = nxt
            try:
                results[i] = fn(item)
            except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread below
                errors[i] = e

    threads = [threading.Thread(target=work, daemon=True, name="openai-worker")
               for _ in range(min(workers, len(items)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[min(errors)]
    return results


def main() -> None:
    cfg = LLMConfig(backend="openai", base_url=sys.argv[1], model=sys.argv[2], temperature=0.0)
    print(OpenAIBackend(cfg).complete([ChatRequest((("user", sys.argv[3]),), 0.0, 256)])[0])


if __name__ == "__main__":
    main()
