"""Stage 6: the culture router — per input, a culture (whose adapter answers) or "Others" (the base model), with
every culture's probability, so that the top routes' adapters can answer together (`router.top_k`).

Two kinds (`router.kind`):
- embedding (the default): a classifier on multilingual sentence embeddings with a language prior, fitted here on
  each culture's route examples — its demonstrations and its synthetic samples' texts — with an "Others" threshold
  fitted on held-out examples (backends/embedrouter.py). Milliseconds per input; no language model runs. The fit
  is saved beside router.json (router.npz) and reused while the examples and settings are unchanged.
- prompt (the paper's design): the adapter-free target model is asked which culture a text comes from, and the
  option with the highest length-normalized log-likelihood wins (never free text), so the answer is always a
  valid option. Templates by name: "short" (this project's one-line prompt) or "paper" (the paper's prompt, word
  for word; router_prompts.ROUTER_TEMPLATES). With `router.calibrate` (contextual calibration, Zhao et al. 2021) each
  option's mean score on content-free texts is subtracted first; that prior depends only on the model and the
  prompt, so it is computed once per engine.

`Router` is what `router.json` holds; it imports no torch, so reading a run directory needs none.

Entry points: `write_router(cfg, rd)` writes router.json (and router.npz); `route(engine, router, texts)` decides;
`mixtures(router, routing)` says which adapters answer each input, with which weights.
Run: `culturemanager route CONFIG.toml` fits and writes the router; `culturemanager predict` routes every input.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from culturemanager.config import Config
from culturemanager.errors import InputError
from culturemanager.records import BASE, RecordFileError, Sample, normalize_text, read_json, read_jsonl, write_json
from culturemanager.rundir import RunDir
from culturemanager.text.prompts import CONTENT_FREE
from culturemanager.text.router_prompts import router_template, split_router_template

if TYPE_CHECKING:
    from culturemanager.engine import Engine

log = logging.getLogger(__name__)

OTHERS = "Others"
FIT_VERSION = "1"  # bump when the embedding router's fit changes, so saved routers are refitted


@dataclass(frozen=True)
class Router:
    enabled: bool
    options: list[str]  # cultures (+ "Others")
    template: str  # prompt router: the template's text
    adapters: dict[str, str | None]  # culture -> adapter folder (None: base model); in router.json relative to the run
    # directory, absolute once read (read_router), so a copied run directory reads its own files
    max_length: int
    calibrate: bool = False  # subtract each option's score on content-free texts (contextual calibration)
    kind: str = "prompt"
    top_k: int = 1
    mix_below: float = 1.0
    model: str | None = None  # embedding router: its arrays (router.npz; relative in router.json, like adapters)
    fit: dict = field(default_factory=dict)  # embedding router: settings, inputs hash, fit report

    def adapter_for(self, culture: str) -> str:
        """The adapter that answers for a routed culture: its own, or the base model for "Others" and for a
        culture that got no adapter. The one rule predict, the benchmark and the server use."""
        return culture if self.adapters.get(culture) else BASE


@dataclass
class Routing:
    cultures: list[str]  # the chosen option per text
    scores: list[dict[str, float]] = field(default_factory=list)  # every option's (calibrated) score per text
    truncated: int = 0  # texts cut to fit the router prompt
    probs: list[dict[str, float]] = field(default_factory=list)  # every route's probability per text


def write_router(cfg: Config, rd: RunDir) -> Router:
    options = [c.name for c in cfg.cultures] + ([OTHERS] if cfg.router.others else [])
    # stored relative to the run directory: a run trained on one machine is copied to another and served there
    adapters = {c.name: rd.adapter(c.name).relative_to(rd.root).as_posix()
                if (rd.adapter(c.name) / "adapter_config.json").exists() else None for c in cfg.cultures}
    r = cfg.router
    model, fit = None, {}
    if r.kind == "embedding" and r.enabled:
        model, fit = rd.router_model.relative_to(rd.root).as_posix(), fit_embedding(cfg, rd)
    router = Router(r.enabled, options, router_template(r.template), adapters, cfg.target.max_length, r.calibrate,
                    r.kind, r.top_k, r.mix_below, model, fit)
    write_json(rd.router, router.__dict__)
    return in_run(router, rd)


def read_router(rd: RunDir) -> Router:
    path = rd.need(rd.router, "route")
    data = read_json(path)
    try:
        router = Router(**data)
    except TypeError as e:
        raise RecordFileError(f"{path}: not a router file ({e}); run `culturemanager route CONFIG.toml` again"
                              ) from None
    router = in_run(router, rd)
    if router.kind == "embedding" and router.enabled and not (router.model and _exists(router.model)):
        raise RecordFileError(f"{path}: its fitted router {router.model} is missing; run `culturemanager route "
                              f"CONFIG.toml` again")
    return router


def in_run(router: Router, rd: RunDir) -> Router:
    """The router with its files as paths in the run directory `rd`: a relative path (what write_router stores) is
    below it. An absolute one (routers written before paths were relative) is kept while it exists; once the run
    it names was moved or deleted, the same file of this run stands in for it when there is one."""
    def place(stored: str | None, own: Path) -> str | None:
        if stored is None:
            return None
        path = Path(stored)
        if not path.is_absolute():
            return str(rd.root / path)
        return stored if path.exists() or not own.exists() else str(own)

    adapters = {c: place(p, rd.adapter(c)) for c, p in router.adapters.items()}
    return replace(router, adapters=adapters, model=place(router.model, rd.router_model))


def route(engine: Engine | None, router: Router, texts: list[str]) -> Routing:
    """The chosen route per text with every route's score and probability (prompt router: on the base model)."""
    if router.kind == "embedding":
        return _route_embedding(engine, router, texts)
    if engine is None:
        raise ValueError("the prompt router needs the target model (an Engine)")
    scores, truncated = prompt_scores(engine, router, texts)
    if router.calibrate:
        scores = scores - prior(engine, router)
    return prompt_routing(router, scores, truncated)


