"""The local corpus: files and folders of .txt, .md, .html and .jsonl documents, cut into passages.

`load_corpus(paths)` reads them (recursive, sorted, hidden files ignored) and cuts each text into passages of
about 600-1000 characters at paragraph and sentence ends (`split_passages`), so that every retriever (BM25,
dense, hybrid) indexes the same passages with stable ids ("<relative path>#<passage index>").

Run: `python -m culturemanager.backends.retrieval.corpus PATH [PATH ...]` prints the passage count per source.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections import Counter
from pathlib import Path

from culturemanager.backends.retrieval.pagetext import html_to_text
from culturemanager.records import Document

log = logging.getLogger(__name__)

PASSAGE_MIN_CHARS = 600
PASSAGE_MAX_CHARS = 1000
SUFFIXES = (".txt", ".md", ".html", ".htm", ".jsonl")


def load_corpus(paths: list[Path]) -> list[Document]:
    """Documents from files and folders (recursive, sorted). Hidden files are ignored; files of other
    types are skipped with a warning. Ids are "<relative path>#<passage index>"."""
    docs: list[Document] = []
    skipped: list[str] = []
    for root in map(Path, paths):
        if root.is_dir():
            files = sorted(f for f in root.rglob("*")
                           if f.is_file() and not any(p.startswith(".") for p in f.relative_to(root).parts))
            # with several folders, the folder's name keeps ids unique (two README.md files)
            prefix = f"{root.name}/" if len(paths) > 1 else ""
            named = [(f, prefix + f.relative_to(root).as_posix()) for f in files]
        elif root.is_file():
            named = [(root, root.name)]
        else:
            raise FileNotFoundError(f"corpus path not found: {root}")
        for f, source in named:
            suffix = f.suffix.lower()
            if suffix not in SUFFIXES:
                skipped.append(str(f))
            elif suffix == ".jsonl":
                docs += read_jsonl_documents(f, source)
            else:
                text = _read_text(f)
                html = suffix in (".html", ".htm")
                title, body = html_to_text(text) if html else (markdown_title(text), text)
                docs += [Document(id=f"{source}#{n}", title=title or f.stem, text=p, source=source)
                         for n, p in enumerate(split_passages(body))]
    if skipped:
        log.warning("skipped %d file(s) of unsupported type (want %s): %s", len(skipped), ", ".join(SUFFIXES),
                    ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
    return docs


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_jsonl_documents(path: Path, source: str) -> list[Document]:
    """One document per line: {"text": ..., "title"?, "url"?, "id"?, "source"?, "language"?}. Other keys
    are ignored; a line that is not such an object is an error naming the file and line."""
    docs = []
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({e})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise ValueError(f"{path}:{lineno}: expected an object with a string \"text\" field")
        fields = {key: obj[key] for key in ("title", "url", "source", "language") if obj.get(key) is not None}
        bad = [key for key, v in fields.items() if not isinstance(v, str)]
        if bad:
            raise ValueError(f"{path}:{lineno}: field {bad[0]!r} must be a string")
        if obj["text"].strip():
            doc_id = str(obj["id"]) if obj.get("id") is not None else f"{source}#{len(docs)}"
            docs.append(Document(**{"source": source, **fields, "id": doc_id, "text": obj["text"].strip()}))
    return docs


def markdown_title(text: str) -> str:
    m = re.search(r"^#\s+(.+?)\s*#*\s*$", text, flags=re.MULTILINE)
    return m.group(1) if m else ""


# Sentence ends: Latin/Arabic (؟) punctuation before whitespace; CJK full-width punctuation anywhere;
# the danda (।) ends Bengali and Hindi sentences.
_SENTENCE_END = re.compile(r"(?<=[.!?؟।])\s+|(?<=[。！？])\s*")


def split_passages(text: str, min_chars: int = PASSAGE_MIN_CHARS, max_chars: int = PASSAGE_MAX_CHARS
                   ) -> list[str]:
    """Pack paragraphs (blank-line separated) into passages of about min..max characters. A paragraph is
    only cut when it alone exceeds max_chars: at sentence ends, or at whitespace as a last resort."""
    units: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        if len(para) <= max_chars:
            units += [para] if para else []
        else:
            units += _pack([s for s in _SENTENCE_END.split(para) for s in _hard_split(s, max_chars)],
                           max_chars, max_chars, sep=" ")
    return _pack(units, min_chars, max_chars, sep="\n\n")


def _pack(units: list[str], min_chars: int, max_chars: int, sep: str) -> list[str]:
    out: list[str] = []
    buf = ""
    for unit in units:
        if buf and (len(buf) >= min_chars or len(buf) + len(sep) + len(unit) > max_chars):
            out.append(buf)
            buf = ""
        buf = f"{buf}{sep}{unit}" if buf else unit
    return out + [buf] if buf else out


def _hard_split(sentence: str, max_chars: int) -> list[str]:
    """A sentence longer than max_chars is cut at the last whitespace before the limit (or at the limit
    for unspaced text such as Chinese without punctuation)."""
    pieces = []
    sentence = sentence.strip()
    while len(sentence) > max_chars:
        cut = sentence.rfind(" ", 0, max_chars + 1)
        cut = cut if cut > 0 else max_chars
        pieces.append(sentence[:cut].strip())
        sentence = sentence[cut:].strip()
    return pieces + [sentence] if sentence else pieces


def main() -> None:
    docs = load_corpus([Path(p) for p in sys.argv[1:]])
    for source, n in Counter(d.source for d in docs).most_common():
        print(f"{n:5d}  {source}")
    print(f"{len(docs)} passages")


if __name__ == "__main__":
    main()
