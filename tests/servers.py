"""Test helpers for the server: a finished tiny run with two adapters on disk, the real server (uvicorn) on a
loopback port in a thread, and a vLLM-shaped fake upstream. Imported by the test_serve*.py files."""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch
from conftest import write_task

from culturemanager import load_config
from culturemanager.pipeline import Run

CULTURES = ("Spanish", "Turkish")


def served_run(root: Path, model: Path) -> Path:
    """A run directory as `culturemanager route` leaves it, with two random LoRA adapters on the top layer."""
    from peft import LoraConfig, get_peft_model

    from culturemanager.backends.target import load_target

    cfg = load_config(write_task(root, model))
    run = Run(cfg, progress=False)
    for i, culture in enumerate(CULTURES):
        torch.manual_seed(i + 1)
        base, _ = load_target(cfg.target)
        lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], layers_to_transform=[1],
                          init_lora_weights=False, task_type="CAUSAL_LM")
        get_peft_model(base, lora).save_pretrained(run.rd.adapter(culture))
    run.stage("route")
    return run.rd.root


class Served:
    def __init__(self, svc, app, server, thread, url: str):
        self.svc, self.app, self.server, self.thread, self.url = svc, app, server, thread, url

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics by its name and labels, e.g. 'culturemanager_batch_adapters_count'."""
        import httpx
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(self.url + "/metrics").text
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                out[s.name + (f"{{{labels}}}" if labels else "")] = s.value
        return out


@contextmanager
def serving(run_dir: Path, *overrides: str):
    """The real server over `run_dir` on 127.0.0.1:<free port>, stopped (gracefully) at the end."""
    from culturemanager.serve.app import create_app
    from culturemanager.serve.service import Service, bind, load_run, uvicorn_server

    cfg, router = load_run(run_dir, ["serve.port=0", *overrides])
    svc = Service(cfg, router)
    svc.load_engine()
    app = create_app(svc)
    sock = bind(cfg.serve.host, 0)
    server = uvicorn_server(app, cfg.serve.shutdown_grace_s, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.01)
    try:
        yield Served(svc, app, server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}")
    finally:
        server.should_exit = True
        thread.join(30)


def openai_client(url: str, key: str = "unused", timeout: float = 30):
    import openai

    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=timeout)


class FakeVLLM:
    """An OpenAI-compatible server shaped like vLLM's: it knows a base model and LoRA names, answers
    completions and chat (streamed or not) with a text naming the model it was asked for, and records every body.
    `mode`: "ok", "hang" (accepts, never answers), "error" (500)."""

    def __init__(self, models: set[str]):
        self.models, self.bodies, self.mode = models, [], "ok"
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if self.path != "/v1/models":
                    return self._send(404, {"error": {"message": "not found"}})
                if fake.mode == "hang":
                    time.sleep(5)
                    return
                if fake.mode == "error":
                    return self._send(500, {"error": {"message": "CUDA out of memory"}})
                self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in sorted(fake.models)]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.bodies.append((self.path, body))
                if fake.mode == "hang":
                    time.sleep(5)
                    return
                if fake.mode == "error":
                    return self._send(500, {"error": {"message": "CUDA out of memory"}})
                if body["model"] not in fake.models:
                    return self._send(404, {"error": {"message": f"The model `{body['model']}` does not exist.",
                                                      "type": "NotFoundError", "code": 404}})
                text = f"answer of {body['model']}"
                chat = self.path.endswith("/chat/completions")
                if not body.get("stream"):
                    choice = {"index": 0, "finish_reason": "length",
                              **({"message": {"role": "assistant", "content": text}} if chat else {"text": text})}
                    return self._send(200, {"id": "x", "object": "chat.completion" if chat else "text_completion",
                                            "created": 1, "model": body["model"], "choices": [choice],
                                            "usage": {"prompt_tokens": 3, "completion_tokens": 3,
                                                      "total_tokens": 6}})
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for piece in text.split(" "):
                    delta = {"delta": {"content": piece + " "}} if chat else {"text": piece + " "}
                    self._chunk({"id": "x", "object": "chat.completion.chunk" if chat else "text_completion",
                                 "created": 1, "model": body["model"],
                                 "choices": [{"index": 0, "finish_reason": None, **delta}]})
                self._chunk("[DONE]")
                self.wfile.write(b"0\r\n\r\n")

            def _chunk(self, obj) -> None:
                data = f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n".encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _send(self, status: int, obj: dict) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
