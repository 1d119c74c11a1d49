"""The answering rule, written once: who answers an input, and what it answers. predict (stage 7), the bench's
routed rows and the server (/v1/classify, completions) all go through here, so one input gets one answer wherever
it is asked.

    decide   the route per input: a culture the caller gives (the server's `model = <culture>`, predict's input
             culture with the router off) answers with its adapter; the rest are routed when the router is on,
             else answered by the base model ("Others")
    mix      the adapters that answer each input and their weights (`stages.route.mixtures`: the routed culture's
             adapter alone, or the top `router.top_k` routes' adapters below `router.mix_below`)
    score    each adapter's label probabilities, calibrated per adapter (`predict.calibrate`) to its reference:
             its validation slice's cut (`predict.calibration = "validation"`, by `predict.validation_cut`) where it
             has one, else its content-free lean; then the mixture's weighted average (`combine`)
    pick     the label (or option) with the highest (calibrated) probability; a generated answer comes from the
             mixture's heaviest adapter (free text is never averaged)

Each `Answer` carries its reasons: the route, the mixture and which reference calibrated each adapter.
Settings come from the run's config (`Rule.of(cfg.predict)`) and its router.json (`Router.top_k`, `mix_below`).

    answers = answer(engine, task, ["texto"], router, Rule.of(cfg.predict))

Imports no torch: the engine is passed in. Run: imported by predict, the bench and the server; no entry point of its
own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeVar

from culturemanager.config import PredictConfig, Task
from culturemanager.metrics import calibrate
from culturemanager.records import BASE
from culturemanager.stages.route import OTHERS, Router, Routing, mixtures, route

if TYPE_CHECKING:
    from culturemanager.engine import Engine

T = TypeVar("T", float, list, str)


@dataclass(frozen=True)
class Rule:
    """The settings of the rule that are not the router's: predict.calibrate, calibration, validation_cut and
    max_new_tokens (free text)."""

    calibrate: bool = False
    calibration: str = "content_free"
    validation_cut: str = "share"
    max_new_tokens: int = 64

    @classmethod
    def of(cls, predict: PredictConfig) -> Rule:
        return cls(predict.calibrate, predict.calibration, predict.validation_cut, predict.max_new_tokens)


@dataclass(frozen=True)
class Decision:
    """Who answers one input: its culture ("Others": the base model), every route's score and probability (empty
    when the culture was not routed), and how it was chosen."""

    culture: str
    scores: dict[str, float] = field(default_factory=dict)
    probs: dict[str, float] = field(default_factory=dict)
    how: Literal["router", "given", "base"] = "router"


@dataclass(frozen=True)
class Answer:
    """One input's answer and its reasons."""

    decision: Decision
    mixture: dict[str, float]  # adapter (BASE: the plain model) -> weight; one entry when not mixed
    label: str  # the chosen label or option, or the generated answer
    score: float | None = None  # the chosen label's probability (calibrated when calibrating)
    probs: dict[str, float] = field(default_factory=dict)  # the mixture's raw label probabilities
    calibrated: dict[str, float] = field(default_factory=dict)  # the mixture's calibrated ones (with calibrate)
    references: dict[str, str] = field(default_factory=dict)  # adapter -> "validation" | "content_free"
    truncated: bool = False


def answer(engine: Engine, task: Task, texts: Sequence[str], router: Router, rule: Rule,
           given: Sequence[str | None] | None = None, decisions: Sequence[Decision] | None = None) -> list[Answer]:
    """Each text's answer by the rule: route (`given` cultures skip the router; or `decisions` made already),
    mix, score and calibrate, pick. All rows of all adapters go through the engine as one mixed-adapter batch."""
    texts = list(texts)
    decisions = list(decisions) if decisions is not None else decide(engine, router, texts, given)
    mixes = mix(router, decisions)
    if not task.labels:
        adapters = [heaviest(m) for m in mixes]
        answers, truncated = engine.generate(task, texts, adapters, rule.max_new_tokens)
        return [Answer(d, m, a, truncated=t) for d, m, a, t in zip(decisions, mixes, answers, truncated)]
    probs, cals, refs, truncated = label_answers(engine, task, texts, mixes, rule)
    out = []
    for d, m, p, cal, ref, t in zip(decisions, mixes, probs, cals, refs, truncated):
        chosen = cal or p
        k = max(range(len(chosen)), key=chosen.__getitem__)
        out.append(Answer(d, m, task.labels[k], chosen[k], dict(zip(task.labels, p)),
                          dict(zip(task.labels, cal)) if cal else {}, ref, t))
    return out


