"""What a run or a benchmark will cost, before it runs: generator calls and tokens, adapters, training steps and
examples, forward passes, and the time of each phase from measured rates (`culturemanager bench CONFIG --plan`,
`culturemanager run CONFIG --plan`).

Nothing expensive happens: the data files are read and split in memory, the tokenizer measures the inputs'
lengths, the model's config gives its number of layers. Everything else is arithmetic on the settings:
- the LLM stages: one query call per culture x task x mode, a summary per query (`search.summarize`), a synthesis
  call per material and label (`synthesis.label_mode`), their prompt and answer tokens;
- training: each adapter's plan (`backends/schedule.plan_batches`: epochs, `max_examples`, `max_steps`), the
  examples it sees, and the tokens through its adapted layers; the frozen lower layers once per distinct example;
- evaluation: every (variant, task) pair's test inputs through the adapted layers, the router and the probe.
Time = work x rate. `Rates` are seconds per token and layer (a full forward pass; a forward through the adapted
layers on the frozen prefix's states; forward + backward of a training step) and generator seconds per token,
measured on this project's 2-core CPU (`make bench-rates`, benchmarks/results/rates.json); a config's
`[bench.rates]` (or `--set bench.rates.x=...`) gives another machine's.

Run: `culturemanager bench CONFIG.toml --plan`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace

# Kept synthetic samples per sample asked for: the full bench's pipeline kept 107 of the 120 it asked for
# (2026-12-01, Qwen2.5-Coder-1.5B; the rest near-duplicates, leaks or unparsed answers).
KEEP_RATE = 0.9


@dataclass(frozen=True)
class Rates:
    """Seconds per unit of work on one machine. Defaults: this project's 2-core CPU, from `make bench-rates`
    (benchmarks/results/rates.json, 2026-12-02, quiet machine, one run after the output layer's contiguous-input fix;
    the previous defaults, 2026-12-01: forward 1.4e-4, prefix 1.15e-4, upper 3.4e-4, train 1.4e-3)."""

    layer_token_forward_s: float = 9.1e-5        # one token through one decoder layer of a full forward pass
    layer_token_prefix_s: float = 7.2e-5         # one token through one frozen lower layer (the frozen prefix)
    layer_token_forward_upper_s: float = 1.3e-4  # one token through one adapted layer on the frozen prefix's states
    #                                              (the embedding, masks and output layer are spread over 2 layers)
    layer_token_train_s: float = 4.5e-4          # forward + backward of one token through one adapted layer
    output_token_s: float = 0.12                 # generator, per answer token (decode)
    prompt_token_s: float = 0.004                # generator, per prompt token (prefill)
    adapter_overhead_s: float = 5.0              # per adapter trained: load, LoRA setup, save
    # requests in flight on a llama-server that shares this CPU's cores: 4 parallel sequences measured 1.44x one
    # (`make bench-synthesis`, docs/benchmarks.md); a remote endpoint's N requests in flight count N times
    local_parallel_speedup: float = 1.44


# The packaged generators on this CPU (llama.cpp, 2 threads): seconds per answer token from `make bench-generators`
# (7.7 and 15.4 tokens/s), per prompt token from the bench's calls (pipeline/calls.jsonl: 0.5B, `make bench-quick`,
# 2026-12-01: 16 synthesis calls, 12,256 prompt + 1,848 answer tokens in 144 s).
GENERATOR_RATES = {"qwen2.5-coder-1.5b-instruct": {"output_token_s": 0.12, "prompt_token_s": 0.004},
                   "qwen2.5-coder-0.5b-instruct": {"output_token_s": 0.065, "prompt_token_s": 0.0022}}


@dataclass
class Phase:
    name: str
    work: str  # what is counted, in words
    seconds: float


@dataclass
class Plan:
    phases: list[Phase] = field(default_factory=list)
    counts: dict = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return sum(p.seconds for p in self.phases)

    def render(self) -> str:
        from culturemanager.bench.format import duration, table

        rows = [[p.name, p.work, duration(p.seconds)] for p in self.phases]
        rows.append(["total", "", duration(self.total_s)])
        counts = "\n".join(f"- {k}: {v}" for k, v in self.counts.items())
        return table(["Phase", "Work", "Estimated time"], rows) + "\n\n" + counts


def speedup(generator, rates: Rates) -> float:
    """How many times faster `generator.concurrency` requests in flight finish than one at a time: N for a
    remote endpoint (openai), at most `local_parallel_speedup` for a llama-server on this machine's cores."""
    if generator.backend == "openai":
        return float(generator.concurrency)
    if generator.backend == "llama_server":
        return min(float(generator.concurrency), rates.local_parallel_speedup)
    return 1.0


