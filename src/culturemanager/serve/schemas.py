"""What a request may say: the OpenAI completion and chat bodies (the subset this server honours) and the
classify body, validated with pydantic against the `[serve]` bounds before anything is queued.

Bounds come in through the validation context (`Model.model_validate(body, context={"limits": serve_cfg})`), so
one set of models serves every configuration. A field this server does not implement (`logprobs`, `tools`,
`n > 1`...) is a 400 naming it, never silently ignored; sampling settings (`temperature`, `top_p`, `seed`) are
accepted for client compatibility, and answers are greedy. Numbers where texts belong are refused (strict
strings), so a client bug is a 400, not a prediction on "12".

Run: imported by serve/app.py; no entry point of its own.
"""

from __future__ import annotations

import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationInfo, field_validator, model_validator

from culturemanager.config import ServeConfig

COMPLETION_DEFAULT_TOKENS = 16  # OpenAI's default for /v1/completions


class ApiError(Exception):
    """An answer other than 200, in OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}

    @property
    def body(self) -> dict:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def limits(info: ValidationInfo) -> ServeConfig:
    return (info.context or {}).get("limits") or ServeConfig()


def check_texts(value: str | list[str], lim: ServeConfig, empty_ok: bool = True) -> None:
    """A field of one text or many against the bounds; the message names the text, the error names the field."""
    texts = [value] if isinstance(value, str) else value
    if not texts:
        raise ValueError("at least one text is needed")
    if len(texts) > lim.max_texts:
        raise ValueError(f"{len(texts)} texts, at most {lim.max_texts} per request (serve.max_texts)")
    for i, t in enumerate(texts):
        which = "" if isinstance(value, str) else f"text {i}: "
        if not t and not empty_ok:  # nothing to continue from: vLLM refuses it too
            raise ValueError(f"{which}empty; a completion needs a prompt of at least one character")
        if len(t) > lim.max_chars:
            raise ValueError(f"{which}{len(t)} characters, at most {lim.max_chars} (serve.max_chars)")


def parse_body(body: bytes) -> dict:
    """The request body as a JSON object, or a 400 naming where it is wrong: not JSON, not an object, nested
    deeper than the decoder's recursion limit (a RecursionError, once a 500), or holding a lone UTF-16
    surrogate ("\\ud800" is valid JSON, but no tokenizer, log or UTF-8 answer can carry it)."""
    try:
        data = json.loads(body)
    except RecursionError:
        field = deepest_field(body)
        raise ApiError(400, f"{field or 'the body'}: nested too deep for this server", "invalid_json",
                       field) from None
    except ValueError as e:
        raise ApiError(400, f"the body is not valid JSON ({e})", "invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object", "invalid_json")
    if (where := lone_surrogate(data)) is not None:
        raise ApiError(400, f"{where}: holds a lone UTF-16 surrogate (an escape such as \\ud800 without its "
                            f"pair), which is not text", "invalid_text", where)
    return data


JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"(\s*:)?|[\[\]{}]')  # a string (a key when `:` follows), a bracket
SURROGATE = re.compile("[\ud800-\udfff]")


def deepest_field(body: bytes) -> str | None:
    """The top-level key under which `body` nests deepest (None: the body itself), read without recursion."""
    depth, deepest, key, where = 0, 0, None, None
    for m in JSON_TOKEN.finditer(body):
        c = m.group()[:1]
        if m.group(1) is not None and depth == 1:
            key = m.group()[1:m.group().rindex(b'"')].decode("utf-8", "replace")
        elif c in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest, where = depth, key if depth > 1 else None
        elif c in (b"]", b"}"):
            depth -= 1
    return where


def lone_surrogate(data: dict) -> str | None:
    """The path ("messages.0.content", pydantic's style) of the first key or string holding a lone surrogate."""
    todo: list[tuple[str, object]] = [("", data)]
    while todo:
        path, v = todo.pop()
        if isinstance(v, str) and SURROGATE.search(v):
            return path
        if isinstance(v, dict):
            for k, x in v.items():
                where = f"{path}.{k}" if path else k
                if SURROGATE.search(k):
                    return where
                todo.append((where, x))
        elif isinstance(v, list):
            todo += [(f"{path}.{i}", x) for i, x in enumerate(v)]
    return None


class StreamOptions(Body):
    include_usage: bool = False


class Generation(Body):
    """What completions and chat share: the model, the length cap, stops, streaming, accepted sampling fields."""

    model: StrictStr
    max_tokens: int | None = Field(None, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: StrictStr | list[StrictStr] | None = None
    n: Literal[1] = 1
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    seed: int | None = None
    user: StrictStr | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logprobs: Literal[False] | None = None

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def tokens(self, lim: ServeConfig, default: int) -> int:
        return self.max_tokens if self.max_tokens is not None else min(default, lim.max_tokens)

    def check(self, lim: ServeConfig, tokens: int | None) -> None:
        if tokens is not None and tokens > lim.max_tokens:
            raise ValueError(f"max_tokens {tokens} is above this server's cap {lim.max_tokens} (serve.max_tokens)")
        if len(self.stops) > 4 or any(not s or len(s) > 64 for s in self.stops):
            raise ValueError("stop: at most 4 strings of 1 to 64 characters")


class CompletionRequest(Generation):
    """POST /v1/completions: text prompts only (token-id prompts are refused)."""

    prompt: StrictStr | list[StrictStr]
    echo: Literal[False] = False
    suffix: None = None
    best_of: Literal[1] | None = None

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, v: str | list[str], info: ValidationInfo) -> str | list[str]:
        check_texts(v, limits(info), empty_ok=False)
        return v

    @model_validator(mode="after")
    def _bounds(self, info: ValidationInfo) -> CompletionRequest:
        self.check(limits(info), self.max_tokens)
        return self


class TextPart(Body):
    type: Literal["text"]
    text: StrictStr


class Message(Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: StrictStr | list[TextPart]
    name: StrictStr | None = None

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatRequest(Generation):
    """POST /v1/chat/completions: text messages (no tools, no images)."""

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    @property
    def route_text(self) -> str:
        """What the router reads: the last user message (the one being answered), else the last message."""
        users = [m for m in self.messages if m.role == "user"]
        return (users or self.messages)[-1].text

    def tokens(self, lim: ServeConfig, default: int) -> int:
        asked = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        return asked if asked is not None else min(default, lim.max_tokens)

    @model_validator(mode="after")
    def _bounds(self, info: ValidationInfo) -> ChatRequest:
        lim = limits(info)
        chars = sum(len(m.text) for m in self.messages)
        if chars > lim.max_chars:
            raise ValueError(f"messages: {chars} characters together, at most {lim.max_chars} (serve.max_chars)")
        self.check(lim, self.max_completion_tokens or self.max_tokens)
        return self


class ClassifyRequest(Body):
    """POST /v1/classify: one or many texts of one task; every label scored, as `culturemanager predict` does."""

    input: StrictStr | list[StrictStr]
    task: StrictStr | None = None
    model: StrictStr = "auto"

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)

    @field_validator("input")
    @classmethod
    def _bounds(cls, v: str | list[str], info: ValidationInfo) -> str | list[str]:
        check_texts(v, limits(info))
        return v