def decide(engine: Engine | None, router: Router, texts: Sequence[str], given: Sequence[str | None] | None = None
           ) -> list[Decision]:
    """The route per text: a given culture as it is; the others routed in one router call (router on) or sent to
    the base model (router off)."""
    given = list(given) if given is not None else [None] * len(texts)
    if len(given) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(given)} given cultures")
    auto = [i for i, c in enumerate(given) if c is None]
    out = [Decision(c, how="base" if c == OTHERS else "given") if c is not None else None for c in given]
    if auto and router.enabled:
        r = route(engine, router, [texts[i] for i in auto])
        for i, c, s, p in zip(auto, r.cultures, r.scores, r.probs or [{}] * len(auto)):
            out[i] = Decision(c, s, p, "router")
    for i in auto:
        out[i] = out[i] or Decision(OTHERS, how="base")
    return out


def mix(router: Router, decisions: Sequence[Decision]) -> list[dict[str, float]]:
    """The adapters answering each input with their weights (`stages.route.mixtures`): a culture that was not
    routed has no route probabilities, so its adapter answers alone."""
    return mixtures(router, Routing([d.culture for d in decisions], probs=[d.probs for d in decisions]))


def heaviest(mixture: Mapping[str, float]) -> str:
    """The adapter that generates a free-text answer: the mixture's heaviest (text cannot be averaged)."""
    return max(mixture, key=mixture.get)


def combine(mixture: Mapping[str, float], answers: Mapping[str, T]) -> T:
    """One input's answer from its mixture's adapters' answers: the weighted sum of P(positive) or of each
    label's probability, or the heaviest adapter's generated text."""
    first = answers[next(iter(mixture))]
    if isinstance(first, str):
        return answers[heaviest(mixture)]
    if isinstance(first, list):
        return [sum(w * answers[a][k] for a, w in mixture.items()) for k in range(len(first))]
    return sum(w * answers[a] for a, w in mixture.items())


def label_answers(engine: Engine, task: Task, texts: Sequence[str], mixes: Sequence[Mapping[str, float]],
                  rule: Rule) -> tuple[list[list[float]], list[list[float] | None], list[dict[str, str]], list[bool]]:
    """Per text its mixture's label probabilities, raw and (with `rule.calibrate`) calibrated adapter by adapter
    before the weights apply, which reference calibrated each adapter, and whether the text was truncated."""
    if len(mixes) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(mixes)} mixtures")
    for m in mixes:
        if not m or abs(sum(m.values()) - 1) > 1e-4 or min(m.values()) < 0:
            raise ValueError(f"a mixture's weights must be non-negative and sum to 1: {dict(m)}")
    pairs = [(i, a) for i, m in enumerate(mixes) for a in m]
    scored, cut = engine.label_probs(task, [texts[i] for i, _ in pairs], [a for _, a in pairs])
    raw: list[dict[str, list[float]]] = [{} for _ in texts]
    cal: list[dict[str, list[float]]] = [{} for _ in texts]
    refs: list[dict[str, str]] = [{} for _ in texts]
    truncated = [False] * len(texts)
    for (i, a), p, t in zip(pairs, scored.tolist(), cut):
        raw[i][a], truncated[i] = p, t
        if rule.calibrate:
            prior, refs[i][a] = reference(engine, task, a, rule)
            cal[i][a] = calibrate(p, prior)
    return ([combine(m, r) for m, r in zip(mixes, raw)],
            [combine(m, c) if rule.calibrate else None for m, c in zip(mixes, cal)], refs, truncated)


def reference(engine: Engine, task: Task, adapter: str, rule: Rule) -> tuple[list[float], str]:
    """The prior that calibrates one adapter's answers to a task, and which it is: its validation slice's cut
    (`calibration = "validation"`, where the slice holds both labels of a two-label task) or its content-free
    lean. Computed once per engine (Engine.memo)."""
    if rule.calibration == "validation":
        prior = engine.validation_prior(task, adapter, rule.validation_cut)
        if prior is not None:
            return prior, "validation"
    return engine.label_prior(task, adapter), "content_free"


def warm(engine: Engine, tasks: Sequence[Task], adapters: Sequence[str], rule: Rule) -> None:
    """Compute every calibration prior the rule will need now (the server: before the port opens, so the first
    request does not wait for them)."""
    if rule.calibrate:
        for task in (t for t in tasks if t.labels):
            for a in [BASE, *adapters]:
                reference(engine, task, a, rule)
