"""`serve --upstream`: the router here, generation on a vLLM-shaped fake server on loopback, under the routed
culture's adapter name; the upstream failing (down, 500, hanging, unknown adapter) is a clear 4xx/5xx at once,
never a hang; the `vllm serve` line comes from the run directory."""

from __future__ import annotations

import shlex
import socket
import time

import httpx
import openai
import pytest
from servers import CULTURES, FakeVLLM, openai_client, served_run, serving

from culturemanager.cli import main
from culturemanager.serve.openai_api import CULTURE_HEADER


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model):
    return served_run(tmp_path_factory.mktemp("upstream"), tiny_model)


@pytest.fixture(scope="module")
def fake(run_dir):
    from culturemanager.serve.service import Service, load_run

    vllm = FakeVLLM({Service(*load_run(run_dir)).base, *CULTURES})
    yield vllm
    vllm.close()


@pytest.fixture(scope="module")
def front(run_dir, fake):
    with serving(run_dir, f"serve.upstream={fake.url}", "serve.timeout_s=1.5", "serve.max_tokens=64") as s:
        yield s


@pytest.fixture(autouse=True)
def healthy(fake):
    fake.mode = "ok"
    fake.bodies.clear()


def test_the_upstream_gets_the_routed_cultures_adapter_name(front, fake):
    client = openai_client(front.url)
    raw = client.completions.with_raw_response.create(model="auto", prompt="Defol git buradan", max_tokens=7,
                                                      temperature=0.7)
    comp = raw.parse()
    routed = comp.choices[0].culturemanager
    asked = fake.bodies[-1][1]
    assert asked["model"] == (routed["adapter"] or front.svc.base) and routed["routed"]
    assert asked["max_tokens"] == 7 and asked["temperature"] == 0.7 and asked["prompt"] == "Defol git buradan"
    assert comp.choices[0].text == f"answer of {asked['model']}" and comp.model == "auto"
    assert raw.headers[CULTURE_HEADER] == routed["culture"]
    for model, expected in (("Spanish", "Spanish"), ("Turkish", "Turkish"), (front.svc.base, front.svc.base)):
        chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hola"}])
        assert fake.bodies[-1][0] == "/v1/chat/completions" and fake.bodies[-1][1]["model"] == expected
        assert fake.bodies[-1][1]["max_tokens"] == 64  # this server's cap, when the request sets none
        assert chat.choices[0].message.content == f"answer of {expected}"


def test_several_prompts_go_one_request_each_and_come_back_in_order(front, fake):
    comp = openai_client(front.url).completions.create(model="Turkish", prompt=["a", "b", "c"], max_tokens=2)
    # sent concurrently (they arrive in any order), answered in the request's order
    assert sorted(b["prompt"] for _, b in fake.bodies) == ["a", "b", "c"]
    assert [c.index for c in comp.choices] == [0, 1, 2] and comp.usage.total_tokens == 18


def test_streams_are_relayed_with_the_route_on_the_first_chunk(front, fake):
    chunks = list(openai_client(front.url).chat.completions.create(
        model="Spanish", messages=[{"role": "user", "content": "hola"}], stream=True))
    assert fake.bodies[-1][1]["stream"] is True and fake.bodies[-1][1]["model"] == "Spanish"
    assert chunks[0].choices[0].culturemanager["culture"] == "Spanish"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "answer of Spanish "
    assert chunks[-1].model == "Spanish"


def test_classify_is_answered_here_not_upstream(front, fake):
    r = httpx.post(front.url + "/v1/classify", json={"input": ["hola", "merhaba"], "model": "Turkish"})
    assert r.status_code == 200 and [d["adapter"] for d in r.json()["data"]] == ["Turkish", "Turkish"]
    assert fake.bodies == []


def test_upstream_failures_are_clear_errors_at_once(front, fake):
    client = openai_client(front.url)
    fake.models.discard("Turkish")
    try:
        with pytest.raises(openai.NotFoundError, match="Turkish"):
            client.completions.create(model="Turkish", prompt="x")
    finally:
        fake.models.add("Turkish")
    fake.mode = "error"
    with pytest.raises(openai.InternalServerError, match="answered 500: CUDA out of memory") as e:
        client.completions.create(model="Spanish", prompt="x")
    assert e.value.status_code == 502
    fake.mode = "hang"
    t0 = time.monotonic()
    r = httpx.post(front.url + "/v1/completions", json={"model": "Spanish", "prompt": "x"}, timeout=30)
    assert r.status_code == 504 and time.monotonic() - t0 < 4 and "serve.timeout_s" in r.text
    m = front.metrics()
    assert m["culturemanager_upstream_requests_total{status=500}"] >= 1
    assert m["culturemanager_upstream_requests_total{status=timeout}"] >= 1


