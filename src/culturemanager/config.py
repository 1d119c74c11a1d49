"""One TOML file per run, validated into typed objects.

`load_config(path, overrides)` reads the file, applies `--set a.b=c` overrides, and validates. An unknown or
mistyped key is a `ConfigError` naming the key's path and the file. Relative paths in the file are resolved
against the file's folder. Each field is documented once, here.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


class ConfigError(ValueError):
    """A config problem; the message names the file and the key."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataFile(Section):
    """A file of texts: JSONL (one object per line), CSV (with a header) or plain text (one per line)."""

    path: Path
    text_field: str = "text"
    """Field (JSONL) or column (CSV) holding the text; ignored for .txt files."""
    label_field: str | None = None
    """Field holding a gold label (prediction inputs only; demonstrations are unlabeled)."""
    label_map: dict[str, str] = Field(default_factory=dict)
    """Maps raw label strings in the file to the task's labels, e.g. {HS = "1", NOT_HS = "0"}."""
    start: int = 0
    """First row to use (0-based, after skipping blank lines)."""
    limit: int | None = None
    """Use at most this many rows from `start`."""
    culture: str | None = None
    """The known culture of every row: restricts demonstrations to that culture; for prediction inputs it is
    the culture used when the router is off, and the truth for router accuracy."""
    culture_field: str | None = None
    """Like `culture`, but read per row from this field."""
    task: str | None = None
    """For prediction inputs: the task id of every row (default: predict.task, or the run's only task)."""


class Culture(Section):
    name: str
    """Culture name as used everywhere (adapter folder, router option), e.g. "Arabic"."""
    language: str | None = None
    """ISO 639-1 code of the culture's main language, used to ask for samples in that language."""
    country: str | None = None
    """Search locale hint (ISO 3166 alpha-2), passed to web search backends."""
    description: str = ""
    """Optional one-line description, shown to the router and the generator."""


class Task(Section):
    id: str
    """Short identifier, used in file names and records."""
    label: str
    """What the task detects or answers, e.g. "hate speech"; fills {task} in the template."""
    format: Format = "binary"
    labels: list[str] | None = None
    """The label set. Default: ["0", "1"] for binary, ["true", "false"] for true_false; required for
    multiple_choice; unused for free_text."""
    positive_label: str | None = None
    """The positive class for F1 (binary / true_false). Default: "1" / "true"."""
    template: str | None = None
    """Prompt template with {task} and {input} (and {options} for multiple choice). The same template is used
    for training and inference."""
    cultures: list[str] | None = None
    """Cultures this task is run for. Default: all cultures of the run."""
    demonstrations: list[DataFile] = Field(default_factory=list)
    """Unlabeled example inputs of the task (any culture; a file's `culture` restricts it to that culture)."""
    evaluation: list[DataFile] = Field(default_factory=list)
    """Evaluation inputs: synthetic samples that equal or share a long n-gram with one are dropped."""

    @model_validator(mode="after")
    def _defaults(self) -> Task:
        if self.labels is None and self.format in DEFAULT_LABELS:
            self.labels = list(DEFAULT_LABELS[self.format])
        if self.format == "multiple_choice" and not self.labels:
            raise ValueError("multiple_choice tasks need `labels` (the options)")
        if self.format == "free_text":
            self.labels = None
        if self.positive_label is None and self.format in ("binary", "true_false") and self.labels:
            self.positive_label = "1" if "1" in self.labels else self.labels[0]
        if self.positive_label is not None and self.labels and self.positive_label not in self.labels:
            raise ValueError(f"positive_label {self.positive_label!r} is not in labels {self.labels}")
        if self.template is None:
            self.template = DEFAULT_TEMPLATES[self.format]
        if self.template.count("{input}") != 1:
            raise ValueError("template must contain {input} exactly once")
        return self


class LlamaServerConfig(Section):
    """generator.backend = "llama_server": llama.cpp's own server, started by the run on 127.0.0.1 and stopped
    when the run ends. It decodes `generator.concurrency` sequences together (continuous batching) and reuses
    the cached prompt prefix of each slot (backends/llamaserver.py)."""

    binary: Path | None = None
    """The llama-server executable (absolute, or relative to the working directory). Default: `llama-server`
    next to the running Python (where `make llama-server` puts it), then on PATH."""
    ctx_per_slot: int = 4096
    """Context tokens of each parallel sequence; the server gets concurrency x this."""
    startup_timeout_s: float = 180.0
    """How long to wait for the server to load the model and answer /health."""
    request_timeout_s: float = 1800.0
    """Per request (instead of generator.timeout_s, which is for remote endpoints): on a busy CPU one local call
    can take minutes, and a timed-out call is retried while the server still works on it."""
    extra_args: list[str] = Field(default_factory=list)
    """More llama-server arguments, e.g. ["--cache-reuse", "256"]. Host, port, model, threads, --parallel and
    --ctx-size are set from the config and cannot be given here."""


