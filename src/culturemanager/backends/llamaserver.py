"""generator.backend = "llama_server": a local GGUF model served by llama.cpp's own `llama-server`, which the run
starts, uses through the OpenAI-compatible API, and stops.

Why: on a CPU, one request at a time through llama-cpp-python leaves the cores waiting on memory; llama-server
decodes `generator.concurrency` sequences together (continuous batching over parallel slots) and keeps each
slot's prompt in its KV cache, so a request that shares a prefix with the slot's last prompt skips most of the
prompt processing (docs/benchmarks.md, "Synthesis throughput", has the measured effect).

Lifecycle: the server starts on the first request (binding 127.0.0.1 on a free port, with a random API key
passed through its environment), the backend waits for /health, and `close()` stops it. It is also stopped at
interpreter exit (atexit, so after Ctrl-C too), on an error or Ctrl-C in the middle of a batch, and, when the
parent process is killed outright, by the kernel (PR_SET_PDEATHSIG): no orphan server outlives a run.

The backend's `name` is the model, never the port or URL, so the answer cache of a run (keyed by the name and
the request) is reused by a re-run or a resumed run whatever port its server gets. `complete_each` hands each
answer back the moment it finishes, so CachedLLM stores it at once: a killed run loses no finished call.

Run: `python -m culturemanager.backends.llamaserver MODEL "prompt"` starts a server, answers one prompt, stops.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from culturemanager.backends.chat import BackendError, ChatRequest, Completion
from culturemanager.config import LLMConfig

log = logging.getLogger(__name__)

MAKE_TARGET = "make llama-server"
RESERVED_ARGS = {"-m", "--model", "--host", "--port", "-np", "--parallel", "-c", "--ctx-size", "-t", "--threads",
                 "-tb", "--threads-batch", "--api-key", "--api-key-file"}
REPEAT_PENALTY = 1.1  # the in-process engine's setting (backends/llm.py), so both engines sample alike


class LlamaServerBackend:
    """`parallel` requests in flight against one llama-server process with as many slots."""

    def __init__(self, cfg: LLMConfig):
        bad = sorted({a.split("=", 1)[0] for a in cfg.server.extra_args} & RESERVED_ARGS)
        if bad:
            raise BackendError(f"generator.server.extra_args may not set {', '.join(bad)}: they come from the "
                               f"config (model, threads, concurrency, server.ctx_per_slot) or from the backend")
        self.cfg = cfg
        self.name = cfg.model  # the model's identity: the cache key must not depend on the port
        self.parallel = max(1, cfg.concurrency)
        self.binary = find_binary(cfg.server.binary)
        self.server: LlamaServer | None = None
        self.timings: list[dict[str, Any]] = []  # llama-server's per-request timings (benchmarks read them)
        self._client = None

    # -------------------------------------------------------------------------------------- the requests

    def complete(self, requests: list[ChatRequest]) -> list[Completion | Exception]:
        out: list[Completion | Exception] = [RuntimeError("not answered")] * len(requests)

        def keep(i: int, answer: Completion | Exception, latency: float) -> None:
            out[i] = answer

        self.complete_each(requests, keep)
        return out

    def complete_each(self, requests: list[ChatRequest],
                      on_answer: Callable[[int, Completion | Exception, float], None]) -> None:
        """Answers every request with `parallel` in flight; `on_answer(index, answer, seconds)` is called in
        the caller's thread as each one finishes (in finishing order, not request order).

        Worker k sends to slot k only, and takes whole sibling groups (`sibling_groups`: adjacent requests
        that differ only in their tail, e.g. one material's per-label calls): a group's requests run one after
        another on the slot that holds their common prefix, which is then evaluated once, not once per slot."""
        if not requests:
            return
        client = self._ensure_started()
        groups: queue.SimpleQueue[list[int] | None] = queue.SimpleQueue()
        for g in sibling_groups(requests):
            groups.put(g)
        done: queue.SimpleQueue[tuple[int, Completion | Exception, float]] = queue.SimpleQueue()
        stop = threading.Event()

        def work(slot: int) -> None:
            while not stop.is_set() and (group := groups.get()) is not None:
                for i in group:
                    done.put((i, *self._one(client, requests[i], slot)) if not stop.is_set()
                             else (i, RuntimeError("cancelled"), 0.0))

        workers = [threading.Thread(target=work, args=(k,), daemon=True, name=f"llama-server-{k}")
                   for k in range(self.parallel)]
        for _ in workers:
            groups.put(None)  # one end marker per worker
        for w in workers:
            w.start()
        try:
            for _ in range(len(requests)):
                on_answer(*done.get())
        except BaseException:
            # Ctrl-C or an error while requests are in flight: stop the server, so the workers' requests fail
            # at once instead of the interpreter waiting for them to finish generating
            stop.set()
            self.close()
            raise
        for w in workers:
            w.join()

    def _one(self, client, r: ChatRequest, slot: int = -1) -> tuple[Completion | Exception, float]:
        t0 = time.time()
        try:
            resp = client.chat.completions.create(
                model=self.cfg.model, messages=[{"role": role, "content": c} for role, c in r.messages],
                temperature=r.temperature, max_tokens=r.max_tokens, seed=r.seed,
                extra_body={"cache_prompt": True, "repeat_penalty": REPEAT_PENALTY, "id_slot": slot})
        except Exception as e:  # noqa: BLE001 - counted and logged by CachedLLM, the run goes on
            return e, time.time() - t0
        timings = (resp.model_extra or {}).get("timings")
        if isinstance(timings, dict):
            self.timings.append(timings)
        usage = resp.usage
        return (Completion(resp.choices[0].message.content or "", usage.prompt_tokens if usage else None,
                           usage.completion_tokens if usage else None), time.time() - t0)

    # -------------------------------------------------------------------------------------- the process

    def _ensure_started(self):
        if self.server is not None and self.server.running():
            return self._client
        if self.server is not None:
            log.warning("llama-server exited (code %s); starting it again", self.server.proc.returncode
                        if self.server.proc else None)
            self.server.stop()
        from openai import OpenAI

        from culturemanager.backends.models import resolve_gguf

        key = secrets.token_hex(16)
        self.server = LlamaServer(self.binary, server_args(self.cfg, resolve_gguf(self.cfg.model)), key,
                                  self.cfg.server.startup_timeout_s)
        url = self.server.start()
        self._client = OpenAI(api_key=key, base_url=f"{url}/v1", timeout=self.cfg.server.request_timeout_s,
                              max_retries=self.cfg.max_retries)
        return self._client

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()


SIBLING_MIN_CHARS = 800
"""Adjacent requests are siblings when all their messages but the last are equal and the last ones share a
common prefix of at least this many characters and half the shorter one. One material's synthesis calls share
everything up to their closing instruction (the material is long); judge prompts share only a short header."""


def sibling_groups(requests: list[ChatRequest], min_chars: int = SIBLING_MIN_CHARS) -> list[list[int]]:
    """Indices of the requests in order, adjacent siblings grouped."""
    groups: list[list[int]] = []
    for i, r in enumerate(requests):
        if groups and is_sibling(requests[i - 1], r, min_chars):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def is_sibling(a: ChatRequest, b: ChatRequest, min_chars: int = SIBLING_MIN_CHARS) -> bool:
    if len(a.messages) != len(b.messages) or a.messages[:-1] != b.messages[:-1]:
        return False
    x, y = a.messages[-1][1], b.messages[-1][1]
    return common_prefix(x, y) >= max(min_chars, 0.5 * min(len(x), len(y)))


def common_prefix(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


def server_args(cfg: LLMConfig, model: Path) -> list[str]:
    """The llama-server command line (without host and port): one slot per request in flight, each with
    `ctx_per_slot` tokens of context; prompt caching is on by default and asked for per request too."""
    n = max(1, cfg.concurrency)
    args = ["-m", str(model), "--parallel", str(n), "--ctx-size", str(n * cfg.server.ctx_per_slot),
            "--no-webui"]
    if cfg.threads:
        args += ["--threads", str(cfg.threads), "--threads-batch", str(cfg.threads)]
    return args + list(cfg.server.extra_args)


def find_binary(setting: Path | None) -> Path:
    """The configured binary, else `llama-server` next to the running Python (a venv's bin/), else on PATH."""
    if setting is not None:
        path = Path(setting).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BackendError(f"generator.server.binary {str(path)!r} is not an executable file "
                               f"(`{MAKE_TARGET}` builds llama-server into .venv/bin)")
        return path.absolute()
    beside = Path(sys.executable).parent / "llama-server"  # not resolved: a venv's python is a symlink
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("llama-server")
    if found:
        return Path(found)
    raise BackendError(f"generator.backend = 'llama_server' needs llama.cpp's llama-server binary: run "
                       f"`{MAKE_TARGET}` (builds it once into .venv/bin, a few minutes), or set "
                       f"generator.server.binary")


class LlamaServer:
    """One llama-server child process on 127.0.0.1: `start()` returns its base URL once /health answers 200,
    `stop()` terminates it (SIGTERM, then SIGKILL) and is safe to call twice."""

    def __init__(self, binary: Path, args: list[str], api_key: str, startup_timeout_s: float):
        self.binary, self.args, self.api_key, self.startup_timeout_s = binary, args, api_key, startup_timeout_s
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self._log = None

    def start(self, attempts: int = 3) -> str:
        for attempt in range(attempts):
            port = free_port()
            self._log = tempfile.TemporaryFile()  # the server's output: shown when it fails to start
            env = os.environ | {"LLAMA_API_KEY": self.api_key}  # not on the command line, where ps shows it
            self.proc = subprocess.Popen(
                [str(self.binary), *self.args, "--host", "127.0.0.1", "--port", str(port)],
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                preexec_fn=die_with_parent())
            atexit.register(self.stop)
            self.url = f"http://127.0.0.1:{port}"
            log.info("llama-server (pid %d) loading on %s: %s", self.proc.pid, self.url, " ".join(self.args))
            try:
                self._wait_healthy()
                return self.url
            except _Exited:
                if attempt + 1 < attempts and "bind" in self.output_tail().lower():
                    continue  # the free port was taken in between: try another one
                raise BackendError(f"llama-server exited with code {self.proc.returncode} while starting; its "
                                   f"output ends with:\n{self.output_tail()}") from None
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _wait_healthy(self) -> None:
        deadline = time.time() + self.startup_timeout_s
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    raise _Exited
                try:
                    if http.get(f"{self.url}/health").status_code == 200:
                        log.info("llama-server ready on %s", self.url)
                        return
                except httpx.TransportError:
                    pass  # not listening yet; 503 while the model loads
                time.sleep(0.2)
        tail = self.output_tail()
        self.stop()
        raise BackendError(f"llama-server did not become healthy within {self.startup_timeout_s:.0f} s "
                           f"(generator.server.startup_timeout_s); its output ends with:\n{tail}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            atexit.unregister(self.stop)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                log.info("llama-server (pid %d) stopped", proc.pid)

    def output_tail(self, chars: int = 2000) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-chars:]


class _Exited(Exception):
    """The server process ended before it became healthy."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent() -> Callable[[], None] | None:
    """A preexec function that asks the kernel to SIGTERM the child when its parent dies (Linux prctl
    PR_SET_PDEATHSIG), or None where that is unavailable. Only from the main thread: the signal follows the
    thread that forked, and a worker thread that ends would take the server with it."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not between fork and exec
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def main() -> None:
    cfg = LLMConfig(backend="llama_server", model=sys.argv[1], temperature=0.0, concurrency=1)
    backend = LlamaServerBackend(cfg)
    try:
        print(backend.complete([ChatRequest((("user", sys.argv[2]),), 0.0, 256)])[0])
    finally:
        backend.close()


if __name__ == "__main__":
    main()
