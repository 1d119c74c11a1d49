"""Read the user's text files: demonstrations, evaluation inputs and prediction inputs.

JSONL (one object per line), CSV (with a header row) or plain text (one input per line). A malformed line,
a missing field or a non-text value is an `InputFileError` naming the file and the line; an empty file is an
error too, since a task with no demonstrations cannot be specified.

Run: `python -m culturemanager.datafiles FILE [TEXT_FIELD]` prints how many rows it reads.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from culturemanager.config import DataFile


class InputFileError(ValueError):
    """A problem in a user's data file; the message starts with `path:line:`."""


@dataclass(frozen=True)
class InputRow:
    text: str
    label: str | None  # mapped through the file's label_map; None when the file has no label_field
    source: str  # "path:line", for error messages and provenance
    culture: str | None = None
    task: str | None = None


def read_rows(df: DataFile) -> list[InputRow]:
    """The rows start..start+limit of a file. Only those rows are parsed and checked: a bad row outside the
    slice (the benchmark's Bengali file has a number for a text on line 280) does not matter here."""
    records = list(_records(df))
    if not records:
        raise InputFileError(f"{df.path}: no rows (empty file)")
    end = None if df.limit is None else df.start + df.limit
    return [_parse(df, where, raw) for where, raw in records[df.start:end]]


def read_texts(files: list[DataFile]) -> list[str]:
    return [r.text for f in files for r in read_rows(f)]


def _records(df: DataFile):
    """(where, raw) per non-blank row: a line for JSONL and text files, a dict for CSV."""
    if not df.path.is_file():
        raise InputFileError(f"{df.path}: file not found")
    with open(df.path, encoding="utf-8-sig", newline="" if df.path.suffix.lower() == ".csv" else None) as f:
        if df.path.suffix.lower() == ".csv":
            reader = csv.DictReader(f)
            first = 2  # line of the record's start: a quoted field may span several lines
            for obj in reader:
                yield f"{df.path}:{first}", obj
                first = reader.line_num + 1
            return
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield f"{df.path}:{lineno}", line


def _parse(df: DataFile, where: str, raw: str | dict) -> InputRow:
    if isinstance(raw, dict):
        return _row(raw, df, where)
    if df.path.suffix.lower() != ".jsonl":
        return InputRow(raw.strip(), None, where, df.culture, df.task)
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as e:
        raise InputFileError(f"{where}: not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise InputFileError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return _row(obj, df, where)


def _row(obj: dict, df: DataFile, where: str) -> InputRow:
    if df.text_field not in obj:
        raise InputFileError(f"{where}: no field {df.text_field!r} (fields: {', '.join(map(str, obj))})")
    text = obj[df.text_field]
    if not isinstance(text, str):
        raise InputFileError(f"{where}: field {df.text_field!r} is a {type(text).__name__}, not text")
    if not text.strip():
        raise InputFileError(f"{where}: field {df.text_field!r} is empty")
    label = None
    if df.label_field is not None:
        if df.label_field not in obj:
            raise InputFileError(f"{where}: no label field {df.label_field!r}")
        raw = str(obj[df.label_field])
        if df.label_map and raw not in df.label_map:
            raise InputFileError(f"{where}: label {raw!r} is not in label_map {sorted(df.label_map)}")
        label = df.label_map.get(raw, raw)
    culture = df.culture
    if df.culture_field is not None:
        if not isinstance(obj.get(df.culture_field), str):
            raise InputFileError(f"{where}: no text field {df.culture_field!r} (the row's culture)")
        culture = obj[df.culture_field]
    return InputRow(text.strip(), label, where, culture, df.task)


def main() -> None:
    df = DataFile(path=Path(sys.argv[1]), text_field=sys.argv[2] if len(sys.argv) > 2 else "text")
    print(len(read_rows(df)), "rows")


if __name__ == "__main__":
    main()
