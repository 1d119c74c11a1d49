"""The offline corpora loaders: an inline factbook profile (always), and the shared data folder (skipped when
it is absent)."""

from __future__ import annotations

import re

import pytest
from conftest import DATA

from culturemanager.backends.retrieval.corpora import data_dir, factbook_passages, load_offline_corpora, main
from culturemanager.backends.retrieval.corpus import load_corpus

PROFILE = {
    "Introduction": {"Background": {"text": "<p>Ruritania was founded in 1900.</p><p>It is small.</p>"}},
    "People and Society": {
        "Languages": {"Languages": {"text": "Ruritanian (official) 90%, other &lt; 10%"},
                      "note": "<strong>note:</strong> dialects vary"},
        "Religions": {"text": ""},  # empty: skipped
        "Population": {"total": {"text": "1,000 (2024 est.)"}, "male": {"text": "500"}},
    },
    "Government": {"Country name": {"conventional long form": {"text": "Kingdom of Ruritania"},
                                    "conventional short form": {"text": "Ruritania"}}},
    "Economy": {"Industries": {"text": "cheese"}},  # not a section we keep
}


def test_factbook_profile_becomes_titled_passages():
    docs = factbook_passages(PROFILE, "factbook/europe/rr.json")
    by_section = {d.source.split("#")[1]: d for d in docs}
    assert list(by_section) == ["Background", "Languages", "Demographics", "Government"]
    lang = by_section["Languages"]
    assert lang.title == "Ruritania: Languages" and lang.id == "factbook/europe/rr.json#Languages#0"
    assert lang.text == "Ruritania — Languages\nRuritanian (official) 90%, other < 10%; note: dialects vary"
    assert by_section["Background"].text.startswith("Ruritania — Background\nRuritania was founded")
    assert "Population: total: 1,000 (2024 est.); male: 500" in by_section["Demographics"].text
    assert all(d.language == "en" and "Industries" not in d.text for d in docs)


def test_data_dir_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CULTUREMANAGER_DATA", str(tmp_path))
    assert data_dir() == tmp_path
    monkeypatch.delenv("CULTUREMANAGER_DATA")
    with pytest.raises(ValueError, match="CULTUREMANAGER_DATA"):
        data_dir()


def test_unknown_corpus_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown corpus 'wiki'"):
        load_offline_corpora(tmp_path, ["wiki"])


needs_data = pytest.mark.skipif(not (DATA / "narratives").is_dir() or not (DATA / "factbook").is_dir(),
                                reason="shared data folder not present")


@pytest.fixture(scope="module")
def corpora():
    return load_offline_corpora(DATA)


@needs_data
def test_offline_corpora_passages(corpora):
    narratives = [d for d in corpora if d.source.startswith("narratives/")]
    factbook = [d for d in corpora if d.source.startswith("factbook/")]
    assert len(narratives) > 100 and len(factbook) > 1000 and len(narratives) + len(factbook) == len(corpora)
    assert all(d.text.strip() and d.title and d.language == "en" for d in corpora)
    assert len({d.id for d in corpora}) == len(corpora)
    assert {d.title for d in narratives} >= {"Culture of Spanish", "Culture of Turkish"}
    # no HTML left (a bare "<" in "<5,000 speakers" is text), no non-country folders
    assert not any(re.search(r"</?[a-zA-Z][^>]*>|&(lt|gt|amp|nbsp);", d.text) for d in factbook)
    assert not any(d.source.split("/")[1] in ("meta", "oceans", "world") for d in factbook)


@needs_data
def test_factbook_names_the_country(corpora):
    spain = [d for d in corpora if d.source.startswith("factbook/europe/sp.json#")]
    assert spain and all(d.title.startswith("Spain: ") and d.text.startswith("Spain — ") for d in spain)
    languages = [d for d in spain if d.source.endswith("#Languages")]
    assert languages and "Spanish" in languages[0].text
    turkey = [d for d in corpora if d.source.startswith("factbook/middle-east/tu.json#Religions")]
    assert turkey and "Muslim" in turkey[0].text


@needs_data
def test_deterministic_order(corpora):
    again = load_offline_corpora(DATA)
    assert [d.id for d in again] == [d.id for d in corpora]
    assert load_offline_corpora(DATA, ["factbook", "narratives"])[0].source.startswith("factbook/")


@needs_data
def test_cli_writes_a_corpus_file_that_load_corpus_reads_back(tmp_path, corpora, capsys):
    out = tmp_path / "offline.jsonl"
    main([str(out), "--data-dir", str(DATA), "--which", "narratives"])
    assert "passages" in capsys.readouterr().out
    narratives = [d for d in corpora if d.source.startswith("narratives/")]
    assert load_corpus([out]) == narratives
