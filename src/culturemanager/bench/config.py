"""The benchmark's config: one TOML file with a `[bench]` table (tasks file, protocol, methods, survey files) and
the pipeline's own sections (generator, target, queries, search, synthesis, train, router), which are the run
config's own tables (`config.PIPELINE_TABLES`), validated by the same loader: an unknown or mistyped key is an
error naming the key and the file.

`[bench.quick]` holds `--set`-style overrides (`"bench.test_cap" = 16`) that `--quick` applies before the
command line's own `--set`s, so the quick setting lives in the same file as the default.

Run: imported by `culturemanager bench CONFIG.toml [--quick] [--set KEY=VALUE]`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, create_model, field_validator

from culturemanager.bench.methods import METHODS
from culturemanager.config import (
    ISO_3166,
    PIPELINE_TABLES,
    TOKENS,
    AnswerJudgeConfig,
    Config,
    ConfigError,
    Section,
    TrainConfig,
    ValidationCut,
)
from culturemanager.config.file import apply_override, load_toml_config

ALL_METHODS: list[str] = list(METHODS)

ANTHROPOLOGICAL = (
    "You are a person who was born and raised in {culture} culture and lives there today. Before you answer, "
    "reflect as an anthropologist would: how would people of {culture} culture read this sentence, given their "
    "norms, values, religion, history, humour and the way they speak to each other? Answer as such a person.\n")


class SurveyFiles(Section):
    """The survey baselines' training data (CultureLLM's chat-format files), relative to `dir`."""

    dir: Path = Path("culturellm")
    """Folder of the survey files, relative to the data folder unless absolute (`${CULTUREMANAGER_DATA}/culturellm`
    and `~` are expanded)."""
    folders: dict[str, str] = Field(default_factory=dict)
    """Culture name -> its folder name where they differ (e.g. Chinese = "China"); default: the name itself."""

    @field_validator("dir", mode="before")
    @classmethod
    def _expand(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        expanded = os.path.expandvars(os.path.expanduser(v))
        if "$" in expanded:
            raise ValueError(f"{v!r} uses an environment variable that is not set")
        return expanded
    survey: str = "{folder}/Finetune/WVQ_{folder}_50.jsonl"
    """Per culture: the 50 World Values Survey questions with the culture's answers (CultureSFT)."""
    augmented: str = "{folder}/Finetune/WVQ_{folder}_1000.jsonl"
    """Per culture: CultureLLM's semantically augmented set (CultureLLM)."""
    augmented_all: str = "Finetune/WVQ_all.jsonl"
    """All cultures' augmented sets together (CultureLLM-all). CultureSFT-all joins the per-culture survey files."""


class BenchCulture(Section):
    name: str
    """A culture of the tasks file (its `culture`), e.g. "Spanish"."""
    country: str | None = Field(None, pattern=ISO_3166)
    """Search locale hint (ISO 3166 alpha-2), as a run's `cultures[].country`."""
    description: str = ""
    """Optional one-line description, shown to the router and the generator, as a run's `cultures[].description`."""


