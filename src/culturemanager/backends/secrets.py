"""API keys: read only from environment variables, remembered so that nothing logged ever shows them.

Every backend that reads a key (the openai LLM backend, the web search APIs) reads it with `secret_from_env`;
every message that reaches a log or a file goes through `redact`, which replaces the keys read in this
process, the values of any `*_KEY` / `*_TOKEN` / `*_SECRET` environment variable, and common key shapes.

Run: imported by the backends; no entry point of its own.
"""

from __future__ import annotations

import os
import re

_SEEN: set[str] = set()  # keys read by backends in this process


def remember(secret: str) -> str:
    """Register a key so that `redact` removes it from anything logged; returns it unchanged."""
    if secret:
        _SEEN.add(secret)
    return secret


def secret_from_env(name: str) -> str | None:
    """The value of environment variable `name` (None if unset or empty), registered for redaction."""
    value = os.environ.get(name)
    return remember(value) if value else None


def redact(text: str) -> str:
    """Never let a key reach a log: known key shapes, and the values of every *_KEY / *_TOKEN variable."""
    for secret in _SEEN:
        text = text.replace(secret, "***")
    for name, value in os.environ.items():
        if len(value) >= 8 and name.upper().endswith(("_KEY", "_TOKEN", "_SECRET")):
            text = text.replace(value, "***")
    return re.sub(r"(sk-|Bearer\s+)[A-Za-z0-9_\-\.]{6,}", r"\1***", text)
