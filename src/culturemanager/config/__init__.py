"""One TOML file per run, validated into typed objects.

This module holds the run's root (`Config`): its run directory, cultures, tasks, data files, predict and serve
tables; the stage tables it is made of are in settings.py (and importable from here) and config/search.py.

`load_config(path, overrides)` reads the file, applies `--set a.b=c` overrides, and validates. An unknown or
mistyped key, or an impossible value (`train.batch_size = 0`), is a `ConfigError` naming the key's path and
the file. Relative paths in the file (models included) are resolved against the file's folder
(config/file.py). Each field is documented once, here, in the docstring under it:
`culturemanager config --explain` prints them all with their types and defaults.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from culturemanager.config.file import load_raw, load_toml_config
from culturemanager.config.search import SearchConfig
from culturemanager.config.settings import (  # noqa: F401 - every table is importable from here
    CHARS,
    TOKENS,
    JudgeConfig,
    LlamaServerConfig,
    LLMConfig,
    PseudoLabelConfig,
    QueriesConfig,
    RatioCheckConfig,
    RouterConfig,
    Section,
    SelectConfig,
    SmallLossConfig,
    SynthesisConfig,
    TargetConfig,
    TrainConfig,
)
from culturemanager.errors import ConfigError  # noqa: F401 - the config's error, importable from here
from culturemanager.records import read_json
from culturemanager.rundir import RunDir

Format = Literal["binary", "true_false", "multiple_choice", "free_text"]

DEFAULT_TEMPLATES: dict[str, str] = {
    "binary": "If the following sentence has {task}, respond with '1'. If not, respond with '0'. "
              "Do not provide any explanation, reasoning, or extra words. Sentence: {input} Response: ",
    "true_false": "Is the following statement about {task} true or false? Answer 'true' or 'false'. "
                  "Statement: {input} Answer: ",
    "multiple_choice": "Question about {task}: {input}\nOptions: {options}\nAnswer with the option only. "
                       "Answer: ",
    "free_text": "Task: {task}. Input: {input}\nAnswer: ",
}
DEFAULT_LABELS: dict[str, list[str]] = {"binary": ["0", "1"], "true_false": ["true", "false"]}



FileFormat = Literal["auto", "jsonl", "json", "csv", "text"]


class DataFile(Section):
    """A file of texts: JSONL / NDJSON (one object per line), JSON (an array of objects), CSV (with a header)
    or plain text (one text per line)."""

    path: Path
    """The file; relative to the config file's folder."""
    format: FileFormat = "auto"
    """auto: by extension (.jsonl and .ndjson: one JSON object per line; .json: an array of objects; .csv: a
    header row, then one row per text; .txt: one text per line); any other extension is an error unless this
    says how to read it ("text" reads any file as one text per line)."""
    text_field: str = "text"
    """Field (JSON) or column (CSV) holding the text; ignored for text files."""
    label_field: str | None = None
    """Field holding a gold label (prediction inputs only; demonstrations are unlabeled)."""
    label_map: dict[str, str] = Field(default_factory=dict)
    """Maps raw label strings in the file to the task's labels, e.g. {HS = "1", NOT_HS = "0"}."""
    answers_field: str | None = None
    """Field holding the accepted answers of a free_text input: a list of strings (or one string). A prediction
    is scored right when it matches any of them (exact and soft match, answers.py); with `label_field` as well,
    the label is one more accepted answer. In a CSV file the cell is one accepted answer."""
    options_field: str | None = None
    """multiple_choice: field holding the row's options (a list of 2 to 26 strings). They are lettered into the
    text ("... A) Madrid B) Rome"), and a label that names an option's text becomes its letter: the task's labels
    are then the letters (labels = ["A", "B", "C", "D"])."""
    start: int = Field(0, ge=0, le=1_000_000_000)
    """First row to use (0-based, after skipping blank lines)."""
    limit: int | None = Field(None, ge=0, le=1_000_000_000)
    """Use at most this many rows from `start`."""
    culture: str | None = None
    """The known culture of every row (one of [[cultures]]): restricts demonstrations to that culture; for
    prediction inputs it is the culture used when the router is off, and the truth for router accuracy."""
    culture_field: str | None = None
    """Like `culture`, but read per row from this field."""
    task: str | None = None
    """For prediction inputs: the task id of every row (default: predict.task, or the run's only task)."""


ISO_639_1 = r"^[a-z]{2}$"  # a language: "es", "zh", "tr"
ISO_3166 = r"^[A-Za-z]{2}$"  # a country: "es" or "ES"


