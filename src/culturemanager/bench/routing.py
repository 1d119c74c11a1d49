"""The benchmark's router measurement: the prompt router and the embedding router on every task's test inputs, in one
run, on the same inputs and the same machine.

Per router: the route of every test input with every route's probability, accuracy per task and the confusion
matrix (score.router_summary), and the cost per input (ms, wall clock, routing alone: the prompt router's forward
passes, the embedding router's embedding + language identification + classifier), with the embedding router's cost
as a share of the prompt router's. For the embedding router also "Others" on cultures it has never seen: for each
culture in turn the router is fitted without that culture's examples, and the share of that culture's test inputs
it sends to "Others" is reported (with the accuracy it keeps on the other cultures' inputs). And top-k mixing on
the inputs where a router is least sure (`least_sure`).

The embedding router's route examples are each culture's demonstrations (and synthetic samples' texts, with
`router.examples`), minus every text that is also a test input of any task: the Bengali racism and threat files
share their texts, as do the two Spanish files, so a demonstration of one task can be a test input of the other.

Entry points: `bench_routes(cfg, tasks, samples, engine)` (the bench's evaluate phase, bench/evaluate.py), and for
benchmarks/router.py `route_examples`, `embedding_routes`, `prompt_routes`, `left_out_others`. The top-2 mixing
measurement is built with the results (bench/assemble.py `with_mixing`, scored here by `least_sure`).
Run: imported by `culturemanager bench` and `benchmarks/router.py`; no entry point of its own.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from culturemanager.answering import Decision, combine, mix
from culturemanager.bench.format import pct_or_dash, show, table
from culturemanager.bench.score import router_summary, task_scores
from culturemanager.config import RouterConfig
from culturemanager.records import normalize_text, write_json
from culturemanager.rundir import safe_name
from culturemanager.stages.route import OTHERS, Router, prior, prompt_routing, prompt_scores
from culturemanager.text.router_prompts import router_template

if TYPE_CHECKING:  # the bench's records, for the annotations only (their module loads the tokenizer backends)
    from culturemanager.bench.config import BenchConfig
    from culturemanager.bench.data import TaskData
    from culturemanager.records import Sample


@dataclass
class RouteTask:
    id: str
    culture: str
    language: str | None
    demos: list[str]
    test: list[str]


@dataclass
class Routes:
    """One router's decisions on every task's test inputs."""
    routed: dict[str, list[str]] = field(default_factory=dict)  # task -> chosen route per test input
    probs: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # task -> every route's probability
    seconds: dict[str, float] = field(default_factory=dict)  # task -> wall-clock seconds routing its inputs
    truncated: int = 0

    def ms_per_input(self) -> float:
        n = sum(len(v) for v in self.routed.values())
        return 1000 * sum(self.seconds.values()) / n if n else 0.0

    def as_dict(self) -> dict:
        return {"routed": self.routed, "probs": self.probs, "seconds": self.seconds, "truncated": self.truncated}


def bench_routes(cfg: BenchConfig, tasks: list[TaskData], samples: dict[str, list[Sample]], engine
                 ) -> tuple[dict, dict]:
    """Both routers on the bench's test inputs (`tasks`, those left to benchmark): ({kind: {task: [route]}, "probs":
    {kind: {task: [probs]}}}, the measurement for results.json). Each router's routes are kept on disk under
    bench.dir/router and reused while their inputs are unchanged (their timings are those of the run that computed
    them)."""
    rc, root = cfg.router, cfg.bench.dir / "router"
    tasks = [RouteTask(t.spec.id, t.spec.culture, t.spec.language, [x for x, _ in t.demos], [x for x, _ in t.test])
             for t in tasks]
    options = router_options(rc, list(dict.fromkeys(t.culture for t in tasks)))
    prompt = Router(True, options, router_template(rc.template), {}, cfg.target.max_length, rc.calibrate)
    by_calibration = prompt_routes(engine, prompt, tasks, root / "prompt", cfg.target.model)
    texts = {c: [s.text for s in v] for c, v in samples.items()} if "samples" in rc.examples else {}
    examples, counts = route_examples(tasks, texts)
    languages = {t.culture: t.language for t in tasks}
    key = _hash([examples, languages, rc.model_dump(mode="json"), cfg.bench.split_seed, [t.test for t in tasks]])
    saved = _read(root / "embedding.json", key)
    if saved is None:
        emb, report = embedding_routes(tasks, examples, languages, rc, cfg.bench.split_seed)
        loco = left_out_others(tasks, examples, languages, rc, cfg.bench.split_seed)
        saved = {"key": key, "routes": emb.as_dict(), "report": report, "left_out": loco, "examples": counts}
        write_json(root / "embedding.json", saved)
    emb = Routes(**saved["routes"])
    chosen = {"prompt": by_calibration[rc.calibrate], "embedding": emb}
    culture_of = {t.id: t.culture for t in tasks}
    prompt_ms = chosen["prompt"].ms_per_input()
    measured = {kind: {**router_summary(r.routed, culture_of, options), "ms_per_input": round(r.ms_per_input(), 3),
                       "truncated": r.truncated} for kind, r in chosen.items()}
    measured["prompt"].update(template=rc.template, calibrated=rc.calibrate, uncalibrated_accuracy=router_summary(
        by_calibration[not rc.calibrate].routed, culture_of, options)["accuracy"])
    measured["embedding"].update(
        cost_vs_prompt=round(emb.ms_per_input() / prompt_ms, 5) if prompt_ms else None,
        fit=saved["report"], left_out_others=saved["left_out"], examples=saved["examples"])
    routed = {kind: r.routed for kind, r in chosen.items()} | {"probs": {k: r.probs for k, r in chosen.items()}}
    return routed, measured


def router_options(rc: RouterConfig, cultures: list[str]) -> list[str]:
    """The routes a bench router chooses among: the cultures, and "Others" with `router.others`."""
    return cultures + ([OTHERS] if rc.others else [])


def route_examples(tasks: list[RouteTask], samples: dict[str, list[str]] | None = None
                   ) -> tuple[dict[str, list[str]], dict]:
    """Each culture's route examples: its tasks' demonstrations and its synthetic samples' texts, each text once,
    none that is a test input of any task (counted)."""
    test = {normalize_text(x) for t in tasks for x in t.test}
    out: dict[str, list[str]] = {}
    seen: set[str] = set()
    dropped = 0
    for culture in dict.fromkeys(t.culture for t in tasks):
        texts = [x for t in tasks if t.culture == culture for x in t.demos] + list((samples or {}).get(culture, []))
        out[culture] = []
        for x in texts:
            k = normalize_text(x)
            if k in test:
                dropped += 1
            elif k not in seen:
                seen.add(k)
                out[culture].append(x)
    return out, {"per_culture": {c: len(v) for c, v in out.items()}, "dropped_as_test_inputs": dropped,
                 "with_samples": bool(samples)}


def embedding_routes(tasks: list[RouteTask], examples: dict[str, list[str]], languages: dict[str, str | None],
                     rc: RouterConfig, seed: int, embedder=None) -> tuple[Routes, dict]:
    """The embedding router fitted on `examples`, then every task's test inputs routed (and timed)."""
    from culturemanager.backends import embedrouter

    fitted, report = embedrouter.fit(examples, languages, keep=rc.keep, language_prior=rc.language_prior,
                                     max_chars=rc.max_chars, embedder=embedder, seed=seed)
    out = Routes()
    for t in tasks:
        t0 = time.perf_counter()
        d = fitted.decide(t.test)
        out.seconds[t.id] = round(time.perf_counter() - t0, 4)
        out.routed[t.id] = [OTHERS if (o and rc.others) else fitted.cultures[int(p.argmax())]
                            for p, o in zip(d.probs, d.others)]
        out.probs[t.id] = [{c: round(float(v), 4) for c, v in zip(fitted.cultures, p)} for p in d.probs]
    return out, report


