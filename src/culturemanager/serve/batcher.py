"""Dynamic batching: one worker thread owns the model; requests that arrive within a short window become one
batch, whatever their cultures, and every row runs under its own culture's adapter through the shared Engine.

A batch is built from a bounded queue: the first request waits at most `serve.max_wait_ms` for others, up to
`serve.max_batch` texts. Its texts are routed in one router call (forced cultures skip the router), then each
task's classify rows are answered together by the run's answering rule (`answering.answer`, predict's: top-k
mixing by router.json, calibration by the run's `predict.*`) and the generation rows are decoded together
(`engine.complete`, each by its mixture's heaviest adapter, as predict generates), streaming their text as it
comes. A full queue is refused at once (`QueueFull` -> 503 with Retry-After), never an unbounded backlog; a
request whose caller gave up (timeout, closed stream) is skipped or stopped. On CPU two forward passes at once
only slow each other, so there is exactly one worker.

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

from culturemanager.answering import Decision, Rule, answer, decide, heaviest, mix
from culturemanager.config import ServeConfig, Task
from culturemanager.records import BASE
from culturemanager.serve.metrics import Metrics
from culturemanager.serve.openai_api import Route, TextStream, render_chat
from culturemanager.serve.schemas import ApiError
from culturemanager.stages.route import Router

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
    score: float  # the label's probability, calibrated when the rule calibrates
    probs: dict[str, float]  # raw label probabilities (mixed over the mixture's adapters)
    calibrated: dict[str, float]  # empty unless predict.calibrate
    mixture: dict[str, float]  # adapter (or "base") -> weight
    calibration: dict[str, str]  # adapter (or "base") -> the reference that calibrated it
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
    def __init__(self, engine, router: Router, cfg: ServeConfig, metrics: Metrics, rule: Rule | None = None):
        self.engine, self.router, self.cfg, self.metrics = engine, router, cfg, metrics
        self.rule = rule or Rule()  # the run's predict.* settings: the server answers as predict does
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
            decided = self.decide(jobs)
            routes = {k: [self.wire(d) for d in v] for k, v in decided.items()}
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
                self.classify(group, decided, routes) if group[0].kind == "classify" else self.generate(group, routes)
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

    def decide(self, jobs: list[Job]) -> dict[int, list[Decision]]:
        """Every job's Decision per row (answering.decide): forced cultures as they are, the rest in one router
        call (the router off: the base model)."""
        rows = [(j, i) for j in jobs for i in range(j.rows)]
        decided = decide(self.engine, self.router, [j.texts[i] for j, i in rows], [j.culture for j, _ in rows])
        out: dict[int, list[Decision]] = {id(j): [] for j in jobs}
        for (j, _), d in zip(rows, decided):
            out[id(j)].append(d)
        return out

    def wire(self, d: Decision) -> Route:
        """What a response says of one row's route: the adapter is the one that generates (the mixture's heaviest;
        classify's answers also give the whole mixture)."""
        adapter = heaviest(mix(self.router, [d])[0])
        how = {"router": "router", "given": "forced", "base": "base"}[d.how]
        return Route(d.culture, None if adapter == BASE else adapter, d.scores, how)

    def culture_route(self, culture: str, scores: dict[str, float], how) -> Route:
        adapter = self.router.adapter_for(culture)
        return Route(culture, None if adapter == BASE else adapter, scores, how)

    def classify(self, jobs: list[Job], decided: dict[int, list[Decision]], routes: dict[int, list[Route]]) -> None:
        task = jobs[0].task
        answers = iter(answer(self.engine, task, [t for j in jobs for t in j.texts], self.router, self.rule,
                              decisions=[d for j in jobs for d in decided[id(j)]]))
        for j in jobs:
            out = []
            for r in routes[id(j)]:
                a = next(answers)
                out.append(Classified(r, a.label, round(a.score, 6), rounded(a.probs), rounded(a.calibrated),
                                      {named(x): round(w, 6) for x, w in a.mixture.items()},
                                      {named(x): ref for x, ref in a.references.items()}, a.truncated))
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


def rounded(probs: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 6) for k, v in probs.items()}


def named(adapter: str) -> str:
    """An adapter as a response names it: its culture, or "base" for the plain model."""
    return "base" if adapter == BASE else adapter
