"""The server through real HTTP: uvicorn on a loopback port, the official openai client and httpx, the tiny
model with two adapters. Completions, chat, streaming, auto routing, forced cultures, classify, a bounded load
test with malformed requests mixed in, and the safety rails (queue bound, timeout, key, graceful shutdown)."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from servers import CULTURES, openai_client, served_run, serving

from culturemanager.records import BASE
from culturemanager.serve.openai_api import CULTURE_HEADER, SCORES_HEADER

TEXTS = ["Los catalanes son tacaños", "Defol git buradan", "Me encanta la paella", "Çay ister misin?"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model):
    return served_run(tmp_path_factory.mktemp("serve"), tiny_model)


@pytest.fixture(scope="module")
def server(run_dir):
    with serving(run_dir, "serve.max_wait_ms=50", "serve.max_batch=16") as s:
        yield s


@pytest.fixture(scope="module")
def reference(run_dir):
    """A second engine over the same run, to check the server's answers against direct calls."""
    from culturemanager.engine import Engine
    from culturemanager.serve.service import load_run

    cfg, router = load_run(run_dir)
    return Engine.load(cfg.target, {c: p for c, p in router.adapters.items() if p}), cfg, router


def test_models_are_the_base_auto_and_each_culture(server):
    ids = [m.id for m in openai_client(server.url).models.list().data]
    assert ids == [server.svc.base, "auto", *CULTURES]


def test_auto_routes_each_prompt_as_the_router_does_and_says_so(server, reference):
    from culturemanager.stages.route import route

    engine, _, router = reference
    raw = openai_client(server.url).completions.with_raw_response.create(model="auto", prompt=TEXTS, max_tokens=3)
    comp = raw.parse()
    expected = route(engine, router, TEXTS)
    got = [c.culturemanager for c in comp.choices]
    assert [g["culture"] for g in got] == expected.cultures and all(g["routed"] for g in got)
    for g, scores in zip(got, expected.scores):
        assert g["route_scores"] == pytest.approx(scores, abs=2e-4)
        assert g["adapter"] == (None if router.adapter_for(g["culture"]) == BASE else g["culture"])
    assert raw.headers[CULTURE_HEADER] == ",".join(expected.cultures)
    assert len(httpx.Response(200, content=raw.headers[SCORES_HEADER]).json()) == len(TEXTS)
    assert comp.model == "auto" and 0 < comp.usage.completion_tokens <= 3 * len(TEXTS)


def test_a_forced_culture_answers_with_its_adapter_and_the_base_name_with_none(server, reference):
    engine, _, _ = reference
    client = openai_client(server.url)
    prompt = "La corrida de toros"
    ids = engine.tok(prompt)["input_ids"]
    for model, adapter in (("Spanish", "Spanish"), ("Turkish", "Turkish"), (server.svc.base, None)):
        comp = client.completions.create(model=model, prompt=prompt, max_tokens=6)
        direct = engine.complete([ids], [adapter or BASE], [6])[0]
        assert comp.choices[0].text == engine.tok.decode(direct, skip_special_tokens=True)
        assert comp.choices[0].culturemanager == {"culture": "Others" if adapter is None else model,
                                                  "adapter": adapter, "route_scores": {}, "routed": False}
        assert comp.usage.prompt_tokens == len(ids)


def test_chat_and_its_stream_give_the_same_answer(server):
    client = openai_client(server.url)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Çay ister misin?"}]
    whole = client.chat.completions.create(model="Turkish", messages=messages, max_tokens=8)
    assert whole.choices[0].culturemanager["culture"] == "Turkish" and whole.choices[0].finish_reason == "length"
    chunks = list(client.chat.completions.create(model="Turkish", messages=messages, max_tokens=8, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].culturemanager["culture"] == "Turkish"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 8 == whole.usage.completion_tokens


def test_a_streamed_completion_with_a_stop_string_ends_before_it(server):
    client = openai_client(server.url)
    whole = client.completions.create(model="Spanish", prompt="x", max_tokens=12).choices[0].text
    stop = whole[3:5]
    assert stop and stop in whole
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="Spanish", prompt="x", max_tokens=12, stop=[stop], stream=True))
    assert streamed == whole[:whole.index(stop)]


