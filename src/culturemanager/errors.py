"""The errors a user can act on, each with the exit code the command line ends with.

    0    the command did what it was asked
    1    a bug: anything not listed below ends with its traceback
    2    ConfigError   the config (or a model, key or backend it names) cannot be used; nothing ran
    3    InputError    a data file, or a file of the run directory, is missing or malformed (named, with line)
    4    StageFailed   a stage produced nothing (every generator call failed, every search failed); the run
                       directory keeps its previous outputs
         TrainingDiverged  an adapter's training went non-finite (loss, gradients or weights): it is not saved
    130  interrupted (Ctrl-C, SIGINT); run the same command again to resume

Modules raise these (or subclasses: `datafiles.InputFileError`, `records.RecordFileError`); `cli.main` turns
them into one `error: ...` line on stderr (with `-v`, the traceback too) and the exit code. This module
imports nothing, so every module can use it.

Run: imported by the package; no entry point of its own.
"""

from __future__ import annotations

EXIT_OK, EXIT_BUG, EXIT_CONFIG, EXIT_INPUT, EXIT_STAGE_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


class CultureManagerError(Exception):
    """Base of the errors below; `exit_code` is what `culturemanager` exits with."""

    exit_code = EXIT_BUG


class ConfigError(CultureManagerError, ValueError):
    """A config problem; the message names the file and the key."""

    exit_code = EXIT_CONFIG


class InputError(CultureManagerError, ValueError):
    """A missing or malformed input: a data file, a tasks file, or a file of the run directory (`manifest.json`,
    `router.json`, a stage output); the message starts with the file (and line)."""

    exit_code = EXIT_INPUT


class MissingStageInput(InputError, FileNotFoundError):
    """A stage's input file does not exist yet: the message names the file and the stage that writes it."""


class StageFailed(CultureManagerError, RuntimeError):
    """A stage that produced nothing: none of its generator calls (or searches) gave a usable answer, because
    they failed or because what came back was unusable. Raised before the stage writes anything, so the
    outputs of an earlier run stay as they were."""

    exit_code = EXIT_STAGE_FAILED

    def __init__(self, stage: str, failures: int, first_error: str, what: str = "generator calls"):
        self.stage, self.failures, self.first_error = stage, failures, first_error
        super().__init__(f"stage {stage} failed: none of its {failures} {what} gave a usable answer (first "
                         f"error: {first_error}); nothing was written, the run directory keeps its previous "
                         f"outputs")


class TrainingDiverged(CultureManagerError, RuntimeError):
    """An adapter's loss, gradients, weights or validation loss became NaN or infinite (a learning rate too high,
    an overflow): the training stops at that step and leaves no adapter behind, so nothing serves a broken one."""

    exit_code = EXIT_STAGE_FAILED

    def __init__(self, adapter: str, step: int, what: str):
        self.adapter, self.step, self.what = adapter, step, what
        super().__init__(f"training of adapter {adapter!r} diverged at step {step}: its {what} became non-finite "
                         f"(NaN or inf); no adapter was saved. Lower train.lr (or use train.warmup) and train again")
