"""Stage 2: the generator writes web-search queries per culture x task, in two modes.

task_specific: the prompt shows a seeded random batch of the task's (unlabeled) demonstrations;
task_agnostic: no demonstrations, broad cultural knowledge. Answers are parsed, deduplicated, and an
unparsable answer is retried with another seed (`queries.max_attempts`), then counted as failed. When no call
gave a single query (the generator is down, or answers nothing usable) the stage fails (`StageFailed`) and
`queries.jsonl` keeps what an earlier run wrote; a culture whose every call failed keeps its earlier queries
(`cultures_failed`), so that a partial failure never costs a culture its samples and adapter downstream.

Entry point: `generate_queries(cfg, rd, llm)`; writes `queries.jsonl`.
Run: `culturemanager queries CONFIG.toml`.
"""

from __future__ import annotations

import logging
import random
from collections import Counter

from culturemanager.backends.llm import CachedLLM, ChatRequest
from culturemanager.config import Config, Culture, Task
from culturemanager.errors import StageFailed
from culturemanager.records import Mode, Query, read_jsonl, sha1_text, stable_seed, write_jsonl
from culturemanager.rundir import RunDir
from culturemanager.stages.spec import demonstrations_by_culture
from culturemanager.text.prompts import build_query_messages, parse_queries

log = logging.getLogger(__name__)


def generate_queries(cfg: Config, rd: RunDir, llm: CachedLLM) -> tuple[list[Query], dict]:
    demos = {t.id: demonstrations_by_culture(cfg, t) for t in cfg.tasks}
    jobs = [(c, t, m) for t in cfg.tasks for c in cfg.task_cultures(t) for m in cfg.queries.modes]
    counts: Counter = Counter()
    first_unparsable: str | None = None
    asked: Counter = Counter()  # per culture: requests made, and how many got any answer
    answered: Counter = Counter()
    found: dict[tuple[str, str, str], list[Query]] = {(c.name, t.id, m): [] for c, t, m in jobs}
    for attempt in range(cfg.queries.max_attempts):
        pending = [(c, t, m) for c, t, m in jobs if len(found[c.name, t.id, m]) < cfg.queries.per_mode]
        no_demos = [j for j in pending if j[2] == "task_specific" and not demos[j[1].id][j[0].name]]
        if no_demos and attempt == 0:
            for c, t, _ in no_demos:
                log.warning("task %s has no demonstrations for %s: no task-specific queries", t.id, c.name)
                counts["no_demonstrations"] += 1
        pending = [j for j in pending if j not in no_demos]
        if not pending:
            break
        requests = [query_request(cfg, c, t, m, demos[t.id][c.name], attempt) for c, t, m in pending]
        answers = llm.complete(requests, stage="queries")
        for (c, t, m), req, ans in zip(pending, requests, answers):
            got = parse_queries(ans.text) if ans else []
            counts["requests"] += 1
            asked[c.name] += 1
            answered[c.name] += ans is not None
            if not got:
                counts["unparsable_answers" if ans else "failed_calls"] += 1
                if ans and first_unparsable is None:
                    first_unparsable = f"unparsable answer {ans.text[:120]!r}"
            have = found[c.name, t.id, m]
            known = {q.text.casefold() for q in have}
            for text in got:
                if len(have) < cfg.queries.per_mode and text.casefold() not in known:
                    known.add(text.casefold())
                    have.append(Query(id=sha1_text(f"{c.name}|{t.id}|{m}|{text}")[:12], culture=c.name,
                                      task=t.id, mode=m, text=text, generator=llm.name,
                                      prompt_hash=req.prompt_hash()))
    queries = [q for j in jobs for q in found[j[0].name, j[1].id, j[2]]]
    if counts["requests"] and not queries:
        raise StageFailed("queries", counts["requests"], llm.first_error.get("queries") or first_unparsable or "?")
    failed = {c for c in asked if not answered[c]}
    if failed:  # every call of these cultures failed: they keep the queries of an earlier run
        earlier = read_jsonl(rd.queries, Query) if rd.queries.exists() else []
        kept = [q for q in earlier if q.culture in failed]
        log.warning("every query call for %s failed: %d queries of an earlier run kept", sorted(failed), len(kept))
        counts["cultures_failed"] = len(failed)
        queries = [q for q in queries if q.culture not in failed] + kept
    write_jsonl(rd.queries, queries)
    counts.update({"queries": len(queries)})
    for c, t, m in jobs:
        counts[f"queries[{c.name}]"] += sum((q.culture, q.task, q.mode) == (c.name, t.id, m) for q in queries)
        if not found[c.name, t.id, m] and m in cfg.queries.modes:
            counts["empty_jobs"] += 1
    return queries, dict(counts)


def query_request(cfg: Config, culture: Culture, task: Task, mode: Mode, demos: list[str],
                  attempt: int) -> ChatRequest:
    seed = stable_seed(cfg.run.seed, culture.name, task.id, mode, attempt)
    batch = random.Random(seed).sample(demos, min(cfg.queries.demo_batch, len(demos))) \
        if mode == "task_specific" else []
    messages = build_query_messages(culture, task, mode, batch, cfg.queries.per_mode)
    return ChatRequest(messages, cfg.generator.temperature, min(cfg.generator.max_new_tokens, 256), seed)