def prompt_routes(engine, router: Router, tasks: list[RouteTask], cache: Path | None, model: str
                  ) -> dict[bool, Routes]:
    """The prompt router on every task's test inputs, uncalibrated (False) and calibrated (True): one forward pass
    per input and option gives both. The raw scores are kept per task under `cache` (with their time)."""
    import torch

    out = {False: Routes(), True: Routes()}
    for t in tasks:
        key = _hash([router.options, router.template, router.max_length, model, t.test])
        saved = _read(cache / f"{safe_name(t.id)}.json", key) if cache else None
        if saved is None:
            t0 = time.perf_counter()
            raw, truncated = prompt_scores(engine, router, t.test)
            saved = {"key": key, "task": t.id, "options": router.options, "scores": raw.tolist(),
                     "prior": prior(engine, router)[0].tolist(), "truncated": truncated,
                     "seconds": round(time.perf_counter() - t0, 3)}
            if cache:
                write_json(cache / f"{safe_name(t.id)}.json", saved)
        raw = torch.tensor(saved["scores"]).reshape(len(t.test), len(router.options))
        # content-free scores: once per engine, not part of a task's time (kept with the scores, so a rerun runs
        # no model at all; files written before they were kept get them computed now)
        cal = torch.tensor(saved["prior"]) if "prior" in saved else prior(engine, router)[0]
        for calibrated in (False, True):
            r = prompt_routing(router, raw - cal if calibrated else raw)
            out[calibrated].routed[t.id], out[calibrated].probs[t.id] = r.cultures, r.probs
            out[calibrated].seconds[t.id] = saved["seconds"]
            out[calibrated].truncated += saved["truncated"]
    return out


