"""Read the user's text files: demonstrations, evaluation inputs and prediction inputs.

How a file is read is its entry's `format` (`DataFile.format`); "auto" goes by the extension:
- `.jsonl`, `.ndjson`: one JSON object per line;
- `.json`: one JSON array of objects;
- `.csv`: a header row, then one row per text (every row must have the header's number of fields);
- `.txt`: one text per line.
Any other extension (`.parquet`, `.tsv`, ...) is an error unless the entry says `format = "text"` (or another
format): a file is never silently read as lines of text. Bytes that are not UTF-8, a malformed line, a missing
field or a non-text value is an `InputFileError` naming the file and the line; an empty file is an error too,
since a task with no demonstrations cannot be specified. `check_gold_labels` checks gold labels against a
task's label set before anything is scored.

A row of a file that names its gold (`label_field`, `answers_field`) but has none (the label missing, null or
blank; the accepted answers missing or []) cannot be scored: an `UnscorableRow` error naming file and line, or,
with `on_unscorable = "skip"` (`predict.on_unscorable`), left out and reported by `read_scored_rows`. The stages
and the preflight check (preflight.py) read every file through these same functions.

Run: `python -m culturemanager.text.datafiles FILE [TEXT_FIELD]` prints how many rows it reads.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from culturemanager.config import DataFile, Task, Unscorable
from culturemanager.errors import InputError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".txt": "text"}
TOO_DEEP = "JSON nested too deeply to read (deeper than Python's recursion limit); a row is one flat object"


class InputFileError(InputError):
    """A problem in a user's data file; the message starts with `path:line:` (or `path:`)."""


class UnscorableRow(InputFileError):
    """A well-formed row whose file names a gold field the row leaves empty: it cannot be scored."""

    def __init__(self, where: str, reason: str):
        self.row = f"{where}: {reason}"  # what a skipped row is reported as
        super().__init__(f"{self.row} (a row without gold cannot be scored; for predict.inputs, "
                         f"predict.on_unscorable = \"skip\" scores the other rows and counts this one in metrics.json)")


@dataclass(frozen=True)
class InputRow:
    text: str
    label: str | None  # mapped through the file's label_map; None when the file has no label_field
    source: str  # "path:line", for error messages and provenance
    culture: str | None = None
    task: str | None = None
    answers: tuple[str, ...] = ()  # free_text: the accepted answers (answers_field, then the label), deduplicated


def read_rows(df: DataFile, on_unscorable: Unscorable = "error") -> list[InputRow]:
    """The rows start..start+limit of a file. Only those rows are parsed and checked: a bad row outside the
    slice (the benchmark's Bengali file has a number for a text on line 280) does not matter here."""
    return read_scored_rows(df, on_unscorable)[0]


def read_scored_rows(df: DataFile, on_unscorable: Unscorable = "error") -> tuple[list[InputRow], list[str]]:
    """`read_rows`, and the rows left out as unscorable ("path:line: why"; none unless `on_unscorable` is
    "skip", when "error" the first one is raised)."""
    if not df.path.is_file():
        raise InputFileError(f"{df.path}: file not found")
    records = list(_records(df, file_format(df)))
    if not records:
        raise InputFileError(f"{df.path}: no rows (empty file)")
    end = None if df.limit is None else df.start + df.limit
    rows, skipped = [], []
    for where, raw in records[df.start:end]:
        try:
            rows.append(_parse(df, where, raw))
        except UnscorableRow as e:
            if on_unscorable == "error":
                raise
            skipped.append(e.row)
    return rows, skipped


def read_texts(files: list[DataFile]) -> list[str]:
    return [r.text for f in files for r in read_rows(f)]


