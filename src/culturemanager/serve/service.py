"""What the server serves: a finished run (its resolved config, router and adapters) and the model names clients
use for it, plus starting uvicorn on a socket we bind ourselves (so port 0 works and the address is known).

    auto         the router picks the culture per text; its adapter answers ("Others": the base model), or its
                 top routes' adapters together (router.top_k), by the run's predict rule (answering.answer)
    <culture>    that culture's adapter answers (a culture without an adapter: the base model)
    <base name>  the base model, no adapter (the target's name: "gemma3-270m", or a model folder's name)

Run: `culturemanager serve RUN_DIR_OR_CONFIG` (serve/__init__.py).
"""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

from culturemanager.answering import Rule, warm
from culturemanager.config import Config, Task, load_config, load_run_config
from culturemanager.config.file import looks_like_path
from culturemanager.errors import ConfigError, InputError
from culturemanager.rundir import RunDir
from culturemanager.serve.schemas import ApiError
from culturemanager.stages.route import OTHERS, Router, read_router, route

log = logging.getLogger("culturemanager.serve")
AUTO = "auto"


@dataclass
class Service:
    cfg: Config
    router: Router
    engine: object = None  # engine.Engine, loaded by `load_engine` (None until then: --print-vllm-command)

    @property
    def rule(self) -> Rule:
        """How an input is answered: the run's predict.* settings, as `culturemanager predict` answers (top-k
        mixing comes with the router). A request cannot change them: one run, one answer per input."""
        return Rule.of(self.cfg.predict)

    @property
    def base(self) -> str:
        m = self.cfg.target.model
        return Path(m).name if looks_like_path(m) or Path(m).is_dir() else m

    @property
    def cultures(self) -> dict[str, str | None]:
        """Each culture of the run -> its adapter folder (None: the base model answers for it)."""
        return {c: self.router.adapters.get(c) for c in self.router.options if c != OTHERS}

    def resolve(self, model: str) -> str | None:
        """The culture a request's `model` asks for: None to route, OTHERS for the base model."""
        if model == AUTO:
            return None
        if model == self.base or model == OTHERS:
            return OTHERS
        if model in self.cultures:
            return model
        names = [self.base, AUTO, *self.cultures]
        raise ApiError(404, f"the model {model!r} does not exist here: use one of {names}", "model_not_found",
                       "model")

    def task(self, task_id: str | None) -> Task:
        tasks = {t.id: t for t in self.cfg.tasks}
        if task_id is None:
            if len(tasks) != 1:
                raise ApiError(400, f"this run has several tasks: name one with `task` (one of {sorted(tasks)})",
                               "task_required", "task")
            task_id = next(iter(tasks))
        if task_id not in tasks:
            raise ApiError(404, f"the task {task_id!r} does not exist here: use one of {sorted(tasks)}",
                           "task_not_found", "task")
        task = tasks[task_id]
        if not task.labels:
            raise ApiError(400, f"the task {task_id!r} is free_text: it has no labels to score; ask "
                                f"/v1/completions instead", "task_without_labels", "task")
        return task

    def load_engine(self) -> None:
        from culturemanager.engine import Engine

        # a batch of serve.max_batch texts is scored in length-sorted forward passes of target.batch_size rows, as
        # predict scores: one pass over texts of every length would be mostly padding (docs/benchmarks.md)
        self.engine = Engine.load(self.cfg.target, {c: p for c, p in self.cultures.items() if p})
        if self.router.enabled:
            # route one text before the port opens: the router's models and its content-free prior load now, so the
            # first request is not the one that waits for them (and times out under serve.timeout_s)
            route(self.engine, self.router, ["warm-up"])
        # and the calibration priors (content-free and validation cuts) of every adapter and task, for the same reason
        warm(self.engine, self.cfg.tasks, [c for c, p in self.cultures.items() if p], self.rule)


def load_run(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> tuple[Config, Router]:
    """A run directory (its resolved config.json) or a run config file, with `--set` overrides; the router and
    adapters it names must be there."""
    cfg = (load_run_config if path.is_dir() else load_config)(path, list(overrides))
    router = read_router(RunDir(cfg.run.dir))
    for culture, folder in router.adapters.items():
        if folder and not (Path(folder) / "adapter_config.json").is_file():
            raise InputError(f"{RunDir(cfg.run.dir).router}: the adapter of {culture!r} is not at {folder} (moved "
                             f"or deleted?): run `culturemanager route CONFIG` again")
    clash = sorted(set(router.options) & {AUTO, Service(cfg, router).base})
    if clash:
        raise ConfigError(f"a culture is named like a model the server offers ({clash}): rename it")
    return cfg, router


def adapter_rank(folder: str) -> int:
    return int(json.loads((Path(folder) / "adapter_config.json").read_text(encoding="utf-8")).get("r", 8))


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one)."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror}): set serve.port or --port") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def uvicorn_server(app, grace_s: float, log_level: str = "info"):
    """The uvicorn server for `app`: its own access log off (ours carries request ids), SIGTERM and Ctrl-C let
    in-flight requests finish for up to `grace_s` seconds."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, lifespan="on", access_log=False, log_level=log_level,
                                         timeout_graceful_shutdown=grace_s))


def run_until_stopped(server, sock: socket.socket) -> None:
    """Serve until SIGTERM or Ctrl-C. uvicorn finishes the requests in flight, then re-raises the signal that
    stopped it; for this command a stopped server is a finished one (exit 0), so that signal lands here instead
    of killing the process (and a signal before uvicorn took over stops it as soon as it starts)."""
    import signal

    def stop(signum, frame) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
