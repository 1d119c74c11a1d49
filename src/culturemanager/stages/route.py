"""Stage 6: the culture router, the paper's prompt router on the (adapter-free) target model.

The router prompt shows the text, the run's cultures and "Others"; the choice is the option with the highest
length-normalized log-likelihood (never free text), so it is always a valid option. "Others" (or a culture
that got no adapter) means the base model answers.

Entry points: `write_router(cfg, rd)` writes `router.json`; `route(model, tok, router, texts)` decides.
Run: `culturemanager route CONFIG.toml` writes router.json; `culturemanager predict` routes every input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from culturemanager.backends.target import BASE, encode, option_ids, score_options
from culturemanager.config import Config
from culturemanager.prompts import split_router_template
from culturemanager.records import write_json
from culturemanager.rundir import RunDir

OTHERS = "Others"


@dataclass(frozen=True)
class Router:
    enabled: bool
    options: list[str]  # cultures (+ "Others")
    template: str
    adapters: dict[str, str | None]  # culture -> adapter folder (None: base model)
    max_length: int
    calibrate: bool = False  # subtract each option's score on content-free texts (contextual calibration)

    def adapter_for(self, culture: str) -> str:
        return culture if self.adapters.get(culture) else BASE


def write_router(cfg: Config, rd: RunDir) -> Router:
    options = [c.name for c in cfg.cultures] + ([OTHERS] if cfg.router.others else [])
    adapters = {c.name: str(rd.adapter(c.name)) if (rd.adapter(c.name) / "adapter_config.json").exists()
                else None for c in cfg.cultures}
    router = Router(cfg.router.enabled, options, cfg.router.template, adapters, cfg.target.max_length,
                    cfg.router.calibrate)
    write_json(rd.router, router.__dict__)
    return router


def read_router(rd: RunDir) -> Router:
    return Router(**json.loads(rd.need(rd.router, "route").read_text(encoding="utf-8")))


def route(model, tok, router: Router, texts: list[str], batch_size: int = 8
          ) -> tuple[list[str], list[dict[str, float]], int]:
    """The chosen culture per text, every option's score, and how many texts were truncated."""
    prefix, suffix = split_router_template(router.template, router.options)
    encoded = [encode(tok, prefix, t, suffix, router.max_length - 8) for t in texts]
    # a leading space makes each option a natural continuation of "Culture:"
    opts = option_ids(tok, [" " + o for o in router.options])
    adapters = [BASE] * len(texts) if hasattr(model, "peft_config") else None
    scores = score_options(model, tok, [e.ids for e in encoded], opts, adapters, batch_size, normalize=True)
    if router.calibrate:
        scores = scores - prior(model, tok, router, prefix, suffix, opts)
    choice = [router.options[int(i)] for i in scores.argmax(1)]
    table = [{o: round(float(v), 4) for o, v in zip(router.options, row)} for row in scores]
    return choice, table, sum(e.truncated for e in encoded)


CONTENT_FREE = ("", "N/A", "...")


def prior(model, tok, router: Router, prefix: str, suffix: str, opts: list[list[int]]):
    """The router's preference among the options when the text says nothing (contextual calibration, Zhao et al.
    2021): a small model's choice leans on option order and name frequency; subtracting its mean score on
    content-free texts removes that lean, leaving what the text itself contributes."""
    ids = [encode(tok, prefix, t, suffix, router.max_length).ids for t in CONTENT_FREE]
    adapters = [BASE] * len(ids) if hasattr(model, "peft_config") else None
    return score_options(model, tok, ids, opts, adapters, len(ids), normalize=True).mean(0, keepdim=True)
