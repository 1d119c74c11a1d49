"""The Factbook task builder on a small hand-made Factbook: true/false pairs with distractors from other countries,
4-option questions, counts, and a tasks file that bench/tasks.py reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from culturemanager.bench.factbook_tasks import (
    COUNTRIES,
    accepted_forms,
    build,
    clean,
    largest_religion,
    list_items,
    official_language,
)

CAPITALS = {"sa": "Riyadh", "eg": "Cairo", "bg": "Dhaka", "ch": "Beijing", "sp": "Madrid", "tu": "Ankara",
            "fr": "Paris", "it": "Rome"}
NAMES = {"sa": "Saudi Arabia", "eg": "Egypt", "bg": "Bangladesh", "ch": "China", "sp": "Spain", "tu": "Turkey",
         "fr": "France", "it": "Italy"}
COLORS = {"sa": "green, white", "eg": "red, white, black", "bg": "green, red", "ch": "red, yellow",
          "sp": "red, yellow", "tu": "red, white", "fr": "blue, white, red", "it": "white, red, green"}
FOLDERS = {"sa": "middle-east", "eg": "africa", "bg": "south-asia", "ch": "east-n-southeast-asia", "sp": "europe",
           "tu": "middle-east", "fr": "europe", "it": "europe"}


def profile(code: str) -> dict:
    gov = {"Country name": {"conventional short form": {"text": NAMES[code]}},
           "Capital": {"name": {"text": CAPITALS[code]}}, "National color(s)": {"text": COLORS[code]}}
    if code == "tu":
        del gov["National color(s)"]  # a missing fact is skipped, not an error
    return {"Government": gov}


@pytest.fixture
def factbook(tmp_path) -> Path:
    for code, folder in FOLDERS.items():
        (tmp_path / "fb" / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / "fb" / folder / f"{code}.json").write_text(json.dumps(profile(code)), encoding="utf-8")
    (tmp_path / "fb" / "world").mkdir()
    (tmp_path / "fb" / "world" / "xx.json").write_text(json.dumps({"Government": {}}), encoding="utf-8")
    return tmp_path / "fb"


def read(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_builder_writes_true_false_pairs_and_four_option_questions(factbook, tmp_path):
    counts = build(factbook, tmp_path / "out")
    # two facts per country (Turkey: one), two true/false rows and one question per fact; Arabic has two countries
    # and one free-text question per country for its capital (the only open fact these profiles hold)
    assert counts == {"ar-factbook-tf": 8, "ar-factbook-mc": 4, "ar-factbook-ft": 2, "bn-factbook-tf": 4,
                      "bn-factbook-mc": 2, "bn-factbook-ft": 1, "zh-factbook-tf": 4, "zh-factbook-mc": 2,
                      "zh-factbook-ft": 1, "es-factbook-tf": 4, "es-factbook-mc": 2, "es-factbook-ft": 1,
                      "tr-factbook-tf": 2, "tr-factbook-mc": 1, "tr-factbook-ft": 1}
    tf = read(tmp_path / "out" / "es-tf.jsonl")
    assert [r["label"] for r in tf] == ["true", "false", "true", "false"]  # half true, half false
    assert tf[0]["statement"] == "The capital of Spain is Madrid." and tf[0]["culture"] == "Spanish"
    false_capital = tf[1]["statement"].removeprefix("The capital of Spain is ").removesuffix(".")
    assert false_capital in set(CAPITALS.values()) - {"Madrid"}  # another country's capital
    # China's colors are Spain's too: never a distractor for Spain
    assert "red, yellow" not in tf[3]["statement"]
    for r in read(tmp_path / "out" / "ar-mc.jsonl"):
        assert len(r["options"]) == 4 == len(set(r["options"])) and r["answer"] in r["options"]
        assert r["country"] in ("Saudi Arabia", "Egypt")
    doc = json.loads((tmp_path / "out" / "tasks.json").read_text(encoding="utf-8"))
    assert {t["culture"] for t in doc["tasks"]} == set(COUNTRIES)
    assert {t["format"] for t in doc["tasks"]} == {"true_false", "multiple_choice", "free_text"}
    assert read(tmp_path / "out" / "es-ft.jsonl") == [{"question": "What is the capital of Spain?",
                                                       "answers": ["Madrid"], "culture": "Spanish",
                                                       "country": "Spain", "fact": "capital"}]


def test_builder_is_deterministic_per_seed(factbook, tmp_path):
    build(factbook, tmp_path / "a")
    build(factbook, tmp_path / "b")
    assert (tmp_path / "a" / "zh-mc.jsonl").read_bytes() == (tmp_path / "b" / "zh-mc.jsonl").read_bytes()


def test_a_missing_benchmark_country_is_an_error_naming_it(factbook, tmp_path):
    (factbook / "europe" / "sp.json").unlink()
    with pytest.raises(FileNotFoundError, match="sp"):
        build(factbook, tmp_path / "out")


def test_fact_parsers_by_hand():
    assert clean("Espa&ntilde;a <strong>note</strong>") == "España note"
    lang = {"People and Society": {"Languages": {"Languages": {"text": "Castilian Spanish (official) 74%, Catalan "
                                                                      "(official in Catalonia, the Balearic) 17%"}}}}
    assert official_language(lang) == "Castilian Spanish"
    rel = {"People and Society": {"Religions": {"text": "folk religion 21.9%, Buddhist 18.2%, unaffiliated 52.1% "
                                                        "(2021 est.)"}}}
    assert largest_religion(rel) == "folk religion"  # unaffiliated is no religious group
    saudi = {"People and Society": {"Religions": {"text": "Muslim (official; citizens are 85-90% Sunni), other"}}}
    assert largest_religion(saudi) == "Muslim"


def test_free_text_answers_by_hand():
    # shares, estimates, notes, catch-alls and long glosses go; every named item is an accepted answer
    assert list_items("Castilian Spanish (official) 74%, Catalan (official in Catalonia, the Balearic) 17%, "
                      "Aranese (official in part of Catalonia) <5,000 speakers") == ["Castilian Spanish", "Catalan",
                                                                                   "Aranese"]
    assert list_items("Turkish 70-75%, Kurdish 19%, other minorities 7-12% (2016 est.)") == ["Turkish", "Kurdish"]
    assert list_items("Bengali at least 98%, other indigenous ethnic groups 1.1% (2011 est.)") == ["Bengali"]
    assert list_items("Standard Chinese or Mandarin (official), Yue; note - Zhuang is official in Guangxi") == [
        "Standard Chinese", "Mandarin", "Yue"]
    assert list_items("Arabic (official), English and French widely understood by educated classes") == ["Arabic"]
    assert list_items("Roman Catholic 58.2%, atheist 16.2%, other 2.7% (2021 est.)") == ["Roman Catholic"]
    assert list_items(None) == []
    # a currency's code is an answer too; a number is never one
    assert accepted_forms("euros (EUR)") == ["euros", "EUR"]
    assert accepted_forms("Turkish liras (TRY)") == ["Turkish liras", "TRY"]
    assert accepted_forms("Madrid") == ["Madrid"] and accepted_forms("1,000") == []