def prompt_scores(engine: Engine, router: Router, texts: list[str]):
    """The prompt router's uncalibrated score of every option per text ([len(texts), len(options)]: mean token
    log-likelihood of the option after the prompt, on the base model) and how many texts were cut to fit."""
    prompts, opts, truncated = _router_prompts(engine, router, texts)
    return engine.option_scores(prompts, opts, [BASE] * len(prompts), normalize=True), truncated


def prompt_routing(router: Router, scores, truncated: int = 0) -> Routing:
    """The prompt router's choice from (calibrated) option scores: the best option; probabilities by softmax."""
    choice = [router.options[int(i)] for i in scores.argmax(1)]
    table = [{o: round(float(v), 4) for o, v in zip(router.options, row)} for row in scores]
    probs = [{o: round(float(v), 4) for o, v in zip(router.options, row)} for row in scores.softmax(1)]
    return Routing(choice, table, truncated, probs)


def mixtures(router: Router, routing: Routing) -> list[dict[str, float]]:
    """Per text, the adapters that answer it and their weights (summing to 1): the routed culture's alone; with
    `top_k` > 1 and the top route's probability below `mix_below`, the top_k routes' adapters weighted by their
    probabilities renormalised over the k. A route without an adapter ("Others", a culture that got none) counts
    for the base model. A text routed to "Others" is answered by the base model alone."""
    out = []
    for choice, probs in zip(routing.cultures, routing.probs or [{}] * len(routing.cultures)):
        top = sorted(probs.items(), key=lambda kv: -kv[1])[:router.top_k]
        if router.top_k < 2 or choice == OTHERS or not top or top[0][1] >= router.mix_below:
            out.append({router.adapter_for(choice): 1.0})
            continue
        total = sum(p for _, p in top) or 1.0
        mix: dict[str, float] = {}
        for option, p in top:
            adapter = router.adapter_for(option)
            mix[adapter] = mix.get(adapter, 0.0) + p / total
        out.append(mix)
    return out


def prior(engine: Engine, router: Router):
    """The router's preference among the options when the text says nothing: a small model's choice leans on
    option order and name frequency; subtracting its mean score on content-free texts removes that lean, leaving
    what the text itself contributes. Computed once per engine, template and options."""
    def compute():
        prompts, opts, _ = _router_prompts(engine, router, list(CONTENT_FREE))
        return engine.option_scores(prompts, opts, [BASE] * len(prompts), normalize=True).mean(0, keepdim=True)

    return engine.memo(("router-prior", router.template, tuple(router.options), router.max_length), compute)


def router_option_ids(tok, options: list[str]) -> list[list[int]]:
    """The prompt router's options as token ids: a leading space makes each a natural continuation of
    "Culture:"."""
    from culturemanager.backends.target import option_ids

    return option_ids(tok, [" " + o for o in options])


def _router_prompts(engine: Engine, router: Router, texts: list[str]) -> tuple[list[list[int]], list[list[int]], int]:
    from culturemanager.backends.target import encode

    prefix, suffix = split_router_template(router.template, router.options)
    opts = router_option_ids(engine.tok, router.options)
    reserve = max(len(o) for o in opts)
    encoded = [encode(engine.tok, prefix, t, suffix, router.max_length - reserve) for t in texts]
    return [e.ids for e in encoded], opts, sum(e.truncated for e in encoded)


# ---------------------------------------------------------------------------------------------- embedding router

def _route_embedding(engine: Engine | None, router: Router, texts: list[str]) -> Routing:
    fitted = engine.memo(("embedding-router", router.model, router.fit.get("hash")), lambda: load_fitted(router)) \
        if engine is not None else load_fitted(router)
    d = fitted.decide(texts)
    cultures = fitted.cultures
    others = OTHERS in router.options
    choice = [OTHERS if (o and others) else cultures[int(p.argmax())] for p, o in zip(d.probs, d.others)]
    probs = [{c: round(float(v), 4) for c, v in zip(cultures, row)} for row in d.probs]
    # "Others": the detector's margin over its threshold (positive: sent to Others)
    margin = d.outness - (fitted.threshold if fitted.threshold is not None else 0.0)
    scores = [dict(p, **({OTHERS: round(float(s), 4)} if others and math.isfinite(s) else {}))
              for p, s in zip(probs, margin)]
    return Routing(choice, scores, 0, probs)