class LLMConfig(Section):
    backend: Literal["local", "openai", "llama_server", "fake"] = "local"
    """local: a transformers model (short name, folder, GGUF file or hub id); openai: any OpenAI-compatible
    endpoint (GPT-4o, vLLM, Ollama, llama.cpp server); llama_server: a local GGUF model served by llama.cpp's
    own server, which the run starts and stops (`server` below); fake: deterministic offline stand-in."""
    model: str = "qwen2.5-coder-0.5b-instruct"
    base_url: str | None = None
    """openai backend: endpoint, e.g. http://localhost:8000/v1. Default: the OpenAI API."""
    api_key_env: str = "OPENAI_API_KEY"
    """openai backend: name of the environment variable holding the key (the key itself never goes here)."""
    temperature: float = 0.7
    max_new_tokens: int = 384
    concurrency: int = 4
    """openai and llama_server backends: requests in flight at once (llama_server: also its parallel slots)."""
    timeout_s: float = 120.0
    max_retries: int = 4
    """openai backend: retries with exponential backoff on 429/5xx/timeouts."""
    engine: Literal["transformers", "llama_cpp"] = "transformers"
    """local backend: llama_cpp needs the `llamacpp` extra and a GGUF model."""
    threads: int | None = None
    """local and llama_server backends: CPU threads (default: torch's / llama.cpp's default)."""
    server: LlamaServerConfig = Field(default_factory=LlamaServerConfig)


class TargetConfig(Section):
    model: str = "gemma3-270m"
    """The frozen base model that gets one LoRA adapter per culture (short name, folder, GGUF or hub id)."""
    max_length: int = 256
    """Token budget of one prompt + answer. Longer inputs are truncated (the input text's tail is cut;
    template and answer are kept) and counted."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_size: int = 8
    """Inference batch size (routing and prediction)."""


class QueriesConfig(Section):
    modes: list[Literal["task_specific", "task_agnostic"]] = ["task_specific", "task_agnostic"]
    per_mode: int = 3
    """Queries kept per culture x task x mode."""
    demo_batch: int = 4
    """Demonstrations shown in one task-specific prompt (a seeded random batch)."""
    max_attempts: int = 3


SearchBackend = Literal["local", "tavily", "brave", "serper", "searxng", "ddgs"]


class WebSearchConfig(Section):
    """Settings shared by the web search backends (tavily, brave, serper, searxng, ddgs)."""

    api_key_env: str | None = None
    """Environment variable holding the API key. Default per backend: TAVILY_API_KEY, BRAVE_API_KEY,
    SERPER_API_KEY; searxng and ddgs need none. The key itself never goes in the config."""
    base_url: str | None = None
    """Override the backend's API endpoint (searxng: required, your instance, e.g. http://localhost:8888)."""
    results: int = 5
    """Results asked for per query."""
    include_domains: list[str] = Field(default_factory=list)
    exclude_domains: list[str] = Field(default_factory=list)
    timeout_s: float = 20.0
    max_retries: int = 3
    """Retries on 429 (honouring Retry-After) and 5xx, with exponential backoff; then counted and skipped."""


class FetchConfig(Section):
    """Fetching the pages behind web results (httpx), with an SSRF guard."""

    enabled: bool = True
    """Fetch each result page and extract its main text; off: use the search snippet."""
    allow_private: bool = False
    """Allow loopback, private, link-local and other non-public addresses (never by default)."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """"host" or "host:port" entries allowed even though they resolve to a non-public address."""
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    max_bytes: int = 2_000_000
    """Larger responses are cut off here (and counted)."""
    content_types: list[str] = ["text/html", "application/xhtml+xml", "text/plain"]
    max_redirects: int = 5
    per_host: int = 2
    """Requests in flight to one host at a time."""
    cache_dir: Path | None = None
    """On-disk page cache keyed by URL (default: <run>/cache/pages)."""


class SearchConfig(Section):
    backend: SearchBackend | list[SearchBackend] = "local"
    """Where material comes from: local (the corpus below) or a web search API; a list queries each and
    merges the results (a backend that fails is counted and the others go on)."""
    corpus: list[Path] = Field(default_factory=list)
    """Folders or files of the local corpus."""
    retrieval: Literal["bm25", "dense", "hybrid"] = "bm25"
    """local backend: BM25, a multilingual embedding model, or both fused."""
    web: WebSearchConfig = Field(default_factory=WebSearchConfig)
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    top_k: int = 3
    candidates: int = 5
    """Retrieve top_k x candidates documents, then keep the top_k that name the query's culture first."""
    summarize: bool = True
    """Summarize each query's documents with the generator before synthesis (as in the paper)."""
    max_doc_chars: int = 1500
    """Characters of each document shown to the generator."""
    index_dir: Path | None = None
    """Where the BM25 index is persisted (default: <run>/index)."""