class Culture(Section):
    name: str
    """Culture name as used everywhere (adapter folder, router option), e.g. "Arabic"."""
    language: str | None = Field(None, pattern=ISO_639_1)
    """ISO 639-1 code of the culture's main language (two lowercase letters, e.g. "es"), used to ask for samples in
    that language, pick its lemmatizer and weigh the router's language prior."""
    country: str | None = Field(None, pattern=ISO_3166)
    """Search locale hint (ISO 3166 alpha-2, e.g. "es"), passed to web search backends."""
    description: str = ""
    """Optional one-line description, shown to the router and the generator."""


class Task(Section):
    id: str
    """Short identifier, used in file names and records."""
    label: str
    """What the task detects or answers, e.g. "hate speech"; fills {task} in the template."""
    format: Format = "binary"
    """binary (two labels, one positive), true_false, multiple_choice (the labels are the options) or free_text
    (answers are generated, one line each, and scored against an input's accepted answers: answers_field)."""
    labels: list[str] | None = None
    """The label set. Default: ["0", "1"] for binary, ["true", "false"] for true_false; required for
    multiple_choice; unused for free_text."""
    positive_label: str | None = None
    """The positive class for F1 (binary / true_false). Default: "1" / "true"."""
    template: str | None = None
    """Prompt template with {task} and {input} (and {options} for multiple choice). The same template is used
    for training and inference. Default: one per format."""
    cultures: list[str] | None = None
    """Cultures this task is run for. Default: all cultures of the run."""
    demonstrations: list[DataFile] = Field(default_factory=list)
    """Unlabeled example inputs of the task (any culture; a file's `culture` restricts it to that culture)."""
    evaluation: list[DataFile] = Field(default_factory=list)
    """Evaluation inputs: synthetic samples (of any task of the run) that equal or share a long n-gram with one
    are dropped."""

    @model_validator(mode="after")
    def _defaults(self) -> Task:
        if self.labels is None and self.format in DEFAULT_LABELS:
            self.labels = list(DEFAULT_LABELS[self.format])
        if self.format == "multiple_choice" and not self.labels:
            raise ValueError("multiple_choice tasks need `labels` (the options)")
        if self.format == "free_text":
            self.labels = None
        if self.labels is not None:
            check_label_set(self.format, self.labels)
        if self.positive_label is None and self.format in ("binary", "true_false") and self.labels:
            self.positive_label = "1" if "1" in self.labels else self.labels[0]
        if self.positive_label is not None and self.labels and self.positive_label not in self.labels:
            raise ValueError(f"positive_label {self.positive_label!r} is not in labels {self.labels}")
        if self.template is None:
            self.template = DEFAULT_TEMPLATES[self.format]
        if self.template.count("{input}") != 1:
            raise ValueError("template must contain {input} exactly once")
        return self


def check_label_set(fmt: str, labels: list[str]) -> None:
    """A label set is scored by its labels' probabilities and F1: each label a distinct non-blank string, two of
    them for binary and true_false, at least two (and at most 26, the letters) for multiple_choice. Checked at
    config load, not after the synthesis calls that would ask for labels like ""."""
    blank = [x for x in labels if not x.strip()]
    if blank:
        raise ValueError(f"labels {labels} hold a blank label: every label must be a non-empty string")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels {labels} are not distinct")
    if fmt in ("binary", "true_false") and len(labels) != 2:
        raise ValueError(f"a {fmt} task needs exactly two labels (one of them positive_label), got {labels}")
    if fmt == "multiple_choice" and not 2 <= len(labels) <= 26:
        raise ValueError(f"a multiple_choice task needs 2 to 26 labels (the options), got {labels}")


class AnswerJudgeConfig(Section):
    """An LLM judge of free-text answers: it reads the question, the input's accepted answers and the model's
    answer, and says whether the answer is right. Its verdicts are scored beside soft match, with their agreement
    (stages/predict.py, metrics.json `judge`). Label tasks are never judged: their answers are scored exactly."""

    enabled: bool = False
    """Judge every free-text prediction that has accepted answers (one short call per prediction, cached)."""
    generator: LLMConfig | None = None
    """The judge's endpoint, e.g. { backend = "openai", model = "gpt-4o" }. Default: the run's generator."""
    max_chars: int = Field(600, ge=1, le=CHARS)
    """The question and the answer are each shown to the judge cut to this many characters."""


# how an adapter's cut is read off its own validation slice (metrics.validation_cut): predict and the bench
ValidationCut = Literal["share", "best_f1"]
# what a prediction input row without gold (its label missing, its accepted answers []) is: datafiles.py
Unscorable = Literal["error", "skip"]


