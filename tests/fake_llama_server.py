"""A stand-in for llama.cpp's `llama-server` binary in tests: the same command line, /health (503 while
"loading"), and /v1/chat/completions with Bearer auth from $LLAMA_API_KEY, answering with the project's
fake LLM (so pipeline prompts get well-formed answers). It binds only the --host/--port it is given.

Behaviour is steered by environment variables:
- FAKE_LLAMA_LOG: append one JSON line per answered request (port, last user turn, in-flight count) here;
- FAKE_LLAMA_LOAD_S: seconds /health answers 503 before 200 (default 0.3);
- FAKE_LLAMA_MODE: "crash" (exit 1 at start with an error message), "never_ready" (503 forever);
- FAKE_LLAMA_DELAY_S: seconds each answer takes; a last user turn containing "SLOW" takes 60 s.

Tests write it out as an executable with a shebang to the running Python (tests/test_llamaserver.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from culturemanager.backends.llm import ChatRequest, fake_answer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--parallel", "-np", type=int, default=1)
    ap.add_argument("--ctx-size", "-c", type=int, default=0)
    ap.add_argument("--threads", "-t", type=int)
    ap.add_argument("--threads-batch", "-tb", type=int)
    ap.add_argument("--no-webui", action="store_true")
    args, _ = ap.parse_known_args()
    mode = os.environ.get("FAKE_LLAMA_MODE", "")
    if mode == "crash":
        print(f"llama_model_load: error loading model {args.model}: failed to open", flush=True)
        sys.exit(1)
    key = os.environ.get("LLAMA_API_KEY")
    ready_at = time.time() + float(os.environ.get("FAKE_LLAMA_LOAD_S", "0.3"))
    delay = float(os.environ.get("FAKE_LLAMA_DELAY_S", "0"))
    log_path = os.environ.get("FAKE_LLAMA_LOG")
    lock = threading.Lock()
    state = {"inflight": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.path == "/health" and mode != "never_ready" and time.time() >= ready_at
            self._send(200 if ok else 503, {"status": "ok"} if ok else {"error": {"message": "Loading model"}})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.headers.get("Authorization") != f"Bearer {key}":
                self._send(401, {"error": {"message": "Invalid API Key", "type": "authentication_error"}})
                return
            with lock:
                state["inflight"] += 1
                inflight = state["inflight"]
            t0 = time.time()
            messages = tuple((m["role"], m["content"]) for m in body["messages"])
            last = messages[-1][1]
            time.sleep(60 if "SLOW" in last else delay)
            text = fake_answer(ChatRequest(messages, body.get("temperature", 0.7), body.get("max_tokens", 16),
                                           body.get("seed", 0)))
            with lock:
                state["inflight"] -= 1
                if log_path:
                    with open(log_path, "a", encoding="utf-8") as f:
                        f.write(json.dumps({"port": args.port, "user": last[-200:], "inflight": inflight,
                                            "cache_prompt": body.get("cache_prompt"), "slot": body.get("id_slot"),
                                            "start": t0, "end": time.time()}) + "\n")
            self._send(200, {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                             "model": body["model"],
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": text}}],
                             "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                             "timings": {"cache_n": 4, "prompt_n": 6, "prompt_ms": 1.0, "predicted_n": 5,
                                         "predicted_ms": 2.0}})

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever(0.05)


if __name__ == "__main__":
    main()
