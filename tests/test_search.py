"""The search stage: materials per query, cultures without documents, summaries."""

from __future__ import annotations

import logging

from culturemanager import load_config
from culturemanager.llm import Completion, FakeBackend
from culturemanager.pipeline import Run
from culturemanager.records import Material, read_jsonl


def test_culture_without_documents_is_warned_reported_and_skipped(task_config, caplog):
    corpus = task_config.parent / "corpus"
    for f in corpus.iterdir():
        f.unlink()
    # only Spanish material; no word of the Turkish queries occurs in it
    (corpus / "es.md").write_text("# Spanish\n\nSpanish paella tapas siesta.\n")
    run = Run(load_config(task_config, ["tasks.0.label=qwertyness"]), progress=False)
    with caplog.at_level(logging.WARNING):
        run.stage("queries")
        counts = run.stage("search")
        syn = run.stage("synthesize")
        train = run.stage("train")
    assert counts["materials[Turkish]"] == 0 and counts["materials[Spanish]"] > 0
    assert counts["cultures_without_material"] == 1 and counts["queries_without_documents"] == 4
    assert "no material found for culture Turkish" in caplog.text
    assert syn["kept[Turkish]"] == 0 and "Turkish" in train["skipped_too_few_samples"]
    assert run.rd.read_manifest()["stages"]["search"]["counts"]["cultures_without_material"] == 1


class Summaries(FakeBackend):
    """Answers summary prompts with NONE for Turkish material, otherwise like the fake LLM."""

    def complete(self, requests):
        return [Completion("NONE") if "<documents>" in r.messages[-1][1] and "Turkish" in r.messages[-1][1]
                else FakeBackend.complete(self, [r])[0] for r in requests]


def test_irrelevant_summary_drops_the_material_and_raw_mode_keeps_documents(task_config):
    run = Run(load_config(task_config), progress=False)
    run.llm.backend = Summaries()
    run.stage("queries")
    counts = run.stage("search")
    assert counts["summary_irrelevant"] == 4 and counts["materials[Turkish]"] == 0
    mats = read_jsonl(run.rd.materials, Material)
    assert mats and all(m.summarized and m.documents and m.summary_prompt_hash for m in mats)

    raw = Run(load_config(task_config, ["search.summarize=false"]), progress=False)
    counts = raw.stage("search")
    assert counts["llm"]["calls"] == 0 and counts["materials"] == 8
    mats = read_jsonl(raw.rd.materials, Material)
    assert all(not m.summarized and m.text.startswith("[1]") for m in mats)
