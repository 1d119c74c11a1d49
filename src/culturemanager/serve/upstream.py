"""Scale-out on an existing engine: the router runs here, generation runs on a vLLM (or LoRAX) OpenAI-compatible
server that holds the same adapters, under the culture's name. The request goes on unchanged except `model`
(the routed culture's adapter, or the base model) and `max_tokens` (this server's cap applied).

`vllm_command` writes the exact `vllm serve` line for a run's adapters, so the upstream's adapter names are the
ones this server sends (`culturemanager serve RUN --print-vllm-command`). An upstream that is down is a 502 at
once, one that does not answer in time a 504: never a hang.

Run: used by serve/app.py with `culturemanager serve RUN --upstream URL`; no entry point of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from culturemanager.serve.metrics import Metrics
from culturemanager.serve.openai_api import Route, sse
from culturemanager.serve.schemas import ApiError

HEALTH_TIMEOUT_S = 2.0  # /health's probe of the upstream: a health check must answer quickly itself
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM's --max-lora-rank accepts


def vllm_command(base_model: str, served_name: str, adapters: dict[str, str], rank: int) -> str:
    """`vllm serve` with every culture's adapter loaded under the culture's name, all of them allowed in one
    batch (`--max-loras`), and the base model served under the name this server's clients use for it."""
    max_rank = next((r for r in VLLM_LORA_RANKS if r >= rank), rank)
    args = ["vllm", "serve", base_model, "--served-model-name", served_name, "--enable-lora",
            "--max-loras", str(max(1, len(adapters))), "--max-lora-rank", str(max_rank), "--lora-modules",
            *[f"{name}={display_path(folder)}" for name, folder in adapters.items()]]
    return " ".join(shlex.quote(a) for a in args)


def display_path(folder: str) -> str:
    """Relative to the working directory when below it (the README's runs/demo/adapters/Spanish), else absolute."""
    rel = os.path.relpath(Path(folder).resolve(), Path.cwd())
    return rel if not rel.startswith("..") else str(Path(folder).resolve())


class Upstream:
    def __init__(self, url: str, timeout_s: float, metrics: Metrics):
        self.url, self.timeout_s, self.metrics = url.rstrip("/"), timeout_s, metrics
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
                                        trust_env=False)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def ready(self) -> dict:
        """Whether the upstream answers its model list (`GET /models`, which vLLM and LoRAX both serve) within a
        couple of seconds: {"url", "reachable", and "error" when it does not}."""
        try:
            resp = await self.client.get(self.url + "/models", timeout=min(HEALTH_TIMEOUT_S, self.timeout_s))
        except httpx.HTTPError as e:
            return {"url": self.url, "reachable": False, "error": f"unreachable ({type(e).__name__}: {e})"}
        if resp.status_code != 200:
            return {"url": self.url, "reachable": False, "error": f"GET /models answered {resp.status_code}"}
        return {"url": self.url, "reachable": True}

    async def post(self, path: str, body: dict, deadline: float) -> dict:
        """The upstream's JSON answer; its own 4xx passes through with its status, anything else is 502/504."""
        try:
            resp = await asyncio.wait_for(self.client.post(self.url + path, json=body), self._left(deadline))
        except (asyncio.TimeoutError, httpx.TimeoutException) as e:
            raise self._fail(504, f"no answer within {self.timeout_s:g} s (serve.timeout_s)", "timeout") from e
        except httpx.HTTPError as e:
            raise self._fail(502, f"unreachable ({type(e).__name__}: {e})", "upstream_unreachable") from e
        self.metrics.upstream.labels(status=str(resp.status_code)).inc()
        data = _json(resp.content)
        if resp.status_code >= 400:
            raise self._answered(resp.status_code, data, resp.text)
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise self._fail(502, f"answered something that is not a completion: {resp.text[:200]!r}", "bad_upstream")
        return data

    async def stream(self, path: str, body: dict, deadline: float) -> AsyncIterator[dict | str]:
        """Open the upstream's event stream (errors before its first byte are raised here) and return its events:
        parsed JSON chunks, or "[DONE]"."""
        request = self.client.build_request("POST", self.url + path, json=body)
        try:
            resp = await asyncio.wait_for(self.client.send(request, stream=True), self._left(deadline))
        except (asyncio.TimeoutError, httpx.TimeoutException) as e:
            raise self._fail(504, f"no answer within {self.timeout_s:g} s (serve.timeout_s)", "timeout") from e
        except httpx.HTTPError as e:
            raise self._fail(502, f"unreachable ({type(e).__name__}: {e})", "upstream_unreachable") from e
        self.metrics.upstream.labels(status=str(resp.status_code)).inc()
        if resp.status_code >= 400:
            content = await resp.aread()
            await resp.aclose()
            raise self._answered(resp.status_code, _json(content), content.decode(errors="replace"))
        return self._events(resp, deadline)

    async def _events(self, resp: httpx.Response, deadline: float) -> AsyncIterator[dict | str]:
        lines = resp.aiter_lines()
        try:
            while True:
                try:
                    line = await asyncio.wait_for(anext(lines), self._left(deadline))
                except StopAsyncIteration:
                    return
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                yield "[DONE]" if data == "[DONE]" else _json(data.encode())
        except (asyncio.TimeoutError, httpx.TimeoutException) as e:
            raise self._fail(504, "the stream stopped before its end (serve.timeout_s)", "timeout") from e
        except httpx.HTTPError as e:
            raise self._fail(502, f"the stream broke ({type(e).__name__}: {e})", "upstream_unreachable") from e
        finally:
            await resp.aclose()

    def _left(self, deadline: float) -> float:
        return max(0.001, deadline - asyncio.get_running_loop().time())

    def _fail(self, status: int, what: str, code: str) -> ApiError:
        self.metrics.upstream.labels(status=code).inc()
        return ApiError(status, f"upstream {self.url}: {what}", code)

    def _answered(self, status: int, data, text: str) -> ApiError:
        message = data.get("error", {}).get("message") if isinstance(data, dict) and isinstance(
            data.get("error"), dict) else (data.get("message") if isinstance(data, dict) else None)
        message = message or text[:300]
        if status >= 500:
            return ApiError(502, f"upstream {self.url} answered {status}: {message}", "upstream_error")
        return ApiError(status, f"upstream {self.url} refused the request ({status}): {message}", "upstream_refused")


def with_route(obj: dict, model: str, routes: list[Route], seen: set[int] | None = None) -> dict:
    """An upstream answer (or chunk) as if this server had written it: the client's `model`, and the route on
    each choice (in a stream, on the first chunk of each choice only: `seen` holds those already told)."""
    obj["model"] = model
    for choice in obj.get("choices") or []:
        i = choice.get("index", 0) if isinstance(choice, dict) else 0
        if isinstance(choice, dict) and 0 <= i < len(routes) and (seen is None or i not in seen):
            choice["culturemanager"] = routes[i].extra()
            if seen is not None:
                seen.add(i)
    return obj


async def relay(events: AsyncIterator[dict | str], model: str, routes: list[Route]) -> AsyncIterator[bytes]:
    seen: set[int] = set()
    try:
        async for ev in events:
            if ev == "[DONE]":
                yield sse("[DONE]")
            elif isinstance(ev, dict):
                yield sse(with_route(ev, model, routes, seen))
    except ApiError as e:  # the status line is sent already: the stream ends with an error event (the openai
        yield sse(e.body)  # client raises it)


def _json(content: bytes):
    try:
        return json.loads(content)
    except ValueError:
        return None
