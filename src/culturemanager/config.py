"""One TOML file per run, validated into typed objects.

`load_config(path, overrides)` reads the file, applies `--set a.b=c` overrides, and validates. An unknown or
mistyped key, or an impossible value (`train.batch_size = 0`), is a `ConfigError` naming the key's path and
the file. Relative paths in the file (models included) are resolved against the file's folder
(configfile.py). Each field is documented once, here, in the docstring under it:
`culturemanager config --explain` prints them all with their types and defaults.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from culturemanager.configfile import load_toml_config
from culturemanager.errors import ConfigError  # noqa: F401 - the config's error, importable from here

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


class Section(BaseModel):
    # the docstring under each field becomes its description (`culturemanager config --explain`)
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


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
    start: int = Field(0, ge=0)
    """First row to use (0-based, after skipping blank lines)."""
    limit: int | None = Field(None, ge=0)
    """Use at most this many rows from `start`."""
    culture: str | None = None
    """The known culture of every row (one of [[cultures]]): restricts demonstrations to that culture; for
    prediction inputs it is the culture used when the router is off, and the truth for router accuracy."""
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
    """binary (two labels, one positive), true_false, multiple_choice (the labels are the options) or free_text
    (answers are generated, not scored)."""
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
    ctx_per_slot: int = Field(4096, ge=256)
    """Context tokens of each parallel sequence; the server gets concurrency x this."""
    startup_timeout_s: float = Field(180.0, gt=0)
    """How long to wait for the server to load the model and answer /health."""
    request_timeout_s: float = Field(1800.0, gt=0)
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
    """The generator: a packaged short name (`culturemanager models`), a transformers folder or .gguf file
    (relative to the config file), a hub id, or the model name the openai endpoint expects."""
    base_url: str | None = None
    """openai backend: endpoint, e.g. http://localhost:8000/v1. Default: the OpenAI API."""
    api_key_env: str = "OPENAI_API_KEY"
    """openai backend: name of the environment variable holding the key (the key itself never goes here)."""
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    """Sampling temperature of every generator call (0: greedy)."""
    max_new_tokens: int = Field(384, ge=1)
    """Longest answer of one call, in tokens (queries are capped at 256)."""
    concurrency: int = Field(4, ge=1)
    """openai and llama_server backends: requests in flight at once (llama_server: also its parallel slots)."""
    timeout_s: float = Field(120.0, gt=0)
    """openai backend: wall-clock deadline of one request, from sending it to the answer's last byte; a server
    that keeps dripping bytes is cut off here too."""
    max_retries: int = Field(4, ge=0)
    """openai backend: retries of a request on connection errors, timeouts, 429 (honouring Retry-After) and
    5xx, with exponential backoff; each retry is a line in calls.jsonl."""
    engine: Literal["transformers", "llama_cpp"] = "transformers"
    """local backend: llama_cpp needs the `llamacpp` extra and a GGUF model."""
    threads: int | None = Field(None, ge=1)
    """local and llama_server backends: CPU threads (default: torch's / llama.cpp's default)."""
    server: LlamaServerConfig = Field(default_factory=LlamaServerConfig)
    """llama_server backend: the server's binary, context and timeouts."""


class TargetConfig(Section):
    model: str = "gemma3-270m"
    """The frozen base model that gets one LoRA adapter per culture (packaged short name, transformers folder
    or .gguf file relative to the config file, or hub id); checked before any stage runs."""
    max_length: int = Field(256, ge=16)
    """Token budget of one prompt + answer. Longer inputs are truncated (the input text's tail is cut;
    template and answer are kept) and counted."""
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    """Where the target runs for training, routing, prediction, the benchmark and the server: "auto" (CUDA, then
    Apple MPS, then the CPU), "cpu", "cuda", "cuda:N" or "mps". A device that is not here is an error."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights' dtype: "auto" is bfloat16 on a CUDA device that supports it (else float16), float16 on MPS and
    float32 on the CPU."""
    load_in_4bit: bool = False
    """Load the target in 4-bit (bitsandbytes NF4, CUDA only, the `gpu` extra) to train LoRA adapters on a large
    target in little GPU memory (QLoRA-style)."""
    batch_size: int = Field(8, ge=1)
    """Inference batch size (routing and prediction)."""


