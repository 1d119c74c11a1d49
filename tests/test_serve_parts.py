"""The server's parts without HTTP: batched decoding in the engine, text deltas and stop strings, request
validation, the [serve] config section, and that the serve package imports without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from servers import CULTURES, served_run
from test_layout import BLOCK_TORCH

from culturemanager.config import ServeConfig
from culturemanager.errors import ConfigError
from culturemanager.records import BASE


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_model):
    from culturemanager.engine import Engine
    from culturemanager.serve.service import load_run

    cfg, router = load_run(served_run(tmp_path_factory.mktemp("parts"), tiny_model))
    return Engine.load(cfg.target, {c: p for c, p in router.adapters.items() if p})


def test_a_mixed_adapter_decode_equals_each_prompt_generated_alone(engine):
    prompts = [engine.tok(t)["input_ids"] for t in ("La corrida de toros", "Türk kahvesi ve çay misafirlere",
                                                   "hate speech", "x")]
    names, lengths = ["Spanish", "Turkish", BASE, "Spanish"], [12, 12, 5, 12]
    got = engine.complete(prompts, names, lengths)
    for p, name, n, g in zip(prompts, names, lengths, got):
        ids = torch.tensor([p])
        ref = engine.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                    do_sample=False, adapter_names=[name], pad_token_id=engine.pad_id)[0, len(p):]
        ref = ref.tolist()
        assert g == (ref[:ref.index(engine.tok.eos_token_id)] if engine.tok.eos_token_id in ref else ref)
    assert got[0] != got[2][:len(got[0])] or got[1] != got[2][:len(got[1])]  # the adapters change the answer


def test_on_token_stops_a_row_and_keeps_the_others_going(engine):
    prompts = [engine.tok("hola")["input_ids"], engine.tok("merhaba")["input_ids"]]
    seen: list[tuple[int, int]] = []
    out = engine.complete(prompts, list(CULTURES), [8, 8], lambda row, tok: seen.append((row, tok)) or row == 0)
    assert len(out[0]) == 1 and len(out[1]) == 8
    assert [t for r, t in seen if r == 1] == out[1]


class CharTok:
    """A tokenizer whose tokens are byte values: a multibyte character spans several tokens."""

    def decode(self, ids, skip_special_tokens=True):
        return bytes(ids).decode("utf-8", errors="replace")


def test_text_deltas_never_split_a_character_nor_send_a_stop_string():
    from culturemanager.serve.openai_api import TextStream

    s = TextStream(CharTok(), ["END"])
    deltas = []
    for b in "çay E".encode() + b"ENDx":
        d, stopped = s.push(b)
        deltas.append(d)
        if stopped:
            break
    assert stopped and "".join(deltas) + s.finish() == "çay E" and s.text == "çay E"
    assert "\ufffd" not in "".join(deltas)
    plain = TextStream(CharTok())
    assert [plain.push(b)[0] for b in "é".encode()] == ["", "é"]
    cut = TextStream(CharTok())
    cut.push("é".encode()[0])
    assert cut.finish() == "\ufffd"  # an answer ended mid-character: decoded as it is


def test_requests_are_checked_against_the_configured_bounds():
    from pydantic import ValidationError

    from culturemanager.serve.schemas import ChatRequest, ClassifyRequest, CompletionRequest

    lim = {"limits": ServeConfig(max_texts=2, max_chars=10, max_tokens=5)}
    assert ClassifyRequest.model_validate({"input": ["a", "b"]}, context=lim).texts == ["a", "b"]
    for bad, word in (({"input": ["a", "b", "c"]}, "max_texts"), ({"input": "x" * 11}, "max_chars"),
                      ({"input": 1}, "string"), ({"input": "a", "extra": 1}, "extra")):
        with pytest.raises(ValidationError, match=word):
            ClassifyRequest.model_validate(bad, context=lim)
    with pytest.raises(ValidationError, match="serve.max_tokens"):
        CompletionRequest.model_validate({"model": "auto", "prompt": "x", "max_tokens": 6}, context=lim)
    chat = ChatRequest.model_validate({"model": "auto", "messages": [
        {"role": "user", "content": "hola"}, {"role": "assistant", "content": "?"},
        {"role": "user", "content": [{"type": "text", "text": "çay"}]}]}, context=lim)
    assert chat.route_text == "çay" and chat.tokens(lim["limits"], 5) == 5
    with pytest.raises(ValidationError, match="max_chars"):
        ChatRequest.model_validate({"model": "auto", "messages": [{"role": "user", "content": "x" * 6}] * 2},
                                   context=lim)


def test_the_serve_section_is_range_checked_and_documented(tmp_path, tiny_model):
    from conftest import write_task

    from culturemanager import load_config
    from culturemanager.config.doc import explain

    config = write_task(tmp_path, tiny_model, extra="[serve]\nmax_batch = 32\nport = 0\n")
    assert load_config(config).serve.max_batch == 32
    for bad in ("serve.max_batch=0", "serve.queue_size=0", "serve.port=70000", "serve.timeout_s=0",
                "serve.max_wait_ms=-1", "serve.upstream=localhost:8000", "serve.api_key_env=not-a-name",
                "serve.host=", "serve.batch=4"):
        with pytest.raises(ConfigError, match=bad.split("=")[0].split(".")[1]):
            load_config(config, [bad])
    doc = explain()
    for name in ServeConfig.model_fields:
        assert f"serve.{name}:" in doc


def test_the_serve_package_imports_without_torch():
    out = subprocess.run([sys.executable, "-c", BLOCK_TORCH, "culturemanager.serve",
                          "culturemanager.serve.schemas", "culturemanager.serve.openai_api"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_the_command_serves_a_run_directory_until_sigterm(tmp_path, tiny_model):
    """`culturemanager serve RUN_DIR` as a user runs it: the address it prints answers the openai client; SIGTERM
    ends it with exit 0."""
    import os
    import re
    import signal

    from servers import openai_client

    run_dir = served_run(tmp_path, tiny_model)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen([sys.executable, "-m", "culturemanager", "serve", str(run_dir), "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = ""
        while "http://" not in line:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "the server ended before it printed its address"
        url = re.search(r"(http://[\d.]+:\d+)/v1", line).group(1)
        comp = openai_client(url).completions.create(model="auto", prompt="Defol git buradan", max_tokens=2)
        assert comp.choices[0].culturemanager["culture"] in (*CULTURES, "Others")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


def test_the_command_names_what_is_missing(tmp_path, tiny_model, monkeypatch, capsys):
    from culturemanager.cli import main

    assert main(["serve", str(tmp_path)]) == 3  # a folder that is no run directory
    assert "config.json" in capsys.readouterr().err
    run_dir = served_run(tmp_path / "r", tiny_model)
    monkeypatch.delenv("CM_NO_SUCH_KEY", raising=False)
    assert main(["serve", str(run_dir), "--api-key-env", "CM_NO_SUCH_KEY"]) == 2
    assert "CM_NO_SUCH_KEY" in capsys.readouterr().err
