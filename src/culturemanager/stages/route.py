"""Stage 6: the culture router — per input, a culture (whose adapter answers) or "Others" (the base model).

The prompt router asks the adapter-free target model which culture a text comes from and picks the option with
the highest length-normalized log-likelihood (never free text), so the answer is always a valid option. With
`router.calibrate` (contextual calibration, Zhao et al. 2021) each option's mean score on content-free texts is
subtracted first; that prior depends only on the model and the prompt, so it is computed once per engine.

`Router` is what `router.json` holds; it imports no torch, so reading a run directory needs none.

Entry points: `write_router(cfg, rd)` writes `router.json`; `route(engine, router, texts)` decides.
Run: `culturemanager route CONFIG.toml` writes router.json; `culturemanager predict` routes every input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from culturemanager.config import Config
from culturemanager.prompts import split_router_template
from culturemanager.records import BASE, RecordFileError, read_json, write_json
from culturemanager.rundir import RunDir

if TYPE_CHECKING:
    from culturemanager.engine import Engine

OTHERS = "Others"
CONTENT_FREE = ("", "N/A", "...")


@dataclass(frozen=True)
class Router:
    enabled: bool
    options: list[str]  # cultures (+ "Others")
    template: str
    adapters: dict[str, str | None]  # culture -> adapter folder (None: base model)
    max_length: int
    calibrate: bool = False  # subtract each option's score on content-free texts (contextual calibration)

    def adapter_for(self, culture: str) -> str:
        """The adapter that answers for a routed culture: its own, or the base model for "Others" and for a
        culture that got no adapter. The one rule predict, the benchmark and the server use."""
        return culture if self.adapters.get(culture) else BASE


@dataclass
class Routing:
    cultures: list[str]  # the chosen option per text
    scores: list[dict[str, float]] = field(default_factory=list)  # every option's (calibrated) score per text
    truncated: int = 0  # texts cut to fit the router prompt


def write_router(cfg: Config, rd: RunDir) -> Router:
    options = [c.name for c in cfg.cultures] + ([OTHERS] if cfg.router.others else [])
    adapters = {c.name: str(rd.adapter(c.name)) if (rd.adapter(c.name) / "adapter_config.json").exists()
                else None for c in cfg.cultures}
    router = Router(cfg.router.enabled, options, cfg.router.template, adapters, cfg.target.max_length,
                    cfg.router.calibrate)
    write_json(rd.router, router.__dict__)
    return router


def read_router(rd: RunDir) -> Router:
    path = rd.need(rd.router, "route")
    data = read_json(path)
    try:
        return Router(**data)
    except TypeError as e:
        raise RecordFileError(f"{path}: not a router file ({e}); run `culturemanager route CONFIG.toml` again"
                              ) from None


def route(engine: Engine, router: Router, texts: list[str]) -> Routing:
    """The chosen culture per text with every option's score (always computed on the base model)."""
    prompts, opts, truncated = _router_prompts(engine, router, texts)
    scores = engine.option_scores(prompts, opts, [BASE] * len(prompts), normalize=True)
    if router.calibrate:
        scores = scores - prior(engine, router)
    choice = [router.options[int(i)] for i in scores.argmax(1)]
    table = [{o: round(float(v), 4) for o, v in zip(router.options, row)} for row in scores]
    return Routing(choice, table, truncated)


def prior(engine: Engine, router: Router):
    """The router's preference among the options when the text says nothing: a small model's choice leans on
    option order and name frequency; subtracting its mean score on content-free texts removes that lean, leaving
    what the text itself contributes. Computed once per engine, template and options."""
    def compute():
        prompts, opts, _ = _router_prompts(engine, router, list(CONTENT_FREE))
        return engine.option_scores(prompts, opts, [BASE] * len(prompts), normalize=True).mean(0, keepdim=True)

    return engine.memo(("router-prior", router.template, tuple(router.options), router.max_length), compute)


def _router_prompts(engine: Engine, router: Router, texts: list[str]) -> tuple[list[list[int]], list[list[int]], int]:
    from culturemanager.backends.target import encode, option_ids

    prefix, suffix = split_router_template(router.template, router.options)
    # a leading space makes each option a natural continuation of "Culture:"
    opts = option_ids(engine.tok, [" " + o for o in router.options])
    reserve = max(len(o) for o in opts)
    encoded = [encode(engine.tok, prefix, t, suffix, router.max_length - reserve) for t in texts]
    return [e.ids for e in encoded], opts, sum(e.truncated for e in encoded)
