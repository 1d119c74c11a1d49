"""Tests for the llama_server generator backend: the process it starts (a stand-in binary with llama-server's
command line, tests/fake_llama_server.py, so no compiled binary or model is needed), real HTTP on 127.0.0.1
through the openai client, health waiting, errors, the port-independent cache, resume after a kill, and no
orphan process after an error, Ctrl-C or a killed parent. One `slow` test runs the real binary when it is built.

Run: .venv/bin/pytest tests/test_llamaserver.py -q
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import interruptible

from culturemanager.backends.llamaserver import LlamaServerBackend, find_binary, server_args
from culturemanager.backends.llm import BackendError, CachedLLM, ChatRequest, make_backend
from culturemanager.config import LlamaServerConfig, LLMConfig

REPO = Path(__file__).resolve().parents[1]
FAKE = REPO / "tests" / "fake_llama_server.py"


@pytest.fixture
def fake_binary(tmp_path, monkeypatch) -> Path:
    """An executable named llama-server that runs the stand-in with this Python and this checkout's package."""
    path = tmp_path / "bin" / "llama-server"
    path.parent.mkdir()
    path.write_text(f"#!{sys.executable}\n" + FAKE.read_text(encoding="utf-8"), encoding="utf-8")
    path.chmod(0o755)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("FAKE_LLAMA_LOG", str(tmp_path / "served.jsonl"))
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
                "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    return path


@pytest.fixture
def model_file(tmp_path) -> Path:
    path = tmp_path / "tiny.gguf"  # the stand-in never reads it; resolve_gguf needs an existing .gguf
    path.write_bytes(b"GGUF")
    return path


def cfg_for(binary: Path, model: Path, **kw) -> LLMConfig:
    server = LlamaServerConfig(binary=binary, startup_timeout_s=kw.pop("startup_timeout_s", 20.0),
                               request_timeout_s=20.0)
    return LLMConfig(**({"backend": "llama_server", "model": str(model), "concurrency": 2, "timeout_s": 20.0,
                         "max_retries": 0, "server": server} | kw))


def served(tmp_path: Path) -> list[dict]:
    path = tmp_path / "served.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def req(text: str, seed: int = 0) -> ChatRequest:
    return ChatRequest((("system", "be brief"), ("user", text)), temperature=0.0, max_tokens=16, seed=seed)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


# ------------------------------------------------------------------------------------------ start and stop

def test_round_trip_starts_and_stops_the_server(tmp_path, fake_binary, model_file):
    backend = make_backend(cfg_for(fake_binary, model_file))
    assert isinstance(backend, LlamaServerBackend)
    assert backend.server is None  # nothing starts before the first request
    try:
        out = backend.complete([req("hola"), req("merhaba")])
        assert [o.text for o in out] == ["ok", "ok"]
        assert (out[0].prompt_tokens, out[0].completion_tokens) == (10, 5)
        pid, url = backend.server.proc.pid, backend.server.url
        assert url.startswith("http://127.0.0.1:") and alive(pid)
        assert backend.timings[0]["cache_n"] == 4  # llama-server's timings are kept for the benchmarks
    finally:
        backend.close()
    assert wait_gone(pid)
    assert sorted(r["user"] for r in served(tmp_path)) == ["hola", "merhaba"]
    assert all(r["cache_prompt"] is True for r in served(tmp_path))
    backend.close()  # twice is fine


def test_requests_in_flight_are_bounded_by_concurrency(tmp_path, fake_binary, model_file, monkeypatch):
    monkeypatch.setenv("FAKE_LLAMA_DELAY_S", "0.3")
    backend = LlamaServerBackend(cfg_for(fake_binary, model_file, concurrency=3))
    try:
        backend.complete([req(f"q{i}") for i in range(9)])
    finally:
        backend.close()
    inflight = [r["inflight"] for r in served(tmp_path)]
    assert len(inflight) == 9 and max(inflight) == 3


def test_siblings_run_one_after_another_on_one_slot(tmp_path, fake_binary, model_file, monkeypatch):
    """One material's per-label calls share all but their tail: they go to one slot, in turn, so the server
    evaluates their common prefix once."""
    monkeypatch.setenv("FAKE_LLAMA_DELAY_S", "0.2")
    material = "A long material paragraph about Spain. " * 30
    requests = [req(material + f"Write 3 with label {lab}.") for lab in ("1", "0")] + \
        [req(f"judge this short text number {i}") for i in range(4)]
    backend = LlamaServerBackend(cfg_for(fake_binary, model_file, concurrency=3))
    try:
        backend.complete(requests)
    finally:
        backend.close()
    rows = {r["user"][-20:]: r for r in served(tmp_path)}
    a, b = rows["Write 3 with label 1."[-20:]], rows["Write 3 with label 0."[-20:]]
    assert a["slot"] == b["slot"] and a["end"] <= b["start"]  # the same slot, one after the other
    assert len(rows) == 6 and {r["slot"] for r in rows.values()} <= {0, 1, 2}  # slot k <- worker k