class PredictConfig(Section):
    inputs: list[DataFile] = Field(default_factory=list)
    """Files to predict; each row needs a task: set `task` by using one task per run, or per file below."""
    task: str | None = None
    """Task id for inputs whose file names none (default: the run's only task)."""
    max_new_tokens: int = Field(64, ge=1, le=TOKENS)
    """free_text tasks only."""
    calibrate: bool = False
    """Label calibration: each answering adapter's probabilities are divided by a reference prior (its lean for
    the task) and renormalised before the label is chosen. `label_scores` keep the raw probabilities;
    `calibrated_scores` hold the calibrated ones."""
    calibration: Literal["content_free", "validation"] = "content_free"
    """The reference prior of `calibrate`. content_free: the adapter's probabilities on content-free input (Zhao
    et al. 2021). validation: two-label tasks only, the operating point chosen on the adapter's own validation
    slice (held-out synthetic samples, `validation.jsonl` beside it) by `validation_cut`; where that slice holds
    one label only, or for the base model and other formats, content_free."""
    validation_cut: ValidationCut = "share"
    """How `calibration = "validation"` picks the P(positive) cut on the slice. share: the cut that answers
    positive to as many of the slice's examples as it has positives (the labels' own share, read off the
    adapter's ranking). best_f1: the cut with the best macro-F1 there (on a slice of a dozen examples it jumps
    between the gaps of a few scores: docs/benchmarks.md, "The validation cut: the slice's share")."""
    judge: AnswerJudgeConfig = Field(default_factory=AnswerJudgeConfig)
    """The optional LLM judge of free-text answers (off by default)."""
    on_unscorable: Unscorable = "error"
    """A row of an input file that names its gold (`label_field`, `answers_field`) but has none: the label
    missing, null or blank, the accepted answers missing or []. error: the run stops before its first LLM call,
    naming the file and line (`culturemanager run CONFIG --check` finds them in seconds). skip: the row is left
    out and the others are predicted and scored; metrics.json counts it (`counts.skipped_unscorable`) and names
    it (`skipped_unscorable`)."""


class RunConfig(Section):
    dir: Path = Path("runs/run")
    """The run directory (relative to the config file): every stage reads and writes here."""
    seed: int = Field(0, ge=0, le=2**32 - 1)
    """Seed of every random choice (demonstration batches, generator seeds, training order)."""