def test_an_upstream_that_is_down_is_a_502_naming_it(run_dir):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = f"http://127.0.0.1:{port}/v1"
    with serving(run_dir, f"serve.upstream={down}", "serve.timeout_s=10") as front:
        for stream in (False, True):
            t0 = time.monotonic()
            r = httpx.post(front.url + "/v1/chat/completions", timeout=30, json={
                "model": "auto", "stream": stream, "messages": [{"role": "user", "content": "hola"}]})
            assert r.status_code == 502 and time.monotonic() - t0 < 5
            assert down in r.json()["error"]["message"] and "unreachable" in r.json()["error"]["message"]


def test_the_vllm_command_names_every_adapter_as_the_server_asks_for_it(run_dir, capsys, monkeypatch):
    monkeypatch.chdir(run_dir.parent)
    assert main(["serve", str(run_dir), "--print-vllm-command"]) == 0
    argv = shlex.split(capsys.readouterr().out.strip())
    assert argv[:2] == ["vllm", "serve"] and "--enable-lora" in argv
    from culturemanager.serve.service import Service, load_run

    svc = Service(*load_run(run_dir))
    assert argv[argv.index("--served-model-name") + 1] == svc.base
    assert argv[argv.index("--max-loras") + 1] == "2" and argv[argv.index("--max-lora-rank") + 1] == "8"
    modules = argv[argv.index("--lora-modules") + 1:]
    assert modules == [f"{c}=run/adapters/{c}" for c in CULTURES]
    assert argv[2] == str(svc.cfg.target.model)  # the target model itself: the adapters were trained on it


def test_the_docs_vllm_line_is_what_the_command_prints_for_the_demo(tmp_path, monkeypatch):
    """docs/serving.md shows the command's output for runs/demo: it is that function's output for the demo's
    adapters, rank and target, so the documented flags cannot drift from the generated ones."""
    from conftest import REPO

    from culturemanager import load_config
    from culturemanager.serve.upstream import vllm_command

    section = (REPO / "docs" / "serving.md").read_text(encoding="utf-8")
    shown = next(line.removeprefix("# ") for line in section.splitlines() if line.startswith("# vllm serve "))
    demo = load_config(REPO / "examples" / "demo.toml")
    monkeypatch.chdir(tmp_path)
    adapters = {c.name: f"runs/demo/adapters/{c.name}" for c in demo.cultures}
    assert shown == vllm_command(shlex.split(shown)[2], demo.target.model, adapters, demo.train.rank)
    assert "culturemanager serve runs/demo --print-vllm-command" in section


def test_health_is_not_ok_while_the_upstream_cannot_answer(front, fake, run_dir):
    """/health said ok with the upstream down: a load balancer kept sending generation to a server that could only
    answer 502. Now it reports the upstream's reachability, as vLLM's readiness does."""
    r = httpx.get(front.url + "/health", timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert r.json()["upstream"] == {"url": fake.url, "reachable": True}
    fake.mode = "error"
    r = httpx.get(front.url + "/health", timeout=30)
    assert r.status_code == 503 and r.json()["status"] == "upstream_unreachable"
    assert r.json()["upstream"]["reachable"] is False and "500" in r.json()["upstream"]["error"]
    fake.mode = "hang"
    t0 = time.monotonic()
    r = httpx.get(front.url + "/health", timeout=30)
    assert r.status_code == 503 and time.monotonic() - t0 < 4  # the probe's own short timeout, not a hang
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = f"http://127.0.0.1:{port}/v1"
    with serving(run_dir, f"serve.upstream={down}") as alone:
        r = httpx.get(alone.url + "/health", timeout=30)
        assert r.status_code == 503 and r.json()["upstream"]["url"] == down
        assert "unreachable" in r.json()["upstream"]["error"]
