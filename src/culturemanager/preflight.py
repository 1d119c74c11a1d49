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

A model setting is checked by what it is (backends/models.py resolves it the same way): a packaged short name
needs its wheels (or its assembled GGUF in the cache); a `.gguf` path must be a file; a folder must hold a
transformers model (config.json); anything else is a hub id, which, while `HF_HUB_OFFLINE=1` (or
`TRANSFORMERS_OFFLINE=1`) is set, must already be in the local hub cache. Each failure is a `ConfigError`
naming the key, the value and what to do.

Run: `culturemanager run CONFIG.toml --check` (or `python -m culturemanager.preflight CONFIG.toml`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from culturemanager.config import Config, DataFile, LLMConfig, load_config
from culturemanager.configfile import looks_like_path
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
    from culturemanager.backends.models import PACKAGED, missing_wheels

    if name in PACKAGED:
        missing = missing_wheels(name)
        if missing:
            more = " ..." if len(missing) > 3 else ""
            raise ConfigError(f"{key} = {name!r}: the packaged model's wheels are not here (missing "
                              f"{', '.join(missing[:3])}{more}): {PACKAGED[name].install}")
        return
    path = Path(name).expanduser()
    if path.suffix == ".gguf" or gguf:
        if not path.is_file():
            raise ConfigError(f"{key} = {name!r}: no such .gguf file (a relative path is relative to the config "
                              f"file)")
        return
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{key} = {name!r}: the folder has no config.json, so it is not a transformers model")
        return
    if looks_like_path(name) or path.is_absolute():
        raise ConfigError(f"{key} = {name!r}: no such file or folder (a relative path is relative to the config "
                          f"file)")
    if offline():
        check_hub_cache(name, key)


def check_hub_cache(name: str, key: str) -> None:
    """While offline, a hub id must be in the local hub cache; transformers would fail only after a minute."""
    known = ", ".join(_packaged())
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        raise ConfigError(f"{key} = {name!r}: hub models need transformers: pip install -e '.[local]'") from None
    if not isinstance(try_to_load_from_cache(name, "config.json"), str):
        raise ConfigError(f"{key} = {name!r} is not a local folder, a .gguf file or a packaged model ({known}); as "
                          f"a hub id it needs the network, but HF_HUB_OFFLINE is set and it is not in the local "
                          f"hub cache (download it once without HF_HUB_OFFLINE, or name a local folder)")


def offline() -> bool:
    return any(os.environ.get(v, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _packaged() -> list[str]:
    from culturemanager.backends.models import PACKAGED

    return list(PACKAGED)


def main() -> None:
    cfg = load_config(sys.argv[1])
    print(render_check(cfg, check_run(cfg)))


def render_check(cfg: Config, counts: dict[str, int]) -> str:
    rows = ", ".join(f"{n} {what}" for what, n in counts.items()) or "no input files"
    return (f"check ok: models {cfg.generator.model} (generator) and {cfg.target.model} (target) are here; "
            f"read {rows}")


if __name__ == "__main__":
    main()
