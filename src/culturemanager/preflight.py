"""Checks made before any stage runs, so that a missing model or a bad input row is an error in the first
seconds, not after the LLM stages have spent their time (and, with a paid generator, money): the target model
(for `train` and `predict`) and a local generator (for the LLM stages) must be loadable here, and every file the
stages will read must read cleanly (`check_inputs`).

The files are read by the stages' own functions, so the rules are the stages' rules, never a second copy:
demonstrations through `spec.demonstrations_by_culture` (queries, synthesize, route), evaluation files through
`spec.evaluation_texts` (synthesize's leakage check), prediction inputs through `predict.prediction_rows` (their
label, answers, options and culture fields; gold labels against the task's label set; a row without gold an
error unless `predict.on_unscorable = "skip"`). A bad row is an `InputError` naming the file and line (exit 3).
`culturemanager run CONFIG --check` runs these checks alone (`check_run`).

A model setting is checked by what it is, by the resolution every loader goes through (backends/models.locate):
a packaged short name needs its wheels (or its assembled GGUF in the cache); a `.gguf` path must be a file; a
folder must hold a transformers model (config.json); anything else is a hub id, which, while `HF_HUB_OFFLINE=1`
(or `TRANSFORMERS_OFFLINE=1`) is set, must already be in the local hub cache. Each failure is a `ConfigError`
naming the key, the value and what to do.

Run: `culturemanager run CONFIG.toml --check` (or `python -m culturemanager.preflight CONFIG.toml`).
"""

from __future__ import annotations

import sys

from culturemanager.config import Config, DataFile, LLMConfig, load_config
from culturemanager.errors import ConfigError

GENERATOR_STAGES = {"queries", "search", "synthesize"}
TARGET_STAGES = {"train", "predict"}


DEMONSTRATION_STAGES = {"queries", "synthesize", "route"}


def preflight(cfg: Config, stages: list[str] | tuple[str, ...], predict_files: list[DataFile] | None = None
              ) -> dict[str, int]:
    """Raise a ConfigError when a model that one of `stages` needs cannot be loaded here, an InputError when a
    file one of them reads has a bad row; the rows read, per kind of file (`check_inputs`)."""
    check_models(cfg, stages)
    return check_inputs(cfg, stages, predict_files)


def check_run(cfg: Config) -> dict[str, int]:
    """Everything a whole run will need, checked without running anything (`culturemanager run CONFIG --check`)."""
    from culturemanager.rundir import STAGES

    return preflight(cfg, STAGES)


def check_inputs(cfg: Config, stages: list[str] | tuple[str, ...], predict_files: list[DataFile] | None = None
                 ) -> dict[str, int]:
    """Read every file `stages` will read, through the functions they read it with; the rows read per kind."""
    from culturemanager.stages.spec import demonstrations_by_culture, evaluation_texts

    counts: dict[str, int] = {}
    if DEMONSTRATION_STAGES & set(stages):
        counts["demonstrations"] = sum(len(texts) for t in cfg.tasks
                                       for texts in demonstrations_by_culture(cfg, t).values())
    if "synthesize" in stages:
        counts["evaluation inputs"] = len(evaluation_texts(cfg))
    if "predict" in stages and (predict_files or cfg.predict.inputs):
        from culturemanager.stages.predict import prediction_rows

        rows, _, skipped = prediction_rows(cfg, predict_files)
        counts["prediction inputs"] = len(rows)
        if skipped:
            counts["prediction inputs skipped as unscorable"] = len(skipped)
    return counts


def check_models(cfg: Config, stages: list[str] | tuple[str, ...]) -> None:
    """Raise a ConfigError when a model that one of `stages` needs cannot be loaded here."""
    if GENERATOR_STAGES & set(stages):
        check_llm(cfg.generator, "generator")
    if "predict" in stages and cfg.predict.judge.enabled:  # the free-text judge's endpoint, default the generator
        check_llm(cfg.predict.judge.generator or cfg.generator,
                  "predict.judge.generator" if cfg.predict.judge.generator else "generator")
    if TARGET_STAGES & set(stages):
        check_model(cfg.target.model, "target.model")
        from culturemanager.backends.target import resolve_device

        resolve_device(cfg.target.device)  # "cuda" where there is none: an error now, not after the LLM stages


def check_llm(llm: LLMConfig, key: str) -> None:
    """A local or llama_server LLM's model (and server binary) must be here; an endpoint is checked when called."""
    if llm.backend == "local":
        check_model(llm.model, f"{key}.model", gguf=llm.engine == "llama_cpp")
    if llm.backend == "llama_server":
        from culturemanager.backends.chat import BackendError
        from culturemanager.backends.llamaserver import find_binary

        check_model(llm.model, f"{key}.model", gguf=True)
        try:
            find_binary(llm.server.binary)
        except BackendError as e:
            raise ConfigError(str(e)) from None


def check_model(name: str, key: str, gguf: bool = False) -> None:
    """The model setting `key` names a model that loads here (backends/models.locate, the resolution every loader
    goes through); otherwise a ConfigError naming the key, the value and what to do."""
    from culturemanager.backends.models import ModelNotAvailable, locate

    try:
        locate(name, gguf)
    except ModelNotAvailable as e:
        raise ConfigError(f"{key} = {e}") from None


def main() -> None:
    cfg = load_config(sys.argv[1])
    print(render_check(cfg, check_run(cfg)))


def render_check(cfg: Config, counts: dict[str, int]) -> str:
    rows = ", ".join(f"{n} {what}" for what, n in counts.items()) or "no input files"
    return (f"check ok: models {cfg.generator.model} (generator) and {cfg.target.model} (target) are here; "
            f"read {rows}")


if __name__ == "__main__":
    main()
