"""Stage 1: the task spec — what the user gives for each task: its labels, format and template (validated in
config/__init__.py), its target cultures, its *unlabeled* demonstrations per culture, and its evaluation inputs.

The stages that follow read the spec through these functions: queries shows demonstrations to the generator,
synthesis shows them as style examples and drops samples that copy them, the leakage check reads the
evaluation inputs. A demonstration file with a `culture` belongs to that culture (config/__init__.py checks it is one of
`[[cultures]]`); one without belongs to every culture of the task.

Run: `python -m culturemanager.stages.spec CONFIG.toml` prints each task's demonstrations per culture.
"""

from __future__ import annotations

import sys

from culturemanager.config import Config, Task, load_config
from culturemanager.text.datafiles import read_rows, read_texts
from culturemanager.text.leakage import LeakIndex


def demonstrations_by_culture(cfg: Config, task: Task) -> dict[str, list[str]]:
    """The task's demonstration texts per culture of the task."""
    out: dict[str, list[str]] = {c.name: [] for c in cfg.task_cultures(task)}
    for f in task.demonstrations:
        rows = [r.text for r in read_rows(f)]
        for name in out:
            if f.culture in (None, name):
                out[name] += rows
    return out


def evaluation_texts(cfg: Config) -> list[str]:
    """Every evaluation input of the run, whatever its task (a synthetic sample must leak none of them)."""
    return read_texts([f for t in cfg.tasks for f in t.evaluation])


def evaluation_index(cfg: Config) -> LeakIndex:
    """Every evaluation input of the run, whatever its task: a sample of one task that repeats a test input of
    another is still trained on test data."""
    return LeakIndex(evaluation_texts(cfg), cfg.synthesis.leakage_ngram)


def main() -> None:
    cfg = load_config(sys.argv[1])
    for task in cfg.tasks:
        demos = demonstrations_by_culture(cfg, task)
        print(f"{task.id} ({task.format}, labels {task.labels}): " +
              ", ".join(f"{c} {len(d)} demonstrations" for c, d in demos.items()))
    print(f"{len(evaluation_texts(cfg))} evaluation inputs")


if __name__ == "__main__":
    main()