def file_format(df: DataFile) -> str:
    """jsonl, json, csv or text: the entry's `format`, else by extension; an unknown extension is an error."""
    if df.format != "auto":
        return df.format
    suffix = df.path.suffix.lower()
    if suffix not in FORMATS:
        kind = f"a {suffix} file" if suffix else "a file without an extension"
        raise InputFileError(f"{df.path}: cannot tell how to read {kind} (known: {', '.join(FORMATS)}); convert "
                             f"it, or set format = \"text\" (one text per line), \"jsonl\", \"json\" or \"csv\" "
                             f"on its entry")
    return FORMATS[suffix]


def check_gold_labels(rows: Iterable[InputRow], tasks: Iterable[Task]) -> None:
    """Every row's gold label (after label_map) is in its task's label set; else an `InputFileError` naming the
    first bad row's file and line. Call it before predicting, so a bad label never costs a scoring pass.
    `tasks` is each row's task, in the rows' order; rows without a label and free_text tasks are not checked."""
    for row, task in zip(rows, tasks, strict=True):
        if row.label is not None and task.labels and row.label not in task.labels:
            raise InputFileError(f"{row.source}: gold label {row.label!r} is not in task {task.id!r} labels "
                                 f"{task.labels}: set label_map on the input file")


def _records(df: DataFile, fmt: str) -> Iterator[tuple[str, str | dict | object]]:
    """(where, raw) per non-blank row: a line for JSONL and text files, a dict for CSV, an item for JSON."""
    text = _decode(df.path)
    if fmt == "csv":
        yield from _csv_rows(df.path, text)
    elif fmt == "json":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputFileError(f"{df.path}:{e.lineno}: not valid JSON ({e.msg})") from None
        except RecursionError:
            raise InputFileError(f"{df.path}: {TOO_DEEP}") from None
        if not isinstance(value, list):
            raise InputFileError(f"{df.path}: a .json data file must hold an array of objects, not a "
                                 f"{type(value).__name__} (one object per line: name it .jsonl)")
        for i, item in enumerate(value):
            yield f"{df.path}:item {i}", item
    else:
        for lineno, line in enumerate(io.StringIO(text, newline=None), 1):  # \n, \r\n or \r, as open() reads
            if line.strip():
                yield f"{df.path}:{lineno}", line


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputFileError(f"{path}:{line}: not UTF-8 text ({e.reason} at byte {e.start}); save the file as "
                             f"UTF-8") from None