def left_out_others(tasks: list[RouteTask], examples: dict[str, list[str]], languages: dict[str, str | None],
                    rc: RouterConfig, seed: int, embedder=None) -> dict[str, dict]:
    """For each culture: the embedding router fitted without its examples; the share of its test inputs sent to
    "Others", and the accuracy kept on the other cultures' test inputs. Signals are computed once for all fits."""
    from culturemanager.backends import embedrouter
    from culturemanager.backends.retrieval.dense import UseMultilingual
    from culturemanager.backends.textsignals import LanguageId

    cultures = list(examples)
    embedder, lid = embedder or UseMultilingual(), LanguageId()
    sig = embedrouter.signals([x for c in cultures for x in examples[c]], embedder, lid, rc.max_chars)
    y = np.array([k for k, c in enumerate(cultures) for _ in examples[c]])
    tests = {t.id: embedrouter.signals(t.test, embedder, lid, rc.max_chars) for t in tasks}
    out = {}
    for k, left in enumerate(cultures):
        keep = np.flatnonzero(y != k)
        rest = [c for c in cultures if c != left]
        fitted, _ = embedrouter.fit_signals(sig.take(keep), y[keep] - (y[keep] > k), rest,
                                            [languages.get(c) for c in rest], keep=rc.keep,
                                            language_prior=rc.language_prior, seed=seed)
        sent, right, n_in = [], 0, 0
        for t in tasks:
            d = fitted.decide_signals(tests[t.id])
            if t.culture == left:
                sent += d.others.tolist()
            else:
                chosen = [OTHERS if o else rest[int(p.argmax())] for p, o in zip(d.probs, d.others)]
                right += sum(c == t.culture for c in chosen)
                n_in += len(chosen)
        out[left] = {"to_others": round(float(np.mean(sent)), 4) if sent else None, "inputs": len(sent),
                     "in_set_accuracy": round(right / n_in, 4) if n_in else None}
    return out


