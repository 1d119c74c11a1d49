"""The OpenAI wire format, as pure functions: response objects and stream chunks of completions and chat, the
model list, the routing headers, a chat rendered into one prompt, and a generated answer turned into the text
deltas a stream sends (stop strings applied, never half a character).

Every response says which culture answered: each choice carries `culturemanager` =
`{"culture", "adapter", "route_scores", "routed"}` (in a stream: the first chunk of each choice), and the headers
`X-CultureManager-Culture` (the culture per choice or text, comma-separated) and `X-CultureManager-Route-Scores`
(the router's scores per choice or text, JSON) say the same for a caller that reads headers only.

Run: imported by serve/app.py and serve/batcher.py; no entry point of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote

CULTURE_HEADER = "X-CultureManager-Culture"
SCORES_HEADER = "X-CultureManager-Route-Scores"


@dataclass(frozen=True)
class Route:
    """Who answers one text: the culture ("Others": the base model), its adapter (None: the base model), the
    router's score per option (empty when the culture was forced), and how it was chosen."""

    culture: str
    adapter: str | None
    scores: dict[str, float] = field(default_factory=dict)
    how: Literal["router", "forced", "base"] = "router"

    def extra(self) -> dict:
        return {"culture": self.culture, "adapter": self.adapter, "route_scores": self.scores,
                "routed": self.how == "router"}


def route_headers(routes: Sequence[Route]) -> dict[str, str]:
    """Header values are ASCII: culture names are percent-encoded, scores JSON with \\u escapes."""
    return {CULTURE_HEADER: ",".join(quote(r.culture, safe=" ") for r in routes),
            SCORES_HEADER: json.dumps([r.scores for r in routes], separators=(",", ":"))}


def models_list(base: str, cultures: dict[str, str | None], created: int) -> dict:
    """The base model (no adapter), `auto` (the router picks per request), and one model per culture (its
    adapter's name, None when the base model answers for it; never a path on this machine)."""
    def entry(mid: str, kind: str, adapter: str | None = None) -> dict:
        return {"id": mid, "object": "model", "created": created, "owned_by": "culturemanager",
                "culturemanager": {"kind": kind, "adapter": adapter}}

    return {"object": "list", "data": [entry(base, "base"), entry("auto", "router")]
            + [entry(c, "culture", c if a else None) for c, a in cultures.items()]}


def usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_response(rid: str, model: str, answers: Sequence, created: int | None = None) -> dict:
    """`answers`: batcher.Generated per prompt."""
    return {"id": f"cmpl-{rid}", "object": "text_completion", "created": created or int(time.time()),
            "model": model,
            "choices": [{"index": i, "text": a.text, "logprobs": None, "finish_reason": a.finish_reason,
                         "culturemanager": a.route.extra()} for i, a in enumerate(answers)],
            "usage": usage(sum(a.prompt_tokens for a in answers), sum(a.completion_tokens for a in answers))}


def chat_response(rid: str, model: str, answer, created: int | None = None) -> dict:
    return {"id": f"chatcmpl-{rid}", "object": "chat.completion", "created": created or int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                         "logprobs": None, "finish_reason": answer.finish_reason,
                         "culturemanager": answer.route.extra()}],
            "usage": usage(answer.prompt_tokens, answer.completion_tokens)}


def completion_chunk(rid: str, model: str, created: int, index: int, text: str, finish: str | None = None,
                     route: Route | None = None) -> dict:
    choice: dict = {"index": index, "text": text, "logprobs": None, "finish_reason": finish}
    if route is not None:
        choice["culturemanager"] = route.extra()
    return {"id": f"cmpl-{rid}", "object": "text_completion", "created": created, "model": model,
            "choices": [choice]}


def chat_chunk(rid: str, model: str, created: int, delta: dict, finish: str | None = None,
               route: Route | None = None) -> dict:
    choice: dict = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    if route is not None:
        choice["culturemanager"] = route.extra()
    return {"id": f"chatcmpl-{rid}", "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [choice]}


def usage_chunk(rid: str, obj: str, model: str, created: int, prompt: int, completion: int) -> dict:
    """The last chunk when `stream_options.include_usage` is set: no choices, the usage."""
    return {"id": rid, "object": obj, "created": created, "model": model, "choices": [],
            "usage": usage(prompt, completion)}


def sse(obj: dict | str) -> bytes:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)}\n\n".encode()


def render_chat(tok, messages: Sequence[tuple[str, str]]) -> str:
    """The conversation as one prompt, ending where the assistant's answer starts: the tokenizer's chat template
    when it has one; otherwise (a base model such as Gemma-3-270m) plain "role: text" lines."""
    msgs = [{"role": r if r != "developer" else "system", "content": c} for r, c in messages]
    if getattr(tok, "chat_template", None):
        return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return "".join(f"{m['role']}: {m['content']}\n" for m in msgs) + "assistant:"


class TextStream:
    """A growing answer's text, decoded from its tokens as they come: `push` returns the new text that is safe to
    send (no half character, nothing that could still become a stop string) and whether a stop string ended
    it; `finish` returns what was held back. The text never contains the stop string."""

    def __init__(self, tok, stops: Sequence[str] = ()):
        self.tok, self.stops = tok, [s for s in stops if s]
        self.ids: list[int] = []
        self.sent, self.text, self.stopped = "", "", False
        self.hold = max((len(s) for s in self.stops), default=1) - 1

    def push(self, token: int) -> tuple[str, bool]:
        self.ids.append(token)
        text = self.tok.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # a character split over tokens: wait for the rest of it
            return "", False
        self._cut(text)
        return self._delta(len(self.text) if self.stopped else len(self.text) - self.hold), self.stopped

    def finish(self) -> str:
        """The rest of the text once the answer ended (a character left unfinished is decoded as it is)."""
        if not self.stopped:
            self._cut(self.tok.decode(self.ids, skip_special_tokens=True))
        return self._delta(len(self.text))

    def _cut(self, text: str) -> None:
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        self.text, self.stopped = (text[:cut], True) if cut >= 0 else (text, False)

    def _delta(self, upto: int) -> str:
        upto = max(upto, len(self.sent))
        new = self.text[len(self.sent):upto]
        self.sent += new
        return new
