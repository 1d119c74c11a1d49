"""Dynamic batching: one worker thread owns the model; requests that arrive within a short window become one
batch, whatever their cultures, and every row runs under its own culture's adapter through the shared Engine.

A batch is built from a bounded queue: the first request waits at most `serve.max_wait_ms` for others, up to
`serve.max_batch` texts. Its texts are routed in one router call (forced cultures skip the router), then each
task's classify rows are scored in one `engine.label_probs` call (mixed adapters, as predict does) and the
generation rows are decoded together (`engine.complete`), streaming their text as it comes. A full queue is
refused at once (`QueueFull` -> 503 with Retry-After), never an unbounded backlog; a request whose caller gave
up (timeout, closed stream) is skipped or stopped. On CPU two forward passes at once only slow each other, so
there is exactly one worker.

Run: used by serve/app.py (`Batcher(engine, router, cfg).start()`); no entry point of its own.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Literal

from culturemanager.config import ServeConfig, Task
from culturemanager.records import BASE
from culturemanager.serve.metrics import Metrics
from culturemanager.serve.openai_api import Route, TextStream, render_chat
from culturemanager.serve.schemas import ApiError
from culturemanager.stages.route import OTHERS, Router, route

log = logging.getLogger("culturemanager.serve")


@dataclass
class Job:
    """One request's texts. `culture`: the forced culture (OTHERS: the base model), None: the router picks."""

    kind: Literal["classify", "generate", "route"]
    texts: list[str]  # what the router reads, one per row (the prompt, the last user message, the text)
    culture: str | None = None
    task: Task | None = None  # classify
    prompts: list[str] | None = None  # generate: the prompts (None: render `chat`)
    chat: list[tuple[str, str]] | None = None  # generate: (role, text) messages
    max_tokens: int = 16
    stops: list[str] = field(default_factory=list)
    on_event: Callable[[tuple], None] | None = None  # ("route", routes) then ("text", row, delta): streaming
    request_id: str = "-"
    future: Future = field(default_factory=Future)
    gone: bool = False  # the caller stopped waiting: skip or stop its rows

    @property
    def rows(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class Classified:
    route: Route
    label: str
    probs: dict[str, float]
    truncated: bool


@dataclass(frozen=True)
class Generated:
    route: Route
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class QueueFull(ApiError):
    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(503, message, "overloaded", headers={"Retry-After": str(retry_after)})


class Batcher:
    def __init__(self, engine, router: Router, cfg: ServeConfig, metrics: Metrics):
        self.engine, self.router, self.cfg, self.metrics = engine, router, cfg, metrics
        self.queue: queue.Queue[Job] = queue.Queue(maxsize=cfg.queue_size)
        self.closed = False
        self._stop = threading.Event()
        self._carry: Job | None = None  # a job that did not fit the last batch: it starts the next one
        self._thread = threading.Thread(target=self._loop, name="culturemanager-model", daemon=True)

    def start(self) -> Batcher:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self.closed

    def submit(self, job: Job) -> Future:
        if self.closed:
            raise QueueFull("the server is shutting down")
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"the server is busy: {self.cfg.queue_size} requests are waiting (serve.queue_size); "
                            f"retry shortly") from None
        self.metrics.queue.set(self.queue.qsize())
        return job.future

    def stop(self, timeout: float | None = None) -> None:
        """Take no new work, finish what is queued, then end the worker."""
        self.closed = True
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ------------------------------------------------------------------------------------------- the worker
    def _loop(self) -> None:
        if self.cfg.threads is not None:
            import torch

            torch.set_num_threads(self.cfg.threads)  # in this thread: the one that runs every forward pass
        while True:
            first = self._carry or self._next(0.1)
            self._carry = None
            if first is None:
                if self._stop.is_set() and self.queue.empty():
                    return
                continue
            batch, rows = [first], first.rows
            until = time.monotonic() + self.cfg.max_wait_ms / 1000
            while rows < self.cfg.max_batch:
                job = self._next(until - time.monotonic())
                if job is None:
                    break
                if rows + job.rows > self.cfg.max_batch:
                    self._carry = job
                    break
                batch.append(job)
                rows += job.rows
            self.metrics.queue.set(self.queue.qsize())
            self.run_batch(batch)

    def _next(self, wait: float) -> Job | None:
        try:
            return self.queue.get(timeout=wait) if wait > 0 else self.queue.get_nowait()
        except queue.Empty:
            return None

    def run_batch(self, jobs: list[Job]) -> None:
        """Route every row, then score or generate; one job's bad input fails that job only."""
        t0 = time.perf_counter()
        jobs = [j for j in jobs if not j.gone and j.future.set_running_or_notify_cancel()]
        if not jobs:
            return
        try:
            routes = self.routes(jobs)
        except Exception as e:  # noqa: BLE001 - every waiting request gets the error instead of hanging
            log.exception("routing failed for %s", [j.request_id for j in jobs])
            for j in jobs:
                j.future.set_exception(e)
            return
        for j in jobs:
            if j.on_event is not None:
                j.on_event(("route", routes[id(j)]))
        tasks = {j.task.id: j.task for j in jobs if j.kind == "classify" and j.task is not None}
        groups = [[j for j in jobs if j.kind == "classify" and j.task is not None and j.task.id == tid]
                  for tid in tasks]
        groups.append([j for j in jobs if j.kind == "generate"])
        for group in filter(None, groups):
            try:
                self.classify(group, routes) if group[0].kind == "classify" else self.generate(group, routes)
            except Exception as e:  # noqa: BLE001 - as above: fail these requests, keep serving the others
                log.exception("batch failed for %s", [j.request_id for j in group])
                for j in group:
                    if not j.future.done():
                        j.future.set_exception(e)
        for j in jobs:
            if j.kind == "route":
                j.future.set_result(routes[id(j)])
        if self.engine.prefix is not None:
            self.engine.prefix.clear()  # each input is seen once: stored states would only grow
        self.record(jobs, routes, time.perf_counter() - t0)

    def routes(self, jobs: list[Job]) -> dict[int, list[Route]]:
        """Every job's Route per row; the rows the router decides go through it in one call."""
        auto = [(j, i) for j in jobs if j.culture is None for i in range(j.rows)]
        decided: dict[tuple[int, int], Route] = {}
        if auto and self.router.enabled:
            r = route(self.engine, self.router, [j.texts[i] for j, i in auto])
            for (j, i), c, s in zip(auto, r.cultures, r.scores):
                decided[id(j), i] = self.culture_route(c, s, "router")
        elif auto:  # the router is off: the base model answers whatever the request did not force
            decided = {(id(j), i): Route(OTHERS, None, {}, "base") for j, i in auto}
        out = {}
        for j in jobs:
            if j.culture is None:
                out[id(j)] = [decided[id(j), i] for i in range(j.rows)]
            else:
                forced = self.culture_route(j.culture, {}, "base" if j.culture == OTHERS else "forced")
                out[id(j)] = [forced] * j.rows
        return out

    def culture_route(self, culture: str, scores: dict[str, float], how) -> Route:
        adapter = self.router.adapter_for(culture)
        return Route(culture, None if adapter == BASE else adapter, scores, how)

    def classify(self, jobs: list[Job], routes: dict[int, list[Route]]) -> None:
        task = jobs[0].task
        texts = [t for j in jobs for t in j.texts]
        rows = [r for j in jobs for r in routes[id(j)]]
        probs, truncated = self.engine.label_probs(task, texts, [r.adapter or BASE for r in rows])
        k = 0
        for j in jobs:
            out = []
            for r in routes[id(j)]:
                p = {lab: round(float(v), 6) for lab, v in zip(task.labels, probs[k])}
                out.append(Classified(r, max(p, key=p.get), p, truncated[k]))
                k += 1
            j.future.set_result(out)

    def generate(self, jobs: list[Job], routes: dict[int, list[Route]]) -> None:
        tok = self.engine.tok
        limit = getattr(self.engine.model.config, "max_position_embeddings", None)
        rows: list[tuple[Job, int, list[int], TextStream]] = []
        for j in jobs:
            prompts = j.prompts if j.prompts is not None else [render_chat(tok, j.chat or [])]
            ids = [tok(p)["input_ids"] for p in prompts]
            long = [len(x) for x in ids if limit and len(x) + j.max_tokens > limit]
            if long:
                j.future.set_exception(ApiError(400, f"the prompt is {long[0]} tokens and max_tokens {j.max_tokens}: "
                                                     f"together more than the model's {limit} positions",
                                                "context_length_exceeded", "max_tokens"))
                continue
            rows += [(j, i, x, TextStream(tok, j.stops)) for i, x in enumerate(ids)]
        if not rows:
            return

        def on_token(r: int, token: int) -> bool:
            job, i, _, stream = rows[r]
            delta, stopped = stream.push(token)
            if delta and job.on_event is not None:
                job.on_event(("text", i, delta))
            return stopped or job.gone

        out = self.engine.complete([x for _, _, x, _ in rows], [routes[id(j)][i].adapter or BASE
                                                                 for j, i, _, _ in rows],
                                   [j.max_tokens for j, _, _, _ in rows], on_token)
        results: dict[int, list[Generated]] = {}
        for (j, i, x, stream), gen in zip(rows, out):
            rest = stream.finish()
            if rest and j.on_event is not None:
                j.on_event(("text", i, rest))
            finish = "length" if len(gen) >= j.max_tokens and not stream.stopped else "stop"
            results.setdefault(id(j), []).append(Generated(routes[id(j)][i], stream.text, finish, len(x), len(gen)))
        for j in jobs:
            if id(j) in results:
                j.future.set_result(results[id(j)])

    def record(self, jobs: list[Job], routes: dict[int, list[Route]], seconds: float) -> None:
        rows = [r for j in jobs for r in routes[id(j)]]
        adapters = {r.adapter for r in rows}
        m = self.metrics
        m.batch_rows.observe(len(rows))
        m.batch_requests.observe(len(jobs))
        m.batch_adapters.observe(len(adapters))
        m.batch_seconds.observe(seconds)
        for r in rows:
            m.routed.labels(culture=r.culture, how=r.how).inc()
        log.info("batch: %d rows of %d requests [%s], adapters %s, %.0f ms", len(rows), len(jobs),
                 " ".join(j.request_id for j in jobs), sorted(a or "base" for a in adapters), 1000 * seconds)
