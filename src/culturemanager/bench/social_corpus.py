"""A per-culture corpus of real social-media posts, labels dropped: grounding that holds the phenomenon, offline.

What a search for "<task> in <culture> social media" returns is posts: insults, slurs, stereotypes and spam in the
culture's language and register. The shared data folder holds, beside the benchmark's ten task files, other
labelled social-media datasets of the same cultures (culturellm/<Folder>/<dataset>/*.jsonl). This turns them into
"pages" of posts (`posts_per_page` each, one JSONL line per page, the local corpus format of
backends/retrieval/corpus.py) under `<out>/<Culture>/<dataset>.jsonl`, so that `search.by_culture` keeps each
culture's queries on its own posts.

Nothing of the evaluation may reach it, so it leaves out, and counts in `<out>/manifest.json`:
- every benchmark task's file, and every other file in a benchmark file's dataset folder (one dataset relabelled:
  all of DETOXIS 2021, all of Bangla-Abusive-Comment-Dataset, Arabic MP);
- every file of which at least `max_shared` of the texts equal a benchmark input (a relabelling elsewhere);
- every post that the project's leakage definition (leakage.LeakIndex: equal after normalisation, or sharing an
  n-gram of `ngram` tokens) matches against any benchmark input, of any task and culture;
- repeated posts (several files of one dataset hold the same posts under other label sets), and rows whose text is
  not text. Labels, ids and every other field are dropped: a page holds the posts' text only.

Entry point: `build_social_corpus(data_dir, out_dir) -> manifest`.
Run: `python -m culturemanager.bench.social_corpus [DATA_DIR] [OUT_DIR]` (`make social-corpus`; default
$CULTUREMANAGER_DATA and runs/social-corpus).
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

from culturemanager.bench.tasks import load_tasks, read_task_rows
from culturemanager.records import json_objects, normalize_text
from culturemanager.text.leakage import LeakIndex

TEXT_FIELDS = ("tweet", "comment", "data", "text")  # the post's field in these files, the first one present
POSTS_PER_PAGE = 10
MAX_SHARED = 0.1
LEAKAGE_NGRAM = 8  # synthesis.leakage_ngram's default: the same definition the run applies to its samples


def build_social_corpus(data_dir: Path, out_dir: Path, posts_per_page: int = POSTS_PER_PAGE,
                        max_shared: float = MAX_SHARED, ngram: int = LEAKAGE_NGRAM) -> dict:
    """Write the pages of every culture of the benchmark (tasks.json) with other datasets, and the manifest."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    tf = load_tasks(data_dir / "tasks.json")
    bench_texts: list[str] = []
    task_files: set[str] = set()
    folders: dict[str, str] = {}  # source folder (culturellm/<Folder>) -> culture name of the benchmark
    for spec in tf.tasks:
        bench_texts += read_task_rows(spec, data_dir).texts
        task_files.add(Path(spec.file).as_posix())
        parts = Path(spec.file).parts
        folders[Path(*parts[:2]).as_posix()] = spec.culture
    protected = LeakIndex(bench_texts, ngram)
    dataset_dirs = {Path(f).parent.as_posix() for f in task_files}
    manifest: dict = {"posts_per_page": posts_per_page, "max_shared": max_shared, "leakage_ngram": ngram,
                      "benchmark_inputs": len(protected.exact), "cultures": {}, "left_out_files": {}}
    for folder, culture in sorted(folders.items()):
        seen: set[str] = set()
        summary = {"files": {}, "pages": 0, "posts": 0, "dropped": Counter()}
        for path in sorted((data_dir / folder).rglob("*.jsonl")):
            rel = path.relative_to(data_dir).as_posix()
            if "Finetune" in path.parts:  # the WVS survey's training sets, not posts
                continue
            reason = left_out(rel, task_files, dataset_dirs)
            posts = read_posts(path) if reason is None else []
            texts = [k for k in map(normalize_text, posts) if k.strip()]
            if reason is None and not texts:
                reason = "no posts (no row has a text field)"
            elif reason is None:
                shared = sum(k in protected.exact for k in texts) / len(texts)
                reason = f"shares {shared:.0%} of its texts with benchmark inputs" if shared >= max_shared else None
            if reason is not None:
                manifest["left_out_files"][rel] = reason
                continue
            kept, dropped = filter_posts(posts, protected, seen)
            summary["dropped"] += dropped
            pages = write_pages(out_dir / culture / f"{slug(path, data_dir / folder)}.jsonl", kept,
                                posts_per_page, rel) if kept else 0
            summary["files"][rel] = {"rows": len(posts), "posts": len(kept), "pages": pages, "dropped": dict(dropped)}
            summary["pages"] += pages
            summary["posts"] += len(kept)
        summary["dropped"] = dict(summary["dropped"])
        manifest["cultures"][culture] = summary
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
    return manifest


def left_out(rel: str, task_files: set[str], dataset_dirs: set[str]) -> str | None:
    if rel in task_files:
        return "a benchmark task's file"
    if Path(rel).parent.as_posix() in dataset_dirs:
        return "in a benchmark task's dataset folder"
    return None


def read_posts(path: Path) -> list[str]:
    """The post texts of a labelled JSONL file (its first field of TEXT_FIELDS); rows without one are skipped.
    A line that is not a JSON object is an error naming the file and line."""
    posts = []
    for _, obj in json_objects(path):
        text = next((obj[k] for k in TEXT_FIELDS if k in obj), None)
        posts.append(text.strip() if isinstance(text, str) else "")
    return posts


def filter_posts(posts: list[str], protected: LeakIndex, seen: set[str]) -> tuple[list[str], Counter]:
    """The posts that are text, not seen before in this culture and leak no benchmark input; drops by reason."""
    kept, dropped = [], Counter()
    for p in posts:
        key = normalize_text(p)
        if not key.strip():
            dropped["not_text"] += 1
        elif key in seen:
            dropped["duplicate"] += 1
        elif protected.leaks(p):
            dropped["leaks_evaluation"] += 1
        else:
            seen.add(key)
            kept.append(p)
    return kept, dropped


def write_pages(path: Path, posts: list[str], per_page: int, source: str) -> int:
    """One JSONL document per `per_page` posts, separated by blank lines (the passage splitter's paragraphs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    name = Path(source).parent.name
    with path.open("w", encoding="utf-8") as f:
        for n, start in enumerate(range(0, len(posts), per_page), 1):
            text = "\n\n".join(" ".join(p.split()) for p in posts[start:start + per_page])
            f.write(json.dumps({"id": f"{path.stem}-{n}", "title": f"{name} — social media posts, page {n}",
                                "text": text, "source": source}, ensure_ascii=False) + "\n")
    return -(-len(posts) // per_page)


def slug(path: Path, root: Path) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", path.relative_to(root).with_suffix("").as_posix()).strip("-")


def main() -> None:
    import os

    data = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(os.environ.get("CULTUREMANAGER_DATA", "../shared/data"))
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("runs/social-corpus")
    manifest = build_social_corpus(data, out)
    for culture, s in manifest["cultures"].items():
        print(f"{culture}: {s['posts']} posts in {s['pages']} pages from {len(s['files'])} files; "
              f"dropped {s['dropped']}")
    for rel, why in manifest["left_out_files"].items():
        print(f"  left out {rel}: {why}")
    print(f"wrote {out}/<culture>/*.jsonl and {out}/manifest.json")


if __name__ == "__main__":
    main()