def generator_phase(name: str, calls: int, prompt_tokens: float, output_tokens: float, rates: Rates,
                    concurrency: float = 1.0) -> Phase:
    """Calls x (prompt + answer) tokens at the generator's rates, `concurrency` times faster (`speedup`)."""
    seconds = calls * (prompt_tokens * rates.prompt_token_s + output_tokens * rates.output_token_s) / concurrency
    return Phase(name, f"{calls} calls, ~{prompt_tokens:.0f} prompt + ~{output_tokens:.0f} answer tokens each",
                 seconds)


# What a synthesis call writes on this CPU's packaged generators (benchmarks/results/synthesis.json,
# 2026-12-01/02): a call asked for k samples of one label keeps about KEEP_RATE x k of them, but no more than
# CALL_YIELD whatever k is (asked for 3: 2.5 kept; asked for 8: 3.0, in 112 answer tokens), at about
# TOKENS_PER_KEPT answer tokens each.
CALL_YIELD = 3.0
TOKENS_PER_KEPT = 38
# Kept samples that pass selection by culture (synthesis.select, its default thresholds): 484 of 1,236 in the one
# run measured (2026-12-02, the 0.5B generator, ten tasks; docs/benchmarks.md, ~250 synthetic samples per culture).
SELECT_KEEP_RATE = 0.39