class JudgeConfig(Section):
    """Label check by a judge: an LLM reads each kept sample's text and gives its label; a sample whose label it
    disagrees with is dropped and counted (stages/checks.py). How far a judge can be trusted is measured on
    real labelled inputs by benchmarks/judge.py (docs/benchmarks.md)."""

    enabled: bool = False
    generator: LLMConfig | None = None
    """The judge's endpoint, e.g. { backend = "openai", model = "gpt-4o" }. Default: the run's generator."""
    max_chars: int = 600
    """A sample is shown to the judge cut to this many characters."""


class SelectConfig(Section):
    """Selection by culture over multilingual sentence embeddings (CAReDiO's representativeness and
    distinctiveness, stages/select.py). Every drop is counted with its reason."""

    enabled: bool = False
    near_duplicate: float = 0.9
    """A sample whose cosine with an earlier kept sample of the same culture and task is above this is a
    near-duplicate: dropped."""
    min_representativeness: float = 0.1
    """Cosine between a sample and the mean of its culture's demonstrations of the task; below it: dropped.
    A culture x task without demonstrations is not checked."""
    min_distinctiveness: float = 0.0
    """Cosine to the mean of its own culture's other samples minus the highest cosine to another culture's
    sample mean (same task); below it (closer to another culture than to its own): dropped."""
    balance: bool = True
    """Cap each label of a culture x task at the count of its rarest label present, keeping the most
    representative samples."""


class SynthesisConfig(Section):
    samples_per_material: int = 4
    max_attempts: int = 2
    """Generator calls per material before it is skipped (an unparsable answer is retried)."""
    min_chars: int = 5
    max_chars: int = 600
    leakage_ngram: int = 8
    """A sample sharing this many consecutive tokens (words; characters for CJK) with an evaluation input
    is dropped as leaked."""
    copy_ngram: int = 12
    """A sample sharing this many consecutive tokens with its own material is a copy, not a sample: dropped."""
    label_mode: Literal["per_label", "round_robin", "free"] = "per_label"
    """per_label: one call per material and label, asking for samples of that label only; round_robin: one
    call per material, labels asked for in turn; free: one call, the generator picks the labels."""
    samples_per_call: int | None = None
    """per_label: ask for a label's samples in calls of at most this many, which differ only in their seed (they
    share the whole prompt, so an engine with a prompt cache evaluates it once per material). Default: one call."""
    output: Literal["json", "compact"] = "json"
    """json: one {"text": ..., "label": ...} object per sample; compact: per_label calls ask for {"text": ...}
    only (the call's label is known), fewer generated tokens per sample (docs/benchmarks.md)."""
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)

    @model_validator(mode="after")
    def _compact_needs_per_label(self) -> SynthesisConfig:
        if self.output == "compact" and self.label_mode != "per_label":
            raise ValueError('output = "compact" needs label_mode = "per_label" (its answers carry no label)')
        return self


class TrainConfig(Section):
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = ["q_proj", "v_proj"]
    epochs: int = 3
    lr: float = 3e-4
    batch_size: int = 4
    max_steps: int | None = None
    """Stop after this many optimizer steps (default: all epochs)."""
    checkpoint_every: int = 20
    """Save a resumable checkpoint every this many steps."""
    min_samples: int = 4
    """Cultures with fewer synthetic samples get no adapter (they fall back to the base model)."""


class RouterConfig(Section):
    enabled: bool = True
    """Off: every input uses the culture given by its input file (or the base model)."""
    others: bool = True
    """Offer "Others" (no adapter) as a choice."""
    calibrate: bool = True
    """Contextual calibration: subtract each option's score on content-free texts ("", "N/A", "...") before
    choosing, which removes a small model's lean towards the first-listed or most frequent culture name
    (measured in docs/benchmarks.md: router accuracy 0.77 -> 0.93 on the real-data run, 0.35 -> 0.70 in the bench)."""
    template: str = (
        "Which culture does the following text come from? Options: {options}.\n"
        "Text: {input}\nCulture:"
    )