def routed_answers(by_adapter: dict[str, tuple[list, ...]], router: Router, routes: list[str],
                   probs: list[dict[str, float]]) -> tuple[list, ...]:
    """Each answer kind (answers, calibrated, ...) per input from each adapter's, by the answering rule that
    predict and the server use (answering.mix, answering.combine): the routed culture's adapter alone, or the
    top `router.top_k` routes' adapters weighted together.
    An answer is P(positive), a probability per option (mixed option by option) or a generated text (never
    mixed: the heaviest route's)."""
    mixes = mix(router, [Decision(c, probs=p) for c, p in zip(routes, probs)])
    kinds = len(next(iter(by_adapter.values())))
    return tuple([combine(m, {a: by_adapter[a][j][i] for a in m}) for i, m in enumerate(mixes)]
                 for j in range(kinds))


def least_sure(gold: list[str], top1: list[float], mixed: list[float], confidence: list[float], share: float = 0.25
               ) -> dict:
    """Top-1 against top-k mixed answers (P(positive) per input) on the `share` of inputs with the lowest router
    confidence (the top route's probability), and on all inputs: macro-F1 and accuracy of each."""
    order = np.argsort(np.asarray(confidence), kind="stable")[:max(1, round(share * len(gold)))]

    def scores(idx) -> dict:
        g = [gold[i] for i in idx]
        return {name: {m: round(task_scores(g, ["1" if p[i] > 0.5 else "0" for i in idx])[m], 4)
                       for m in ("macro_f1", "accuracy")} for name, p in (("top1", top1), ("mixed", mixed))}

    return {"share": share, "n": len(order), "max_confidence": round(float(np.asarray(confidence)[order].max()), 4),
            "least_sure": scores(order), "all": scores(range(len(gold)))}


def routers_section(r: dict) -> str:
    """report.md's comparison of the two routers (results.json "routers")."""
    rs = r.get("routers")
    if not rs:
        return "## Both routers\n\nNo router measurement in this run."
    kinds = [k for k in ("embedding", "prompt") if k in rs]
    tasks = list(rs[kinds[0]].get("per_task") or {})
    rows = [[t] + [pct_or_dash(rs[k]["per_task"].get(t)) for k in kinds] for t in tasks]
    rows.append(["**overall**"] + [f"**{pct_or_dash(rs[k].get('accuracy'))}**" for k in kinds])
    rows.append(["ms per input"] + [show(rs[k].get("ms_per_input")) for k in kinds])
    out = ["## Both routers", table(["Task"] + [f"{k} router (%)" for k in kinds], rows)]
    emb = rs.get("embedding") or {}
    if emb.get("cost_vs_prompt"):
        out.append(f"The embedding router costs {emb['cost_vs_prompt']:.4f} of the prompt router per input "
                   f"(1/{1 / emb['cost_vs_prompt']:.0f}). Prompt router uncalibrated: "
                   f"{pct_or_dash(rs.get('prompt', {}).get('uncalibrated_accuracy'))}% accuracy.")
    loco = emb.get("left_out_others") or {}
    if loco:
        out.append("Each culture left out of the embedding router in turn: the share of its test inputs sent to "
                   "\"Others\", and the accuracy kept on the other cultures' inputs:")
        out.append(table(["Culture left out", "to Others (%)", "others' accuracy (%)"],
                         [[c, pct_or_dash(v.get("to_others")), pct_or_dash(v.get("in_set_accuracy"))]
                          for c, v in loco.items()]))
    mix = [[k, name, show(m[name]["n"]), show(m[name]["max_confidence"])]
           + [pct_or_dash(m[name][p][way]["macro_f1"]) for p in ("least_sure", "all") for way in ("top1", "mixed")]
           for k in kinds if (m := rs[k].get("top2_mixing")) for name in ("raw", "calibrated")]
    if mix:
        out.append("Top-2 mixing against the top route alone (macro-F1 %, training seed "
                   f"{rs[kinds[0]]['top2_mixing']['seed']}), on the quarter of inputs where the router is least sure "
                   "and on all inputs:")
        out.append(table(["router", "answers", "least sure n", "their top probability ≤", "top-1", "top-2 mix",
                          "all: top-1", "all: top-2 mix"], mix))
    return "\n\n".join(out)


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str).encode()).hexdigest()


def _read(path: Path, key: str) -> dict | None:
    if not path.exists():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    return saved if saved.get("key") == key else None