def load_fitted(router: Router):
    """The fitted embedding router of router.json: its arrays from router.npz; an unreadable file is an error
    naming it."""
    import zipfile

    from culturemanager.backends import embedrouter

    try:
        return embedrouter.load(Path(router.model or ""), router.fit["settings"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise RecordFileError(f"{router.model}: not a fitted router ({e}); run `culturemanager route CONFIG.toml` "
                              f"again") from None


def fit_embedding(cfg: Config, rd: RunDir) -> dict:
    """Fit the embedding router on the run's route examples and save it as router.npz, or keep the saved one when
    it was fitted on the same examples with the same settings. Returns what router.json records of it."""
    from culturemanager.backends import embedrouter

    examples, counts = route_examples(cfg, rd)
    r = cfg.router
    languages = {c.name: c.language for c in cfg.cultures}
    settings = {"keep": r.keep, "language_prior": r.language_prior, "max_chars": r.max_chars, "seed": cfg.run.seed,
                "embedder": "use-multilingual", "version": FIT_VERSION}
    digest = hashlib.sha256(json.dumps([examples, languages, settings], ensure_ascii=False, sort_keys=True)
                            .encode()).hexdigest()
    npz = rd.router_model
    if rd.router.exists() and npz.exists():
        try:
            old = read_json(rd.router)
        except RecordFileError:
            old = {}
        if isinstance(old, dict) and isinstance(old.get("fit"), dict) and old["fit"].get("hash") == digest:
            try:
                load_fitted(Router(True, [], "", {}, 0, model=str(npz), fit=old["fit"]))
            except RecordFileError as e:
                log.warning("%s; fitting again", e)
            else:
                log.info("embedding router: examples and settings unchanged, %s reused", npz)
                return old["fit"]
    fitted, report = embedrouter.fit(examples, languages, keep=r.keep, language_prior=r.language_prior,
                                     max_chars=r.max_chars, seed=cfg.run.seed)
    embedrouter.save(fitted, npz)
    log.info("embedding router fitted on %s examples in %.1fs", sum(len(v) for v in examples.values()),
             report["fit_seconds"])
    return {"hash": digest, "settings": embedrouter.settings(fitted), "examples": counts, "report": report,
            "fitted": time.strftime("%Y-%m-%dT%H:%M:%S")}


def route_examples(cfg: Config, rd: RunDir) -> tuple[dict[str, list[str]], dict]:
    """Each culture's route examples: its demonstrations (a file with a known culture, or a task with one culture)
    and its kept synthetic samples' texts, by `router.examples`. A text that belongs to two cultures is no one's
    example; repeats count once. Every culture needs two."""
    from culturemanager.stages.spec import demonstrations_by_culture

    wanted = set(cfg.router.examples)
    raw: dict[str, list[str]] = {c.name: [] for c in cfg.cultures}
    if "demonstrations" in wanted:
        for task in cfg.tasks:
            for culture, texts in demonstrations_by_culture(cfg, task).items():
                shared = [f for f in task.demonstrations if f.culture is None]
                if shared and len(cfg.task_cultures(task)) > 1:
                    # a file without a culture belongs to every culture of the task: no route example
                    texts = _own_texts(cfg, task, culture)
                raw[culture] += texts
    if "samples" in wanted:
        for c in cfg.cultures:
            path = rd.samples(c.name)
            raw[c.name] += [s.text for s in read_jsonl(path, Sample)] if path.exists() else []
    owners: dict[str, set[str]] = {}
    for culture, texts in raw.items():
        for t in texts:
            owners.setdefault(normalize_text(t), set()).add(culture)
    out: dict[str, list[str]] = {}
    counts = {"ambiguous": sum(len(v) > 1 for v in owners.values())}
    for culture, texts in raw.items():
        seen: set[str] = set()
        out[culture] = []
        for t in texts:
            key = normalize_text(t)
            if len(owners[key]) == 1 and key not in seen:
                seen.add(key)
                out[culture].append(t)
        counts[culture] = len(out[culture])
    few = {c: n for c, n in counts.items() if c != "ambiguous" and n < 2}
    if few:
        raise InputError(f"router.kind = \"embedding\" needs at least 2 route examples per culture; "
                         f"{', '.join(f'{c} has {n}' for c, n in few.items())} (demonstrations from files with "
                         f"`culture = ...` or tasks of one culture, and synthetic samples; see router.examples), "
                         f"or set router.kind = \"prompt\"")
    return out, counts


def _own_texts(cfg: Config, task, culture: str) -> list[str]:
    from culturemanager.text.datafiles import read_rows

    return [r.text for f in task.demonstrations if f.culture == culture for r in read_rows(f)]


def _exists(path: str) -> bool:
    return Path(path).is_file()
