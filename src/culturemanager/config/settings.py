"""The settings tables of the pipeline's stages and backends: [generator], [target], [queries], [synthesis],
[train], [router]; [search] (stage 3, its web backends and page fetching) is in config/search.py. One pydantic
class per table, each field documented by the docstring under it (`culturemanager config --explain` prints them).
The run's root (`Config`), its cultures, tasks and data files are in config/__init__.py, which is where the rest of the
package imports the tables from.

Every count, size, timeout and retry has an upper bound, far above any value a run could mean (a day for a
timeout, 100 retries, a million tokens), so that a slip like `queries.per_mode = 99999999999999999999` or
`timeout_s = 1e308` is a config error naming the key, not a plan of 3.8e18 hours. No float anywhere in a config
may be inf or nan (`Section`: one check for every table).

Run: imported by config/__init__.py; no entry point of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from culturemanager.text.router_prompts import ROUTER_TEMPLATES


class Section(BaseModel):
    # the docstring under each field becomes its description (`culturemanager config --explain`); inf and nan are
    # no setting of anything (`train.lr = inf` trained to nan losses and reported success), so every float of
    # every table must be finite
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)


# the upper bounds shared by many fields (generous: each is far above any value a run could mean)
DAY_S = 86_400  # a timeout
RETRIES = 100  # retries or attempts of one call
TOKENS = 1_048_576  # a context or an answer, in tokens
CHARS = 10_000_000  # a text, in characters
BATCH = 65_536  # examples or texts in one batch



class LlamaServerConfig(Section):
    """generator.backend = "llama_server": llama.cpp's own server, started by the run on 127.0.0.1 and stopped
    when the run ends. It decodes `generator.concurrency` sequences together (continuous batching) and reuses
    the cached prompt prefix of each slot (backends/llamaserver.py)."""

    binary: Path | None = None
    """The llama-server executable (absolute, or relative to the working directory). Default: `llama-server`
    next to the running Python (where `make llama-server` puts it), then on PATH."""
    ctx_per_slot: int = Field(4096, ge=256, le=TOKENS)
    """Context tokens of each parallel sequence; the server gets concurrency x this."""
    startup_timeout_s: float = Field(180.0, gt=0, le=DAY_S)
    """How long to wait for the server to load the model and answer /health."""
    request_timeout_s: float = Field(1800.0, gt=0, le=DAY_S)
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
    max_new_tokens: int = Field(384, ge=1, le=TOKENS)
    """Longest answer of one call, in tokens (queries are capped at 256)."""
    concurrency: int = Field(4, ge=1, le=1024)
    """openai and llama_server backends: requests in flight at once (llama_server: also its parallel slots)."""
    timeout_s: float = Field(120.0, gt=0, le=DAY_S)
    """openai backend: wall-clock deadline of one request, from sending it to the answer's last byte; a server
    that keeps dripping bytes is cut off here too."""
    max_retries: int = Field(4, ge=0, le=RETRIES)
    """openai backend: retries of a request on connection errors, timeouts, 429 (honouring Retry-After) and
    5xx, with exponential backoff; each retry is a line in calls.jsonl."""
    engine: Literal["transformers", "llama_cpp"] = "transformers"
    """local backend: llama_cpp needs the `llamacpp` extra and a GGUF model."""
    threads: int | None = Field(None, ge=1, le=1024)
    """local and llama_server backends: CPU threads (default: torch's / llama.cpp's default)."""
    server: LlamaServerConfig = Field(default_factory=LlamaServerConfig)
    """llama_server backend: the server's binary, context and timeouts."""


class TargetConfig(Section):
    model: str = "gemma3-270m"
    """The frozen base model that gets one LoRA adapter per culture (packaged short name, transformers folder
    or .gguf file relative to the config file, or hub id); checked before any stage runs."""
    max_length: int = Field(256, ge=16, le=TOKENS)
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
    batch_size: int = Field(8, ge=1, le=BATCH)
    """Inference batch size (routing and prediction)."""


