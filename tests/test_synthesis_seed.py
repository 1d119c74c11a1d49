"""synthesis.seed: samples rewritten from the task's unlabeled demonstrations (counterfactual versions, one per
label), the near-copy check on them, and their provenance."""

from __future__ import annotations

import json

import pytest

from culturemanager import load_config
from culturemanager.backends.llm import Completion, FakeBackend
from culturemanager.pipeline import Run
from culturemanager.records import DroppedSample, Sample, read_jsonl
from culturemanager.stages.synthesize import similarity


class Rewriter(FakeBackend):
    """The fake LLM, except that a rewrite prompt gets a "1" version (the demonstration with an insult added) and
    a "0" version (the demonstration itself, unchanged), and a material prompt a fixed pair of fresh samples."""

    def __init__(self):
        super().__init__()
        self.rewrites: list[str] = []
        self.material_calls = 0

    def complete(self, requests):
        out = []
        for r in requests:
            ask = r.messages[-1][1]
            if "Rewrite it once for each label" in ask:
                demo = ask.split("<demonstrations>\n- ", 1)[1].split("\n</demonstrations>", 1)[0]
                self.rewrites.append(demo)
                out.append(Completion("\n".join(json.dumps(x, ensure_ascii=False) for x in [
                    {"text": f"{demo}, idiotas de mierda, fuera todos", "label": "1"},
                    {"text": demo, "label": "0"}])))
            elif "<material>" in ask:
                self.material_calls += 1
                out.append(Completion("\n".join(json.dumps(x, ensure_ascii=False) for x in [
                    {"text": f"Un texto nuevo del material {self.material_calls}", "label": "1"},
                    {"text": f"Otro texto nuevo del material {self.material_calls}", "label": "0"}])))
            else:
                out += super().complete([r])
        return out


def synthesize(task_config, *overrides):
    run = Run(load_config(task_config, ["queries.per_mode=1", "queries.modes=['task_agnostic']",
                                        "synthesis.label_mode=round_robin", *overrides]), progress=False)
    backend = Rewriter()
    run.llm.backend = backend
    run.stage("queries")
    run.stage("search")
    return run, backend, run.stage("synthesize")


def kept(run) -> list[Sample]:
    return [s for c in ("Spanish", "Turkish") for s in read_jsonl(run.rd.samples(c), Sample)]


def test_demonstrations_seed_rewrites_each_demonstration_and_drops_the_unchanged_copy(task_config):
    run, backend, counts = synthesize(task_config, "synthesis.seed=demonstrations")
    # three Spanish and three Turkish demonstrations, one call each; no material is asked for
    assert sorted(backend.rewrites) == sorted(["Los andaluces no trabajan nunca", "Qué buen partido del Barça ayer",
                                               "Vete a tu país", "Bu maç harikaydı", "Senin ananı",
                                               "Bayramınız kutlu olsun"])
    assert backend.material_calls == 0
    samples = kept(run)
    # the "0" version is its demonstration unchanged: dropped as a copy; the rewritten "1" version is kept
    assert {s.label for s in samples} == {"1"} and len(samples) == 6
    assert counts["copies_demonstration"] == 6
    dropped = read_jsonl(run.rd.dropped, DroppedSample)
    assert {d.text for d in dropped if d.reason == "copies_demonstration"} == set(backend.rewrites)
    for s in samples:
        assert s.provenance.mode == "demonstration" and s.provenance.query == "" and s.provenance.source_ids == []


def test_both_seeds_ask_for_material_and_demonstrations(task_config):
    run, backend, counts = synthesize(task_config, "synthesis.seed=both", "synthesis.seed_limit=2")
    assert len(backend.rewrites) == 4  # two demonstrations per culture, a seeded sample
    assert backend.material_calls == 2  # one material per culture, as with the default seed
    modes = {s.provenance.mode for s in kept(run)}
    assert modes == {"demonstration", "task_agnostic"}


def test_the_default_seed_asks_for_no_rewrite(task_config):
    run, backend, _ = synthesize(task_config)
    assert backend.rewrites == [] and backend.material_calls == 2


@pytest.mark.parametrize("threshold, dropped", [(1.0, 6), (0.9, 6), (0.3, 12)])
def test_the_near_copy_threshold_decides_what_a_rewrite_may_keep(task_config, threshold, dropped):
    # the "1" version keeps its demonstration and adds an insult (similarity 0.4-0.7 for these short texts), the
    # "0" version is the demonstration unchanged: 1.0 and 0.9 drop the six copies only, 0.3 drops every version
    run, backend, counts = synthesize(task_config, "synthesis.seed=demonstrations",
                                      f"synthesis.rewrite_max_similarity={threshold}")
    assert counts["copies_demonstration"] == dropped


def test_similarity_is_one_for_a_copy_up_to_case_and_spacing_and_falls_with_edits():
    assert similarity("Vete a tu  país", "vete a tu país") == 1.0
    assert 0.6 < similarity("Vete a tu país", "Vete a tu país, idiota") < 0.9
    assert similarity("Vete a tu país", "Bayramınız kutlu olsun") < 0.3
