"""Tests for reading the user's text files: JSONL, CSV and plain text, slicing, label mapping, and errors that
start with `path:line`.

Run: .venv/bin/pytest tests/test_inputs.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from culturemanager.config import DataFile
from culturemanager.text.datafiles import InputFileError, InputRow, read_rows, read_texts


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def input_error(df: DataFile) -> str:
    with pytest.raises(InputFileError) as e:
        read_rows(df)
    return str(e.value)


# ------------------------------------------------------------------------------------------------ formats

def test_jsonl_rows_with_source_and_culture(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [{"text": " Hola mundo "}, {"text": "Vete a tu país", "id": 2}])
    rows = read_rows(DataFile(path=path, culture="Spanish"))
    assert rows == [InputRow("Hola mundo", None, f"{path}:1", "Spanish"),
                    InputRow("Vete a tu país", None, f"{path}:2", "Spanish")]


def test_jsonl_blank_lines_skipped_and_line_numbers_kept(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "one"}\n\n   \n{"text": "two"}\n', encoding="utf-8")
    rows = read_rows(DataFile(path=path))
    assert [r.text for r in rows] == ["one", "two"]
    assert [r.source for r in rows] == [f"{path}:1", f"{path}:4"]


def test_jsonl_custom_text_field(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [{"tweet": "a tweet", "text": "ignored"}])
    assert read_texts([DataFile(path=path, text_field="tweet")]) == ["a tweet"]


def test_csv_with_header_and_quoted_comma_and_newline(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('id,text,label\n1,plain row,0\n2,"has, a comma\nand a newline",1\n3,last,0\n',
                    encoding="utf-8")
    rows = read_rows(DataFile(path=path, label_field="label"))
    assert [r.text for r in rows] == ["plain row", "has, a comma\nand a newline", "last"]
    assert [r.label for r in rows] == ["0", "1", "0"]
    assert rows[0].source == f"{path}:2"
    assert rows[2].source == f"{path}:5"  # physical line, after the two-line quoted field


def test_csv_missing_column_is_named(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,tweet\n1,hello\n", encoding="utf-8")
    msg = input_error(DataFile(path=path))
    assert msg.startswith(f"{path}:2:")
    assert "'text'" in msg and "tweet" in msg


def test_csv_short_row_is_an_error_not_a_crash(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,text\n1,hello\n2\n", encoding="utf-8")
    msg = input_error(DataFile(path=path))
    assert msg.startswith(f"{path}:3:")


def test_txt_one_per_line_blank_lines_skipped(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("Bu maç harikaydı\n\n  \n  Senin ananı  \nBayramınız kutlu olsun", encoding="utf-8")
    rows = read_rows(DataFile(path=path, text_field="ignored", culture="Turkish"))
    assert [r.text for r in rows] == ["Bu maç harikaydı", "Senin ananı", "Bayramınız kutlu olsun"]
    assert [r.source for r in rows] == [f"{path}:1", f"{path}:4", f"{path}:5"]
    assert all(r.label is None and r.culture == "Turkish" for r in rows)


def test_read_texts_concatenates_files(tmp_path):
    a = jsonl(tmp_path / "a.jsonl", [{"text": "x1"}, {"text": "x2"}])
    b = tmp_path / "b.txt"
    b.write_text("y1\n", encoding="utf-8")
    assert read_texts([DataFile(path=a), DataFile(path=b)]) == ["x1", "x2", "y1"]


# ------------------------------------------------------------------------------------------------ slicing

@pytest.mark.parametrize("start, limit, expected", [
    (0, None, ["r0", "r1", "r2", "r3", "r4"]),
    (2, None, ["r2", "r3", "r4"]),
    (0, 2, ["r0", "r1"]),
    (1, 3, ["r1", "r2", "r3"]),
    (3, 10, ["r3", "r4"]),
    (0, 0, []),
])
def test_start_and_limit(tmp_path, start, limit, expected):
    path = tmp_path / "d.txt"
    path.write_text("r0\n\nr1\nr2\nr3\nr4\n", encoding="utf-8")  # start counts rows, not lines
    assert [r.text for r in read_rows(DataFile(path=path, start=start, limit=limit))] == expected


# ------------------------------------------------------------------------------------------------- labels

def test_label_field_with_label_map(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": "HS"}, {"text": "b", "label": "NOT_HS"}])
    rows = read_rows(DataFile(path=path, label_field="label", label_map={"HS": "1", "NOT_HS": "0"}))
    assert [r.label for r in rows] == ["1", "0"]


def test_numeric_labels_become_strings(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": 0}])
    assert [r.label for r in read_rows(DataFile(path=path, label_field="label"))] == ["1", "0"]


def test_numeric_label_mapped(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": 2}])
    rows = read_rows(DataFile(path=path, label_field="label", label_map={"2": "1"}))
    assert rows[0].label == "1"


def test_label_not_in_label_map_is_an_error(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": "HS"}, {"text": "b", "label": "MAYBE"}])
    msg = input_error(DataFile(path=path, label_field="label", label_map={"HS": "1", "NOT_HS": "0"}))
    assert msg.startswith(f"{path}:2:")
    assert "'MAYBE'" in msg


def test_missing_label_field_is_an_error(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [{"text": "a"}])
    msg = input_error(DataFile(path=path, label_field="label"))
    assert msg.startswith(f"{path}:1:") and "'label'" in msg


# ------------------------------------------------------------------------------------------------- errors

def test_malformed_json_line_names_its_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "one"}\n{"text": "two"}\n{"text": "three"\n{"text": "four"}\n', encoding="utf-8")
    msg = input_error(DataFile(path=path))
    assert msg.startswith(f"{path}:3:")
    assert "not valid JSON" in msg


def test_malformed_json_line_number_counts_blank_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "one"}\n\n{text: two}\n', encoding="utf-8")
    assert input_error(DataFile(path=path)).startswith(f"{path}:3:")


def test_json_list_line_is_an_error(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "one"}\n["two", "three"]\n', encoding="utf-8")
    msg = input_error(DataFile(path=path))
    assert msg.startswith(f"{path}:2:")
    assert "object" in msg and "list" in msg


def test_missing_text_field(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [{"text": "ok"}, {"sentence": "no text field"}])
    msg = input_error(DataFile(path=path))
    assert msg.startswith(f"{path}:2:")
    assert "'text'" in msg and "sentence" in msg


def test_number_instead_of_text(tmp_path):
    # the real Bengali benchmark has a row whose text is a number
    path = jsonl(tmp_path / "bn.jsonl", [{"text": "বাংলা সংস্কৃতি"}, {"text": 12345}])
    msg = input_error(DataFile(path=path))
    assert msg.startswith(f"{path}:2:")
    assert "int" in msg and "not text" in msg


@pytest.mark.parametrize("value", [None, ["a"], {"a": 1}, True])
def test_non_string_text_values(tmp_path, value):
    path = jsonl(tmp_path / "d.jsonl", [{"text": value}])
    assert input_error(DataFile(path=path)).startswith(f"{path}:1:")


def test_empty_text(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [{"text": "ok"}, {"text": "   "}])
    msg = input_error(DataFile(path=path))
    assert msg.startswith(f"{path}:2:") and "empty" in msg


def test_empty_csv_text(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text\nfine\n""\n', encoding="utf-8")
    assert input_error(DataFile(path=path)).startswith(f"{path}:3:")


@pytest.mark.parametrize("name, content", [("e.jsonl", ""), ("e.jsonl", "\n\n"), ("e.txt", "\n  \n"),
                                           ("e.csv", "text\n")])
def test_empty_file_is_an_error(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    msg = input_error(DataFile(path=path))
    assert msg.startswith(f"{path}:")
    assert "empty" in msg


def test_missing_file_is_an_error(tmp_path):
    path = tmp_path / "nope.jsonl"
    msg = input_error(DataFile(path=path))
    assert msg.startswith(f"{path}:") and "not found" in msg


def test_a_folder_is_not_a_file(tmp_path):
    assert "not found" in input_error(DataFile(path=tmp_path))


@pytest.mark.parametrize("name, content", [("bom.csv", "text,label\nhola,1\n"), ("bom.jsonl", '{"text": "hola"}\n'),
                                           ("bom.txt", "hola\n")])
def test_utf8_bom_is_ignored(tmp_path, name, content):
    # Excel's "CSV UTF-8" export and Windows Notepad write a byte-order mark before the first header/line
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + content.encode("utf-8"))
    assert [r.text for r in read_rows(DataFile(path=path))] == ["hola"]


def test_only_the_selected_rows_are_checked(tmp_path):
    from culturemanager.config import DataFile
    from culturemanager.text.datafiles import InputFileError, read_rows

    p = tmp_path / "mixed.jsonl"
    p.write_text('{"data": "uno"}\n{"data": "dos"}\n{"data": 12345}\n{"data": "cuatro"}\n', encoding="utf-8")
    assert [r.text for r in read_rows(DataFile(path=p, text_field="data", limit=2))] == ["uno", "dos"]
    with pytest.raises(InputFileError, match=r"mixed.jsonl:3: field 'data' is a int"):
        read_rows(DataFile(path=p, text_field="data", start=1, limit=2))


# ------------------------------------------------------------------------------------- formats by extension

def test_json_array_and_ndjson_are_read_as_records(tmp_path):
    """Both were read as one text per line: the input became the raw JSON."""
    a = tmp_path / "d.json"
    a.write_text(json.dumps([{"text": "uno", "label": "1"}, {"text": "dos", "label": "0"}]), encoding="utf-8")
    rows = read_rows(DataFile(path=a, label_field="label"))
    assert [(r.text, r.label) for r in rows] == [("uno", "1"), ("dos", "0")]
    assert rows[1].source == f"{a}:item 1"
    b = jsonl(tmp_path / "d.ndjson", [{"text": "tres"}])
    assert read_texts([DataFile(path=b)]) == ["tres"]


@pytest.mark.parametrize("name", ["d.parquet", "d.tsv", "README"])
def test_other_extensions_are_errors_unless_the_entry_says_text(tmp_path, name):
    path = tmp_path / name
    path.write_text("uno\ndos\n", encoding="utf-8")
    msg = input_error(DataFile(path=path))
    assert msg.startswith(f"{path}: cannot tell how to read") and 'format = "text"' in msg
    assert read_texts([DataFile(path=path, format="text")]) == ["uno", "dos"]


def test_a_csv_row_missing_its_label_column_is_an_error_not_the_label_none(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\nhola,1\nadios\n", encoding="utf-8")
    msg = input_error(DataFile(path=path, label_field="label"))
    assert msg.startswith(f"{path}:3:") and "1 fields, the header has 2" in msg
    path.write_text("text,label\nhola,1,extra\n", encoding="utf-8")
    assert input_error(DataFile(path=path)).startswith(f"{path}:2:")


@pytest.mark.parametrize("name", ["d.jsonl", "d.csv", "d.txt"])
def test_bytes_that_are_not_utf8_name_file_and_line(tmp_path, name):
    path = tmp_path / name
    head = b"text\n" if name.endswith(".csv") else b""
    row = (lambda t: json.dumps({"text": t}).encode()) if name.endswith(".jsonl") else (lambda t: t.encode())
    path.write_bytes(head + row("uno") + b"\n" + row("dos").replace(b"dos", b"d\xf6s") + b"\n")
    msg = input_error(DataFile(path=path))
    assert msg.startswith(f"{path}:{3 if head else 2}: not UTF-8")


def test_gold_labels_are_checked_against_the_task_before_scoring(tmp_path):
    from culturemanager.config import Task
    from culturemanager.text.datafiles import check_gold_labels

    path = jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": "1"}, {"text": "b", "label": "HS"}])
    rows = read_rows(DataFile(path=path, label_field="label"))
    task = Task(id="hate", label="hate speech")
    with pytest.raises(InputFileError, match=rf"{path}:2: gold label 'HS' is not in task 'hate' labels"):
        check_gold_labels(rows, [task] * len(rows))
    check_gold_labels(rows[:1], [task])
    check_gold_labels(rows, [Task(id="free", label="x", format="free_text")] * 2)  # nothing to check


# ----------------------------------------------------------------------------------- accepted answers

def test_answers_field_reads_a_list_or_one_string_and_adds_the_label(tmp_path):
    f = jsonl(tmp_path / "qa.jsonl", [{"text": "¿Capital?", "answers": ["Madrid", " Villa de Madrid "],
                                       "label": "Madrid"},
                                      {"text": "首都?", "answers": "北京", "label": "北京市"},
                                      {"text": "Başkent?", "answers": ["Ankara"], "label": "Ankara"}])
    rows = read_rows(DataFile(path=f, answers_field="answers", label_field="label"))
    assert [r.answers for r in rows] == [("Madrid", "Villa de Madrid"), ("北京", "北京市"), ("Ankara",)]


def test_answers_field_errors_name_file_and_line(tmp_path):
    for bad in [[], [""], "  ", 3, ["ok", 4], None]:
        f = jsonl(tmp_path / "qa.jsonl", [{"text": "fine", "answers": ["x"]}, {"text": "bad", "answers": bad}])
        msg = input_error(DataFile(path=f, answers_field="answers"))
        assert msg.startswith(f"{f}:2: answers field 'answers'"), msg


def test_answers_from_a_csv_cell_are_one_answer(tmp_path):
    f = tmp_path / "qa.csv"
    f.write_text('text,answer\n"¿Capital?","Madrid, España"\n', encoding="utf-8")
    assert read_rows(DataFile(path=f, answers_field="answer"))[0].answers == ("Madrid, España",)


def test_options_field_letters_the_options_into_the_text_and_the_label_into_its_letter(tmp_path):
    import json

    from culturemanager.config import DataFile
    from culturemanager.text.datafiles import InputFileError, read_rows

    rows = [{"q": "What is the capital of Spain?", "opts": ["Rome", "Madrid", "Lisbon"], "ans": "Madrid"},
            {"q": "What is the capital of Turkey?", "opts": ["Ankara", "Athens"], "ans": "a"}]
    path = tmp_path / "mc.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    got = read_rows(DataFile(path=path, text_field="q", label_field="ans", options_field="opts"))
    assert [(r.text, r.label) for r in got] == [
        ("What is the capital of Spain? A) Rome B) Madrid C) Lisbon", "B"),
        ("What is the capital of Turkey? A) Ankara B) Athens", "A")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"q": "x?", "opts": ["a", "b"], "ans": "c"}) + "\n" +
                   json.dumps({"q": "y?", "opts": ["a"], "ans": "a"}) + "\n", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"bad.jsonl:1: label 'c' is neither one of the row's options"):
        read_rows(DataFile(path=bad, text_field="q", label_field="ans", options_field="opts", limit=1))
    with pytest.raises(InputFileError, match=r"bad.jsonl:2: options field 'opts'"):
        read_rows(DataFile(path=bad, text_field="q", label_field="ans", options_field="opts", start=1))
