"""Tests for the LLM layer: the disk cache and call log around a backend, key redaction, the fake backend, and
the OpenAI-compatible backend against a real HTTP server on 127.0.0.1 (started in the test, no network).

Run: .venv/bin/pytest tests/test_llm.py -q
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from culturemanager.backends.llm import (
    BACKENDS,
    BackendError,
    CachedLLM,
    ChatRequest,
    Completion,
    FakeBackend,
    load_cache,
    make_backend,
)
from culturemanager.backends.openai_chat import OpenAIBackend
from culturemanager.backends.secrets import redact
from culturemanager.config import Culture, LLMConfig, Task
from culturemanager.records import CallRecord
from culturemanager.text.prompts import build_query_messages, parse_queries

SECRET = "sk-test-SECRETkey0123456789"


def request(text: str = "hello", seed: int = 0) -> ChatRequest:
    return ChatRequest((("system", "be brief"), ("user", text)), temperature=0.0, max_tokens=16, seed=seed)


def cached(tmp_path: Path, backend) -> CachedLLM:
    return CachedLLM(backend, tmp_path / "cache.jsonl", tmp_path / "calls.jsonl")


def call_log(tmp_path: Path) -> list[CallRecord]:
    path = tmp_path / "calls.jsonl"
    return [CallRecord.model_validate_json(line) for line in path.read_text(encoding="utf-8").splitlines()]


class CountingBackend:
    """A fake LLM: echoes the last user turn, counts the requests it really answers, fails on 'FAIL'."""

    name = "counting"

    def __init__(self) -> None:
        self.seen: list[ChatRequest] = []

    def complete(self, requests: list[ChatRequest]) -> list[Completion | Exception]:
        self.seen += requests
        return [RuntimeError(f"boom with key {SECRET}") if "FAIL" in r.messages[-1][1]
                else Completion(f"echo: {r.messages[-1][1]}", 3, 2) for r in requests]


# ---------------------------------------------------------------------------------------------- CachedLLM

def test_cache_serves_repeated_request(tmp_path):
    backend = CountingBackend()
    llm = cached(tmp_path, backend)
    first = llm.complete([request("a"), request("b")], stage="queries")
    assert [c.text for c in first] == ["echo: a", "echo: b"]
    assert not any(c.cached for c in first)
    assert llm.counts == {"calls": 2, "cached": 0, "errors": 0, "retries": 0}

    second = llm.complete([request("a")], stage="queries")
    assert second[0].text == "echo: a" and second[0].cached
    assert (second[0].prompt_tokens, second[0].completion_tokens) == (3, 2)
    assert len(backend.seen) == 2  # not asked again
    assert llm.counts == {"calls": 2, "cached": 1, "errors": 0, "retries": 0}


def test_cache_key_covers_sampling_settings(tmp_path):
    backend = CountingBackend()
    llm = cached(tmp_path, backend)
    llm.complete([request("a", seed=0), request("a", seed=1),
                  ChatRequest(request("a").messages, temperature=0.5, max_tokens=16)], stage="s")
    assert len(backend.seen) == 3
    assert llm.counts["calls"] == 3


def test_mixed_batch_keeps_request_order(tmp_path):
    backend = CountingBackend()
    llm = cached(tmp_path, backend)
    llm.complete([request("b")], stage="s")
    out = llm.complete([request("a"), request("b"), request("c")], stage="s")
    assert [c.text for c in out] == ["echo: a", "echo: b", "echo: c"]
    assert [c.cached for c in out] == [False, True, False]
    assert [r.messages[-1][1] for r in backend.seen] == ["b", "a", "c"]


def test_cache_persists_across_instances(tmp_path):
    cached(tmp_path, CountingBackend()).complete([request("a")], stage="queries")
    backend = CountingBackend()
    again = cached(tmp_path, backend)
    out = again.complete([request("a")], stage="queries")
    assert out[0].text == "echo: a" and out[0].cached
    assert backend.seen == []
    assert again.counts == {"calls": 0, "cached": 1, "errors": 0, "retries": 0}


def test_cache_is_per_model(tmp_path):
    cached(tmp_path, CountingBackend()).complete([request("a")], stage="s")
    other = FakeBackend()
    out = cached(tmp_path, other).complete([request("a")], stage="s")
    assert out[0].text == "ok" and not out[0].cached


def test_call_log_has_one_record_per_request(tmp_path):
    llm = cached(tmp_path, CountingBackend())
    llm.complete([request("a"), request("b")], stage="queries")
    llm.complete([request("a")], stage="summarize")
    records = call_log(tmp_path)
    assert [(r.stage, r.outcome) for r in records] == [("queries", "ok"), ("queries", "ok"),
                                                       ("summarize", "cached")]
    assert all(r.model == "counting" for r in records)
    assert records[0].prompt_hash == request("a").prompt_hash() == records[2].prompt_hash
    assert records[0].prompt_hash != records[1].prompt_hash
    assert (records[0].prompt_tokens, records[0].completion_tokens) == (3, 2)
    assert records[2].latency_s == 0.0


def test_truncated_last_cache_line_is_ignored(tmp_path):
    cached(tmp_path, CountingBackend()).complete([request("a"), request("b")], stage="s")
    cache = tmp_path / "cache.jsonl"
    lines = cache.read_text(encoding="utf-8").splitlines()
    # a run killed mid-write leaves half a line; plus stray garbage and a line without a key
    cache.write_text(lines[0] + "\n" + '[1, 2]\n{"text": "no key"}\n' + lines[1][: len(lines[1]) // 2],
                     encoding="utf-8")
    assert len(load_cache(cache)) == 1
    backend = CountingBackend()
    llm = cached(tmp_path, backend)
    out = llm.complete([request("a"), request("b")], stage="s")
    assert [c.cached for c in out] == [True, False]
    assert [r.messages[-1][1] for r in backend.seen] == ["b"]
    # the redone call is appended on a line of its own, so the next load finds both
    assert len(load_cache(cache)) == 2


def test_unreadable_cache_lines_are_counted_and_logged(tmp_path, caplog):
    """They used to be dropped without a count or a log line."""
    cached(tmp_path, CountingBackend()).complete([request("a")], stage="s")
    cache = tmp_path / "cache.jsonl"
    cache.write_text(cache.read_text(encoding="utf-8") + '[1, 2]\n{"text": "no key"}\n{"key": "k", "te',
                     encoding="utf-8")
    llm = cached(tmp_path, CountingBackend())
    assert llm.unreadable_cache_lines == 3
    assert "3 line(s) could not be read" in caplog.text and str(cache) in caplog.text


def test_an_empty_answer_is_not_cached(tmp_path):
    class Empty(CountingBackend):
        def complete(self, requests):
            self.seen += requests
            return [Completion("  ") for _ in requests]

    backend = Empty()
    cached(tmp_path, backend).complete([request("a")], stage="s")
    cached(tmp_path, backend).complete([request("a")], stage="s")
    assert len(backend.seen) == 2  # asked again: an empty answer may be a server's hiccup


def test_backend_error_gives_none_counted_logged_not_cached(tmp_path, caplog):
    backend = CountingBackend()
    llm = cached(tmp_path, backend)
    out = llm.complete([request("ok"), request("FAIL")], stage="synthesize")
    assert out[0] is not None and out[0].text == "echo: ok"
    assert out[1] is None
    assert llm.counts == {"calls": 1, "cached": 0, "errors": 1, "retries": 0}
    records = call_log(tmp_path)
    assert [r.outcome for r in records] == ["ok", "error"]
    assert "boom" in records[1].error
    assert SECRET not in (tmp_path / "calls.jsonl").read_text(encoding="utf-8")
    assert SECRET not in caplog.text
    assert len(load_cache(tmp_path / "cache.jsonl")) == 1

    # a failed request is not cached: the next run asks again
    again = llm.complete([request("FAIL")], stage="synthesize")
    assert again == [None]
    assert [r.messages[-1][1] for r in backend.seen] == ["ok", "FAIL", "FAIL"]
    assert llm.counts["errors"] == 2


@pytest.mark.parametrize("text, expected", [
    (f"AuthenticationError('bad key {SECRET}')", "AuthenticationError('bad key sk-***')"),
    ("Authorization: Bearer abcdef123456", "Authorization: Bearer ***"),
    ("no secrets here, sk-ab short", "no secrets here, sk-ab short"),
])
def testredact(text, expected):
    assert redact(text) == expected


# ------------------------------------------------------------------------------------------- FakeBackend

def test_backend_dispatch():
    assert set(BACKENDS) == {"local", "openai", "llama_server", "fake"}
    assert isinstance(make_backend(LLMConfig(backend="fake")), FakeBackend)


@pytest.mark.parametrize("mode, demos, n", [
    ("task_agnostic", [], 3),
    ("task_agnostic", [], 5),
    ("task_specific", ["Los andaluces no trabajan nunca", "Qué buen partido del Barça ayer"], 4),
    ("task_agnostic", [], 8),  # more queries than the fake's built-in topic words
    ("task_specific", ["Vete a casa", "Vete a tu casa ahora"], 4),  # demonstrations repeat words
])
def test_fake_backend_answers_queries_prompt(mode, demos, n):
    culture, task = Culture(name="Spanish", language="es"), Task(id="hate", label="hate speech")
    messages = build_query_messages(culture, task, mode, demos, n)
    [answer] = FakeBackend().complete([ChatRequest(messages, 0.0, 256, seed=1)])
    queries = parse_queries(answer.text)
    assert len(queries) == n
    assert all(q.startswith("Spanish hate speech ") for q in queries)


def test_fake_backend_is_deterministic():
    r = ChatRequest(build_query_messages(Culture(name="Turkish"), Task(id="t", label="spam"), "task_agnostic",
                                         [], 3), 0.7, 256, seed=2)
    assert FakeBackend().complete([r])[0].text == FakeBackend().complete([r])[0].text


# ---------------------------------------------------------------------------------- OpenAI-compatible API

class FakeOpenAIServer:
    """A real HTTP server on 127.0.0.1 that answers /v1/chat/completions from a script of (status, headers)."""

    def __init__(self, script: list[int] | None = None, reply: str = "Hola desde el servidor"):
        self.script = list(script or [])  # statuses to answer before 200s
        self.reply = reply
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                        "body": body})
                status = server.script.pop(0) if server.script else 200
                if status == 200:
                    payload = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000,
                               "model": body["model"],
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": server.reply}}],
                               "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}
                else:
                    payload = {"error": {"message": f"status {status} for {self.headers.get('Authorization')}",
                                         "type": "server_error", "code": status}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                    self.send_header("retry-after-ms", "10")  # keeps the retry fast
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> FakeOpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def no_proxy(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
                "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def openai_cfg(url: str, **kw) -> LLMConfig:
    base = dict(backend="openai", base_url=url, model="tiny-chat", api_key_env="CM_TEST_KEY", timeout_s=5.0,
                max_retries=0, concurrency=2)
    return LLMConfig(**(base | kw))


def test_openai_backend_round_trip(tmp_path, monkeypatch, no_proxy):
    monkeypatch.setenv("CM_TEST_KEY", SECRET)
    with FakeOpenAIServer() as server:
        backend = make_backend(openai_cfg(server.url))
        assert isinstance(backend, OpenAIBackend)
        llm = cached(tmp_path, backend)
        [out] = llm.complete([request("¿Qué es el flamenco?", seed=3)], stage="summarize")
        assert out.text == "Hola desde el servidor"
        assert (out.prompt_tokens, out.completion_tokens) == (11, 7)
        [again] = llm.complete([request("¿Qué es el flamenco?", seed=3)], stage="summarize")
        assert again.cached and again.text == out.text
    assert len(server.requests) == 1
    sent = server.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["auth"] == f"Bearer {SECRET}"
    assert sent["body"]["model"] == "tiny-chat"
    assert sent["body"]["messages"] == [{"role": "system", "content": "be brief"},
                                        {"role": "user", "content": "¿Qué es el flamenco?"}]
    assert (sent["body"]["seed"], sent["body"]["max_tokens"], sent["body"]["temperature"]) == (3, 16, 0.0)
    assert backend.name == f"tiny-chat@{server.url}"
    log_text = (tmp_path / "calls.jsonl").read_text(encoding="utf-8")
    assert SECRET not in log_text
    assert [r.outcome for r in call_log(tmp_path)] == ["ok", "cached"]
    assert call_log(tmp_path)[0].prompt_tokens == 11
    assert SECRET not in (tmp_path / "cache.jsonl").read_text(encoding="utf-8")


def test_openai_backend_concurrent_batch_keeps_order(tmp_path, monkeypatch, no_proxy):
    monkeypatch.setenv("CM_TEST_KEY", SECRET)
    with FakeOpenAIServer() as server:
        llm = cached(tmp_path, OpenAIBackend(openai_cfg(server.url, concurrency=4)))
        out = llm.complete([request(f"q{i}") for i in range(6)], stage="queries")
    assert all(c is not None and c.text == "Hola desde el servidor" for c in out)
    assert sorted(r["body"]["messages"][-1]["content"] for r in server.requests) == [f"q{i}" for i in range(6)]
    assert llm.counts == {"calls": 6, "cached": 0, "errors": 0, "retries": 0}


def test_openai_backend_retries_429(tmp_path, monkeypatch, no_proxy):
    monkeypatch.setenv("CM_TEST_KEY", SECRET)
    with FakeOpenAIServer(script=[429]) as server:
        llm = cached(tmp_path, OpenAIBackend(openai_cfg(server.url, max_retries=2, timeout_s=2.0)))
        [out] = llm.complete([request("retry me")], stage="queries")
    assert out is not None and out.text == "Hola desde el servidor"
    assert len(server.requests) == 2
    assert llm.counts == {"calls": 1, "cached": 0, "errors": 0, "retries": 1}
    # the retry is ours (the openai client's own are off), so it is a line of the call log
    assert [(r.outcome, r.attempt) for r in call_log(tmp_path)] == [("retry", 1), ("ok", 2)]
    assert "429" in call_log(tmp_path)[0].error


def test_openai_backend_server_error_is_counted(tmp_path, monkeypatch, no_proxy, caplog):
    monkeypatch.setenv("CM_TEST_KEY", SECRET)
    with FakeOpenAIServer(script=[500, 500]) as server:
        llm = cached(tmp_path, OpenAIBackend(openai_cfg(server.url)))
        [out] = llm.complete([request("fail me")], stage="queries")
    assert out is None
    assert len(server.requests) == 1  # max_retries=0
    assert llm.counts == {"calls": 0, "cached": 0, "errors": 1, "retries": 0}
    [rec] = call_log(tmp_path)
    assert rec.outcome == "error" and "500" in rec.error
    # the server echoed the Authorization header into its error message: it must not reach the log
    assert SECRET not in (tmp_path / "calls.jsonl").read_text(encoding="utf-8")
    assert SECRET not in caplog.text
    assert not (tmp_path / "cache.jsonl").exists() or load_cache(tmp_path / "cache.jsonl") == {}


def test_openai_backend_needs_key_without_base_url(monkeypatch, no_proxy):
    monkeypatch.delenv("CM_MISSING_KEY", raising=False)
    with pytest.raises(BackendError, match="CM_MISSING_KEY"):
        OpenAIBackend(LLMConfig(backend="openai", model="gpt-4o", api_key_env="CM_MISSING_KEY"))


def test_openai_backend_local_server_without_key(tmp_path, monkeypatch, no_proxy):
    monkeypatch.delenv("CM_MISSING_KEY", raising=False)
    with FakeOpenAIServer() as server:
        backend = OpenAIBackend(openai_cfg(server.url, api_key_env="CM_MISSING_KEY"))
        [out] = backend.complete([request("hi")])
    assert isinstance(out, Completion) and out.text == "Hola desde el servidor"
    assert server.requests[0]["auth"] == "Bearer none"
