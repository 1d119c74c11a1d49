"""The optional checks on synthesis's kept samples, each a setting: selection by culture (`synthesis.select`,
stages/select.py), a likelihood ratio of two label descriptions (`synthesis.ratio_check`, stages/ratio.py)
and a judge of the labels (`synthesis.judge`).

Order: near-duplicates, representativeness and distinctiveness first (cheap, and they leave the judge fewer
samples to read); then the ratio (two forward passes of a small model per sample); then the judge; then label
balance, so that balance is over labels the checks let through.
The judge is an LLM — the run's generator or another endpoint — that reads each sample's text and gives its
label; a sample whose label it disagrees with is dropped (`judge_disagrees`), one it gives no parsable label for
is kept and counted (`judge_no_verdict`). Its calls go through the run's answer cache like every LLM call, so a
resumed run repeats none. Every kept sample's provenance lists the checks it went through, with the judge's
verdict, the ratio and the selection's scores.

Entry point: `check_samples(cfg, llm, samples, demos)`, called by stages/synthesize.py; `judge_labels` is what
benchmarks/judge.py measures on real labelled inputs.
Run: `culturemanager synthesize CONFIG.toml --set synthesis.judge.enabled=true --set synthesis.select.enabled=true`.
"""

from __future__ import annotations

import logging
from collections import Counter

from culturemanager.backends.llm import CachedLLM, ChatRequest, make_backend
from culturemanager.config import Config, Culture, JudgeConfig, Task
from culturemanager.records import Check, DroppedSample, DropReason, Sample, drop, with_check
from culturemanager.text.judge_prompts import build_judge_messages, parse_judge

log = logging.getLogger(__name__)

JUDGE_MAX_TOKENS = 8  # a label, maybe quoted: the judge is asked for nothing else


def check_samples(cfg: Config, llm: CachedLLM, samples: list[Sample], demos: dict[str, dict[str, list[str]]],
                  embedder=None, scorer=None) -> tuple[list[Sample], list[DroppedSample], Counter]:
    """The samples that pass the enabled checks (provenance extended), the dropped ones with their reason, and
    counts that are not drops (judge_no_verdict, judge_skipped, ratio_skipped_not_binary). `scorer`: an
    already loaded Engine for the ratio (default: loaded from `synthesis.ratio_check.model`)."""
    sel, jud = cfg.synthesis.select, cfg.synthesis.judge
    dropped: list[DroppedSample] = []
    counts: Counter = Counter()
    rank: list[float] = [0.0] * len(samples)
    if sel.enabled and samples:
        from culturemanager.backends.retrieval.dense import UseMultilingual
        from culturemanager.stages.select import select_by_culture

        embedder = embedder or UseMultilingual()
        scored = select_by_culture(sel, samples, demos, embedder)
        keep = [sc.reason is None for sc in scored]
        dropped += [drop(s, sc.reason) for s, sc in zip(samples, scored) if sc.reason]
        samples = [with_check(s, Check(name="selection", by=embedder.name, scores=sc.scores()))
                   for s, sc in zip(samples, scored) if sc.reason is None]
        rank = [sc.representativeness or 0.0 for sc, k in zip(scored, keep) if k]
    if cfg.synthesis.ratio_check.enabled and samples:
        from culturemanager.stages.ratio import ratio_check

        outcomes, ratio_counts = ratio_check(cfg, samples, scorer)
        keep = [isinstance(o, Sample) for o in outcomes]
        dropped += [o for o in outcomes if isinstance(o, DroppedSample)]
        samples = [o for o in outcomes if isinstance(o, Sample)]
        rank = [r for r, k in zip(rank, keep) if k]
        counts += ratio_counts
    if jud.enabled and samples:
        tasks = {t.id: t for t in cfg.tasks}
        cultures = {c.name: c for c in cfg.cultures}
        verdicts, judge_name = judge_samples(jud, llm, samples, tasks, cultures)
        kept, kept_rank = [], []
        for s, verdict, r in zip(samples, verdicts, rank):
            if not tasks[s.task].labels:
                counts["judge_skipped_free_text"] += 1
            elif verdict is None:
                counts["judge_no_verdict"] += 1
            elif verdict != s.label:
                dropped.append(drop(s, DropReason.JUDGE_DISAGREES))
                continue
            kept.append(with_check(s, Check(name="judge", by=judge_name, verdict=verdict)))
            kept_rank.append(r)
        samples, rank = kept, kept_rank
    if sel.enabled and sel.balance and samples:
        from culturemanager.stages.select import LABEL_BALANCE, balance_labels

        keep = balance_labels(samples, rank)
        dropped += [drop(s, LABEL_BALANCE) for s, k in zip(samples, keep) if not k]
        samples = [s for s, k in zip(samples, keep) if k]
    return samples, dropped, counts


def judge_samples(jud: JudgeConfig, llm: CachedLLM, samples: list[Sample], tasks: dict[str, Task],
                  cultures: dict[str, Culture]) -> tuple[list[str | None], str]:
    """The judge's label for each sample (None: no parsable answer, or a free-text task, which is not sent),
    and the judge's name."""
    judge = llm
    if jud.generator is not None:  # another endpoint: its own backend, the run's cache and call log
        judge = CachedLLM(make_backend(jud.generator), llm.cache_path, llm.log_path, progress=llm.progress)
    asked = [i for i, s in enumerate(samples) if tasks[s.task].labels]
    try:
        answers = judge_labels(judge, [(tasks[samples[i].task], cultures[samples[i].culture], samples[i].text)
                                       for i in asked], jud.max_chars)
    finally:
        if judge is not llm and hasattr(judge.backend, "close"):
            judge.backend.close()  # e.g. a llama_server judge: its process ends with the check
    verdicts: list[str | None] = [None] * len(samples)
    for i, v in zip(asked, answers):
        verdicts[i] = v
    return verdicts, judge.name


def judge_labels(llm: CachedLLM, items: list[tuple[Task, Culture, str]], max_chars: int = 600
                 ) -> list[str | None]:
    """The judge's label for each (task, culture, text), None where its answer names no label of the task.
    Requests of one culture x task are sent next to each other (they share the prompt prefix)."""
    order = sorted(range(len(items)), key=lambda i: (items[i][1].name, items[i][0].id, i))
    requests = [judge_request(*items[i], max_chars) for i in order]
    answers = llm.complete(requests, stage="judge")
    out: list[str | None] = [None] * len(items)
    for i, ans in zip(order, answers):
        task = items[i][0]
        out[i] = parse_judge(ans.text, task) if ans is not None and task.labels else None
    return out


def judge_request(task: Task, culture: Culture, text: str, max_chars: int = 600) -> ChatRequest:
    return ChatRequest(build_judge_messages(culture, task, text, max_chars), temperature=0.0,
                       max_tokens=JUDGE_MAX_TOKENS, seed=0)
