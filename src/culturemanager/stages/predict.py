"""Stage 7: route each input to a culture and answer with that culture's adapter.

Tasks with a label set are answered by scoring the labels (one batched forward pass per batch of inputs),
never by free generation; free_text tasks generate greedily. One batch mixes adapters: every input carries
its own adapter name (peft's mixed-adapter batches; "__base__" for "Others" or a culture without adapter).
When inputs carry gold labels, `metrics.json` gets accuracy, macro-F1 and positive-class F1 per task, and
router accuracy where the input file states the culture.

Entry point: `predict(cfg, rd, files=None)`; reads `router.json` and `adapters/`, writes
`predictions.jsonl` and `metrics.json`.
Run: `culturemanager predict CONFIG.toml [--input FILE.jsonl]`.
"""

from __future__ import annotations

import logging
from collections import Counter

import torch

from culturemanager.backends.target import BASE, encode, generate, load_target, option_ids, score_options
from culturemanager.config import Config, DataFile, Task
from culturemanager.datafiles import InputRow, read_rows
from culturemanager.metrics import accuracy, f1_for, macro_f1
from culturemanager.prompts import split_task_template
from culturemanager.records import Prediction, sha1_text, write_json, write_jsonl
from culturemanager.rundir import RunDir
from culturemanager.stages.route import Router, read_router, route

log = logging.getLogger(__name__)


def predict(cfg: Config, rd: RunDir, files: list[DataFile] | None = None, progress: bool = True
            ) -> tuple[list[Prediction], dict]:
    rows = [r for f in (files if files is not None else cfg.predict.inputs) for r in read_rows(f)]
    if not rows:
        raise ValueError("nothing to predict: set predict.inputs in the config or pass --input")
    tasks = [row_task(cfg, r) for r in rows]
    router = read_router(rd)
    model, tok = load_with_adapters(cfg, router)
    preds: list[Prediction | None] = [None] * len(rows)
    counts: Counter = Counter()
    bs = cfg.target.batch_size
    from rich.progress import track

    # batches never mix tasks (one label set per batch); inputs keep their order within a task
    order = sorted(range(len(rows)), key=lambda i: [t.id for t in cfg.tasks].index(tasks[i].id))
    batches = [order[s:s + bs] for s in range(0, len(order), bs)]
    batches = [[i for i in b if tasks[i].id == t.id] for b in batches for t in cfg.tasks]
    for batch in track([b for b in batches if b], description="predict", disable=not progress, transient=True):
        answers = predict_batch(cfg, tasks[batch[0]], router, model, tok, [rows[i] for i in batch], counts)
        for i, p in zip(batch, answers):
            preds[i] = p
    done = [p for p in preds if p is not None]
    write_jsonl(rd.predictions, done)
    metrics = {"inputs": len(done), "counts": dict(counts),
               "tasks": {t.id: task_metrics(t, [p for p in done if p.task == t.id])
                         for t in cfg.tasks if any(p.task == t.id for p in done)}}
    known = [(r.culture, p.culture) for r, p in zip(rows, done) if r.culture]
    if known:
        metrics["router_accuracy"] = accuracy([a for a, _ in known], [b for _, b in known])
    write_json(rd.metrics, metrics)
    return done, metrics


def row_task(cfg: Config, row: InputRow) -> Task:
    if row.task:
        return cfg.task(row.task)
    if cfg.predict.task:
        return cfg.task(cfg.predict.task)
    if len(cfg.tasks) != 1:
        raise ValueError(f"{row.source}: this run has several tasks: set `task` on the input file or "
                         f"predict.task")
    return cfg.tasks[0]


def load_with_adapters(cfg: Config, router: Router):
    """The target model with every culture adapter loaded side by side (none: the plain model)."""
    model, tok = load_target(cfg.target)
    found = [(c, p) for c, p in router.adapters.items() if p]
    if found:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, found[0][1], adapter_name=found[0][0])
        for culture, path in found[1:]:
            model.load_adapter(path, adapter_name=culture)
        model.eval()
    return model, tok


def predict_batch(cfg: Config, task: Task, router: Router, model, tok, batch: list[InputRow],
                  counts: Counter) -> list[Prediction]:
    texts = [r.text for r in batch]
    if router.enabled:
        cultures, route_scores, truncated = route(model, tok, router, texts, cfg.target.batch_size)
        counts["router_truncated"] += truncated
    else:
        cultures, route_scores = [r.culture or "Others" for r in batch], [{} for _ in batch]
    adapters = [router.adapter_for(c) for c in cultures]
    use_names = hasattr(model, "peft_config")
    prefix, suffix = split_task_template(task)
    reserve = 4 if task.labels else cfg.predict.max_new_tokens
    encoded = [encode(tok, prefix, t, suffix, cfg.target.max_length - reserve) for t in texts]
    counts["truncated"] += sum(e.truncated for e in encoded)
    out = []
    if task.labels:
        scores = score_options(model, tok, [e.ids for e in encoded], option_ids(tok, task.labels),
                               adapters if use_names else None, cfg.target.batch_size)
        probs = torch.softmax(scores, -1)
        for row, enc, c, rs, p in zip(batch, encoded, cultures, route_scores, probs):
            k = int(p.argmax())
            out.append(Prediction(id=sha1_text(task.id + row.source)[:12], task=task.id, text=row.text, culture=c,
                                  route_scores=rs, label=task.labels[k], score=round(float(p[k]), 4),
                                  label_scores={lab: round(float(v), 4) for lab, v in zip(task.labels, p)},
                                  gold=row.label, truncated=enc.truncated))
    else:
        for row, enc, c, rs, a in zip(batch, encoded, cultures, route_scores, adapters):
            answer = generate(model, tok, enc.ids, cfg.predict.max_new_tokens, a if use_names else None)
            out.append(Prediction(id=sha1_text(task.id + row.source)[:12], task=task.id, text=row.text, culture=c,
                                  route_scores=rs, label=answer, gold=row.label, truncated=enc.truncated))
    counts.update(f"routed[{c}]" for c in cultures)
    counts.update(f"adapter[{a if a != BASE else 'base'}]" for a in adapters)
    return out


def task_metrics(task: Task, preds: list[Prediction]) -> dict:
    m: dict = {"inputs": len(preds), "labels_predicted": dict(Counter(p.label for p in preds)),
               "routed": dict(Counter(p.culture for p in preds))}
    gold = [(p.gold, p.label) for p in preds if p.gold is not None]
    if gold and task.labels:
        g, p = [x for x, _ in gold], [y for _, y in gold]
        unknown = sorted(set(g) - set(task.labels))
        if unknown:
            raise ValueError(f"gold labels {unknown} are not in task {task.id!r} labels {task.labels}: "
                             f"set label_map on the input file")
        m["scores"] = {"n": len(g), "accuracy": accuracy(g, p), "macro_f1": macro_f1(g, p, task.labels)}
        if task.positive_label:
            m["scores"]["f1_positive"] = f1_for(g, p, task.positive_label)
    return m