def _csv_rows(path: Path, text: str) -> Iterator[tuple[str, dict]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        first = 2  # line of the record's start: a quoted field may span several lines
        for fields in reader:
            where = f"{path}:{first}"
            first = reader.line_num + 1
            if not fields:  # a blank line
                continue
            if header is not None and len(fields) != len(header):
                raise InputFileError(f"{where}: {len(fields)} fields, the header has {len(header)} "
                                     f"({', '.join(header)})")
            yield where, dict(zip(header or [], fields))
    except csv.Error as e:
        raise InputFileError(f"{path}:{reader.line_num}: not valid CSV ({e})") from None


def _parse(df: DataFile, where: str, raw: object) -> InputRow:
    if isinstance(raw, dict):
        return _row(raw, df, where)
    if file_format(df) == "text":
        assert isinstance(raw, str)
        return InputRow(raw.strip(), None, where, df.culture, df.task)
    if file_format(df) == "json":
        raise InputFileError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    assert isinstance(raw, str)
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as e:
        raise InputFileError(f"{where}: not valid JSON ({e.msg})") from None
    except RecursionError:
        raise InputFileError(f"{where}: {TOO_DEEP}") from None
    if not isinstance(obj, dict):
        raise InputFileError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return _row(obj, df, where)


def _row(obj: dict, df: DataFile, where: str) -> InputRow:
    if df.text_field not in obj:
        raise InputFileError(f"{where}: no field {df.text_field!r} (fields: {', '.join(map(str, obj))})")
    text = obj[df.text_field]
    if not isinstance(text, str):
        raise InputFileError(f"{where}: field {df.text_field!r} is a {type(text).__name__}, not text")
    for field in (df.text_field, df.label_field, df.culture_field, df.answers_field, df.options_field):
        if field is not None:
            _encodable(obj.get(field), field, where)
    if not text.strip():
        raise InputFileError(f"{where}: field {df.text_field!r} is empty")
    label, unscorable = _label(obj, df, where)
    if df.options_field is not None:
        text, label = _with_options(obj, df, where, text, label)
    given, why = _answers(obj, df, where)
    answers = given + ((label,) if label is not None else ())
    culture = df.culture
    if df.culture_field is not None:
        if not isinstance(obj.get(df.culture_field), str) or not obj[df.culture_field].strip():
            raise InputFileError(f"{where}: no text field {df.culture_field!r} (the row's culture)")
        culture = obj[df.culture_field]
    # checked last, so a skipped row is one that is well-formed but for its missing gold
    if unscorable or why:
        raise UnscorableRow(where, unscorable or why or "")
    return InputRow(text.strip(), label, where, culture, df.task, tuple(dict.fromkeys(answers)))


def _label(obj: dict, df: DataFile, where: str) -> tuple[str | None, str | None]:
    """(the row's label through label_map, or None; why the row has no label, when its file names one)."""
    if df.label_field is None:
        return None, None
    raw = obj.get(df.label_field)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None, f"no label in field {df.label_field!r}" + (f" (it is {raw!r})" if raw is not None else "")
    if not isinstance(raw, (str, int, bool)):
        raise InputFileError(f"{where}: label field {df.label_field!r} is {raw!r}, not a label")
    raw = str(raw)
    if df.label_map and raw not in df.label_map:
        raise InputFileError(f"{where}: label {raw!r} is not in label_map {sorted(df.label_map)}")
    return df.label_map.get(raw, raw), None


def _encodable(value: object, field: str, where: str) -> None:
    """A JSON string escape can spell half of a UTF-16 pair ("\\ud800"): text no file, tokenizer or answer can hold
    (writing it fails far from here), so it is refused where it is read."""
    for v in value if isinstance(value, list) else [value]:
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError as e:
                raise InputFileError(f"{where}: field {field!r} holds a lone surrogate {v[e.start]!r} at character "
                                     f"{e.start} (a JSON escape like \\ud800 without its pair), not text") from None


def _with_options(obj: dict, df: DataFile, where: str, text: str, label: str | None) -> tuple[str, str | None]:
    """A multiple-choice row: its options lettered into the text, its label (an option's text or letter) as the
    letter."""
    from culturemanager.text.formats import option_letter, valid_options, with_options

    options = obj.get(df.options_field or "")
    if not valid_options(options):
        raise InputFileError(f"{where}: options field {df.options_field!r} is {options!r}, not a list of 2 to 26 "
                             f"distinct options")
    if label is not None:
        letter = option_letter(options, label)
        if letter is None:
            raise InputFileError(f"{where}: label {label!r} is neither one of the row's options nor their letter")
        label = letter
    return with_options(text.strip(), options), label


def _answers(obj: dict, df: DataFile, where: str) -> tuple[tuple[str, ...], str | None]:
    """The row's accepted answers (a non-empty list of non-empty strings, or one string); and why there are none
    when the field is missing, null, blank or [] (the row cannot be scored)."""
    if df.answers_field is None:
        return (), None
    raw = obj.get(df.answers_field)
    if raw is None or raw == [] or (isinstance(raw, str) and not raw.strip()):
        return (), f"answers field {df.answers_field!r} is {raw!r}, no accepted answer"
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(x, str) and x.strip() for x in raw):
        raise InputFileError(f"{where}: answers field {df.answers_field!r} is {raw!r}, not a list of accepted "
                             f"answers (non-empty strings)")
    return tuple(x.strip() for x in raw), None


def main() -> None:
    df = DataFile(path=Path(sys.argv[1]), text_field=sys.argv[2] if len(sys.argv) > 2 else "text")
    print(len(read_rows(df)), "rows")


if __name__ == "__main__":
    main()