class PredictConfig(Section):
    inputs: list[DataFile] = Field(default_factory=list)
    """Files to predict; each row needs a task: set `task` by using one task per run, or per file below."""
    task: str | None = None
    """Task id for inputs whose file names none (default: the run's only task)."""
    max_new_tokens: int = 64
    """free_text tasks only."""


class RunConfig(Section):
    dir: Path = Path("runs/run")
    seed: int = 0


class Config(Section):
    run: RunConfig = Field(default_factory=RunConfig)
    generator: LLMConfig = Field(default_factory=LLMConfig)
    target: TargetConfig = Field(default_factory=TargetConfig)
    cultures: list[Culture]
    tasks: list[Task]
    queries: QueriesConfig = Field(default_factory=QueriesConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)

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
        for t in self.tasks:
            for c in t.cultures or []:
                if c not in names:
                    raise ValueError(f"task {t.id!r} names unknown culture {c!r} (known: {sorted(names)})")
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


# ------------------------------------------------------------------------------------------- loading

def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    path = Path(path)
    raw = read_toml(path)
    for item in overrides or []:
        apply_override(raw, item)
    _resolve_paths(raw, path.parent.resolve())
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, path)) from None


def apply_override(raw: dict[str, Any], item: str) -> None:
    """`a.b=c` sets raw["a"]["b"] (`tasks.0.label=x`: an index into a list); the value is parsed as TOML
    when it can be, else kept a string."""
    if "=" not in item:
        raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
    key, value = item.split("=", 1)
    parts = key.strip().split(".")
    node: Any = raw
    for p in parts[:-1]:
        if isinstance(node, list):
            if not p.isdigit() or int(p) >= len(node):
                raise ConfigError(f"--set {key}: {p!r} is not an index of a list of {len(node)}")
            node = node[int(p)]
        elif isinstance(node, dict):
            node = node.setdefault(p, {})
        else:
            raise ConfigError(f"--set {key}: {p!r} is not a table")
    if not isinstance(node, dict):
        raise ConfigError(f"--set {key}: {parts[-2] if len(parts) > 1 else key!r} is not a table")
    node[parts[-1]] = _parse_value(value.strip())


def _parse_value(value: str) -> Any:
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value


def format_validation_error(e: ValidationError, path: Path) -> str:
    lines = [f"{path}: invalid config"]
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  unknown key `{key}`")
        elif err["type"] == "missing":
            lines.append(f"  missing key `{key}`")
        else:
            lines.append(f"  `{key}`: {err['msg']}")
    return "\n".join(lines)


_PATH_KEYS = {("run", "dir"), ("search", "index_dir")}


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Make the file's relative paths relative to the file's folder, not to where the command runs;
    `$VAR` / `${VAR}` and `~` are expanded (e.g. `${CULTUREMANAGER_DATA}/tasks.json`)."""
    def fix(p: Any) -> Any:
        if not isinstance(p, str):
            return p
        expanded = os.path.expandvars(os.path.expanduser(p))
        if "$" in expanded:
            missing = re.findall(r"\$\{?(\w+)", expanded)
            raise ConfigError(f"path {p!r} uses the environment variable {missing[0]}, which is not set")
        return expanded if Path(expanded).is_absolute() else str(base / expanded)

    for sect, key in _PATH_KEYS:
        if isinstance(raw.get(sect), dict) and key in raw[sect]:
            raw[sect][key] = fix(raw[sect][key])
    if isinstance(raw.get("search"), dict) and isinstance(raw["search"].get("corpus"), list):
        raw["search"]["corpus"] = [fix(p) for p in raw["search"]["corpus"]]
    fetch = raw.get("search", {}).get("fetch") if isinstance(raw.get("search"), dict) else None
    if isinstance(fetch, dict) and "cache_dir" in fetch:
        fetch["cache_dir"] = fix(fetch["cache_dir"])
    files: list[Any] = []
    for t in raw.get("tasks", []) if isinstance(raw.get("tasks"), list) else []:
        if isinstance(t, dict):
            files += _as_list(t, "demonstrations") + _as_list(t, "evaluation")
    if isinstance(raw.get("predict"), dict):
        files += _as_list(raw["predict"], "inputs")
    for f in files:
        if isinstance(f, dict) and "path" in f:
            f["path"] = fix(f["path"])


def _as_list(table: dict[str, Any], key: str) -> list[Any]:
    """Allow a bare path string (or list of strings) where a list of DataFile tables is expected."""
    v = table.get(key)
    if v is None:
        return []
    if isinstance(v, (str, dict)):
        v = [v]
    v = [{"path": x} if isinstance(x, str) else x for x in v]
    table[key] = v
    return v


def dump_config(cfg: Config) -> dict[str, Any]:
    return json.loads(cfg.model_dump_json())