class QueriesConfig(Section):
    modes: list[Literal["task_specific", "task_agnostic"]] = Field(["task_specific", "task_agnostic"],
                                                                   min_length=1)
    """task_specific: the prompt shows demonstrations of the task; task_agnostic: broad cultural knowledge."""
    per_mode: int = Field(3, ge=1)
    """Queries kept per culture x task x mode."""
    demo_batch: int = Field(4, ge=1)
    """Demonstrations shown in one task-specific prompt (a seeded random batch)."""
    max_attempts: int = Field(3, ge=1)
    """Generator calls per culture x task x mode until `per_mode` distinct queries are found."""


SearchBackend = Literal["local", "tavily", "brave", "serper", "searxng", "ddgs"]


class WebSearchConfig(Section):
    """Settings shared by the web search backends (tavily, brave, serper, searxng, ddgs)."""

    api_key_env: str | None = None
    """Environment variable holding the API key. Default per backend: TAVILY_API_KEY, BRAVE_API_KEY,
    SERPER_API_KEY; searxng and ddgs need none. The key itself never goes in the config."""
    base_url: str | None = None
    """Override the backend's API endpoint (searxng: required, your instance, e.g. http://localhost:8888)."""
    results: int = Field(5, ge=1, le=100)
    """Results asked for per query."""
    include_domains: list[str] = Field(default_factory=list)
    """Only results from these domains (e.g. ["elpais.com"]); empty: any."""
    exclude_domains: list[str] = Field(default_factory=list)
    """Never results from these domains."""
    timeout_s: float = Field(20.0, gt=0)
    """Wall-clock deadline of one search request, whatever the server does (a dripping answer is cut off)."""
    max_retries: int = Field(3, ge=0)
    """Retries on 429 (honouring Retry-After) and 5xx, with exponential backoff; then counted and skipped."""


class FetchConfig(Section):
    """Fetching the pages behind web results (httpx), with an SSRF guard."""

    enabled: bool = True
    """Fetch each result page and extract its main text; off: use the search snippet."""
    allow_private: bool = False
    """Allow loopback, private, link-local and other non-public addresses (never by default)."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """"host" or "host:port" entries allowed even though they resolve to a non-public address."""
    connect_timeout_s: float = Field(5.0, gt=0)
    """Connection timeout of one page request."""
    read_timeout_s: float = Field(15.0, gt=0)
    """Longest wait for the next bytes of a page; the whole page has connect + 4 x read timeout."""
    max_bytes: int = Field(2_000_000, ge=1)
    """Larger responses are cut off here (and counted)."""
    content_types: list[str] = ["text/html", "application/xhtml+xml", "text/plain"]
    """Content-Types accepted; other pages are refused before their body is read."""
    max_redirects: int = Field(5, ge=0)
    """Redirects followed (each hop re-checked by the SSRF guard)."""
    per_host: int = Field(2, ge=1)
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
    """The web search backends' settings."""
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    """Fetching the pages behind web results."""
    top_k: int = Field(3, ge=1)
    """Documents kept per query (they become one material)."""
    candidates: int = Field(5, ge=1)
    """Retrieve top_k x candidates documents, then keep the top_k that name the query's culture first."""
    summarize: bool = True
    """Summarize each query's documents with the generator before synthesis (as in the paper)."""
    max_doc_chars: int = Field(1500, ge=1)
    """Characters of each document shown to the generator."""
    index_dir: Path | None = None
    """Where the BM25 index is persisted (default: <run>/index)."""


class JudgeConfig(Section):
    """Label check by a judge: an LLM reads each kept sample's text and gives its label; a sample whose label it
    disagrees with is dropped and counted (stages/checks.py). How far a judge can be trusted is measured on
    real labelled inputs by benchmarks/judge.py (docs/benchmarks.md)."""

    enabled: bool = False
    """Judge every kept sample's label (one short generator call per sample)."""
    generator: LLMConfig | None = None
    """The judge's endpoint, e.g. { backend = "openai", model = "gpt-4o" }. Default: the run's generator."""
    max_chars: int = Field(600, ge=1)
    """A sample is shown to the judge cut to this many characters."""


class SelectConfig(Section):
    """Selection by culture over multilingual sentence embeddings (CAReDiO's representativeness and
    distinctiveness, stages/select.py). Every drop is counted with its reason."""

    enabled: bool = False
    """Select kept samples by culture over sentence embeddings (needs the `dense` extra)."""
    near_duplicate: float = Field(0.9, ge=0.0, le=1.0)
    """A sample whose cosine with an earlier kept sample of the same culture and task is above this is a
    near-duplicate: dropped."""
    min_representativeness: float = Field(0.1, ge=-1.0, le=1.0)
    """Cosine between a sample and the mean of its culture's demonstrations of the task; below it: dropped.
    A culture x task without demonstrations is not checked."""
    min_distinctiveness: float = Field(0.0, ge=-2.0, le=2.0)
    """Cosine to the mean of its own culture's other samples minus the highest cosine to another culture's
    sample mean (same task); below it (closer to another culture than to its own): dropped."""
    balance: bool = True
    """Cap each label of a culture x task at the count of its rarest label present, keeping the most
    representative samples."""


