"""The HTTP endpoints (FastAPI): OpenAI-compatible completions and chat (streamed as server-sent events when
asked), the model list, classify, health and metrics.

    POST /v1/completions        model = auto | <culture> | <base>; prompt (one or many); stream
    POST /v1/chat/completions   the same with messages; the router reads the last user message
    GET  /v1/models             the base model, `auto`, one model per culture
    POST /v1/classify           {"task", "input": text or texts, "model"} -> label, label probabilities, culture
                                (answered by the run's predict rule: answering.answer)
    GET  /health                200 while the model worker runs and the upstream (with --upstream) answers;
                                503 once shutting down, or while the upstream is unreachable (it says which)
    GET  /metrics               Prometheus text format (serve/metrics.py)

Every request gets an id (the caller's `X-Request-ID` when it is a plain token, else a new one), returned in
the `X-Request-ID` header and written in every log line about it; with `serve.api_key_env` every /v1 request
needs `Authorization: Bearer KEY` (the key is compared in constant time and never logged). Bodies are read up
to a bound derived from the limits, then validated (serve/schemas.py); the answer waits on the batcher for at
most `serve.timeout_s` from arrival.

Run: `create_app(service)` is served by `culturemanager serve` (serve/__init__.py).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import re
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from culturemanager.errors import ConfigError
from culturemanager.serve import openai_api as oa
from culturemanager.serve.batcher import Batcher, Job
from culturemanager.serve.metrics import Metrics
from culturemanager.serve.schemas import (
    COMPLETION_DEFAULT_TOKENS,
    ApiError,
    ChatRequest,
    ClassifyRequest,
    CompletionRequest,
    Generation,
    parse_body,
)
from culturemanager.serve.service import Service
from culturemanager.serve.upstream import Upstream, relay, with_route
from culturemanager.stages.route import OTHERS

log = logging.getLogger("culturemanager.serve")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "literal"}  # pydantic's names of union branches
ERROR_KINDS = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "bad_request", 413: "too_large",
               502: "upstream", 503: "overloaded", 504: "timeout"}


def create_app(svc: Service) -> FastAPI:
    s = svc.cfg.serve
    metrics = Metrics()
    batcher = Batcher(svc.engine, svc.router, s, metrics, svc.rule)
    upstream = Upstream(s.upstream, s.timeout_s, metrics) if s.upstream else None
    key = api_key(s.api_key_env)
    max_body = s.max_texts * s.max_chars * 6 + 65536  # every character \u-escaped, plus the other fields

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        # uvicorn has let in-flight requests finish; what is still queued is answered before the worker ends
        await asyncio.to_thread(batcher.stop, s.shutdown_grace_s)
        if upstream is not None:
            await upstream.aclose()

    app = FastAPI(title="culturemanager", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher, app.state.metrics = batcher, metrics
    app.add_middleware(RequestLog, metrics=metrics, key=key)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return JSONResponse(e.body, e.status, headers=e.headers)

    async def parse(request: Request, model: type[BaseModel]):
        size = request.headers.get("content-length")
        if size and size.isdigit() and int(size) > max_body:
            raise ApiError(413, f"the body is {size} bytes, at most {max_body} here", "body_too_large")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                raise ApiError(413, f"the body is more than {max_body} bytes", "body_too_large")
        data = parse_body(bytes(body))
        try:
            return model.model_validate(data, context={"limits": s}), data
        except ValidationError as e:
            raise validation_error(e) from None

    async def answer(request: Request, job: Job):
        fut = batcher.submit(job)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), left(request))
        except asyncio.TimeoutError:
            job.gone = True
            raise ApiError(504, f"no answer within {s.timeout_s:g} s (serve.timeout_s)", "timeout") from None

    def left(request: Request) -> float:
        return max(0.001, s.timeout_s - (time.monotonic() - request.state.t0))

    def told(request: Request, routes: list[oa.Route]) -> dict[str, str]:
        request.state.culture = ",".join(r.culture for r in routes)
        return oa.route_headers(routes)

    @app.get("/health")
    async def health():
        # like vLLM's readiness: a load balancer must not send generation here while the upstream cannot answer it
        up = await upstream.ready() if upstream is not None else None
        ok = batcher.alive and (up is None or up["reachable"])
        status = "ok" if ok else ("unavailable" if not batcher.alive else "upstream_unreachable")
        return JSONResponse({"status": status, "model": svc.base,
                             "cultures": {c: p is not None for c, p in svc.cultures.items()},  # has an adapter
                             "queue": batcher.queue.qsize(), "upstream": up}, 200 if ok else 503)

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models")
    async def models():
        return oa.models_list(svc.base, svc.cultures, int(time.time()))

    @app.post("/v1/classify")
    async def classify(request: Request):
        req, _ = await parse(request, ClassifyRequest)
        job = Job("classify", req.texts, svc.resolve(req.model), task=svc.task(req.task),
                  request_id=request.state.request_id)
        rows = await answer(request, job)
        data = [{"index": i, "label": r.label, "score": r.score, "label_probs": r.probs,
                 **({"calibrated_probs": r.calibrated, "calibration": r.calibration} if r.calibrated else {}),
                 "mixture": r.mixture, "truncated": r.truncated, **r.route.extra()} for i, r in enumerate(rows)]
        return JSONResponse({"id": f"cls-{request.state.request_id}", "object": "classification",
                             "model": req.model, "task": job.task.id, "data": data},
                            headers=told(request, [r.route for r in rows]))

    @app.post("/v1/completions")
    async def completions(request: Request):
        req, raw = await parse(request, CompletionRequest)
        return await generate(request, req, raw, req.prompts, prompts=req.prompts)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        req, raw = await parse(request, ChatRequest)
        return await generate(request, req, raw, [req.route_text], chat=[(m.role, m.text) for m in req.messages])

    async def generate(request: Request, req: Generation, raw: dict, texts: list[str], prompts=None, chat=None):
        culture = svc.resolve(req.model)
        tokens = req.tokens(s, COMPLETION_DEFAULT_TOKENS if chat is None else s.max_tokens)
        job = Job("generate", texts, culture, prompts=prompts, chat=chat, max_tokens=tokens, stops=req.stops,
                  request_id=request.state.request_id)
        if upstream is not None:
            return await forward(request, req, raw, job, "/completions" if chat is None else "/chat/completions")
        if req.stream:
            return await stream(request, req, job)
        answers = await answer(request, job)
        rid, headers = request.state.request_id, told(request, [a.route for a in answers])
        body = oa.completion_response(rid, req.model, answers) if chat is None else \
            oa.chat_response(rid, req.model, answers[0])
        return JSONResponse(body, headers=headers)

    async def stream(request: Request, req: Generation, job: Job):
        """Routing decides the headers, so the response starts once the batcher has routed; then one event per
        piece of text. An error after that ends the stream with an error event (the status is sent)."""
        loop, events = asyncio.get_running_loop(), asyncio.Queue()

        def on_event(ev: tuple) -> None:  # called in the worker thread
            try:
                loop.call_soon_threadsafe(events.put_nowait, ev)
            except RuntimeError:  # the event loop is gone: nobody is listening any more
                job.gone = True

        job.on_event = on_event
        fut = asyncio.wrap_future(batcher.submit(job))
        chat, rid, created = job.chat is not None, request.state.request_id, int(time.time())
        first = await next_event(request, events, fut, job)
        routes = first[1]

        def chunk(i: int, text: str | None = None, finish: str | None = None, route: oa.Route | None = None):
            if not chat:
                return oa.completion_chunk(rid, req.model, created, i, text or "", finish, route)
            delta = {"role": "assistant", "content": ""} if route is not None else \
                ({"content": text} if text is not None else {})
            return oa.chat_chunk(rid, req.model, created, delta, finish, route)

        async def body():
            try:
                for i, r in enumerate(routes):
                    yield oa.sse(chunk(i, route=r))
                while (ev := await next_event(request, events, fut, job)) is not None:
                    yield oa.sse(chunk(ev[1], ev[2]))
                answers = fut.result()
                for i, a in enumerate(answers):
                    yield oa.sse(chunk(i, finish=a.finish_reason))
                if req.stream_options and req.stream_options.include_usage:
                    yield oa.sse(oa.usage_chunk(rid, "chat.completion.chunk" if chat else "text_completion",
                                                req.model, created, sum(a.prompt_tokens for a in answers),
                                                sum(a.completion_tokens for a in answers)))
                yield oa.sse("[DONE]")
            except ApiError as e:
                yield oa.sse(e.body)
            finally:
                job.gone = True  # a client that left stops its rows' decoding

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={**told(request, routes), "Cache-Control": "no-cache"})

    async def next_event(request: Request, events: asyncio.Queue, fut: asyncio.Future, job: Job):
        """The next streaming event, None once the job is done (its error raised), a 504 past the deadline."""
        while events.empty() and not fut.done():
            getter = asyncio.ensure_future(events.get())
            done, _ = await asyncio.wait({getter, fut}, timeout=left(request),
                                         return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                return getter.result()
            getter.cancel()
            if not done:
                job.gone = True
                raise ApiError(504, f"no answer within {s.timeout_s:g} s (serve.timeout_s)", "timeout")
        if not events.empty():
            return events.get_nowait()
        if fut.exception() is not None:
            raise fut.exception()
        return None

    async def forward(request: Request, req: Generation, raw: dict, job: Job, path: str):
        """Route here (forced cultures skip the router), then let the upstream answer under the adapter's name."""
        if job.culture is None:
            routes = await answer(request, Job("route", job.texts, None, request_id=job.request_id))
        else:
            how = "base" if job.culture == OTHERS else "forced"
            routes = [batcher.culture_route(job.culture, {}, how)] * job.rows
            metrics.routed.labels(culture=job.culture, how=how).inc(job.rows)
        headers, deadline = told(request, routes), asyncio.get_running_loop().time() + left(request)
        names = [r.adapter or svc.base for r in routes]
        bodies = [{**raw, "model": names[0], "max_tokens": job.max_tokens}] if job.chat is not None else \
            [{**raw, "model": n, "prompt": p, "max_tokens": job.max_tokens} for n, p in zip(names, job.texts)]
        if job.chat is not None:
            bodies[0].pop("max_completion_tokens", None)
        if req.stream:
            if len(bodies) > 1:
                raise ApiError(400, "with --upstream, a streamed completion takes one prompt", "one_prompt",
                               "prompt")
            events = await upstream.stream(path, bodies[0], deadline)
            return StreamingResponse(relay(events, req.model, routes), media_type="text/event-stream",
                                     headers={**headers, "Cache-Control": "no-cache"})
        answers = await asyncio.gather(*(upstream.post(path, b, deadline) for b in bodies))
        if len(answers) == 1:
            return JSONResponse(with_route(answers[0], req.model, routes), headers=headers)
        merged = answers[0]  # several prompts: one upstream request each (each may go to another adapter)
        merged["choices"] = [{**a["choices"][0], "index": i} for i, a in enumerate(answers)]
        merged["usage"] = {k: sum((a.get("usage") or {}).get(k, 0) for a in answers)
                           for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
        return JSONResponse(with_route(merged, req.model, routes), headers=headers)

    return app


def api_key(env: str | None) -> str | None:
    if env is None:
        return None
    key = os.environ.get(env, "")
    if not key:
        raise ConfigError(f"serve.api_key_env = {env!r}, but that environment variable is not set (or empty)")
    return key


def validation_error(e: ValidationError) -> ApiError:
    """pydantic's errors as one message naming each field; a union's alternatives under one field are joined
    ("input: Input should be a valid string or Input should be a valid list")."""
    by_field: dict[str, list[str]] = {}
    for err in e.errors():
        where = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and (p in UNION_TAGS or "[" in p)))
        msg = "not a field this server accepts" if err["type"] == "extra_forbidden" else \
            err["msg"].removeprefix("Value error, ")
        if msg not in by_field.setdefault(where, []):
            by_field[where].append(msg)
    parts = [f"{where}: {' or '.join(msgs)}" if where else " or ".join(msgs) for where, msgs in by_field.items()]
    more = f" (and {len(parts) - 3} more)" if len(parts) > 3 else ""
    return ApiError(400, "; ".join(parts[:3]) + more, "invalid_request", next(iter(by_field)) or None)


