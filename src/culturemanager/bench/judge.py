"""The bench's judge phase (free-text tasks with `bench.judge`): the LLM judge's verdict on every distinct answer.

Every distinct (test input, answer) that any variant gave is judged once, its calls cached under bench.dir/judge
(stages/predict.judge_answers); an empty answer is wrong without asking. Verdicts carry over from one training
seed's call to the next, so a later seed asks only about answers not seen before.
Entry point: `judge(cfg, split, answers, before)`; returns the `Judged` record results.json's scores read.
Run: imported by `bench/run.py` (`culturemanager bench`); no entry point of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from culturemanager.bench.config import BenchConfig
from culturemanager.bench.prepare import Split


@dataclass
class Judged:
    """The judge phase's hand-off: task -> (test input index, answer) -> verdict, and the judge's model."""
    verdicts: dict[str, dict[tuple[int, str], bool | None]] = field(default_factory=dict)
    by: str | None = None


def judge(cfg: BenchConfig, split: Split, answers: dict[tuple[str, str], dict], before: Judged | None = None,
          progress: bool = True) -> Judged:
    """The verdicts of `before` and of every answer in `answers` (the evaluate phase's) not judged yet."""
    from culturemanager.stages.predict import judge_answers

    verdicts = {task_id: dict(known) for task_id, known in (before.verdicts if before else {}).items()}
    by_id = {t.spec.id: t for t in split.ok_tasks}
    todo: dict[tuple[str, int, str], tuple[str, str, list[str], str]] = {}
    for (_, task_id), saved in answers.items():
        t = by_id[task_id]
        for i, ans in enumerate(saved.get("answers") or []):
            known = verdicts.setdefault(task_id, {})
            if (i, ans) in known or (task_id, i, ans) in todo:
                continue
            if not ans.strip():
                known[(i, ans)] = False
                continue
            todo[(task_id, i, ans)] = (t.spec.culture, t.test[i][0], t.test_answers[i], ans)
    jud, folder = cfg.bench.judge, cfg.bench.dir / "judge"
    got, by = judge_answers(jud.generator or cfg.generator, folder / "llm.jsonl", folder / "calls.jsonl",
                            list(todo.values()), jud.max_chars, progress)
    for (task_id, i, ans), v in zip(todo, got):
        verdicts[task_id][(i, ans)] = v
    return Judged(verdicts, by)