class SynthesisConfig(Section):
    samples_per_material: int = Field(4, ge=1)
    """Samples asked for per material (per_label: split over the labels, at least one each)."""
    max_attempts: int = Field(2, ge=1)
    """Generator calls per material before it is skipped (an unparsable answer is retried)."""
    min_chars: int = Field(5, ge=0)
    """Shorter samples are dropped (too_short)."""
    max_chars: int = Field(600, ge=1)
    """Longer samples are dropped (too_long)."""
    leakage_ngram: int = Field(8, ge=1)
    """A sample sharing this many consecutive tokens (words; characters for Chinese and Japanese) with an
    evaluation input of the run is dropped as leaked."""
    copy_ngram: int = Field(12, ge=1)
    """A sample sharing this many consecutive tokens with its own material is a copy, not a sample: dropped."""
    label_mode: Literal["per_label", "round_robin", "free"] = "per_label"
    """per_label: one call per material and label, asking for samples of that label only; round_robin: one
    call per material, labels asked for in turn; free: one call, the generator picks the labels."""
    samples_per_call: int | None = Field(None, ge=1)
    """per_label: ask for a label's samples in calls of at most this many, which differ only in their seed (they
    share the whole prompt, so an engine with a prompt cache evaluates it once per material). Default: one call."""
    output: Literal["json", "compact"] = "json"
    """json: one {"text": ..., "label": ...} object per sample; compact: per_label calls ask for {"text": ...}
    only (the call's label is known), fewer generated tokens per sample (docs/benchmarks.md)."""
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    """The label check on kept samples by an LLM judge (off by default)."""
    select: SelectConfig = Field(default_factory=SelectConfig)
    """Selection of kept samples by culture over embeddings (off by default)."""

    @model_validator(mode="after")
    def _compact_needs_per_label(self) -> SynthesisConfig:
        if self.output == "compact" and self.label_mode != "per_label":
            raise ValueError('output = "compact" needs label_mode = "per_label" (its answers carry no label)')
        return self

    @model_validator(mode="after")
    def _bounds(self) -> SynthesisConfig:
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) is larger than max_chars ({self.max_chars})")
        return self


class TrainConfig(Section):
    rank: int = Field(8, ge=1)
    """LoRA rank r of each adapted matrix."""
    alpha: int = Field(16, ge=1)
    """LoRA alpha (the update is scaled by alpha / rank)."""
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    """Dropout on the LoRA input."""
    target_modules: list[str] = Field(["q_proj", "v_proj"], min_length=1)
    """Names of the target model's modules that get LoRA weights."""
    epochs: int = Field(3, ge=1)
    """Passes over a culture's samples."""
    lr: float = Field(3e-4, gt=0)
    """AdamW learning rate."""
    batch_size: int = Field(4, ge=1)
    """Samples per optimizer step (the effective batch size)."""
    micro_batch: int | None = Field(None, ge=1)
    """Run each step's batch in pieces of this many samples whose gradients are accumulated (gradient
    accumulation: a large effective batch in little memory). Default: the whole batch at once."""
    max_steps: int | None = Field(None, ge=1)
    """Stop after this many optimizer steps (default: all epochs)."""
    max_examples: int | None = Field(None, ge=1)
    """Training budget in examples seen: at most this many (default: `epochs` passes). A budget that means the
    same for a 50-example and a 1,000-example adapter."""
    layers: int | None = Field(None, ge=1)
    """LoRA on the top this many decoder layers only (default: every layer). The frozen layers below are then the
    same for every adapter: their states are computed once per example and reused, so a step runs only the top
    layers (docs/benchmarks.md has the measured speed-up)."""
    balance: bool = False
    """Class-balanced batches: every label (answer) drawn equally often, rare labels oversampled."""
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    """Learning-rate schedule after the warm-up: constant, or linear / cosine decay to 0."""
    warmup: float = Field(0.0, ge=0.0, lt=1.0)
    """Share of the steps with a linear learning-rate warm-up."""
    validation: float = Field(0.0, ge=0.0, lt=0.5)
    """Share of the adapter's own examples held out (stratified by label) for early stopping; 0: none. Never test
    data: for CultureManager, synthetic samples only."""
    eval_every: int = Field(10, ge=1)
    """Steps between validation losses (with `validation`); the best weights are kept."""
    patience: int | None = Field(None, ge=1)
    """Stop after this many validations without improvement (default: train the whole budget, keep the best)."""
    checkpoint_every: int = Field(20, ge=1)
    """Save a resumable checkpoint every this many steps."""
    min_samples: int = Field(4, ge=1)
    """Cultures with fewer synthetic samples get no adapter (they fall back to the base model)."""