class QueriesConfig(Section):
    modes: list[Literal["task_specific", "task_agnostic"]] = Field(["task_specific", "task_agnostic"],
                                                                   min_length=1)
    """task_specific: the prompt shows demonstrations of the task; task_agnostic: broad cultural knowledge."""
    per_mode: int = Field(3, ge=1, le=1000)
    """Queries kept per culture x task x mode."""
    demo_batch: int = Field(4, ge=1, le=1000)
    """Demonstrations shown in one task-specific prompt (a seeded random batch)."""
    max_attempts: int = Field(3, ge=1, le=RETRIES)
    """Generator calls per culture x task x mode until `per_mode` distinct queries are found."""


class JudgeConfig(Section):
    """Label check by a judge: an LLM reads each kept sample's text and gives its label; a sample whose label it
    disagrees with is dropped and counted (stages/checks.py). How far a judge can be trusted is measured on
    real labelled inputs by benchmarks/judge.py (docs/benchmarks.md)."""

    enabled: bool = False
    """Judge every kept sample's label (one short generator call per sample)."""
    generator: LLMConfig | None = None
    """The judge's endpoint, e.g. { backend = "openai", model = "gpt-4o" }. Default: the run's generator."""
    max_chars: int = Field(600, ge=1, le=CHARS)
    """A sample is shown to the judge cut to this many characters."""


class RatioCheckConfig(Section):
    """Label check by a likelihood ratio (the noisy-channel idea of DINO and SuperGen): a causal LM scores each
    kept sample of a binary task by how much more likely its text is after a description of the positive label
    ("A social media post with hate speech:") than after one of the negative ("An ordinary social media post:"),
    per text token; a sample whose ratio points at the other label, or lies within `margin` of zero (a text that
    fits both, like an assistant's phrase), is dropped and counted (stages/ratio.py). No one's opinion is asked.
    How far it can be trusted is measured on real labelled rows by benchmarks/label_ratio.py."""

    enabled: bool = False
    """Score every kept sample of a binary task (two forward passes of the scoring model per sample)."""
    model: str = "target"
    """The scoring model: "target" (the run's `[target]`, loaded as the predict stage loads it) or another causal
    LM (packaged short name, transformers folder, or hub id), loaded on the target's device and dtype."""
    wording: Literal["plain", "language", "contrast"] = "plain"
    """The two label descriptions (stages/ratio.py RATIO_PREFIXES). plain: "A social media post with {task}:"
    against "An ordinary social media post:"; language: the same, naming the culture's language; contrast: the
    negative says "without {task}"."""
    center: Literal["zero", "median"] = "zero"
    """Where a ratio changes label. zero: the sign of the ratio; median: the ratio minus the median ratio of the
    samples of its culture x task (synthesis asks for both labels in equal numbers), which removes the constant
    lean of a description pair that benchmarks/label_ratio.py measures on real rows (a ratio can rank well and
    still be positive for nearly every text)."""
    margin: float = Field(0.0, ge=0.0)
    """A ratio (mean log-probability per token, positive minus negative description, after `center`) within this
    of zero says neither label: the sample is dropped (ratio_near_zero). 0: only disagreeing samples are dropped."""
    max_tokens: int = Field(64, ge=1)
    """A text is scored on at most its first this many tokens."""


