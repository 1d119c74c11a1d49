"""The whole method, stage after stage, over one run directory.

`run(cfg, stages)` writes the resolved config and library versions, opens the LLM cache and call log, and
runs each stage in order; each stage reads its inputs from the run directory, so any stage can be re-run alone
(`culturemanager search CONFIG.toml`). Nothing finished is redone: LLM answers come from the cache, adapters
whose data did not change are reused. The manifest records each stage's status, time and counts.

Run: `culturemanager run CONFIG.toml` (or `python -m culturemanager run CONFIG.toml`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from culturemanager.backends.llm import CachedLLM, make_backend
from culturemanager.config import Config, dump_config
from culturemanager.records import write_json
from culturemanager.rundir import STAGES, RunDir, library_versions

log = logging.getLogger(__name__)


class Run:
    """One run directory with its lazily created LLM (a run that only trains never loads a generator)."""

    def __init__(self, cfg: Config, progress: bool = True):
        self.cfg, self.progress = cfg, progress
        self.rd = RunDir(cfg.run.dir)
        self._llm: CachedLLM | None = None
        self.rd.root.mkdir(parents=True, exist_ok=True)
        write_json(self.rd.config, dump_config(cfg))
        write_json(self.rd.versions, library_versions())

    @property
    def llm(self) -> CachedLLM:
        if self._llm is None:
            self._llm = CachedLLM(make_backend(self.cfg.generator), self.rd.llm_cache, self.rd.calls,
                                  progress=self.progress)
        return self._llm

    def close(self) -> None:
        """Stop what the generator backend started (llama_server's process); a later stage starts it again."""
        close = getattr(self._llm.backend, "close", None) if self._llm else None
        if close is not None:
            close()

    def stage(self, name: str) -> dict[str, Any]:
        t0 = time.time()
        before = dict(self._llm.counts) if self._llm else {}
        counts = STAGE_FUNCS[name](self)
        if self._llm:
            counts["llm"] = {k: v - before.get(k, 0) for k, v in self._llm.counts.items()}
        self.rd.record_stage(name, counts, time.time() - t0)
        log.info("stage %s done in %.1fs", name, time.time() - t0)
        return counts


def _queries(r: Run) -> dict:
    from culturemanager.stages.queries import generate_queries
    return generate_queries(r.cfg, r.rd, r.llm)[1]


def _search(r: Run) -> dict:
    from culturemanager.stages.search import search
    return search(r.cfg, r.rd, r.llm)[1]


def _synthesize(r: Run) -> dict:
    from culturemanager.stages.synthesize import synthesize
    return synthesize(r.cfg, r.rd, r.llm)[1]


def _train(r: Run) -> dict:
    from culturemanager.stages.train import train
    return train(r.cfg, r.rd, r.progress)


def _route(r: Run) -> dict:
    from culturemanager.stages.route import write_router
    router = write_router(r.cfg, r.rd)
    return {"options": router.options, "adapters": {c: bool(p) for c, p in router.adapters.items()},
            "enabled": router.enabled}


def _predict(r: Run) -> dict:
    if not r.cfg.predict.inputs:
        log.info("no predict.inputs in the config: prediction skipped")
        return {"skipped": "no predict.inputs"}
    from culturemanager.stages.predict import predict
    return predict(r.cfg, r.rd, progress=r.progress)[1]


STAGE_FUNCS: dict[str, Callable[[Run], dict]] = {
    "queries": _queries, "search": _search, "synthesize": _synthesize, "train": _train, "route": _route,
    "predict": _predict,
}
assert tuple(STAGE_FUNCS) == STAGES


def run(cfg: Config, stages: list[str] | None = None, progress: bool = True) -> dict[str, dict]:
    r = Run(cfg, progress)
    try:
        return {name: r.stage(name) for name in (stages or STAGES)}
    finally:
        r.close()