def synthesis_work(s, generator, materials: int, labels: int, doc_tokens: float, rates: Rates,
                   concurrency: float = 1.0) -> tuple[Phase, float]:
    """The synthesis stage's calls and time, and the samples it keeps (before selection). per_label: each
    material's samples are shared by its labels and asked for in calls of at most `samples_per_call`; the calls
    of one label share their whole prompt, so an engine with a prompt cache (llama.cpp in process or
    llama-server) evaluates it once."""
    per_label = max(1, -(-s.samples_per_material // labels))
    step = min(s.samples_per_call or per_label, per_label)
    parts = -(-per_label // step)
    calls = materials * labels * parts
    kept_per_call = min(step * KEEP_RATE, CALL_YIELD)
    answer = min(generator.max_new_tokens, kept_per_call / KEEP_RATE * TOKENS_PER_KEPT)
    prompt = 500 + doc_tokens
    cached = generator.backend in ("local", "llama_server")
    prompt_per_call = prompt / parts if cached else prompt
    phase = generator_phase("synthesis", calls, prompt_per_call, answer, rates, concurrency)
    return phase, calls * kept_per_call


def training_seconds(examples_seen: int, tokens: float, adapted_layers: int, rates: Rates) -> float:
    return examples_seen * tokens * adapted_layers * rates.layer_token_train_s


def adapter_seconds(examples_seen: int, tokens: float, adapted_layers: int, rates: Rates,
                    validation_forwards: int = 0) -> float:
    """One adapter: its training steps, its validation passes (`validation_forwards` sequences through the
    adapted layers, see `validation_passes`) and the per-adapter overhead (load, LoRA setup, save)."""
    return (training_seconds(examples_seen, tokens, adapted_layers, rates) + rates.adapter_overhead_s
            + upper_forward_seconds(validation_forwards, tokens, adapted_layers, rates))


def validation_size(n: int, share: float) -> int:
    """About how many of n examples `schedule.split_validation` holds out (it rounds per label; use its own
    result where the examples are known)."""
    return 0 if share <= 0 or n < 10 else max(1, round(n * share))


def validation_passes(held_out: int, steps: int, eval_every: int) -> int:
    """Sequences an adapter runs through for early stopping: its `held_out` validation examples every
    `eval_every` steps and after the last step."""
    if held_out == 0 or steps == 0:
        return 0
    return held_out * (steps // eval_every + (1 if steps % eval_every else 0))


def forward_seconds(sequences: int, tokens: float, layers: int, rates: Rates) -> float:
    """Full forward passes (every layer, from the embedding to the output layer)."""
    return sequences * tokens * layers * rates.layer_token_forward_s


def prefix_seconds(sequences: int, tokens: float, lower_layers: int, rates: Rates) -> float:
    """The frozen prefix: sequences through the lower layers, once each."""
    return sequences * tokens * lower_layers * rates.layer_token_prefix_s


def upper_forward_seconds(sequences: int, tokens: float, adapted_layers: int, rates: Rates) -> float:
    """Forward passes through the adapted layers only, on the frozen prefix's stored states."""
    return sequences * tokens * adapted_layers * rates.layer_token_forward_upper_s


def planned_steps(n: int, epochs: int, batch_size: int, max_examples: int | None, max_steps: int | None) -> int:
    """The number of optimizer steps `plan_batches` makes for n examples (its budget rule, without the plan)."""
    if n == 0:
        return 0
    budget = n * epochs if max_examples is None else min(n * epochs, max_examples)
    steps = max(1, math.ceil(budget / batch_size))
    return min(steps, max_steps) if max_steps is not None else steps


def mean_tokens(tok, task, texts: list[str], max_length: int) -> float:
    from culturemanager.backends.target import answer_reserve, encode_task

    if not texts:
        return 0.0
    reserve = answer_reserve(tok, task, 64)
    return statistics.fmean(len(encode_task(tok, task, t, max_length, reserve).ids) for t in texts[:400])


@dataclass(frozen=True)
class Shape:
    """What a target's decoder costs per token: its layers and the parameters (multiply-adds) of one layer."""

    layers: int
    layer_params: int

    @classmethod
    def of(cls, hidden: int, intermediate: int, heads: int, kv_heads: int, head_dim: int, layers: int) -> Shape:
        attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim  # q and o, k and v
        return cls(layers, attention + 3 * hidden * intermediate)  # gate, up and down projections


# Published config.json values of hub targets, for a plan without the hub (hidden, intermediate, heads, kv heads,
# head dim, layers). The rates were measured on Gemma-3-270m, the reference shape.
KNOWN_SHAPES = {"meta-llama/Llama-3.1-8B-Instruct": Shape.of(4096, 14336, 32, 8, 128, 32),
                "meta-llama/Llama-3.3-70B-Instruct": Shape.of(8192, 28672, 64, 8, 128, 80),
                "Qwen/Qwen2.5-7B-Instruct": Shape.of(3584, 18944, 28, 4, 128, 28),
                "google/gemma-3-270m": Shape.of(640, 2048, 4, 1, 256, 18)}
REFERENCE = KNOWN_SHAPES["google/gemma-3-270m"]


def target_shape(model: str) -> Shape:
    """The target's shape, from its config (no weights loaded), or a known hub model's offline."""
    from transformers import AutoConfig

    from culturemanager.backends.models import ModelNotAvailable, resolve_hf

    try:
        path, local = resolve_hf(model)
        c = AutoConfig.from_pretrained(path, local_files_only=local)
    except (ModelNotAvailable, OSError):
        if model in KNOWN_SHAPES:
            return KNOWN_SHAPES[model]
        raise
    c = getattr(c, "text_config", c)
    heads = c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    return Shape.of(c.hidden_size, c.intermediate_size, heads, getattr(c, "num_key_value_heads", heads) or heads,
                    head_dim, c.num_hidden_layers)


COUNTING_TOKENIZERS = ("gemma3-270m", "smollm2-135m-instruct")  # packaged stand-ins, multilingual first


def plan_tokenizer(target) -> tuple[object, str | None]:
    """The target's tokenizer for counting tokens; where it cannot be had here (a hub model, offline), the first
    packaged one that can (Gemma-3-270m's multilingual 262k vocabulary, else SmolLM2's) and a note saying so."""
    from culturemanager.backends.models import ModelNotAvailable
    from culturemanager.backends.target import load_tokenizer

    try:
        return load_tokenizer(target), None
    except (ModelNotAvailable, OSError) as missing:
        for name in COUNTING_TOKENIZERS:
            try:
                tok = load_tokenizer(target.model_copy(update={"model": name}))
            except (ModelNotAvailable, OSError):
                continue
            return tok, f"{target.model}'s tokenizer is not available here: tokens counted with {name}'s"
        raise missing


def plan_rates(given: dict, generator: str, shape: Shape) -> tuple[Rates, str]:
    """The plan's rates and where they come from, in words: this CPU's, the per-layer ones scaled from the
    reference layer (Gemma-3-270m's, where they were measured) to the target's in proportion to a layer's
    parameters, the generator's own where it is a packaged one, and a config's `[bench.rates]` over all of them
    (a config's rates are its machine's and model's: not scaled)."""
    scale = shape.layer_params / REFERENCE.layer_params
    layer = ("layer_token_forward_s", "layer_token_prefix_s", "layer_token_forward_upper_s", "layer_token_train_s")
    base = Rates(**GENERATOR_RATES.get(generator, {}))
    rates = replace(base, **{**{k: getattr(base, k) * scale for k in layer}, **given})
    target = "this CPU's (`make bench-rates`, Gemma-3-270m)" + (f" scaled x{scale:.1f} to the target's layer size"
                                                               if abs(scale - 1) > 0.01 else "")
    if given.keys() & set(layer):
        target += ", with the config's"
    if given.keys() & {"output_token_s", "prompt_token_s"}:
        gen = "the config's"
    elif generator in GENERATOR_RATES:
        gen = f"this CPU's for {generator}"
    else:
        gen = (f"this CPU's for qwen2.5-coder-1.5b-instruct, not {generator}'s: set bench.rates.output_token_s and "
               "prompt_token_s to the endpoint's")
    return rates, f"target {target}; generator {gen}"


def plan_run(cfg) -> Plan:
    """The pipeline's plan for a run config (`culturemanager run CONFIG --plan`)."""
    from culturemanager.stages.spec import demonstrations_by_culture
    from culturemanager.text.datafiles import read_rows

    shape = target_shape(cfg.target.model)
    (rates, note), plan = plan_rates({}, cfg.generator.model, shape), Plan()
    g = cfg.generator
    conc = speedup(g, rates)
    jobs = sum(len(cfg.task_cultures(t)) * len(cfg.queries.modes) for t in cfg.tasks)
    queries = jobs * cfg.queries.per_mode
    plan.phases.append(generator_phase("queries", jobs, 450, 40 * cfg.queries.per_mode, rates, conc))
    doc = cfg.search.top_k * cfg.search.max_doc_chars / 3.5
    if cfg.search.summarize:
        plan.phases.append(generator_phase("search: summaries", queries, 300 + doc, 200, rates, conc))
    labels = max(len(t.labels or [None]) for t in cfg.tasks) if cfg.synthesis.label_mode == "per_label" else 1
    phase, kept = synthesis_work(cfg.synthesis, g, queries, labels, doc, rates, conc)
    plan.phases.append(replace(phase, name="synthesize"))
    tok, tok_note = plan_tokenizer(cfg.target)
    layers = shape.layers
    adapted = min(cfg.train.layers or layers, layers)
    demos = [d for t in cfg.tasks for texts in demonstrations_by_culture(cfg, t).values() for d in texts]
    tokens = mean_tokens(tok, cfg.tasks[0], demos, cfg.target.max_length)
    per_culture = kept / len(cfg.cultures) * (SELECT_KEEP_RATE if cfg.synthesis.select.enabled else 1.0)
    t = cfg.train
    steps = planned_steps(round(per_culture * (1 - t.validation)), t.epochs, t.batch_size, t.max_examples,
                          t.max_steps)
    seen = steps * t.batch_size * len(cfg.cultures)
    each = adapter_seconds(steps * t.batch_size, tokens, adapted, rates,
                           validation_passes(validation_size(round(per_culture), t.validation), steps, t.eval_every))
    plan.phases.append(Phase("train", f"{len(cfg.cultures)} adapters, {steps} steps each, {seen} examples seen",
                             len(cfg.cultures) * each))
    inputs = sum(len(read_rows(f, cfg.predict.on_unscorable)) for f in cfg.predict.inputs)
    options = len(cfg.cultures) + (1 if cfg.router.others else 0)
    plan.phases.append(Phase("predict", f"{inputs} inputs: routed ({options} options) and answered",
                             forward_seconds(inputs * (options + 1), tokens, layers, rates)))
    plan.counts.update({"queries": queries, "synthetic samples per culture (expected)": round(per_culture),
                        "decoder layers": layers, "adapted layers": adapted, "rates": note}
                       | ({"tokens": tok_note} if tok_note else {}))
    return plan
