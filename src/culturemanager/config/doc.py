"""The config reference, generated from the pydantic models in config/__init__.py (and the bench's own table in
bench/config.py): every field with its type, range, default and docstring. Generated, so it cannot drift from
what `load_config` and `load_bench_config` accept.

    culturemanager config --explain                 every field, its type, range, default and docstring
    culturemanager config CONFIG.toml --explain     the same, with this config's value where it differs
    culturemanager config CONFIG.toml               the resolved config as JSON (every default filled in)

Run: `python -m culturemanager.config.doc` prints the reference.
"""

from __future__ import annotations

import json
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from culturemanager.bench.config import BenchTable
from culturemanager.config import Config


def explain(cfg: Config | None = None) -> str:
    """The reference of every field of a run config, then the bench config's own table (its other tables are the
    run's); with `cfg`, each value of that config that differs from the default."""
    return "\n".join(field_lines(Config, "", cfg) + field_lines(BenchTable, "", None))


def field_lines(model: type[BaseModel], prefix: str, values: BaseModel | None) -> list[str]:
    out: list[str] = []
    for name, f in model.model_fields.items():
        key = prefix + name
        value = getattr(values, name) if values is not None else None
        sub = section_of(f.annotation)
        if sub is not None:
            cls, many = sub
            out.append(f"{key}: {'list of tables' if many else 'table'}{' (required)' if f.is_required() else ''}")
            out += doc_lines(f)
            # a list's items are described once, without values
            out += field_lines(cls, key + ("[]." if many else "."), None if many else value)
            continue
        line = f"{key}: {type_text(f.annotation)}{bounds_text(f)}"
        line += " (required)" if f.is_required() else f" = {value_text(f.get_default(call_default_factory=True))}"
        if values is not None and not f.is_required() and value != f.get_default(call_default_factory=True):
            line += f"; here: {value_text(value)}"
        out.append(line)
        out += doc_lines(f)
    return out


def section_of(annotation: Any) -> tuple[type[BaseModel], bool] | None:
    """(section class, is a list) for a field holding a table or a list of tables; None for a leaf."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is list and args and isinstance(args[0], type) \
            and issubclass(args[0], BaseModel):
        return args[0], True
    return None


def type_text(t: Any) -> str:
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_text(a) for a in args)
    if origin is list:
        return f"list of {type_text(args[0])}" if args else "list"
    if origin is dict:
        return f"table of {type_text(args[1])}" if args else "table"
    if t is type(None):
        return "none"
    if t is Path:
        return "path"
    return getattr(t, "__name__", str(t))


def bounds_text(f: FieldInfo) -> str:
    signs = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "length >=", "pattern": "matching"}
    parts = [f"{sign} {getattr(m, attr)}" for m in f.metadata for attr, sign in signs.items()
             if getattr(m, attr, None) is not None]
    return f" ({', '.join(parts)})" if parts else ""


def value_text(v: Any) -> str:
    if isinstance(v, BaseModel):
        v = v.model_dump(mode="json")
    return json.dumps(v, ensure_ascii=False, default=str)


def doc_lines(f: FieldInfo) -> list[str]:
    text = " ".join((f.description or "").split())
    return textwrap.wrap(text, 110, initial_indent="    ", subsequent_indent="    ") if text else []


if __name__ == "__main__":
    print(explain())