class PseudoLabelConfig(Section):
    """Real texts labelled by a probe fitted on the synthetic samples (self-training, stages/pseudo.py): per
    culture x binary task, a class-balanced logistic regression on the target model's mean hidden state is fitted on
    the kept synthetic samples and scores the task's real unlabeled texts; the `share` it is surest of at each end
    become samples of the positive and the negative label, added to the synthetic ones. No real label is read.
    How far it carries the task: `make bench-label-quality` (lever "pseudo")."""

    enabled: bool = False
    """Add the pseudo-labelled real texts to the samples (loads the target model in the synthesis stage)."""
    sources: list[Literal["demonstrations", "material"]] = Field(["demonstrations", "material"], min_length=1)
    """Where the real texts come from: the task's unlabeled demonstrations, and/or the posts of the retrieved
    documents (each document split at blank lines; the social-media corpus's pages hold one post a paragraph)."""
    share: float = Field(0.2, gt=0.0, le=0.5)
    """The share of the real texts kept at each end of the probe's scores (0.2: the lowest fifth become negatives,
    the highest fifth positives)."""
    min_per_label: int = Field(4, ge=1, le=100_000)
    """A culture x task needs at least this many kept synthetic samples of each label to fit its probe."""
    pool_limit: int | None = Field(400, ge=2, le=1_000_000)
    """Score at most this many real texts per culture x task (a seeded sample); None: all."""
    c: float = Field(0.1, gt=0.0, le=1e6)
    """The probe's inverse regularization strength (scikit-learn's C): few samples, strong regularization."""


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
    samples_per_material: int = Field(4, ge=1, le=1000)
    """Samples asked for per material (per_label: split over the labels, at least one each)."""
    max_attempts: int = Field(2, ge=1, le=RETRIES)
    """Generator calls per material before it is skipped (an unparsable answer is retried)."""
    min_chars: int = Field(5, ge=0, le=CHARS)
    """Shorter samples are dropped (too_short)."""
    max_chars: int = Field(600, ge=1, le=CHARS)
    """Longer samples are dropped (too_long)."""
    leakage_ngram: int = Field(8, ge=1, le=1000)
    """A sample sharing this many consecutive tokens (words; characters for Chinese and Japanese) with an
    evaluation input of the run is dropped as leaked."""
    copy_ngram: int = Field(12, ge=1, le=1000)
    """A sample sharing this many consecutive tokens with its own material is a copy, not a sample: dropped."""
    label_mode: Literal["per_label", "round_robin", "free"] = "per_label"
    """per_label: one call per material and label, asking for samples of that label only; round_robin: one
    call per material, labels asked for in turn; free: one call, the generator picks the labels."""
    samples_per_call: int | None = Field(None, ge=1, le=1000)
    """per_label: ask for a label's samples in calls of at most this many, which differ only in their seed (they
    share the whole prompt, so an engine with a prompt cache evaluates it once per material). Default: one call."""
    output: Literal["json", "compact"] = "json"
    """json: one {"text": ..., "label": ...} object per sample; compact: per_label calls ask for {"text": ...}
    only (the call's label is known), fewer generated tokens per sample (docs/benchmarks.md)."""
    label_wording: Literal["plain", "explicit"] = "plain"
    """How a per-label call says what its label means (binary tasks). plain: "the text has hate speech";
    explicit: the positive label asks for the offending message itself, its content plain in its words, not a
    text about it or a polite one, and the negative for an ordinary message on a similar topic
    (`make bench-label-quality` compares the two against a classifier trained on real labels)."""
    seed: Literal["material", "demonstrations", "both"] = "material"
    """What each synthesis call starts from. material: the retrieved (and summarized) material, samples grounded
    in it; demonstrations: each unlabeled demonstration of the task, rewritten once per label with the same topic,
    language and register (counterfactual versions: the samples look like the task's inputs and differ where the
    label does; tasks with a label set only, others keep material); both: the two job lists together."""
    seed_limit: int | None = Field(None, ge=1, le=100_000)
    """demonstrations / both: rewrite at most this many demonstrations per culture and task (a seeded sample).
    Default: every demonstration."""
    rewrite_max_similarity: float = Field(0.9, gt=0.0, le=1.0)
    """A rewrite whose character similarity to its own demonstration (difflib's ratio, case-folded) is at least
    this is the demonstration with a made-up label, not a new sample: dropped (copies_demonstration)."""
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    """The label check on kept samples by an LLM judge (off by default)."""
    ratio_check: RatioCheckConfig = Field(default_factory=RatioCheckConfig)
    """The label check on kept samples by a likelihood ratio of two label descriptions (off by default)."""
    select: SelectConfig = Field(default_factory=SelectConfig)
    """Selection of kept samples by culture over embeddings (off by default)."""
    pseudo_label: PseudoLabelConfig = Field(default_factory=PseudoLabelConfig)
    """Real texts of the task labelled by a probe fitted on the synthetic samples, added to them (off by default)."""

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