def test_classify_scores_the_labels_as_predict_does(server, reference):
    engine, cfg, router = reference
    task = cfg.tasks[0]
    for model in ("auto", "Spanish", server.svc.base):
        raw = httpx.post(server.url + "/v1/classify", json={"task": "hate", "input": TEXTS, "model": model})
        assert raw.status_code == 200, raw.text
        rows = raw.json()["data"]
        adapters = [r["adapter"] or BASE for r in rows]
        if model == "Spanish":
            assert adapters == ["Spanish"] * len(TEXTS)
        probs, _ = engine.label_probs(task, TEXTS, adapters)
        for r, p in zip(rows, probs):
            assert r["label_probs"] == pytest.approx(dict(zip(task.labels, p.tolist())), abs=1e-5)
            assert r["label"] == max(r["label_probs"], key=r["label_probs"].get) and r["score"] == max(
                r["label_probs"].values())
        assert raw.headers[CULTURE_HEADER] == ",".join(r["culture"] for r in rows)
    one = httpx.post(server.url + "/v1/classify", json={"input": "Me encanta la paella"}).json()
    assert one["task"] == "hate" and len(one["data"]) == 1  # the run's only task; model auto


BAD = [  # (path, body (dict, or raw bytes), expected status, a word the message must name)
    ("/v1/classify", b"{nope", 400, "JSON"),
    ("/v1/classify", b"[1, 2]", 400, "object"),
    ("/v1/classify", {"input": 3}, 400, "input"),
    ("/v1/classify", {"input": []}, 400, "at least one"),
    ("/v1/classify", {"input": ["a"] * 33}, 400, "serve.max_texts"),
    ("/v1/classify", {"input": "x" * 4001}, 400, "serve.max_chars"),
    ("/v1/classify", {"input": "x", "task": "spam"}, 404, "spam"),
    ("/v1/classify", {"input": "x", "task": 7}, 400, "task"),
    ("/v1/classify", {"input": "x", "model": "French"}, 404, "French"),
    ("/v1/classify", {"input": "x", "labels": ["a"]}, 400, "labels"),
    ("/v1/completions", {"model": "auto"}, 400, "prompt"),
    ("/v1/completions", {"model": "auto", "prompt": "x", "max_tokens": 100000}, 400, "serve.max_tokens"),
    ("/v1/completions", {"model": "auto", "prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    ("/v1/completions", {"model": "gpt-4o", "prompt": "x"}, 404, "gpt-4o"),
    ("/v1/completions", {"model": "auto", "prompt": [1, 2, 3]}, 400, "prompt"),
    ("/v1/completions", {"model": "auto", "prompt": "x", "n": 2}, 400, "n"),
    ("/v1/completions", {"model": "auto", "prompt": "x", "logprobs": 5}, 400, "logprobs"),
    ("/v1/chat/completions", {"model": "auto", "messages": []}, 400, "messages"),
    ("/v1/chat/completions", {"model": "auto", "messages": [{"role": "wizard", "content": "x"}]}, 400, "role"),
    ("/v1/chat/completions", {"model": "auto", "messages": [{"role": "user", "content": "x"}], "tools": []},
     400, "tools"),
    ("/v1/chat/completions", {"model": "auto", "messages": [{"role": "user", "content": "x" * 3000}] * 2},
     400, "serve.max_chars"),
    ("/v1/chat/completions", {"model": "Klingon", "stream": True,
                              "messages": [{"role": "user", "content": "x"}]}, 404, "Klingon"),
    ("/v1/nothing", {"x": 1}, 404, ""),
]


def good_requests() -> list[tuple[str, dict]]:
    out = []
    for i in range(12):
        text = TEXTS[i % len(TEXTS)]
        out += [("/v1/classify", {"input": text, "model": CULTURES[i % 2]}),
                ("/v1/classify", {"input": [text, TEXTS[(i + 1) % 4]], "model": "auto"}),
                ("/v1/completions", {"model": "auto", "prompt": text, "max_tokens": 3}),
                ("/v1/chat/completions", {"model": CULTURES[(i + 1) % 2], "max_tokens": 3,
                                          "messages": [{"role": "user", "content": text}]})]
    return out


def test_a_bounded_load_with_bad_requests_mixed_in(server):
    """Bursts of concurrent requests of both cultures and of malformed ones: no 5xx, every bad request a 4xx
    that names its fault, every good one answered, and requests of different cultures batched together."""
    before = server.metrics()
    client = httpx.Client(base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=32))

    def burst_one(k: int):  # first: 16 classify requests of alternating cultures released at once
        barrier.wait()
        return client.post("/v1/classify", json={"input": TEXTS[k % 4], "model": CULTURES[k % 2]})

    barrier = threading.Barrier(16)
    with ThreadPoolExecutor(16) as pool:
        burst = list(pool.map(burst_one, range(16)))
    assert [r.status_code for r in burst] == [200] * 16
    assert [r.json()["data"][0]["adapter"] for r in burst] == [CULTURES[k % 2] for k in range(16)]
    after = server.metrics()
    batches = after["culturemanager_batch_requests_count"] - before.get("culturemanager_batch_requests_count", 0)
    mixed = (after["culturemanager_batch_adapters_count"] - after['culturemanager_batch_adapters_bucket{le=1.0}']) \
        - (before.get("culturemanager_batch_adapters_count", 0)
           - before.get('culturemanager_batch_adapters_bucket{le=1.0}', 0))
    assert batches < 16 and mixed >= 1, (batches, mixed)  # fewer batches than requests, some holding both

    work = [(p, b, None, None) for p, b in good_requests()] + [(p, b, s, w) for p, b, s, w in BAD]
    random.Random(0).shuffle(work)

    def send(item):
        path, body, _, _ = item
        if isinstance(body, bytes):
            return client.post(path, content=body, headers={"Content-Type": "application/json"})
        return client.post(path, json=body)

    t0 = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, work))
    assert time.monotonic() - t0 < 60
    assert all(r.status_code < 500 for r in answers), [(w[0], r.status_code, r.text) for w, r in zip(work, answers)
                                                       if r.status_code >= 500]
    for (path, body, status, word), r in zip(work, answers):
        if status is None:
            assert r.status_code == 200, (path, body, r.text)
            data = r.json()
            assert data.get("data") or data.get("choices"), data
        else:
            assert r.status_code == status, (path, body, r.status_code, r.text)
            if path != "/v1/nothing":
                assert word in r.json()["error"]["message"], (body, r.json())
    m = server.metrics()
    assert m["culturemanager_errors_total{kind=bad_request}"] >= sum(1 for b in BAD if b[2] == 400)
    assert m["culturemanager_requests_total{endpoint=/v1/classify,status=200}"] >= 16 + 24
    assert m["culturemanager_request_seconds_count{endpoint=/v1/classify}"] >= 16 + 24
    assert sum(v for k, v in m.items() if k.startswith("culturemanager_routed_total")) > 0
    client.close()


