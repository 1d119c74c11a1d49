"""Typed records that cross stage boundaries, and the JSON / JSONL helpers that store them.

Every stage reads and writes these records as JSON lines in the run directory, so a stage can be re-run
alone from what is on disk. Stage outputs are written atomically (`write_jsonl`, `write_json`); the
append-only files (the LLM and search caches) go through `append_jsonl_line` and are read back with
`read_json_lines`, which counts the lines a killed run left half-written. The reasons a sample is dropped are
one set, `DropReason`. This module imports nothing heavy (no torch, no transformers).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import unicodedata
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from culturemanager.errors import InputError

Mode = Literal["task_specific", "task_agnostic", "demonstration"]  # demonstration: synthesis.seed
BASE = "__base__"  # peft's adapter name for "no adapter" in a mixed batch (the base model answers)


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

    name: Literal["judge", "selection", "ratio", "probe"]
    by: str = ""
    """The judge model, the sentence embedder, or the ratio's (or the probe's) scoring model."""
    verdict: str | None = None
    """judge: the label it gave (None: no verdict that parsed; the sample is kept)."""
    scores: dict[str, float] = Field(default_factory=dict)
    """selection: representativeness, distinctiveness, nearest (the highest cosine to a kept sample); ratio: the
    likelihood ratio (mean log-probability per token after the positive minus after the negative description);
    probe: p, the probe's P(positive) of a pseudo-labelled real text (synthesis.pseudo_label)."""


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


class DropReason(StrEnum):
    """Why a synthetic sample (or a whole synthesis job) was dropped: `samples/dropped.jsonl`, the manifest's
    counts and the summary all use these values."""

    EMPTY_TEXT = "empty_text"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    NO_LABEL = "no_label"
    LABEL_NOT_IN_SET = "label_not_in_set"
    COPIES_DEMONSTRATION = "copies_demonstration"
    COPIES_MATERIAL = "copies_material"
    DUPLICATE = "duplicate"
    LEAKS_EVALUATION = "leaks_evaluation"
    NO_VALID_ANSWER = "no_valid_answer"  # every attempt of a job: no answer, or no valid item in it
    # free_text answers that are no answers (formats.validate_answer)
    BARE_LABEL = "bare_label"  # "0", "1", "true", ...: a label format's habit
    ECHOES_TEMPLATE = "echoes_template"  # "Question: ... Answer: ...", or the JSON shape's placeholder
    REPEATS_QUESTION = "repeats_question"
    # the checks on kept samples (stages/checks.py, stages/select.py; off by default)
    JUDGE_DISAGREES = "judge_disagrees"
    RATIO_DISAGREES = "ratio_disagrees"  # the likelihood ratio points at the other label
    RATIO_NEAR_ZERO = "ratio_near_zero"  # within synthesis.ratio_check.margin of zero: fits both labels
    NEAR_DUPLICATE = "near_duplicate"
    UNREPRESENTATIVE = "unrepresentative"
    NOT_DISTINCTIVE = "not_distinctive"
    LABEL_BALANCE = "label_balance"


class DroppedSample(Record):
    culture: str
    task: str
    material_id: str
    reason: DropReason
    text: str = ""
    label: str = ""


def make_sample(m: Material, text: str, label: str, generator: str, prompt_hash: str) -> Sample:
    """A sample grounded on a material: its provenance names the material, its documents, URLs and citations."""
    prov = Provenance(culture=m.culture, task=m.task, mode=m.mode, query=m.query, material_id=m.id,
                      source_ids=[d.id for d in m.documents],
                      source_urls=[d.url for d in m.documents if d.url], citations=m.citations,
                      generator=generator,
                      prompt_hash=prompt_hash)
    return Sample(id=sample_id(m.task, text), culture=m.culture, task=m.task, text=text, label=label,
                  provenance=prov)


def with_check(s: Sample, check: Check) -> Sample:
    """The sample with one more passed check in its provenance (the checks of stages/checks.py and ratio.py)."""
    prov = s.provenance.model_copy(update={"checks": [*s.provenance.checks, check]})
    return s.model_copy(update={"provenance": prov})


def drop(s: Sample, reason: DropReason) -> DroppedSample:
    """A kept sample turned into its drop record, with the reason."""
    return DroppedSample(culture=s.culture, task=s.task, material_id=s.provenance.material_id, reason=reason,
                         text=s.text[:500], label=s.label[:100])


class Prediction(Record):
    id: str
    task: str
    text: str  # the input; an over-long one only its first target.text_chars(max_length) characters, and then:
    text_sha256: str | None = None  # the whole input's sha256 (of its UTF-8 bytes)
    text_chars: int | None = None  # and its length in characters
    culture: str  # the culture the router chose, or "Others"
    route_scores: dict[str, float] = Field(default_factory=dict)
    label: str
    score: float | None = None
    label_scores: dict[str, float] = Field(default_factory=dict)
    calibrated_scores: dict[str, float] = Field(default_factory=dict)  # with predict.calibrate
    gold: str | None = None
    truncated: bool = False
    mixture: dict[str, float] = Field(default_factory=dict)  # adapter -> weight, when the top routes answered together
    answers: list[str] = Field(default_factory=list)  # free_text: the input's accepted answers (answers_field)
    judged: bool | None = None  # free_text with predict.judge: the judge's verdict (None: not judged or no verdict)