class RequestLog:
    """Plain ASGI middleware: the request id, the bearer key check, one log line and the metrics per request."""

    def __init__(self, app, metrics: Metrics, key: str | None):
        self.app, self.metrics, self.key = app, metrics, key

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = headers.get("x-request-id", "")
        rid = given if REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
        state = scope.setdefault("state", {})
        state.update(request_id=rid, t0=time.monotonic(), culture="-")
        status = [500]

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        path = scope.get("path", "")
        try:
            if self.key is not None and path.startswith("/v1/") and not self.authorized(headers):
                e = ApiError(401, "a valid API key is needed: Authorization: Bearer KEY", "invalid_api_key")
                await JSONResponse(e.body, 401, headers={"WWW-Authenticate": "Bearer"})(scope, receive,
                                                                                         send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("%s %s %s failed", rid, scope.get("method"), path)
            raise
        finally:
            seconds = time.monotonic() - state["t0"]
            self.metrics.observe(path, status[0], seconds)
            if status[0] >= 400:
                self.metrics.errors.labels(kind=ERROR_KINDS.get(status[0], "internal" if status[0] >= 500
                                                                else "bad_request")).inc()
            log.info("%s %s %s %d %.1f ms culture=%s", rid, scope.get("method"), path, status[0], 1000 * seconds,
                     state.get("culture", "-"))

    def authorized(self, headers: dict[str, str]) -> bool:
        given = headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.key.encode())
