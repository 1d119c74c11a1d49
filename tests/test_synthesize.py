"""Synthesis: retries, validation, deduplication, the leakage check, provenance."""

from __future__ import annotations

import json

from culturemanager import load_config
from culturemanager.backends.llm import Completion, FakeBackend
from culturemanager.pipeline import Run
from culturemanager.records import DroppedSample, Sample, read_jsonl
from culturemanager.text.leakage import LeakIndex, leak_tokens


class Scripted(FakeBackend):
    """The fake LLM, except that synthesis prompts get scripted answers, one per call, in order."""

    def __init__(self, answers):
        super().__init__()
        self.answers = list(answers)
        self.synth_calls = 0

    def complete(self, requests):
        out = []
        for r in requests:
            if "<material>" in r.messages[-1][1]:
                self.synth_calls += 1
                out.append(Completion(self.answers.pop(0) if self.answers else "still not json"))
            else:
                out += super().complete([r])
        return out


def run_synthesis(task_config, backend, *overrides):
    run = Run(load_config(task_config, ["queries.per_mode=1", "queries.modes=['task_agnostic']",
                                        "synthesis.label_mode=round_robin", *overrides]), progress=False)
    run.llm.backend = backend
    run.stage("queries")
    run.stage("search")
    return run, run.stage("synthesize")


def test_unparsable_answer_is_retried_then_skipped_and_counted(task_config):
    good = "\n".join(json.dumps({"text": f"un texto de ejemplo {i}", "label": "1"}) for i in range(2))
    backend = Scripted(["I cannot help with that.", "{not json", good])
    run, counts = run_synthesis(task_config, backend)
    # two materials (one per culture), both answered badly; on the retry the first gets `good`,
    # the second fails again ("still not json") and is skipped after synthesis.max_attempts=2
    assert backend.synth_calls == 4
    assert counts["unparsable_answers"] == 3 and counts["jobs_skipped"] == 1
    assert counts["no_valid_answer"] == 1 and counts["kept"] == 2


def test_invalid_items_are_dropped_with_reasons(task_config):
    answer = "\n".join(json.dumps(x) for x in [
        {"text": "Este es un texto válido", "label": 1},
        {"text": "Otro texto, etiqueta mala", "label": "maybe"},
        {"text": "ab", "label": "0"},
        {"text": "", "label": "0"},
        {"text": "x" * 700, "label": "0"},
        {"text": "Este es un texto válido!", "label": "0"},  # same text after normalization
    ])
    run, counts = run_synthesis(task_config, Scripted([answer, answer]), "synthesis.max_chars=600")
    assert counts["label_not_in_set"] == 2 and counts["too_short"] == 2 and counts["empty_text"] == 2
    assert counts["too_long"] == 2 and counts["duplicate"] == 3 and counts["kept"] == 1
    kept = read_jsonl(run.rd.samples("Spanish"), Sample) + read_jsonl(run.rd.samples("Turkish"), Sample)
    assert [(s.text, s.label) for s in kept] == [("Este es un texto válido", "1")]
    reasons = {d.reason for d in read_jsonl(run.rd.dropped, DroppedSample)}
    assert reasons == {"label_not_in_set", "too_short", "empty_text", "too_long", "duplicate"}


def test_samples_leaking_evaluation_inputs_are_dropped(task_config):
    leaked = [{"text": "Me encanta la paella", "label": "0"},  # equal to an evaluation input
              {"text": "ok: " + "A long text " * 4, "label": "0"},  # shares an 8-gram with one
              {"text": "Una frase nueva sin relación alguna", "label": "1"}]
    answer = "\n".join(json.dumps(x) for x in leaked)
    run, counts = run_synthesis(task_config, Scripted([answer, "\n".join(json.dumps(x) for x in leaked[2:])]))
    assert counts["leaks_evaluation"] == 2 and counts["kept"] == 1


def test_every_sample_has_full_provenance(task_config):
    run = Run(load_config(task_config), progress=False)
    for s in ("queries", "search", "synthesize"):
        run.stage(s)
    samples = read_jsonl(run.rd.samples("Spanish"), Sample)
    assert samples
    for s in samples:
        p = s.provenance
        assert p.culture == "Spanish" and p.task == "hate" and p.mode in ("task_specific", "task_agnostic")
        assert p.query and p.source_ids and p.generator == "fake" and len(p.prompt_hash) == 16
    labels = [s.label for s in samples]
    assert labels.count("0") == labels.count("1")  # one call per label, the same count each


def test_per_label_mode_asks_for_one_label_per_call(task_config):
    class Recorder(Scripted):
        def __init__(self):
            super().__init__([])
            self.asks = []

        def complete(self, requests):
            self.asks += [r.messages[-1][1] for r in requests if "<material>" in r.messages[-1][1]]
            return FakeBackend.complete(self, requests)

    backend = Recorder()
    run = Run(load_config(task_config, ["queries.per_mode=1", "queries.modes=['task_agnostic']",
                                        "synthesis.samples_per_material=4"]), progress=False)
    run.llm.backend = backend
    for s in ("queries", "search"):
        run.stage(s)
    counts = run.stage("synthesize")
    assert len(backend.asks) == 2 * 2  # two materials x two labels
    assert sum('must have the label "1": the text has hate speech' in a for a in backend.asks) == 2
    assert sum('must have the label "0": the text does not have hate speech' in a for a in backend.asks) == 2
    assert counts["label[Spanish][1]"] == counts["label[Spanish][0]"] == 2


