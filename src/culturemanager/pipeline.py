"""The whole method, stage after stage, over one run directory.

`run(cfg, stages)` first checks that the models the stages need can be loaded and that every file they will read
reads cleanly (preflight.py: a bad row stops the run before its first LLM call), then runs each
stage in order; each stage reads its inputs from the run directory, so any stage can be re-run alone
(`culturemanager search CONFIG.toml`). Nothing finished is redone: LLM answers come from the cache, adapters
whose data did not change are reused. A finished stage records its status, time and counts in the manifest and
writes the resolved config and library versions; a stage that fails (`errors.StageFailed`, any exception)
writes nothing of that, so a failed re-run leaves the run directory as it was (only `calls.jsonl`, the call
log, grows).

Run: `culturemanager run CONFIG.toml` (or `python -m culturemanager run CONFIG.toml`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from culturemanager.backends.llm import CachedLLM, make_backend
from culturemanager.config import Config, DataFile, dump_config
from culturemanager.preflight import preflight
from culturemanager.records import write_json
from culturemanager.rundir import STAGES, RunDir, library_versions

log = logging.getLogger(__name__)


class Run:
    """One run directory with its lazily created LLM (a run that only trains never loads a generator)."""

    def __init__(self, cfg: Config, progress: bool = True, predict_files: list[DataFile] | None = None,
                 shard: tuple[int, int] = (0, 1)):
        """`predict_files`: what `culturemanager predict --input FILE` predicts instead of `predict.inputs`;
        `shard` (I, N): train only the I-th of N shares of the adapters (`culturemanager train --shard I/N`)."""
        self.cfg, self.progress, self.predict_files, self.shard = cfg, progress, predict_files, shard
        self.rd = RunDir(cfg.run.dir)
        self._llm: CachedLLM | None = None
        self.rd.root.mkdir(parents=True, exist_ok=True)

    def stage_key(self, name: str) -> str:
        """The stage's manifest entry: "train@1/4" for a training shard, so shards never overwrite each other."""
        i, n = self.shard
        return f"{name}@{i}/{n}" if n > 1 and name == "train" else name

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
        self.rd.read_manifest()  # a corrupt manifest stops the stage before it does any work
        counts = STAGE_FUNCS[name](self)
        if self._llm:
            counts["llm"] = {k: v - before.get(k, 0) for k, v in self._llm.counts.items()}
            if self._llm.unreadable_cache_lines:
                counts["llm"]["unreadable_cache_lines"] = self._llm.unreadable_cache_lines
        # written only now: a stage that failed leaves the description of the earlier run's outputs as it was;
        # each stage's entry names the config it ran with, so stages re-run under other settings show as such
        resolved = dump_config(self.cfg)
        resolved["run"]["dir"] = "."  # the folder holding config.json, wherever the run directory is copied to
        write_json(self.rd.config, resolved)
        write_json(self.rd.versions, library_versions())
        self.rd.record_stage(self.stage_key(name), counts, time.time() - t0, config_sha256=config_digest(resolved))
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
    return train(r.cfg, r.rd, r.progress, r.shard)


def _route(r: Run) -> dict:
    from culturemanager.stages.route import write_router
    router = write_router(r.cfg, r.rd)
    counts = {"kind": router.kind, "options": router.options,
              "adapters": {c: bool(p) for c, p in router.adapters.items()}, "enabled": router.enabled}
    if router.fit:  # the embedding router: its route examples and what its held-out fit measured
        report = router.fit["report"]
        counts.update(examples=router.fit["examples"], fitted=router.fit["fitted"],
                      **{k: report[k] for k in ("weight", "heldout_kept", "heldout_left_out_to_others") if k in report})
    return counts


def _predict(r: Run) -> dict:
    if not r.cfg.predict.inputs and not r.predict_files:
        log.info("no predict.inputs in the config: prediction skipped")
        return {"skipped": "no predict.inputs"}
    from culturemanager.stages.predict import predict
    return predict(r.cfg, r.rd, r.predict_files, progress=r.progress)[1]


def config_digest(resolved: dict) -> str:
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


STAGE_FUNCS: dict[str, Callable[[Run], dict]] = {
    "queries": _queries, "search": _search, "synthesize": _synthesize, "train": _train, "route": _route,
    "predict": _predict,
}
assert tuple(STAGE_FUNCS) == STAGES


def run(cfg: Config, stages: list[str] | None = None, progress: bool = True, shard: tuple[int, int] = (0, 1)
        ) -> dict[str, dict]:
    """The stages (default: all) in order, after checking that the models they need are here and that the files
    they read are sound (preflight.py); a generator server
    the run started is stopped at the end, whatever happened."""
    stages = list(stages or STAGES)
    preflight(cfg, stages)
    r = Run(cfg, progress, shard=shard)
    try:
        return {name: r.stage(name) for name in stages}
    finally:
        r.close()