def test_sibling_groups():
    from culturemanager.backends.llamaserver import sibling_groups

    material = "x" * 1000
    rs = [req(material + " label 1"), req(material + " label 0"), req("a cat on a mat"), req("the dog barks"),
          ChatRequest((("system", "other"), ("user", material + " label 1")), 0.0, 16, 0)]
    assert sibling_groups(rs) == [[0, 1], [2], [3], [4]]  # different earlier messages: never siblings


def test_waits_for_health_while_the_model_loads(tmp_path, fake_binary, model_file, monkeypatch):
    monkeypatch.setenv("FAKE_LLAMA_LOAD_S", "1.0")
    backend = LlamaServerBackend(cfg_for(fake_binary, model_file))
    t0 = time.time()
    try:
        [out] = backend.complete([req("after loading")])
    finally:
        backend.close()
    assert out.text == "ok" and time.time() - t0 >= 1.0


def test_server_args_come_from_the_config(model_file):
    cfg = LLMConfig(backend="llama_server", model=str(model_file), concurrency=4, threads=2,
                    server=LlamaServerConfig(ctx_per_slot=2048, extra_args=["--cache-reuse", "256"]))
    args = server_args(cfg, model_file)
    assert args[:6] == ["-m", str(model_file), "--parallel", "4", "--ctx-size", "8192"]
    assert args[-6:] == ["--threads", "2", "--threads-batch", "2", "--cache-reuse", "256"]


# ------------------------------------------------------------------------------------------------ errors

def test_missing_binary_names_the_make_target(tmp_path, monkeypatch, model_file):
    with pytest.raises(BackendError, match="make llama-server"):
        LlamaServerBackend(cfg_for(tmp_path / "no-such-binary", model_file))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BackendError, match="make llama-server"):
        find_binary(None)


def test_default_binary_is_found_beside_the_python(tmp_path, monkeypatch, fake_binary):
    monkeypatch.setattr(sys, "executable", str(fake_binary.parent / "python"))
    assert find_binary(None) == fake_binary


def test_reserved_extra_args_are_refused(fake_binary, model_file):
    cfg = cfg_for(fake_binary, model_file)
    cfg.server.extra_args = ["--port=9999"]
    with pytest.raises(BackendError, match="--port"):
        LlamaServerBackend(cfg)


def test_server_that_fails_to_start_shows_its_output(fake_binary, model_file, monkeypatch):
    monkeypatch.setenv("FAKE_LLAMA_MODE", "crash")
    backend = LlamaServerBackend(cfg_for(fake_binary, model_file))
    with pytest.raises(BackendError, match="error loading model"):
        backend.complete([req("x")])


def test_server_that_never_gets_healthy_times_out_and_is_stopped(fake_binary, model_file, monkeypatch):
    monkeypatch.setenv("FAKE_LLAMA_MODE", "never_ready")
    backend = LlamaServerBackend(cfg_for(fake_binary, model_file, startup_timeout_s=1.0))
    with pytest.raises(BackendError, match="startup_timeout_s"):
        backend.complete([req("x")])
    assert backend.server.proc is None


def test_missing_model_is_an_error_before_starting(fake_binary, tmp_path):
    backend = LlamaServerBackend(cfg_for(fake_binary, tmp_path / "absent.gguf"))
    with pytest.raises(Exception, match="absent.gguf"):
        backend.complete([req("x")])
    assert backend.server is None


# ------------------------------------------------------------------------------------ cache and resume

def test_cache_key_does_not_depend_on_the_port(tmp_path, fake_binary, model_file):
    requests = [req("uno"), req("dos"), req("tres")]
    first = LlamaServerBackend(cfg_for(fake_binary, model_file))
    try:
        CachedLLM(first, tmp_path / "llm.jsonl", tmp_path / "calls.jsonl").complete(requests, "synthesize")
        port1 = first.server.url
    finally:
        first.close()
    second = LlamaServerBackend(cfg_for(fake_binary, model_file))
    try:
        llm = CachedLLM(second, tmp_path / "llm.jsonl", tmp_path / "calls.jsonl")
        out = llm.complete(requests + [req("cuatro")], "synthesize")
        port2 = second.server.url
    finally:
        second.close()
    assert first.name == second.name == str(model_file)  # the model, not the URL
    assert [o.cached for o in out] == [True, True, True, False]
    assert llm.counts == {"calls": 1, "cached": 3, "errors": 0, "retries": 0}
    by_port = [r["port"] for r in served(tmp_path)]
    assert by_port == [int(port1.rsplit(":", 1)[1])] * 3 + [int(port2.rsplit(":", 1)[1])]


