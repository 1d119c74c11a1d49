"""The run directory: fixed file names, the manifest, and what each stage reads and writes.

    <run>/
      config.json          resolved config           versions.json   library versions
      manifest.json        stage status and counts   calls.jsonl     every LLM call (cached or not)
      cache/llm.jsonl      LLM answers by request    index/          BM25 (+ dense/) index of the local corpus
      cache/pages/         fetched web pages by URL
      queries.jsonl        search queries            materials.jsonl retrieved documents (+ summaries)
      samples/<culture>.jsonl  kept synthetic samples  samples/dropped.jsonl  dropped ones, with a reason
      samples/unchecked/<culture>.jsonl  the kept samples before selection and the judge (when either is on)
      adapters/<culture>/  PEFT LoRA folder + culturemanager.json + validation.jsonl (its held-out samples)
      router.json          router settings           router.npz      the fitted embedding router's arrays
      predictions.jsonl    routed predictions
      metrics.json         prediction counts (and scores when inputs carry gold labels)

Run: `python -m culturemanager.rundir RUN_DIR` prints the manifest.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from culturemanager.errors import MissingStageInput
from culturemanager.records import RecordFileError, read_json, write_json

STAGES = ("queries", "search", "synthesize", "train", "route", "predict")


@dataclass(frozen=True)
class RunDir:
    root: Path

    config = property(lambda self: self.root / "config.json")
    versions = property(lambda self: self.root / "versions.json")
    manifest = property(lambda self: self.root / "manifest.json")
    calls = property(lambda self: self.root / "calls.jsonl")
    llm_cache = property(lambda self: self.root / "cache" / "llm.jsonl")
    index = property(lambda self: self.root / "index")
    queries = property(lambda self: self.root / "queries.jsonl")
    materials = property(lambda self: self.root / "materials.jsonl")
    samples_dir = property(lambda self: self.root / "samples")
    dropped = property(lambda self: self.root / "samples" / "dropped.jsonl")
    adapters_dir = property(lambda self: self.root / "adapters")
    router = property(lambda self: self.root / "router.json")
    router_model = property(lambda self: self.root / "router.npz")
    predictions = property(lambda self: self.root / "predictions.jsonl")
    metrics = property(lambda self: self.root / "metrics.json")

    def need(self, path: Path, stage: str) -> Path:
        """A stage's input, or a clear error saying which stage makes it."""
        if not path.exists():
            raise MissingStageInput(f"{path} not found: run `culturemanager {stage} CONFIG` first")
        return path

    def samples(self, culture: str) -> Path:
        return self.samples_dir / f"{safe_name(culture)}.jsonl"

    def unchecked(self, culture: str) -> Path:
        """A culture's samples before `synthesis.select` and `.judge` (written only when one of them is on): what
        the bench's "no selection" ablation trains on."""
        return self.samples_dir / "unchecked" / f"{safe_name(culture)}.jsonl"

    def adapter(self, culture: str) -> Path:
        return self.adapters_dir / safe_name(culture)

    def lock(self, name: str) -> Path:
        """The lock file of one shared thing (the manifest, an adapter): `.locks/<name>.lock`."""
        return self.root / ".locks" / f"{safe_name(name)}.lock"

    def read_manifest(self) -> dict[str, Any]:
        """The manifest; a file that is not one is a `RecordFileError` naming it (never overwritten blindly)."""
        if not self.manifest.exists():
            return {"stages": {}}
        m = read_json(self.manifest)
        if not isinstance(m, dict) or not isinstance(m.get("stages"), dict):
            raise RecordFileError(f"{self.manifest}: not a manifest (an object with \"stages\"): delete it, "
                                  f"the next stage writes a new one")
        return m

    def record_stage(self, stage: str, counts: dict[str, Any], seconds: float,
                     config_sha256: str | None = None) -> None:
        """Record one stage's entry. Read afresh and written under a lock, so processes working on one run
        directory side by side (training shards) never drop each other's entries."""
        with file_lock(self.lock("manifest")):
            m = self.read_manifest()
            m["stages"][stage] = {"status": "done", "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                  "seconds": round(seconds, 2), "config_sha256": config_sha256, "counts": counts}
            write_json(self.manifest, m)


@contextmanager
def file_lock(path: Path, blocking: bool = True) -> Iterator[bool]:
    """An exclusive advisory lock (flock) on `path` for the block; yields whether it was acquired (always, when
    blocking). The operating system releases it when its process dies, so a killed run never leaves a stale
    lock behind."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def shard_of(spec: str | None) -> tuple[int, int]:
    """"I/N" (0 <= I < N) -> (I, N); None -> (0, 1), everything."""
    if spec is None:
        return 0, 1
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard expects I/N (e.g. 0/4), got {spec!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {spec}: I must be in 0..N-1")
    return i, n


def safe_name(name: str) -> str:
    """A culture name as a folder name: keep letters, digits, '-', '_'; anything else becomes '_'."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "_"


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("culturemanager", "torch", "transformers", "peft", "bm25s", "openai", "llama_cpp_python"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def main() -> None:
    print(json.dumps(RunDir(Path(sys.argv[1])).read_manifest(), indent=2))


if __name__ == "__main__":
    main()
