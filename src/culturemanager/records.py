"""Typed records that cross stage boundaries, and the JSONL helpers that store them.

Every stage reads and writes these records as JSON lines in the run directory, so a stage can be re-run
alone from what is on disk. This module imports nothing heavy (no torch, no transformers).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Mode = Literal["task_specific", "task_agnostic"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Query(Record):
    """One web-search query written by the generator for a culture and a task."""

    id: str
    culture: str
    task: str
    mode: Mode
    text: str
    generator: str
    prompt_hash: str


class Document(Record):
    """One retrieved passage. `id` is stable (source + offset); `url` is set for web results."""

    id: str
    title: str = ""
    text: str
    source: str
    url: str | None = None
    score: float = 0.0
    language: str | None = None


class Citation(Record):
    """One point of a summary and the document it cites: `n` is the [n] marker, `quote` the summary's sentence."""

    n: int
    source_id: str
    url: str | None = None
    quote: str


class Material(Record):
    """What synthesis is grounded on: the documents found for one query, optionally summarized."""

    id: str
    culture: str
    task: str
    mode: Mode
    query_id: str
    query: str
    text: str
    documents: list[Document]
    summarized: bool
    summary_prompt_hash: str | None = None
    citations: list[Citation] = Field(default_factory=list)


class Check(Record):
    """A check a kept sample passed beyond parsing and the copy, duplicate and leakage filters."""

    name: Literal["judge", "selection"]
    by: str = ""
    """The judge model, or the sentence embedder."""
    verdict: str | None = None
    """judge: the label it gave (None: no verdict that parsed; the sample is kept)."""
    scores: dict[str, float] = Field(default_factory=dict)
    """selection: representativeness, distinctiveness, nearest (the highest cosine to a kept sample)."""


class Provenance(Record):
    culture: str
    task: str
    mode: Mode
    query: str
    material_id: str
    source_ids: list[str]
    source_urls: list[str]
    citations: list[Citation] = Field(default_factory=list)
    generator: str
    prompt_hash: str
    checks: list[Check] = Field(default_factory=list)
    """The optional checks it passed (synthesis.judge, synthesis.select), in order."""


class Sample(Record):
    """One labeled synthetic training sample, in the task's own format."""

    id: str  # normalized sha1 of (task, text): the deduplication key
    culture: str
    task: str
    text: str
    label: str
    provenance: Provenance


class DroppedSample(Record):
    culture: str
    task: str
    material_id: str
    reason: str
    text: str = ""
    label: str = ""


class Prediction(Record):
    id: str
    task: str
    text: str
    culture: str  # the culture the router chose, or "Others"
    route_scores: dict[str, float] = Field(default_factory=dict)
    label: str
    score: float | None = None
    label_scores: dict[str, float] = Field(default_factory=dict)
    gold: str | None = None
    truncated: bool = False


class CallRecord(Record):
    """One line of the LLM call log (`calls.jsonl`)."""

    stage: str
    model: str
    prompt_hash: str
    latency_s: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    outcome: Literal["ok", "cached", "error"]
    error: str | None = None
    time: float


# ---------------------------------------------------------------------------------------------- helpers

def sha1_text(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def normalize_text(text: str) -> str:
    """The normal form used for deduplication and leakage checks: NFKC, case-folded, punctuation and
    whitespace collapsed. Works the same for Latin, Arabic, Bengali and CJK text."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(c)[0] in "PSZC" else c for c in text)
    return re.sub(r"\s+", " ", text).strip()


def sample_id(task: str, text: str) -> str:
    return sha1_text(task + "\x00" + normalize_text(text))


R = TypeVar("R", bound=BaseModel)


class RecordFileError(ValueError):
    """A JSONL file has a line that is not a valid record; the message names the file and the line."""


def read_jsonl(path: Path, model: type[R]) -> list[R]:
    return list(iter_jsonl(path, model))


def iter_jsonl(path: Path, model: type[R]) -> Iterator[R]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield model.model_validate_json(line)
            except ValidationError as e:
                raise RecordFileError(f"{path}:{lineno}: not a valid {model.__name__}: {e.errors()[0]['msg']}"
                                      ) from None


def write_jsonl(path: Path, records: Iterable[BaseModel]) -> int:
    """Write atomically (temp file + rename), so a killed run never leaves half a stage output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(r.model_dump_json() + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def stable_seed(*parts: object) -> int:
    """A seed derived from names, the same on every run and machine (Python's hash() is salted)."""
    return int(hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:8], 16)