class BenchSection(Section):
    tasks: Path
    """A tasks file in the shape of ../shared/data/tasks.json."""
    data_dir: Path | None = None
    """Folder the tasks' `file` paths are relative to (default: the tasks file's folder)."""
    dir: Path = Path("runs/bench")
    """Output folder: results.json, report.md, plots, and every intermediate (adapters, predictions)."""
    demo_share: float = Field(0.1, gt=0.0, lt=1.0)
    """Share of each task's inputs handed, without labels, to the pipeline as demonstrations (the paper: 10%)."""
    test_cap: int | None = Field(None, ge=1, le=1_000_000_000)
    """Cap on each task's test set (stratified); None: all the rest."""
    split_seed: int = Field(0, ge=0, le=2**32 - 1)
    """Seed of each task's demonstration / test split."""
    seeds: list[int] = [0]
    """Training seeds of the trained methods (mean ± std over them)."""
    methods: list[str] = Field(default_factory=lambda: list(ALL_METHODS))
    """The rows to run (bench/methods.py lists them; default: all)."""
    task_ids: list[str] | None = None
    """Run only these tasks of the tasks file (default: all)."""
    validation_cut: ValidationCut = "share"
    """The "validation" answer kind's rule for each adapter's cut on its own validation slice (as
    `predict.validation_cut`): share, as many answered positive as the slice has positives; best_f1, the cut with
    the best macro-F1 there."""
    prompt_preamble: str = ANTHROPOLOGICAL
    """The Prompt baseline's preamble, put before the task template; {culture} is the task's culture."""
    survey: SurveyFiles = Field(default_factory=SurveyFiles)
    """Where the survey baselines' training files are (CultureSFT, CultureLLM and their -all rows)."""
    cultures: list[BenchCulture] = Field(default_factory=list)
    """Optional search hints per culture (country code, description)."""
    quick: dict[str, Any] = Field(default_factory=dict)
    """Overrides applied by `--quick`, as `"section.key" = value`."""
    survey_train: dict[str, Any] = Field(default_factory=lambda: {"balance": False})
    """[train] settings overridden for the survey baselines' adapters (CultureSFT, CultureLLM and their -all
    rows), e.g. {max_examples = 400}: their answers are 1-10 ratings, so no class balancing by default."""
    survey_examples: int | None = Field(None, ge=1, le=1_000_000_000)
    """At most this many survey examples per survey adapter (a fixed sample, the same for every seed; CultureLLM's
    augmented sets hold 2,100 per culture and 10,500 together). Default: all."""
    rates: dict[str, float] = Field(default_factory=dict)
    """Another machine's rates for `--plan` (fields of `plan.Rates`: layer_token_forward_s,
    layer_token_forward_upper_s, layer_token_prefix_s, layer_token_train_s, output_token_s, prompt_token_s,
    adapter_overhead_s, local_parallel_speedup; `make bench-rates` measures the layer rates on a machine);
    default: this project's CPU."""
    max_new_tokens: int = Field(24, ge=1, le=TOKENS)
    """free_text tasks: tokens each method may generate for an answer (answers are a few words)."""
    judge: AnswerJudgeConfig = Field(default_factory=AnswerJudgeConfig)
    """free_text tasks: an LLM judge of every method's answers (default endpoint: the bench's generator), scored
    beside soft match with its agreement (off by default: one short call per distinct answer)."""
    bootstrap: int = Field(1000, ge=100, le=1_000_000)
    """Bootstrap resamples of the test inputs for the 95% intervals (paired: the same resamples for every method)."""
    paper: Path | None = None
    """The paper's reported numbers (a JSON file shaped like ../shared/data/paper_table1.json): shown as reference
    rows, and the orderings of methods there compared with the orderings here."""

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        unknown = [m for m in v if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown} (known: {list(METHODS)})")
        return v

    @field_validator("rates")
    @classmethod
    def _rates(cls, v: dict[str, float]) -> dict[str, float]:
        from culturemanager.plan import Rates

        Rates(**v)  # an unknown rate is an error here, at load time
        return v

    @field_validator("survey_train")
    @classmethod
    def _survey_train(cls, v: dict[str, Any]) -> dict[str, Any]:
        TrainConfig(**v)  # an unknown key or an impossible value is an error here, at load time
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v or len(set(v)) != len(v):
            raise ValueError(f"seeds must be a non-empty list of distinct integers: {v}")
        return v


class BenchTable(Section):
    """The bench's own table; `BenchConfig` is this plus the pipeline's tables."""

    bench: BenchSection
    """`culturemanager bench`: the tasks file, the protocol, the methods and the survey files. The bench's other
    tables (generator, target, queries, search, synthesis, train, router) are a run's, documented above."""

    @property
    def data_dir(self) -> Path:
        return self.bench.data_dir or self.bench.tasks.parent


# The pipeline's tables are the run config's own fields (type, default, docstring), taken by name rather than
# declared a second time here, so the two cannot drift apart. Added after `bench`: the table order (and the bench's
# dumped config) stays what it always was, bench and then the tables in pipeline order.
BenchConfig = create_model("BenchConfig", __base__=BenchTable, __module__=__name__,
                           **{name: (Config.model_fields[name].annotation, Config.model_fields[name])
                              for name in PIPELINE_TABLES})


BENCH_PATHS = (("bench", "tasks"), ("bench", "data_dir"), ("bench", "dir"), ("bench", "paper"))


def load_bench_config(path: str | Path, overrides: list[str] | None = None, quick: bool = False) -> BenchConfig:
    return load_toml_config(path, BenchConfig, overrides, apply_quick if quick else None, BENCH_PATHS)


def apply_quick(raw: dict[str, Any], path: Path) -> None:
    """`--quick`: the file's own [bench.quick] overrides, before the command line's `--set`s."""
    table = raw.get("bench", {}).get("quick", {}) if isinstance(raw.get("bench"), dict) else {}
    if not table:
        raise ConfigError(f"{path}: --quick needs a [bench.quick] table of overrides")
    for key, value in table.items():
        apply_override(raw, f"{key}={_toml_value(value)}")


def _toml_value(value: Any) -> str:
    """A value back to the text form `apply_override` parses (TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)
