"""Per-format prompts, free-text sample validation and predict-time answer cleanup (formats.py), all pure, and
the decoder's guard against empty answers (checked on a fake model whose first choice is always the end)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from culturemanager.config import Culture, SynthesisConfig, Task
from culturemanager.records import DropReason
from culturemanager.text.formats import SYNTH_EXAMPLES, clean_answer, repeats_question, template_marker, validate_answer
from culturemanager.text.prompts import all_json_objects, build_synthesis_messages, parse_samples

QA = Task(id="qa", label="Spanish customs", format="free_text")
SYN = SynthesisConfig(min_chars=5, max_chars=200)
SPANISH = Culture(name="Spanish", language="es")


# ------------------------------------------------------------------------------------------- prompts

@pytest.mark.parametrize("fmt", ["binary", "true_false", "multiple_choice", "free_text"])
def test_each_formats_example_parses_as_its_own_format(fmt):
    labels = ["A", "B", "C", "D"] if fmt == "multiple_choice" else None
    task = Task(id="t", label="customs", format=fmt, labels=labels)
    user, answer = SYNTH_EXAMPLES[fmt]
    got = parse_samples(answer, task, SynthesisConfig(min_chars=5, max_chars=300))
    assert got.items and not got.dropped  # the example is a valid answer of its own format


def test_the_free_text_prompt_shows_a_free_text_example_and_asks_for_answers_not_labels():
    messages = build_synthesis_messages(SPANISH, QA, "La Nochevieja se celebra con doce uvas.", [], [""] * 2, SYN)
    (_, system), (_, ex_user), (_, ex_answer), (_, user) = messages
    assert all("answer" in o and "label" not in o for o in all_json_objects(ex_answer))
    assert '"0"' not in ex_user + ex_answer + user and "Labels:" not in user
    assert user.endswith('{"text": "<question>", "answer": "<its answer>"}')
    assert "question-answer pairs" in user and "not a label" in user and "question-answer" in system


def test_the_binary_prompt_keeps_its_spam_example():
    messages = build_synthesis_messages(SPANISH, Task(id="h", label="hate speech"), "material", [], ["1"], SYN)
    assert "spam" in messages[1][1] and '"label": "1"' in messages[2][1]


# --------------------------------------------------------------------------------- free-text samples

@pytest.mark.parametrize(("answer", "reason"), [
    ("1", DropReason.BARE_LABEL), ("0", DropReason.BARE_LABEL), (" True ", DropReason.BARE_LABEL),
    ("'false'", DropReason.BARE_LABEL), ("", DropReason.NO_LABEL), ("  ...", DropReason.NO_LABEL),
    ("Answer: doce uvas", DropReason.ECHOES_TEMPLATE), ("Question: ¿Qué se come? Answer: uvas",
                                                        DropReason.ECHOES_TEMPLATE),
    ("<its answer>", DropReason.ECHOES_TEMPLATE),
    ("¿Qué se come en Nochevieja?", DropReason.REPEATS_QUESTION),
    ("qué se come en nochevieja", DropReason.REPEATS_QUESTION),
    ("Se come en Nochevieja", DropReason.REPEATS_QUESTION),
    ("doce uvas", None), ("12 uvas, una por campanada", None), ("7", None), ("Nochevieja", None)])
def test_free_text_answers_that_are_no_answers_are_dropped(answer, reason):
    assert validate_answer("¿Qué se come en Nochevieja?", answer, QA) == reason


def test_parse_samples_free_text_keeps_answers_and_drops_labels_with_reasons():
    text = "\n".join(json.dumps(o, ensure_ascii=False) for o in [
        {"text": "¿Qué se come en Nochevieja?", "answer": "doce uvas"},
        {"text": "¿Qué se bebe en la Feria de Abril?", "label": "1"},  # the binary habit
        {"text": "¿Cuándo es la Tomatina?", "answer": "¿Cuándo es la Tomatina?"},
        {"text": "¿Dónde se baila la sardana?", "answer": "en Cataluña", "label": "0"}])  # "answer" wins
    got = parse_samples(text, QA, SYN)
    assert got.items == [("¿Qué se come en Nochevieja?", "doce uvas"), ("¿Dónde se baila la sardana?", "en Cataluña")]
    assert [r for r, _, _ in got.dropped] == [DropReason.BARE_LABEL, DropReason.REPEATS_QUESTION]


def test_repeats_question_in_cjk_and_arabic():
    assert repeats_question("北京是中国的首都吗", "北京是中国的首都吗")
    assert not repeats_question("中国的首都是哪里", "北京")
    assert repeats_question("ما هي عاصمة السعودية", "ما هي عاصمة السعودية الرياض")  # holds the whole question
    assert not repeats_question("ما هي عاصمة السعودية", "الرياض")


# ---------------------------------------------------------------------------------- predict answers

def test_template_marker_is_the_templates_last_line():
    assert template_marker(QA) == "Answer:"
    assert template_marker(Task(id="b", label="spam")) == "Response:"
    assert template_marker(Task(id="x", label="spam", template="{input}")) == ""


@pytest.mark.parametrize(("raw", "answer"), [
    ("doce uvas\nQuestion: ¿Y en Reyes?\nAnswer: roscón", "doce uvas"),  # the first line only
    ("\n\n  doce uvas  ", "doce uvas"),
    ("Task: Spanish customs. Input: ¿Qué se come en Nochevieja? Answer: doce uvas", "doce uvas"),  # echo cut
    ("Answer: doce uvas", "doce uvas"),
    ('"doce uvas"', "doce uvas"),
    ("¿Qué se come en Nochevieja?", ""),  # only the input again: no answer
    ("", ""),
    ("北京。", "北京。")])
def test_clean_answer(raw, answer):
    assert clean_answer(raw, QA, "¿Qué se come en Nochevieja?") == answer


class EndFirstModel:
    """Logits over 6 tokens, the same at every step: end-of-sequence (0) first, then a space (1), a newline (2),
    then the words 3, 4."""

    def __call__(self, input_ids, **kwargs):
        row = torch.tensor([10.0, 9.0, 8.5, 8.0, 7.0, 1.0])
        return SimpleNamespace(logits=row.expand(input_ids.shape[0], input_ids.shape[1], 6), cache=object())


def test_decode_never_ends_before_the_first_non_blank_token():
    from culturemanager.backends.target import decode_greedy

    prompts = [[3, 4], [4]]
    assert decode_greedy(EndFirstModel(), prompts, None, [5, 5], {0}, 5) == [[], []]  # the old empty answers
    assert decode_greedy(EndFirstModel(), prompts, None, [5, 5], {0}, 5, blank_ids={1, 2}) == [[3], [3]]
