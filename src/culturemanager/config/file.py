"""Reading a TOML config file into the raw dict `config/__init__.py` validates: `--set` overrides, paths resolved
against the file's folder, and validation errors as messages that name the key and the file.

Shared by the run config (`config.load_config`), a finished run's config.json (`config.load_run_config`, which
`serve` reads) and the benchmark's config (`bench.config.load_bench_config`); it knows the raw dict's shape only
through the path keys below, and imports nothing of the package but `errors`.

Run: imported by config/__init__.py; no entry point of its own.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from culturemanager.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def read_toml(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise ConfigError(f"{path} is a folder, not a config file: name the .toml file (e.g. {path / 'run.toml'})")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}): a config is a TOML text file"
                          ) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror})") from None


def apply_override(raw: dict[str, Any], item: str) -> None:
    """`a.b=c` sets raw["a"]["b"] (`tasks.0.label=x`: an index into a list); the value is parsed as TOML
    when it can be, else kept a string."""
    if "=" not in item:
        raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
    key, value = item.split("=", 1)
    parts = key.strip().split(".")
    node: Any = raw
    for p in parts[:-1]:
        if isinstance(node, list):
            if not p.isdigit() or int(p) >= len(node):
                raise ConfigError(f"--set {key}: {p!r} is not an index of a list of {len(node)}")
            node = node[int(p)]
        elif isinstance(node, dict):
            node = node.setdefault(p, {})
        else:
            raise ConfigError(f"--set {key}: {p!r} is not a table")
    if not isinstance(node, dict):
        raise ConfigError(f"--set {key}: {parts[-2] if len(parts) > 1 else key!r} is not a table")
    node[parts[-1]] = _parse_value(value.strip())


def _parse_value(value: str) -> Any:
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value


def format_validation_error(e: ValidationError, path: Path) -> str:
    lines = [f"{path}: invalid config"]
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  unknown key `{key}`")
        elif err["type"] == "missing":
            lines.append(f"  missing key `{key}`")
        else:
            lines.append(f"  `{key}`: {err['msg']}" + (f" (got {err['input']!r})" if _short(err.get("input")) else ""))
    return "\n".join(lines)


def _short(value: Any) -> bool:
    return isinstance(value, (int, float, str)) and len(repr(value)) <= 60


_PATH_KEYS = {("run", "dir"), ("search", "index_dir")}
_MODEL_KEYS = {("generator", "model"), ("target", "model")}


def load_toml_config(path: str | Path, model: type[M], overrides: list[str] | None = None,
                     prepare: Callable[[dict[str, Any], Path], None] | None = None,
                     path_keys: tuple[tuple[str, str], ...] = ()) -> M:
    """A TOML config file (run configs, bench configs): read, `prepare` the raw table (e.g. --quick), then
    `load_raw`. Any problem is a ConfigError naming the file (and the key)."""
    path = Path(path)
    raw = read_toml(path)
    if prepare is not None:
        prepare(raw, path)
    return load_raw(raw, model, path, overrides, path_keys)


def load_raw(raw: dict[str, Any], model: type[M], source: Path, overrides: list[str] | None = None,
             path_keys: tuple[tuple[str, str], ...] = ()) -> M:
    """The one loader of a config's table, whatever file it was read from (a TOML config, or a finished run's
    config.json that `serve` reads: config.load_run_config): `--set` overrides, relative paths resolved against
    the file's folder (plus `path_keys`), then `model`'s checks; any problem is a ConfigError naming `source` and
    the key."""
    for item in overrides or []:
        apply_override(raw, item)
    resolve_paths(raw, source.parent.resolve(), path_keys)
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def resolve_paths(raw: dict[str, Any], base: Path, extra: tuple[tuple[str, str], ...] = ()) -> None:
    """Make the file's relative paths relative to the file's folder, not to where the command runs;
    `$VAR` / `${VAR}` and `~` are expanded (e.g. `${CULTUREMANAGER_DATA}/tasks.json`). A model setting is a
    path when it exists there or looks like one (`./`, `../`, `~`, `.gguf`); otherwise it stays a packaged
    short name or a hub id."""
    def fix(p: Any) -> Any:
        if not isinstance(p, str):
            return p
        expanded = os.path.expandvars(os.path.expanduser(p))
        if "$" in expanded:
            missing = re.findall(r"\$\{?(\w+)", expanded)
            raise ConfigError(f"path {p!r} uses the environment variable {missing[0]}, which is not set")
        return expanded if Path(expanded).is_absolute() else str(base / expanded)

    for sect, key in (*_PATH_KEYS, *extra):
        if isinstance(raw.get(sect), dict) and isinstance(raw[sect].get(key), str):
            raw[sect][key] = fix(raw[sect][key])
    for sect, key in _MODEL_KEYS:
        if isinstance(raw.get(sect), dict) and isinstance(raw[sect].get(key), str):
            name = raw[sect][key]
            if looks_like_path(name) or (base / name).exists():
                raw[sect][key] = fix(name)
    # synthesis.ratio_check.model: "target", or a model named like [target]'s
    ratio = raw["synthesis"].get("ratio_check") if isinstance(raw.get("synthesis"), dict) else None
    if isinstance(ratio, dict) and isinstance(ratio.get("model"), str) and ratio["model"] != "target" \
            and (looks_like_path(ratio["model"]) or (base / ratio["model"]).exists()):
        ratio["model"] = fix(ratio["model"])
    if isinstance(raw.get("search"), dict) and isinstance(raw["search"].get("corpus"), list):
        raw["search"]["corpus"] = [fix(p) for p in raw["search"]["corpus"]]
    fetch = raw.get("search", {}).get("fetch") if isinstance(raw.get("search"), dict) else None
    if isinstance(fetch, dict) and "cache_dir" in fetch:
        fetch["cache_dir"] = fix(fetch["cache_dir"])
    files: list[Any] = []
    for t in raw.get("tasks", []) if isinstance(raw.get("tasks"), list) else []:
        if isinstance(t, dict):
            files += _as_list(t, "demonstrations") + _as_list(t, "evaluation")
    if isinstance(raw.get("predict"), dict):
        files += _as_list(raw["predict"], "inputs")
    for f in files:
        if isinstance(f, dict) and "path" in f:
            f["path"] = fix(f["path"])


def looks_like_path(name: str) -> bool:
    """A model setting written as a path (not a hub id like "google/gemma-3-270m", not a short name)."""
    return name.startswith(("./", "../", "~", "/", "$", ".\\", "..\\")) or name.endswith(".gguf")


def _as_list(table: dict[str, Any], key: str) -> list[Any]:
    """Allow a bare path string (or list of strings) where a list of DataFile tables is expected."""
    v = table.get(key)
    if v is None:
        return []
    if isinstance(v, (str, dict)):
        v = [v]
    v = [{"path": x} if isinstance(x, str) else x for x in v]
    table[key] = v
    return v
