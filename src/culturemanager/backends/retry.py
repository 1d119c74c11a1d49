"""The retry policy shared by the HTTP backends (the openai LLM backend, the web search APIs): how long to wait
before the next attempt (the server's Retry-After, else exponential backoff), and a hard wall-clock deadline
on one attempt, whatever the server does.

Run: imported by backends/openai_chat.py and backends/retrieval/web.py; no entry point of its own.
"""

from __future__ import annotations

import datetime
import email.utils
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import httpx

T = TypeVar("T")


class DeadlineExceeded(TimeoutError):
    """One attempt ran past its wall-clock deadline (a server that drips bytes, or never finishes)."""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - time.time())


def backoff(attempt: int, first_s: float, cap_s: float) -> float:
    """first_s, 2 x first_s, 4 x first_s, ... (attempt 0, 1, 2, ...), at most cap_s."""
    return min(cap_s, first_s * 2 ** attempt)


def run_with_deadline(fn: Callable[[], T], seconds: float) -> T:
    """fn() in a daemon thread, waited for at most `seconds`; past that, DeadlineExceeded (the thread is left to
    end on its own: nothing it returns later is used). The backstop for what the transport's own deadline
    (`deadline_hooks`) cannot cut, such as a server that drips the status line and headers."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread, which re-raises it
            box["error"] = e

    worker = threading.Thread(target=target, daemon=True, name="deadline-call")
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise DeadlineExceeded(f"no complete answer within the {seconds:g} s deadline")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def deadline_hooks(seconds: float) -> dict[str, list[Callable]]:
    """httpx event hooks (`httpx.Client(event_hooks=...)`) that give each request a wall-clock deadline: httpx's
    timeouts bound each read, so a server that sends a byte every second never times out; with these the body
    stops with a ReadTimeout once `seconds` have passed since the request was sent. Hooks rather than a
    transport, so that the client keeps its own transport (and the proxies of the environment)."""
    def start(request: httpx.Request) -> None:
        request.extensions["culturemanager_deadline"] = time.monotonic() + seconds

    def bound(response: httpx.Response) -> None:
        deadline = response.request.extensions.get("culturemanager_deadline")
        if deadline is not None:
            response.stream = _DeadlineStream(response.stream, deadline, seconds, response.request)

    return {"request": [start], "response": [bound]}


class _DeadlineStream(httpx.SyncByteStream):
    def __init__(self, inner, deadline: float, seconds: float, request: httpx.Request):
        self.inner, self.deadline, self.seconds, self.request = inner, deadline, seconds, request

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            if time.monotonic() > self.deadline:
                raise httpx.ReadTimeout(f"the answer took longer than the {self.seconds:g} s deadline",
                                        request=self.request)
            yield chunk

    def close(self) -> None:
        self.inner.close()