class RouterConfig(Section):
    enabled: bool = True
    """Off: every input uses the culture given by its input file (or the base model)."""
    kind: Literal["embedding", "prompt"] = "embedding"
    """embedding: a classifier on multilingual sentence embeddings with a language prior, fitted on each culture's
    route examples (`router.examples`), milliseconds per input; prompt: the target model is asked which culture the
    text comes from (the paper's design), one forward pass per option and input. docs/benchmarks.md has both
    measured on the ten benchmark tasks."""
    others: bool = True
    """Offer "Others" (no adapter, the base model answers) as a choice."""
    examples: list[Literal["demonstrations", "samples"]] = Field(["demonstrations", "samples"], min_length=1)
    """embedding router: what defines each culture's route: its demonstrations (from files with a known culture,
    or of tasks with one culture) and the texts of its kept synthetic samples (samples/<culture>.jsonl)."""
    language_prior: bool = True
    """embedding router: multiply in py3langid's probability of each culture's language (`[[cultures]] language`;
    used only when every culture names one), with a weight picked by cross-validation on the route examples."""
    keep: float = Field(0.99, gt=0.5, le=1.0)
    """embedding router: the "Others" threshold keeps at least this share of every culture's held-out route examples
    in-set (held out by cross-validation; out-of-set examples come from leaving each culture out in turn)."""
    max_chars: int = Field(1000, ge=16)
    """embedding router: characters of each text it reads (the head; long e-mails cost time, not accuracy)."""
    top_k: int = Field(1, ge=1, le=16)
    """Answer with the top this many routes' adapters mixed: their label probabilities weighted by the router's
    probabilities (renormalised over the k); 1: the routed culture's adapter alone."""
    mix_below: float = Field(1.0, gt=0.0, le=1.0)
    """With top_k > 1: mix only inputs whose top route's probability is below this (the router is unsure);
    1.0: mix every input."""
    calibrate: bool = True
    """prompt router: contextual calibration, subtract each option's score on content-free texts ("", "N/A",
    "...") before choosing, which removes a small model's lean towards the first-listed or most frequent culture
    name (measured in docs/benchmarks.md: router accuracy 0.77 -> 0.93 on the real-data run, 0.35 -> 0.70 in the
    bench)."""
    template: str = "short"
    """prompt router: "short" (this project's one-line prompt), "paper" (the CultureManager paper's router prompt,
    word for word, one option per line), or a template of your own with {input} and {options} (comma-separated)
    or {option_list} (one "- option" line each)."""

    @field_validator("template")
    @classmethod
    def _template(cls, v: str) -> str:
        from culturemanager.prompts import ROUTER_TEMPLATES

        if v in ROUTER_TEMPLATES:
            return v
        if v.count("{input}") != 1 or ("{options}" not in v and "{option_list}" not in v):
            raise ValueError(f"not a template name ({', '.join(ROUTER_TEMPLATES)}) nor a template with {{input}} "
                             f"once and {{options}} or {{option_list}}: {v!r}")
        return v


class PredictConfig(Section):
    inputs: list[DataFile] = Field(default_factory=list)
    """Files to predict; each row needs a task: set `task` by using one task per run, or per file below."""
    task: str | None = None
    """Task id for inputs whose file names none (default: the run's only task)."""
    max_new_tokens: int = Field(64, ge=1)
    """free_text tasks only."""
    calibrate: bool = False
    """Label calibration: each answering adapter's probabilities are divided by the ones it gives on content-free
    input (its lean for the task) and renormalised before the label is chosen. `label_scores` keep the raw
    probabilities; `calibrated_scores` hold the calibrated ones."""


class RunConfig(Section):
    dir: Path = Path("runs/run")
    """The run directory (relative to the config file): every stage reads and writes here."""
    seed: int = Field(0, ge=0)
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

def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    return load_toml_config(path, Config, overrides)


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