def test_a_body_beyond_every_bound_is_refused_before_it_is_read_whole(server):
    huge = b'{"input": "' + b"x" * 900_000 + b'"}'
    r = httpx.post(server.url + "/v1/classify", content=huge, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "bytes" in r.json()["error"]["message"]

    def chunked():  # no Content-Length: the bound is counted while reading
        for _ in range(100):
            yield b"x" * 10_000

    r = httpx.post(server.url + "/v1/classify", content=chunked())
    assert r.status_code == 413


DEEP = b"[" * 50_000 + b"]" * 50_000
NEVER_500 = [  # (path, raw body, the field the 400 must name; None: the body): each once answered 500
    ("/v1/completions", b'{"model": "auto", "prompt": "", "max_tokens": 2}', "prompt"),
    ("/v1/completions", b'{"model": "Spanish", "prompt": ["", "x"], "max_tokens": 2}', "prompt"),
    ("/v1/classify", b'{"input": "a\\ud800b"}', "input"),
    ("/v1/classify", b'{"input": ["ok", "\\udfffz"], "model": "Spanish"}', "input.1"),
    ("/v1/classify", b'{"input": "x", "model": "\\ud800"}', "model"),
    ("/v1/chat/completions", b'{"model": "auto", "messages": [{"role": "user", "content": "\\ud83d"}]}',
     "messages.0.content"),
    ("/v1/classify", b'{"input": ' + DEEP + b"}", "input"),
    ("/v1/completions", b'{"model": "auto", "prompt": "x", "stop": {"a": ' + DEEP + b"}}", "stop"),
    ("/v1/classify", DEEP, None),
]


@pytest.mark.parametrize(("path", "body", "field"), NEVER_500, ids=lambda v: v[:40] if isinstance(v, bytes) else v)
def test_a_body_that_once_crashed_the_server_is_a_400_naming_its_field(server, path, body, field):
    r = httpx.post(server.url + path, content=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == field, error
    assert error["message"].startswith(f"{field or 'the body'}:"), error
    assert httpx.post(server.url + "/v1/classify", json={"input": "hola"}).status_code == 200  # still serving


def test_a_full_queue_is_a_503_with_retry_after(run_dir):
    limits = ("serve.queue_size=1", "serve.max_batch=1", "serve.max_wait_ms=0", "serve.max_tokens=400")
    with serving(run_dir, *limits) as s:
        client = httpx.Client(base_url=s.url, timeout=60)
        hold = openai_client(s.url).completions.create(model="Spanish", prompt="x", max_tokens=400, stream=True)
        next(iter(hold))  # the worker is decoding it now
        waiting = ThreadPoolExecutor(1).submit(client.post, "/v1/classify", json={"input": "hola"})
        deadline = time.monotonic() + 10
        while httpx.get(s.url + "/health").json()["queue"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        refused = client.post("/v1/classify", json={"input": "merhaba"})
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert "serve.queue_size" in refused.json()["error"]["message"]
        hold.close()  # the client leaves: its decoding stops, the queued request is answered
        assert waiting.result(timeout=30).status_code == 200
        assert s.metrics()["culturemanager_errors_total{kind=overloaded}"] == 1
        client.close()


def test_a_request_past_its_deadline_is_a_504_and_the_server_carries_on(run_dir):
    with serving(run_dir, "serve.timeout_s=0.3", "serve.max_tokens=400") as s:
        r = httpx.post(s.url + "/v1/completions", json={"model": "Spanish", "prompt": "x", "max_tokens": 400},
                       timeout=30)
        assert r.status_code == 504 and "serve.timeout_s" in r.json()["error"]["message"]
        t0 = time.monotonic()
        while (ok := httpx.post(s.url + "/v1/classify", json={"input": "hola", "model": "Spanish"},
                                timeout=30)).status_code == 504:
            assert time.monotonic() - t0 < 20  # the abandoned decoding stops; the server answers again
        assert ok.status_code == 200


def test_with_an_api_key_every_v1_request_needs_it_and_it_is_never_logged(run_dir, monkeypatch, caplog):
    import logging

    monkeypatch.setenv("CM_TEST_KEY", "s3cret-key-123")
    caplog.set_level(logging.INFO, logger="culturemanager.serve")
    with serving(run_dir, "serve.api_key_env=CM_TEST_KEY") as s:
        with pytest.raises(openai.AuthenticationError):
            openai_client(s.url, key="wrong").models.list()
        assert httpx.post(s.url + "/v1/classify", json={"input": "x"}).status_code == 401
        assert httpx.get(s.url + "/health").status_code == 200
        assert openai_client(s.url, key="s3cret-key-123").completions.create(
            model="auto", prompt="hola", max_tokens=2).choices[0].culturemanager["routed"]
    assert "POST /v1/completions 200" in caplog.text and "s3cret" not in caplog.text


def test_shutdown_lets_the_stream_in_flight_finish(run_dir):
    with serving(run_dir) as s:
        stream = openai_client(s.url).completions.create(model="Turkish", prompt="hola", max_tokens=40,
                                                         stream=True)
        chunks = iter(stream)
        next(chunks)
        s.server.should_exit = True  # what SIGTERM / Ctrl-C do
        rest = list(chunks)
        assert rest[-1].choices[0].finish_reason == "length"
        assert "".join(c.choices[0].text for c in rest)
        s.thread.join(30)
        assert not s.thread.is_alive()
        with pytest.raises(httpx.ConnectError):
            httpx.get(s.url + "/health")
