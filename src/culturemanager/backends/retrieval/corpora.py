"""The offline corpora of the shared data folder, as retrieval passages.

Two sources, both in English (see ../shared/data/README.md):
- narratives/<culture>.txt: Wikipedia "Culture of X" articles, cut by `retrieve.split_passages`;
- factbook/<region>/<gec>.json: CIA World Factbook country profiles. Only the sections that say something
  about a culture are kept (background, nationality, ethnic groups, languages, religions, demographics,
  government basics, national symbols, broadcast media); HTML is stripped and empty fields are skipped.
  Every factbook passage starts with the country's name, because BM25 sees the passage text only and
  "Roman Catholic 58.2%" alone does not say which country it is about.

Entry point: `load_offline_corpora(data_dir, which=("narratives", "factbook")) -> list[Document]`, in a
fixed order with unique ids. The data folder is found through CULTUREMANAGER_DATA (`data_dir()`).

Run: `python -m culturemanager.backends.retrieval.corpora OUT.jsonl [--which narratives factbook]`
writes the passages as a
JSONL corpus file that `search.corpus` (and `retrieve.load_corpus`) reads as it is.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from culturemanager.backends.retrieval.corpus import split_passages
from culturemanager.backends.retrieval.pagetext import html_to_text
from culturemanager.records import Document, write_jsonl

# Folders of the factbook that hold no country: the category list, the oceans and the world as a whole.
FACTBOOK_SKIP_FOLDERS = frozenset({"meta", "oceans", "world"})

# (passage section, factbook category, fields). A section of one field is titled by that field; a section of
# several fields lists each as "Field: value". Order here is the passage order within a country.
FACTBOOK_SECTIONS: list[tuple[str, str, tuple[str, ...]]] = [
    ("Background", "Introduction", ("Background",)),
    ("Nationality", "People and Society", ("Nationality",)),
    ("Ethnic groups", "People and Society", ("Ethnic groups",)),
    ("Languages", "People and Society", ("Languages",)),
    ("Religions", "People and Society", ("Religions",)),
    ("Demographics", "People and Society", (
        "Population", "Age structure", "Median age", "Population distribution", "Urbanization",
        "Major urban areas - population", "Total fertility rate", "Mother's mean age at first birth",
        "Currently married women (ages 15-49)", "Literacy")),
    ("Government", "Government", ("Country name", "Government type", "Capital", "Legal system", "Independence")),
    ("National identity", "Government", (
        "National holiday", "National symbol(s)", "National color(s)", "National anthem(s)", "National heritage")),
    ("Broadcast media", "Communications", ("Broadcast media",)),
]
# Sub-fields that are coordinates and clock settings, not culture.
FACTBOOK_SKIP_KEYS = frozenset({"geographic coordinates", "time difference", "daylight saving time",
                                "time zone note"})


def load_offline_corpora(data_dir: Path, which: tuple[str, ...] | list[str] = ("narratives", "factbook")
                         ) -> list[Document]:
    """Passages of the named corpora of `data_dir`, in the order of `which`. Ids are unique."""
    unknown = [name for name in which if name not in LOADERS]
    if unknown:
        raise ValueError(f"unknown corpus {unknown[0]!r} (known: {', '.join(LOADERS)})")
    docs = [d for name in which for d in LOADERS[name](Path(data_dir) / name)]
    seen: set[str] = set()
    for d in docs:
        if d.id in seen:  # would break hybrid fusion and provenance, so it is a bug here, not a warning
            raise ValueError(f"duplicate passage id {d.id!r}")
        seen.add(d.id)
    return docs


def data_dir() -> Path:
    """The shared data folder, from the CULTUREMANAGER_DATA environment variable."""
    value = os.environ.get("CULTUREMANAGER_DATA")
    if not value:
        raise ValueError("set CULTUREMANAGER_DATA to the shared data folder (e.g. ../shared/data)")
    return Path(value)


# ---------------------------------------------------------------------------------------------- narratives

def load_narratives(folder: Path) -> list[Document]:
    """One article per file: title "Culture of <File stem>", source "narratives/<file>"."""
    docs = []
    for f in _files(folder, "*.txt"):
        source = f"narratives/{f.name}"
        title = f"Culture of {f.stem.capitalize()}"
        text = f.read_text(encoding="utf-8-sig")
        docs += [Document(id=f"{source}#{n}", title=title, text=p, source=source, language="en")
                 for n, p in enumerate(split_passages(text))]
    return docs


# ---------------------------------------------------------------------------------------------- factbook

def load_factbook(folder: Path, gecs: set[str] | None = None) -> list[Document]:
    """Passages of every country profile under `folder` (or only the GEC codes in `gecs`), sorted by path."""
    docs = []
    for f in _files(folder, "*/*.json"):
        if f.parent.name in FACTBOOK_SKIP_FOLDERS or (gecs is not None and f.stem not in gecs):
            continue
        docs += factbook_passages(json.loads(f.read_text(encoding="utf-8")),
                                  f"factbook/{f.relative_to(folder).as_posix()}", fallback_name=f.stem)
    return docs


def factbook_passages(profile: dict[str, Any], source: str, fallback_name: str = "") -> list[Document]:
    """Passages of one country profile. Title "<Country>: <section>"; source "<source>#<section>"."""
    country = country_name(profile) or fallback_name
    docs = []
    for section, category, fields in FACTBOOK_SECTIONS:
        group = profile.get(category) or {}
        values = [(name, flatten(group.get(name), name)) for name in fields]
        values = [(name, v) for name, v in values if v]
        if not values:
            continue
        body = values[0][1] if len(fields) == 1 else "\n\n".join(f"{name}: {v}" for name, v in values)
        src = f"{source}#{section}"
        docs += [Document(id=f"{src}#{n}", title=f"{country}: {section}", text=f"{country} — {section}\n{p}",
                          source=src, language="en")
                 for n, p in enumerate(split_passages(body))]
    return docs


def country_name(profile: dict[str, Any]) -> str:
    names = (profile.get("Government") or {}).get("Country name") or {}
    for key in ("conventional short form", "conventional long form"):
        name = clean_html(str((names.get(key) or {}).get("text", "")))
        if name and name.casefold() != "none":
            return name
    return ""


def flatten(value: Any, name: str = "") -> str:
    """A factbook field as text: a leaf {"text": ...} gives its text; a field of sub-fields gives
    "sub-field: text; ..." (sub-fields "text", "note" and one named like the field give their text alone:
    notes already start with "note:")."""
    if value is None:
        return ""
    if not isinstance(value, dict):
        return clean_html(str(value))
    parts = []
    for key, sub in value.items():
        text = flatten(sub, key) if key not in FACTBOOK_SKIP_KEYS else ""
        if text:
            parts.append(text if key in ("text", "note", name) else f"{key}: {text}")
    # a lone value keeps its paragraphs (a long background is cut at them); joined parts become one line
    return parts[0] if len(parts) == 1 else "; ".join(" ".join(p.split()) for p in parts)


def clean_html(value: str) -> str:
    """Visible text of an HTML fragment (tags dropped, entities decoded); paragraphs stay blank-line
    separated so that split_passages can cut a long background at paragraph ends."""
    return html_to_text(value)[1].strip()


def _files(folder: Path, pattern: str) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"corpus folder not found: {folder}")
    return sorted(folder.glob(pattern), key=lambda f: f.relative_to(folder).as_posix())


LOADERS: dict[str, Callable[[Path], list[Document]]] = {"narratives": load_narratives, "factbook": load_factbook}


# ---------------------------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m culturemanager.backends.retrieval.corpora",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="JSONL file to write (one passage per line)")
    ap.add_argument("--which", nargs="+", default=list(LOADERS), choices=list(LOADERS))
    ap.add_argument("--data-dir", type=Path, help="default: $CULTUREMANAGER_DATA")
    args = ap.parse_args(argv)
    docs = load_offline_corpora(args.data_dir or data_dir(), args.which)
    n = write_jsonl(args.out, docs)
    print(f"wrote {n} passages to {args.out}")


if __name__ == "__main__":
    main()