KILLED_RUN = """
import sys, time
from pathlib import Path
from culturemanager.backends.llamaserver import LlamaServerBackend
from culturemanager.backends.llm import CachedLLM, ChatRequest
from culturemanager.config import LLMConfig, LlamaServerConfig
cfg = LLMConfig(backend="llama_server", model=sys.argv[1], concurrency=3, timeout_s=120, max_retries=0,
                server=LlamaServerConfig(binary=sys.argv[2]))
backend = LlamaServerBackend(cfg)
llm = CachedLLM(backend, Path(sys.argv[3]) / "llm.jsonl", Path(sys.argv[3]) / "calls.jsonl")
requests = [ChatRequest((("user", t),), 0.0, 16, 0) for t in sys.argv[4].split(",")]
orig = backend._ensure_started
def started():
    client = orig()
    print(backend.server.proc.pid, flush=True)
    return client
backend._ensure_started = started
llm.complete(requests, "synthesize")
print("done", flush=True)
time.sleep(60)
"""


def start_run(tmp_path: Path, binary: Path, model: Path, texts: list[str]) -> tuple[subprocess.Popen, int]:
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(script), str(model), str(binary), str(tmp_path), ",".join(texts)],
                            stdout=subprocess.PIPE, text=True, env=os.environ.copy(), preexec_fn=interruptible)
    server_pid = int(proc.stdout.readline())
    return proc, server_pid


def wait_for(pred, seconds: float = 15.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_killed_run_keeps_finished_calls_and_leaves_no_server(tmp_path, fake_binary, model_file):
    texts = ["fast one", "fast two", "SLOW three"]
    proc, server_pid = start_run(tmp_path, fake_binary, model_file, texts)
    from culturemanager.backends.llm import load_cache

    # the two fast answers are stored while the slow one is still generating ...
    assert wait_for(lambda: len(load_cache(tmp_path / "llm.jsonl")) == 2)
    proc.kill()  # ... then the run is killed outright (SIGKILL: no Python cleanup runs)
    proc.wait()
    assert wait_gone(server_pid), "the server outlived its killed parent"
    backend = LlamaServerBackend(cfg_for(fake_binary, model_file))
    try:
        llm = CachedLLM(backend, tmp_path / "llm.jsonl", tmp_path / "calls.jsonl")
        out = llm.complete([ChatRequest((("user", t),), 0.0, 16, 0) for t in texts[:2]] + [req("new")], "synthesize")
    finally:
        backend.close()
    assert [o.cached for o in out] == [True, True, False]  # the resumed run repeats no finished call


def test_ctrl_c_mid_batch_stops_the_server(tmp_path, fake_binary, model_file):
    proc, server_pid = start_run(tmp_path, fake_binary, model_file, ["SLOW a", "SLOW b"])
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) != 0  # KeyboardInterrupt, not a 60 s wait for the requests in flight
    assert wait_gone(server_pid)


def test_error_mid_batch_stops_the_server(tmp_path, fake_binary, model_file):
    backend = LlamaServerBackend(cfg_for(fake_binary, model_file))

    def fail(i, answer, seconds):
        raise ValueError("the caller failed while storing an answer")

    with pytest.raises(ValueError):
        backend.complete_each([req("a"), req("b")], fail)
    assert backend.server.proc is None


def test_pipeline_stages_with_the_server_backend_and_a_rerun_from_cache(tmp_path, fake_binary, model_file):
    from conftest import write_task

    from culturemanager.config import load_config
    from culturemanager.pipeline import run

    cfg = load_config(write_task(tmp_path, tmp_path / "no-target-needed", backend="llama_server"),
                      [f"generator.model={model_file}", f"generator.server.binary={fake_binary}",
                       "generator.concurrency=2"])
    stages = ["queries", "search", "synthesize"]
    counts = run(cfg, stages, progress=False)
    assert counts["synthesize"]["kept"] > 0
    calls = len(served(tmp_path))
    assert calls == sum(counts[s]["llm"]["calls"] for s in stages) > 0
    again = run(cfg, stages, progress=False)  # a new server on a new port
    assert len(served(tmp_path)) == calls  # ... asked nothing: every answer came from the run's cache
    assert all(again[s]["llm"]["calls"] == 0 for s in stages)
    sample = json.loads((cfg.run.dir / "samples" / "Spanish.jsonl").read_text().splitlines()[0])
    assert sample["provenance"]["generator"] == str(model_file)


# ----------------------------------------------------------------------------------- the real binary

@pytest.mark.slow
def test_real_llama_server_answers_and_stops(tmp_path):
    try:
        binary = find_binary(None)
    except BackendError as e:
        pytest.skip(str(e))
    from culturemanager.backends.models import ModelNotAvailable, resolve_gguf

    try:
        model = resolve_gguf("smollm2-135m-instruct")
    except (ModelNotAvailable, Exception) as e:  # noqa: BLE001 - the packaged model is not installed here
        pytest.skip(f"smollm2-135m-instruct not available: {e}")
    backend = LlamaServerBackend(LLMConfig(backend="llama_server", model=str(model), concurrency=2, threads=2,
                                           server=LlamaServerConfig(binary=binary, ctx_per_slot=1024)))
    try:
        out = backend.complete([req("Say hello."), req("Name a colour.")])
        pid = backend.server.proc.pid
    finally:
        backend.close()
    assert all(o.completion_tokens and o.text for o in out)
    assert wait_gone(pid)