class SmallLossConfig(Section):
    """The label check that needs no judge (the small-loss idea of the label-noise literature): a first adapter is
    trained on all of a culture's samples, the samples it finds least likely under their own label (the highest
    answer loss) are dropped, and the adapter is trained again on the rest (stages/train.py). Every sample's loss
    and verdict is written beside the adapter (`small_loss.jsonl`)."""

    enabled: bool = False
    """Train twice, dropping the high-loss samples in between."""
    drop_share: float = Field(0.2, gt=0.0, lt=1.0)
    """Share of each label's samples dropped, the highest losses first (per label, so a rare label is not
    dropped wholesale; at least one sample of each label is kept)."""


class TrainConfig(Section):
    rank: int = Field(8, ge=1, le=4096)
    """LoRA rank r of each adapted matrix."""
    alpha: int = Field(16, ge=1, le=BATCH)
    """LoRA alpha (the update is scaled by alpha / rank)."""
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    """Dropout on the LoRA input."""
    target_modules: list[str] = Field(["q_proj", "v_proj"], min_length=1)
    """Names of the target model's modules that get LoRA weights."""
    epochs: int = Field(3, ge=1, le=10_000)
    """Passes over a culture's samples."""
    lr: float = Field(3e-4, gt=0)
    """AdamW learning rate."""
    batch_size: int = Field(4, ge=1, le=BATCH)
    """Samples per optimizer step (the effective batch size)."""
    micro_batch: int | None = Field(None, ge=1, le=BATCH)
    """Run each step's batch in pieces of this many samples whose gradients are accumulated (gradient
    accumulation: a large effective batch in little memory). The pieces are cut in length order, so each is padded
    to its own longest sequence only: less padding, the same gradient. Default: the whole batch at once."""
    max_steps: int | None = Field(None, ge=1, le=100_000_000)
    """Stop after this many optimizer steps (default: all epochs)."""
    max_examples: int | None = Field(None, ge=1, le=1_000_000_000)
    """Training budget in examples seen: at most this many (default: `epochs` passes). A budget that means the
    same for a 50-example and a 1,000-example adapter."""
    layers: int | None = Field(None, ge=1, le=1024)
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
    validation_min: int = Field(0, ge=0, le=1_000_000)
    """Hold out at least this many of each label (at most half of the label's examples), whatever `validation`
    says: on a task with 5% positives, 15% of 100 demonstrations is one positive, and an operating point chosen on
    one positive is noise (docs/benchmarks.md). 0: the share alone."""
    eval_every: int = Field(10, ge=1, le=100_000_000)
    """Steps between validation losses (with `validation`); the best weights are kept."""
    patience: int | None = Field(None, ge=1, le=1_000_000)
    """Stop after this many validations without improvement (default: train the whole budget, keep the best)."""
    checkpoint_every: int = Field(20, ge=1, le=100_000_000)
    """Save a resumable checkpoint every this many steps."""
    min_samples: int = Field(4, ge=1, le=1_000_000_000)
    """Cultures with fewer synthetic samples get no adapter (they fall back to the base model)."""
    small_loss: SmallLossConfig = Field(default_factory=SmallLossConfig)
    """The small-loss label check on CultureManager's synthetic samples (off by default)."""


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
    max_chars: int = Field(1000, ge=16, le=CHARS)
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
        if v in ROUTER_TEMPLATES:
            return v
        if v.count("{input}") != 1 or ("{options}" not in v and "{option_list}" not in v):
            raise ValueError(f"not a template name ({', '.join(ROUTER_TEMPLATES)}) nor a template with {{input}} "
                             f"once and {{options}} or {{option_list}}: {v!r}")
        return v
