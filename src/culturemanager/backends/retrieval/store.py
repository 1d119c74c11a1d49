"""Index folders on disk (the BM25 index, the dense embeddings): their meta.json, and atomic replacement.

A retriever saves an index by writing a complete temporary sibling folder and swapping it in (`swap_in`), so a
killed run never leaves half an index; `read_meta` reads a folder's meta.json, or None when there is none or it
cannot be read (the index is then rebuilt).

Run: imported by bm25.py and dense.py; no entry point of its own.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


def read_meta(folder: Path) -> dict | None:
    try:
        return json.loads((Path(folder) / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def temp_sibling(folder: Path) -> Path:
    """A fresh, empty temporary folder beside `folder` to write the new index into."""
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def swap_in(tmp: Path, folder: Path, keep: tuple[str, ...] = ()) -> None:
    """Replace `folder` by the complete `tmp`; the entries named in `keep` move over from the old folder (an index
    nested in another, such as the dense embeddings inside the BM25 folder, checks its own fingerprint)."""
    old = folder.with_name(f"{folder.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
        for name in keep:
            if (old / name).exists() and not (tmp / name).exists():
                (old / name).rename(tmp / name)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
