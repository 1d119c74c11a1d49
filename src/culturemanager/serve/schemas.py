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

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationInfo, model_validator

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


def check_texts(texts: list[str], lim: ServeConfig, what: str) -> None:
    if not texts:
        raise ValueError(f"{what}: at least one text is needed")
    if len(texts) > lim.max_texts:
        raise ValueError(f"{what}: {len(texts)} texts, at most {lim.max_texts} per request (serve.max_texts)")
    for i, t in enumerate(texts):
        if len(t) > lim.max_chars:
            raise ValueError(f"{what}[{i}]: {len(t)} characters, at most {lim.max_chars} (serve.max_chars)")


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

    @model_validator(mode="after")
    def _bounds(self, info: ValidationInfo) -> CompletionRequest:
        lim = limits(info)
        check_texts(self.prompts, lim, "prompt")
        self.check(lim, self.max_tokens)
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

    @model_validator(mode="after")
    def _bounds(self, info: ValidationInfo) -> ClassifyRequest:
        check_texts(self.texts, limits(info), "input")
        return self