def test_leak_tokens_and_index_work_for_cjk_and_latin():
    assert leak_tokens("你好世界 hello") == ["你", "好", "世", "界", "hello"]
    idx = LeakIndex(["这是一个非常长的测试句子用于检查泄漏"], 8)
    assert idx.leaks("前缀一个非常长的测试句子后缀")
    assert not idx.leaks("完全不同的内容在这里")
    assert LeakIndex(["Short text"], 8).leaks("short TEXT!")


def test_samples_copying_a_demonstration_or_the_material_are_dropped(task_config):
    answer = "\n".join(json.dumps(x, ensure_ascii=False) for x in [
        {"text": "Los andaluces no trabajan nunca", "label": "1"},  # a Spanish demonstration, verbatim
        {"text": "Una frase propia y nueva sobre el fútbol", "label": "0"},
    ])
    run, counts = run_synthesis(task_config, Scripted([answer] * 2))
    assert counts["copies_demonstration"] == 1 and counts["kept"] == 2
    material = __import__("culturemanager.records", fromlist=["Material"]).Material
    m = read_jsonl(run.rd.materials, material)[0]
    words = m.text.split()
    copied = json.dumps({"text": " ".join(words[:14]), "label": "1"}, ensure_ascii=False)
    fresh = json.dumps({"text": "Algo completamente distinto aquí", "label": "0"})
    # a fresh run directory: the first run's cached answers must not be replayed
    run, counts = run_synthesis(task_config, Scripted([copied + "\n" + fresh] * 2),
                                f"run.dir={task_config.parent / 'second'}")
    # the copy is dropped wherever it repeats its own material; the fresh sample is kept
    assert counts["copies_material"] >= 1
    kept = [s.text for c in ("Spanish", "Turkish") for s in read_jsonl(run.rd.samples(c), Sample)]
    assert "Algo completamente distinto aquí" in kept
    dropped = read_jsonl(run.rd.dropped, DroppedSample)
    assert any(d.reason == "copies_material" and d.material_id == m.id for d in dropped)


def test_korean_is_split_into_words_so_a_shared_stock_phrase_is_no_leak():
    """Hangul was split per syllable as if it were Chinese: "도움이 될 것입니다" ("it will be helpful", three words,
    eight syllables) shared with a test input counted as an 8-gram leak in a Korean bench run."""
    assert leak_tokens("도움이 될 것입니다") == ["도움이", "될", "것입니다"]
    test_input = "이 제품을 매일 사용하면 생활에 도움이 될 것입니다"
    assert not LeakIndex([test_input], 8).leaks("새로운 정책은 지역 주민들에게 도움이 될 것입니다")
    long = "오늘 회의에서 우리는 새 프로젝트의 일정과 예산 그리고 담당자를 모두 정했습니다"
    assert LeakIndex([long], 8).leaks("참고로 말하자면 " + long)  # eight shared words still leak
    assert leak_tokens("東京タワーは高い tower") == ["東", "京", "タ", "ワ", "ー", "は", "高", "い", "tower"]


def test_a_sample_repeating_another_tasks_evaluation_input_is_dropped(task_config):
    """Synthesis checked a sample only against its own task's evaluation inputs, the bench's contamination count
    against every task's: one definition now, over every evaluation input of the run."""
    leaked = "Este texto aparece en la evaluación de otra tarea distinta"
    (task_config.parent / "spam_eval.jsonl").write_text(json.dumps({"text": leaked}) + "\n", encoding="utf-8")
    task_config.write_text(task_config.read_text() + '\n[[tasks]]\nid = "spam"\nlabel = "spam"\n'
                           'cultures = ["Spanish"]\nevaluation = [{path = "spam_eval.jsonl"}]\n')
    answer = "\n".join(json.dumps(x, ensure_ascii=False) for x in [
        {"text": leaked, "label": "1"}, {"text": "Una frase nueva y propia sobre el mercado", "label": "0"}])
    run, counts = run_synthesis(task_config, Scripted([answer] * 3))
    kept = [s for c in ("Spanish", "Turkish") for s in read_jsonl(run.rd.samples(c), Sample)]
    assert {s.task for s in kept} == {"hate", "spam"}
    assert leaked not in {s.text for s in kept}
    leaks = [d for d in read_jsonl(run.rd.dropped, DroppedSample) if d.reason == "leaks_evaluation"]
    assert {d.task for d in leaks} == {"hate", "spam"}


def test_an_answer_whose_every_label_is_outside_the_set_keeps_its_drop_reason(task_config):
    """Such an answer was counted 'unparsable' and label_not_in_set never reached samples/dropped.jsonl."""
    bad = "\n".join(json.dumps({"text": f"Un texto de ejemplo {i}", "label": "maybe"}) for i in range(3))
    good = "\n".join(json.dumps({"text": f"Bir örnek metin {i}", "label": "0"}) for i in range(2))
    run, counts = run_synthesis(task_config, Scripted([bad, good, bad]))
    assert counts["answers_without_valid_items"] == 2 and "unparsable_answers" not in counts
    assert counts["label_not_in_set"] == 6 and counts["jobs_skipped"] == 1
    reasons = [d.reason for d in read_jsonl(run.rd.dropped, DroppedSample)]
    assert reasons.count("label_not_in_set") == 6 and reasons.count("no_valid_answer") == 1
    # every job of the first culture failed: no samples file replaces an earlier one
    assert counts["cultures_failed"] == 1 and not run.rd.samples("Spanish").exists()
    assert counts["kept[Turkish]"] == 2
