"""Stage 7: route each input to a culture and answer with that culture's adapter.

Tasks with a label set are answered by scoring the labels, never by free generation; free_text tasks generate
greedily. One batch mixes adapters: every input carries its own adapter (the base model for "Others" or a culture
without an adapter). Everything model-side goes through the shared inference core (`engine.Engine`).

Nothing finished is lost: every input row is checked before any model runs (`prediction_rows`, which the
preflight check runs before the run's first LLM call); each finished batch is appended to
`predictions.partial.jsonl` (keyed by everything that decides an answer), so a killed predict resumes where it
stopped; `predictions.jsonl` and `metrics.json` are replaced together at the end (metrics.json records the
sha256 of the predictions it describes). When inputs carry gold labels, `metrics.json` gets accuracy, macro-F1
and positive-class F1 per task, and router accuracy where the input file states the culture.

Entry point: `predict(cfg, rd, files=None)`; reads `router.json` and `adapters/`, writes
`predictions.jsonl` and `metrics.json`.
Run: `culturemanager predict CONFIG.toml [--input FILE.jsonl]`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from pathlib import Path

from culturemanager.answering import Rule, answer
from culturemanager.config import Config, DataFile, Task
from culturemanager.metrics import accuracy, f1_for, free_text_scores, macro_f1
from culturemanager.records import (
    BASE,
    Prediction,
    append_jsonl_line,
    read_json_lines,
    sha1_text,
    write_json,
    write_jsonl,
)
from culturemanager.rundir import RunDir
from culturemanager.stages.route import OTHERS, Router, read_router
from culturemanager.text.datafiles import InputFileError, InputRow, check_gold_labels, read_scored_rows

log = logging.getLogger(__name__)


def predict(cfg: Config, rd: RunDir, files: list[DataFile] | None = None, progress: bool = True
            ) -> tuple[list[Prediction], dict]:
    rows, tasks, skipped = prediction_rows(cfg, files)
    router = read_router(rd)
    partial = rd.root / "predictions.partial.jsonl"
    key = predict_key(cfg, router, rows)
    done = load_partial(partial, key)
    todo = [b for b in batches(cfg, rows, tasks) if not all(prediction_id(tasks[i], rows[i]) in done for i in b)]
    if todo:
        from rich.progress import track

        from culturemanager.engine import Engine

        engine = Engine.load(cfg.target, {c: p for c, p in router.adapters.items() if p})
        if not partial.exists() or not done:
            partial.write_text(json.dumps({"key": key}) + "\n", encoding="utf-8")
        for batch in track(todo, description="predict", disable=not progress, transient=True):
            answers = predict_batch(cfg, tasks[batch[0]], router, engine, [rows[i] for i in batch])
            for p in answers:
                append_jsonl_line(partial, p.model_dump(mode="json"))
            done.update({p.id: p for p in answers})
    preds = [done[prediction_id(t, r)] for r, t in zip(rows, tasks)]
    judge_name = None
    if cfg.predict.judge.enabled:
        preds, judge_name = judge_predictions(cfg, rd, rows, preds, progress)
    metrics = prediction_metrics(cfg, rows, preds, router)
    if skipped:  # predict.on_unscorable = "skip": the rows without gold, named so that none goes unnoticed
        metrics["counts"]["skipped_unscorable"] = len(skipped)
        metrics["skipped_unscorable"] = skipped
    if cfg.predict.calibrate:
        metrics["calibration"] = calibration_references(cfg, router, {t.id for t in tasks})
    if judge_name:
        metrics["judge"] = {"by": judge_name, "judged": sum(p.judged is not None for p in preds),
                            "no_verdict": sum(p.judged is None and bool(p.answers) for p in preds)}
    write_outputs(rd, preds, metrics)
    partial.unlink(missing_ok=True)
    return preds, metrics


def prediction_rows(cfg: Config, files: list[DataFile] | None = None
                    ) -> tuple[list[InputRow], list[Task], list[str]]:
    """The rows predict answers (`files`, default predict.inputs) with each row's task, checked as predict needs
    them: every row readable, its task known, its gold label in the task's label set, its culture one of the run's
    (or "Others"); and the rows left out as unscorable (`predict.on_unscorable = "skip"`). The preflight check
    calls this too, so a bad row stops the run before its first LLM call, by the same rules."""
    rows: list[InputRow] = []
    skipped: list[str] = []
    for f in files if files is not None else cfg.predict.inputs:
        got, left_out = read_scored_rows(f, cfg.predict.on_unscorable)
        rows += got
        skipped += left_out
    if not rows:
        raise InputFileError(f"nothing to predict: every one of the {len(skipped)} input rows has no gold and "
                             f"predict.on_unscorable = \"skip\" (first: {skipped[0]})" if skipped else
                             "nothing to predict: set predict.inputs in the config or pass --input")
    tasks = [row_task(cfg, r) for r in rows]
    check_gold_labels(rows, tasks)
    known = {c.name for c in cfg.cultures} | {OTHERS}
    for r in rows:
        if r.culture is not None and r.culture not in known:
            raise InputFileError(f"{r.source}: culture {r.culture!r} is not a culture of the run nor \"Others\" "
                                 f"(known: {sorted(known - {OTHERS})})")
    return rows, tasks, skipped


def row_task(cfg: Config, row: InputRow) -> Task:
    if row.task:
        return cfg.task(row.task)
    if cfg.predict.task:
        return cfg.task(cfg.predict.task)
    if len(cfg.tasks) != 1:
        raise InputFileError(f"{row.source}: this run has several tasks: set `task` on the input file or "
                         f"predict.task")
    return cfg.tasks[0]


def batches(cfg: Config, rows: list[InputRow], tasks: list[Task]) -> list[list[int]]:
    """Row indices in batches of `target.batch_size`; a batch never mixes tasks (one label set per batch)."""
    ids = [t.id for t in cfg.tasks]
    out = []
    for tid in ids:
        mine = [i for i, t in enumerate(tasks) if t.id == tid]
        out += [mine[s:s + cfg.target.batch_size] for s in range(0, len(mine), cfg.target.batch_size)]
    return out


def predict_batch(cfg: Config, task: Task, router: Router, engine, batch: list[InputRow]) -> list[Prediction]:
    """One batch of one task answered by the answering rule (`answering.answer`, the server's too): routed (with
    the router off, by each input's own culture), its adapter's answer or its top routes' adapters' mixed
    (`router.top_k`), calibrated by `predict.calibrate`, all in one mixed-adapter batch."""
    given = [None if router.enabled else (r.culture or OTHERS) for r in batch]
    out = []
    for row, a in zip(batch, answer(engine, task, [r.text for r in batch], router, Rule.of(cfg.predict), given)):
        common = {"id": prediction_id(task, row), "task": task.id, **stored_text(cfg, row.text),
                  "culture": a.decision.culture, "route_scores": a.decision.scores, "label": a.label,
                  "gold": row.label, "truncated": a.truncated}
        if not task.labels:  # free text: generated by the heaviest adapter of the input's mixture
            out.append(Prediction(**common, answers=list(row.answers)))
            continue
        out.append(Prediction(**common, score=round(a.score, 4),
                              label_scores={lab: round(v, 4) for lab, v in a.probs.items()},
                              calibrated_scores={lab: round(v, 4) for lab, v in a.calibrated.items()},
                              mixture={x: round(w, 4) for x, w in a.mixture.items()} if len(a.mixture) > 1 else {}))
    return out


def stored_text(cfg: Config, text: str) -> dict:
    """What predictions.jsonl keeps of an input: the whole text, or of one longer than the model can read
    (`text_chars` of target.max_length) that many characters, its sha256 and its length, so that a 5 MB input
    is not copied whole into every record of it (and the partial file) yet can still be matched to its source."""
    from culturemanager.backends.target import text_chars

    bound = text_chars(cfg.target.max_length)
    if len(text) <= bound:
        return {"text": text}
    return {"text": text[:bound], "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "text_chars": len(text)}


def judge_predictions(cfg: Config, rd: RunDir, rows: list[InputRow], preds: list[Prediction], progress: bool
                      ) -> tuple[list[Prediction], str]:
    """`predict.judge`: every free-text prediction with accepted answers gets the judge's verdict (`judged`: True
    right, False wrong, None no parsable verdict). Its calls go through the run's answer cache and call log, so a
    re-run repeats none."""
    jud = cfg.predict.judge
    asked = [i for i, p in enumerate(preds) if p.answers and cfg.task(p.task).format == "free_text"]
    verdicts, name = judge_answers(jud.generator or cfg.generator, rd.llm_cache, rd.calls,
                                   [(rows[i].culture or preds[i].culture, preds[i].text, list(preds[i].answers),
                                     preds[i].label) for i in asked], jud.max_chars, progress)
    out = list(preds)
    for i, v in zip(asked, verdicts):
        out[i] = preds[i].model_copy(update={"judged": v})
    return out, name


def judge_answers(generator, cache: Path, calls: Path, items: list[tuple[str, str, list[str], str]],
                  max_chars: int = 600, progress: bool = True) -> tuple[list[bool | None], str]:
    """The answer judge on (culture, question, accepted answers, answer) items: True right, False wrong, None no
    parsable verdict; and the judge's name. One short call per item through the answer cache at `cache` (the call
    log at `calls`), so nothing is asked twice; predict and the bench both judge with it."""
    from culturemanager.backends.llm import CachedLLM, ChatRequest, make_backend
    from culturemanager.text.judge_prompts import build_answer_judge_messages, parse_verdict

    llm = CachedLLM(make_backend(generator), cache, calls, progress=progress)
    try:
        requests = [ChatRequest(build_answer_judge_messages(c, q, acc, a, max_chars), temperature=0.0,
                                max_tokens=ANSWER_JUDGE_MAX_TOKENS, seed=0) for c, q, acc, a in items]
        answers = llm.complete(requests, stage="answer_judge") if requests else []
    finally:
        if hasattr(llm.backend, "close"):
            llm.backend.close()  # e.g. a llama_server judge: its process ends with the judging
    verdicts = [parse_verdict(a.text) if a is not None else None for a in answers]
    if items and all(v is None for v in verdicts):
        log.warning("answer judge: no parsable verdict for any of %d answers", len(items))
    return verdicts, llm.name


ANSWER_JUDGE_MAX_TOKENS = 4  # "yes" or "no"


def prediction_id(task: Task, row: InputRow) -> str:
    return sha1_text(task.id + row.source)[:12]


def calibration_references(cfg: Config, router: Router, task_ids: set[str]) -> dict:
    """Which reference prior calibrated each adapter's answers per task: its validation slice's operating point
    (`predict.calibration = "validation"`, where the slice holds both labels of a two-label task) or its
    content-free lean (`trainer.validation_slice`, the rule Engine.validation_prior uses)."""
    from culturemanager.backends.trainer import validation_slice

    out: dict = {}
    for culture, folder in router.adapters.items():
        for task in (t for t in cfg.tasks if t.id in task_ids and t.labels):
            has = cfg.predict.calibration == "validation" and validation_slice(folder, task) is not None
            out.setdefault(culture, {})[task.id] = "validation" if has else "content_free"
    return {"setting": cfg.predict.calibration, "validation_cut": cfg.predict.validation_cut, "by_adapter": out}


def predict_key(cfg: Config, router: Router, rows: list[InputRow]) -> str:
    """Everything that decides an answer: the router, each adapter's data hash, the target and the tasks' prompts,
    and the inputs. A partial file with another key is stale and is started afresh."""
    from culturemanager.backends.trainer import read_meta

    adapters = {}
    for culture, folder in router.adapters.items():
        meta = Path(folder) / "culturemanager.json" if folder else None
        adapters[culture] = read_meta(folder).get("data_hash") if meta and meta.exists() else folder
    body = {"router": router.__dict__, "adapters": adapters, "target": cfg.target.model_dump(mode="json"),
            "tasks": [t.model_dump(mode="json", include={"id", "template", "labels", "format"}) for t in cfg.tasks],
            "max_new_tokens": cfg.predict.max_new_tokens, "calibrate": cfg.predict.calibrate,
            "calibration": cfg.predict.calibration, "validation_cut": cfg.predict.validation_cut,
            "rows": [(r.source, r.text, r.culture, r.task) for r in rows]}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def load_partial(path: Path, key: str) -> dict[str, Prediction]:
    """The predictions a killed predict finished with the same key; a half-written last line is redone."""
    lines, bad = read_json_lines(path)
    if not lines or not isinstance(lines[0], dict) or lines[0].get("key") != key:
        if lines:
            log.info("%s is from other settings or inputs: predicting afresh", path)
        return {}
    done = {}
    for obj in lines[1:]:
        try:
            p = Prediction.model_validate(obj)
        except ValueError:
            bad += 1
            continue
        done[p.id] = p
    log.info("resuming predict: %d predictions kept from an interrupted run (%d unreadable lines redone)",
             len(done), bad)
    return done


def prediction_metrics(cfg: Config, rows: list[InputRow], preds: list[Prediction], router: Router) -> dict:
    counts: Counter = Counter()
    counts["truncated"] = sum(p.truncated for p in preds)
    counts["mixed"] = sum(bool(p.mixture) for p in preds)  # answered by the top routes' adapters together
    counts.update(f"routed[{p.culture}]" for p in preds)
    counts.update(f"adapter[{a if a != BASE else 'base'}]" for a in (router.adapter_for(p.culture) for p in preds))
    metrics = {"inputs": len(preds), "counts": dict(counts),
               "tasks": {t.id: task_metrics(t, [p for p in preds if p.task == t.id])
                         for t in cfg.tasks if any(p.task == t.id for p in preds)}}
    known = [(r.culture, p.culture) for r, p in zip(rows, preds) if r.culture]
    if known:
        metrics["router_accuracy"] = accuracy([a for a, _ in known], [b for _, b in known])
    free = [(r, p) for r, p in zip(rows, preds) if p.answers and cfg.task(p.task).format == "free_text"]
    for t in cfg.tasks:
        mine = [(r, p) for r, p in free if p.task == t.id]
        if mine:
            metrics["tasks"][t.id]["scores"] = free_text_metrics(cfg, mine)
    if free:
        metrics["free_text"] = free_text_metrics(cfg, free)
    return metrics


def free_text_metrics(cfg: Config, pairs: list[tuple[InputRow, Prediction]]) -> dict:
    """Exact and soft match (answers.py) over the rows, and per culture: the culture the input file states, else
    the routed one; soft match lemmatizes in that culture's language (`lemmatizer` says with what, per culture)."""
    languages = {c.name: c.language for c in cfg.cultures}
    culture = [r.culture or p.culture for r, p in pairs]

    from culturemanager.text.formats import validate_answer

    # what is no answer at all: empty, a bare label ("0", "true"), an echoed template, the question repeated
    reasons = [validate_answer(r.text, p.label, cfg.task(p.task)) for r, p in pairs]

    def scores(idx: list[int]) -> dict:
        return free_text_scores([pairs[i][1].label for i in idx], [pairs[i][1].answers for i in idx],
                                [languages.get(culture[i]) for i in idx],
                                [pairs[i][1].judged for i in idx] if cfg.predict.judge.enabled else None) | {
            "not_answers": dict(Counter(str(reasons[i].value) for i in idx if reasons[i] is not None))}

    from culturemanager.text.answers import lemmatizer

    names = sorted(set(culture))
    return {**scores(list(range(len(pairs)))),
            "by_culture": {c: scores([i for i, x in enumerate(culture) if x == c]) for c in names},
            "lemmatizer": {c: lemmatizer(languages.get(c)) for c in names}}


def write_outputs(rd: RunDir, preds: list[Prediction], metrics: dict) -> None:
    """predictions.jsonl and metrics.json never disagree: the old metrics go first, then the predictions, then the
    metrics that name the predictions' sha256. A kill in between leaves predictions without metrics, never
    predictions beside someone else's metrics."""
    rd.metrics.unlink(missing_ok=True)
    write_jsonl(rd.predictions, preds)
    metrics["predictions_sha256"] = hashlib.sha256(rd.predictions.read_bytes()).hexdigest()
    write_json(rd.metrics, metrics)


def task_metrics(task: Task, preds: list[Prediction]) -> dict:
    m: dict = {"inputs": len(preds), "labels_predicted": dict(Counter(p.label for p in preds)),
               "routed": dict(Counter(p.culture for p in preds))}
    gold = [(p.gold, p.label) for p in preds if p.gold is not None]
    if gold and task.labels:
        g, p = [x for x, _ in gold], [y for _, y in gold]
        m["scores"] = {"n": len(g), "accuracy": accuracy(g, p), "macro_f1": macro_f1(g, p, task.labels)}
        if task.positive_label:
            m["scores"]["f1_positive"] = f1_for(g, p, task.positive_label)
    return m