class CallRecord(Record):
    """One line of the LLM call log (`calls.jsonl`)."""

    stage: str
    model: str
    prompt_hash: str
    latency_s: float  # this attempt's own time, from sending to the answer (a retry's wait not included)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    outcome: Literal["ok", "cached", "error", "retry"]  # retry: a failed attempt that was tried again
    error: str | None = None
    attempt: int = 1
    time: float  # Unix time this attempt started (a cached answer: when it was read)


# ---------------------------------------------------------------------------------------------- helpers

def sha1_text(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def normalize_text(text: str) -> str:
    """The normal form used for deduplication and leakage checks: NFKC, case-folded, punctuation and
    whitespace collapsed. Works the same for Latin, Arabic, Bengali and CJK text."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(c)[0] in "PSZC" else c for c in text)
    return re.sub(r"\s+", " ", text).strip()


# The scripts written without spaces between words (Chinese, Japanese kana, Thai; U+30FC, the prolonged sound mark,
# is script Common): one token per character here, and character n-grams in the BM25 tokenizer. Hangul is not among
# them for leaks: Korean separates words with spaces.
UNSPACED_SCRIPTS = r"\p{Han}\p{Hiragana}\p{Katakana}\u30fc\p{Thai}"
# Arabic: optional short-vowel marks and tatweel are dropped, hamza-carrying alefs folded to bare alef, so that
# voweled and unvoweled spellings of a word match (the BM25 tokenizer and free-text answer matching).
ARABIC_FOLD = str.maketrans({**{c: None for c in [*range(0x064B, 0x0660), 0x0670, 0x0640]},
                             **{c: "\u0627" for c in (0x0622, 0x0623, 0x0625, 0x0671)}})


def sample_id(task: str, text: str) -> str:
    return sha1_text(task + "\x00" + normalize_text(text))


R = TypeVar("R", bound=BaseModel)


class RecordFileError(InputError):
    """A file of the run directory is not what the stage that wrote it writes (a line that is not a valid
    record, a JSON file that does not parse); the message names the file (and the line)."""


def read_jsonl(path: Path, model: type[R]) -> list[R]:
    return list(iter_jsonl(path, model))


def iter_jsonl(path: Path, model: type[R]) -> Iterator[R]:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                yield model.model_validate_json(raw.decode("utf-8"))
            except (ValidationError, UnicodeDecodeError) as e:
                why = e.errors()[0]["msg"] if isinstance(e, ValidationError) else "not UTF-8"
                raise RecordFileError(f"{path}:{lineno}: not a valid {model.__name__}: {why}") from None


def read_json(path: Path) -> Any:
    """A JSON file of the run directory (manifest.json, router.json, ...); a file that does not parse is a
    `RecordFileError` naming it (delete it, or re-run the stage that writes it)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise RecordFileError(f"{path}: not valid JSON ({e}): delete it or re-run the stage that writes it"
                              ) from None


def append_jsonl_line(path: Path, obj: object) -> None:
    """Append one JSON line. A killed run may have left half a line at the end: the new line never continues
    it (a newline goes first), so only the half line is lost, never the new one. The line is written with
    one call and flushed. Callers that append from several threads hold their own lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(obj, ensure_ascii=False) + "\n"
    with open(path, "a+b") as f:
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = "\n" + line
        f.write(line.encode("utf-8"))
        f.flush()


def read_json_lines(path: Path) -> tuple[list[Any], int]:
    """Every line of an append-only JSONL file that parses, and how many did not (a killed run's half line,
    stray bytes); no file: ([], 0)."""
    if not path.exists():
        return [], 0
    values, bad = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                values.append(json.loads(line))
            except json.JSONDecodeError:
                bad += 1
    return values, bad


def json_objects(path: Path, error: type[Exception] = ValueError) -> Iterator[tuple[str, dict]]:
    """("file:line", object) for each non-blank line of a JSONL data file, strictly: a line that is not valid JSON,
    or not a JSON object, raises `error` naming the file and line (a data file is input, not a log to recover)."""
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise error(f"{where}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise error(f"{where}: expected a JSON object, got {type(obj).__name__}")
            yield where, obj


def write_jsonl(path: Path, records: Iterable[BaseModel | dict]) -> int:
    """Write records (or plain JSON objects) atomically (temp file + rename), so a killed run never leaves half a
    stage output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write((r.model_dump_json() if isinstance(r, BaseModel) else json.dumps(r, ensure_ascii=False)) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def temp_path(path: Path) -> Path:
    """The temp file an atomic write renames over `path`, one per process: two processes writing the same file
    (the bench's shards write the same split), or two threads, must not rename each other's temp file away."""
    return path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")


def stable_seed(*parts: object) -> int:
    """A seed derived from names, the same on every run and machine (Python's hash() is salted)."""
    return int(hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:8], 16)