class Config(Section):
    run: RunConfig = Field(default_factory=RunConfig)
    """The run directory and seed."""
    generator: LLMConfig = Field(default_factory=LLMConfig)
    """The LLM that writes queries, summaries and samples."""
    target: TargetConfig = Field(default_factory=TargetConfig)
    """The frozen model that gets the adapters."""
    cultures: list[Culture]
    """The cultures of the run (at least one; "Others" is reserved for the router)."""
    tasks: list[Task]
    """The tasks of the run (at least one, unique ids)."""
    queries: QueriesConfig = Field(default_factory=QueriesConfig)
    """Stage 2: search queries."""
    search: SearchConfig = Field(default_factory=SearchConfig)
    """Stage 3: retrieval and summaries."""
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    """Stage 4: synthetic samples."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    """Stage 5: one LoRA adapter per culture."""
    router: RouterConfig = Field(default_factory=RouterConfig)
    """Stage 6: the culture router."""
    predict: PredictConfig = Field(default_factory=PredictConfig)
    """Stage 7: predictions."""
    serve: ServeConfig = Field(default_factory=lambda: ServeConfig())
    """`culturemanager serve`: the HTTP server over the finished run."""

    @field_validator("cultures")
    @classmethod
    def _unique_cultures(cls, v: list[Culture]) -> list[Culture]:
        names = [c.name for c in v]
        if not names:
            raise ValueError("at least one culture is needed")
        if len(set(names)) != len(names) or "Others" in names:
            raise ValueError(f"culture names must be unique and not 'Others': {names}")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        names = {c.name for c in self.cultures}
        ids = [t.id for t in self.tasks]
        if not ids or len(set(ids)) != len(ids):
            raise ValueError(f"task ids must be unique and at least one task is needed: {ids}")
        for i, t in enumerate(self.tasks):
            for c in t.cultures or []:
                if c not in names:
                    raise ValueError(f"task {t.id!r} names unknown culture {c!r} (known: {sorted(names)})")
            for j, f in enumerate(t.demonstrations):
                if f.culture is not None and f.culture not in names:
                    raise ValueError(f"tasks.{i}.demonstrations.{j}.culture {f.culture!r} is not a culture of "
                                     f"the run (known: {sorted(names)})")
            for j, f in enumerate(t.evaluation):
                if f.culture is not None and f.culture not in names:
                    raise ValueError(f"tasks.{i}.evaluation.{j}.culture {f.culture!r} is not a culture of the "
                                     f"run (known: {sorted(names)})")
        for i, f in enumerate(self.predict.inputs):  # "Others": inputs of no culture of the run, for router accuracy
            if f.culture is not None and f.culture not in names | {"Others"}:
                raise ValueError(f"predict.inputs.{i}.culture {f.culture!r} is not a culture of the run nor "
                                 f"\"Others\" (known: {sorted(names)})")
        for where, tid in [("predict.task", self.predict.task)] + [
                (f"predict.inputs.{i}.task", f.task) for i, f in enumerate(self.predict.inputs)]:
            if tid is not None and tid not in ids:
                raise ValueError(f"{where} {tid!r} is not a task id {ids}")
        return self

    @property
    def search_backends(self) -> list[str]:
        b = self.search.backend
        return [b] if isinstance(b, str) else list(b)

    def task(self, task_id: str) -> Task:
        return {t.id: t for t in self.tasks}[task_id]

    def task_cultures(self, task: Task) -> list[Culture]:
        wanted = task.cultures or [c.name for c in self.cultures]
        return [c for c in self.cultures if c.name in wanted]


# The stage tables a run shares with the benchmark, whose config (bench/config.py) takes them from `Config` by name.
PIPELINE_TABLES = ("generator", "target", "queries", "search", "synthesis", "train", "router")


# ------------------------------------------------------------------------------------------- loading

def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    return load_toml_config(path, Config, overrides)


def load_run_config(run_dir: Path, overrides: list[str] | None = None) -> Config:
    """A finished run's folder: the resolved config it wrote (config.json), through the same loader as a config
    file (`--set` overrides, paths against its folder, every check); its run.dir is that folder, wherever the run
    was made or copied to."""
    rd = RunDir(run_dir)
    source = rd.need(rd.config, "run")
    cfg = load_raw(read_json(source), Config, source, overrides)
    cfg.run.dir = Path(run_dir).resolve()
    return cfg


def dump_config(cfg: Config) -> dict[str, Any]:
    return json.loads(cfg.model_dump_json())


# ------------------------------------------------------------------------------------------- serving

class ServeConfig(Section):
    """`culturemanager serve`: an OpenAI-compatible HTTP server over a finished run (the CLI's flags override
    these). Every bound below is enforced per request: what exceeds it is a 4xx naming it, never a backlog."""

    host: str = Field("127.0.0.1", min_length=1)
    """Address to bind: loopback unless told otherwise. Any other address exposes the server: set `api_key_env`."""
    port: int = Field(8000, ge=0, le=65535)
    """TCP port (0: any free port; the address is printed at start)."""
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Name of the environment variable holding the bearer key that every /v1 request must carry
    (`Authorization: Bearer KEY`); the key itself never goes in the config or the logs. None: no key asked."""
    max_batch: int = Field(16, ge=1, le=1024)
    """Most texts in one model batch, across requests and cultures (1: one request at a time, no batching)."""
    max_wait_ms: float = Field(5.0, ge=0, le=1000)
    """How long the first request of a batch waits for others to join it, in milliseconds."""
    queue_size: int = Field(64, ge=1, le=100_000)
    """Requests waiting for the model at most; one more is answered 503 with Retry-After."""
    timeout_s: float = Field(60.0, gt=0, le=3600)
    """Deadline of one request from arrival to answer (504 after it); forwarded requests get it too."""
    max_chars: int = Field(4000, ge=1, le=1_000_000)
    """Characters of one text: a classify input, a completion prompt, or a chat's messages together."""
    max_texts: int = Field(32, ge=1, le=1024)
    """Texts in one classify request, prompts in one completion request."""
    max_tokens: int = Field(256, ge=1, le=8192)
    """Largest `max_tokens` a completion or chat request may ask for (the chat default when it asks none)."""
    threads: int | None = Field(None, ge=1, le=1024)
    """CPU threads of the model worker (default: torch's, one per core). On a CPU that other work keeps busy, 1 is
    much faster than 2 (docs/benchmarks.md, serving)."""
    upstream: str | None = None
    """URL of a vLLM or LoRAX OpenAI-compatible server, e.g. http://localhost:8001/v1: completions and chat are
    forwarded there with `model` set to the routed culture's adapter; routing and classify stay here."""
    shutdown_grace_s: float = Field(30.0, ge=0, le=3600)
    """On SIGTERM / Ctrl-C, how long in-flight requests may take to finish before they are cut off."""

    @field_validator("upstream")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"upstream must be an http:// or https:// URL, got {v!r}")
        return v.rstrip("/") if v else v


Config.model_rebuild()
