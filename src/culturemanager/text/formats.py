"""What differs between the four task formats (binary, true_false, multiple_choice, free_text): the synthesis
prompt's format hint, its one-shot example and the JSON shape it asks for; the checks on a free-text sample's
answer; and the cleanup of a generated free-text answer at predict. Constants and pure functions, no model.

A binary example in a free-text prompt is what taught a small generator to answer open questions with "0" or
"1" (issue 16): every format shows an example of its own shape, and a free-text answer that is a bare label, an
echo of the prompt's template or a repeat of its question is dropped (`records.DropReason`).

Run: `python -m culturemanager.text.formats` prints each format's one-shot example.
"""

from __future__ import annotations

import re
import string

from culturemanager.config import DEFAULT_LABELS, Task
from culturemanager.records import DropReason
from culturemanager.text.answers import answer_tokens, normalize_answer


def valid_options(options: object) -> bool:
    """A row's multiple-choice options: a list of 2 to 26 distinct non-empty strings (one letter each)."""
    return isinstance(options, list) and 2 <= len(options) <= 26 and len(set(options)) == len(options) and all(
        isinstance(o, str) and o.strip() for o in options)


def option_letter(options: list[str], label: str) -> str | None:
    """The letter of a row's correct option, named by its text or by its letter; None when it names neither."""
    letters = string.ascii_uppercase[:len(options)]
    if label in options:
        return letters[options.index(label)]
    return label.strip().upper() if label.strip().upper() in letters and label.strip() else None


def with_options(question: str, options: list[str]) -> str:
    """A multiple-choice question with its options lettered: "What is ...? A) x B) y"."""
    return question + " " + " ".join(f"{string.ascii_uppercase[i]}) {o.strip()}" for i, o in enumerate(options))


FORMAT_HINT: dict[str, str] = {
    "binary": "Each label says whether the text has {task}: {positive} = it has, the other label = it has not.",
    "true_false": "Each text is a statement about {task}; the label says whether it is true or false.",
    "multiple_choice": "Each text is a question about {task} that lists its options; the label is the "
                       "correct option.",
    "free_text": "Each text is a question (or input) of the task and its answer is the correct answer in a few "
                 "words: never a label or a number code such as 0 or 1, never the question repeated.",
}

# One-shot example turns (user, assistant) per format: small instruct models follow the JSON-lines shape far more
# often with one, and copy its habits, so each format shows its own.
SYNTH_EXAMPLES: dict[str, tuple[str, str]] = {
    "binary": ("Task: spam. Labels: [\"0\", \"1\"] (\"1\" = has spam). Write 2 inputs. "
               "Use the labels in this order: 1, 0.",
               '{"text": "Congratulations! You won a free phone, reply with your bank details to claim it today.", '
               '"label": "1"}\n{"text": "Can we move tomorrow\'s meeting to 3 pm?", "label": "0"}'),
    "true_false": ("Task: Japanese customs. Labels: [\"true\", \"false\"]. Write 2 inputs. "
                   "Use the labels in this order: true, false.",
                   '{"text": "In Japan, shoes are taken off before entering a home.", "label": "true"}\n'
                   '{"text": "In Japan, tipping the waiter 20 percent is expected.", "label": "false"}'),
    "multiple_choice": ("Task: Japanese customs. Labels: [\"A\", \"B\", \"C\", \"D\"]. Write 1 input.",
                        '{"text": "What is eaten in Japan on New Year\'s Eve? A) toshikoshi soba B) turkey '
                        'C) mooncakes D) paella", "label": "A"}'),
    "free_text": ("Task: Japanese customs. Write 2 question-answer pairs.",
                  '{"text": "What noodles do people in Japan eat on New Year\'s Eve?", "answer": "toshikoshi soba"}\n'
                  '{"text": "Which flower marks the start of spring in Japan?", "answer": "the cherry blossom '
                  '(sakura)"}'),
}


def answer_key(task: Task) -> str:
    """The JSON key the synthesis prompt asks for: "answer" for free text, "label" for the label formats."""
    return "answer" if task.format == "free_text" else "label"


def json_shape(task: Task) -> str:
    """The shape of one sample in the answer, as the prompt states it."""
    if task.format == "free_text":
        return '{"text": "<question>", "answer": "<its answer>"}'
    return '{"text": "...", "label": "..."}'


# ------------------------------------------------------------------------------------ free-text samples

BARE_LABELS = frozenset(x for labels in DEFAULT_LABELS.values() for x in labels) | {"yes", "no"}
"""What a free-text answer may not be: a label of the label formats ("0", "1", "true", "false", yes/no)."""
TEMPLATE_MARKER = re.compile(r"^\s*(?:question|answer|input|task|response|text|label)\s*:", re.IGNORECASE)


def validate_answer(question: str, answer: str, task: Task) -> DropReason | None:
    """Why a free-text sample's answer is no answer, or None when it is one: empty, a bare label, an echo of the
    prompt's template ("Question: ... Answer: ...") or of the JSON shape, or the question repeated."""
    a, q = normalize_answer(answer), normalize_answer(question)
    if not a:
        return DropReason.NO_LABEL
    if a in BARE_LABELS:
        return DropReason.BARE_LABEL
    if TEMPLATE_MARKER.match(answer) or template_marker(task) and template_marker(task) in answer \
            or answer.strip().strip(".").casefold() in ("<its answer>", "<answer>", "..."):
        return DropReason.ECHOES_TEMPLATE
    if repeats_question(q, a):
        return DropReason.REPEATS_QUESTION
    return None


def repeats_question(question: str, answer: str) -> bool:
    """The (normalized) answer is the question, holds the whole question, or is three or more of the question's
    own words covering at least half of it ("What is the capital?" -> "the capital is what")."""
    if not question or not answer:
        return False
    if answer == question or question in answer:
        return True
    q, a = answer_tokens(question), answer_tokens(answer)
    return len(a) >= 3 and set(a) <= set(q) and len(set(a)) * 2 >= len(set(q))


def template_marker(task: Task) -> str:
    """The last line of the template after {input}, e.g. "Answer:": what an echoing model writes before its
    answer ("" when the template ends with the input)."""
    suffix = (task.template or "").split("{input}", 1)[-1]
    lines = [x.strip() for x in suffix.replace("{task}", task.label).splitlines() if x.strip()]
    return lines[-1] if lines else ""


# ------------------------------------------------------------------------------- predict-time answers

def clean_answer(raw: str, task: Task, text: str) -> str:
    """A generated free-text answer as scored: an echoed template is cut (everything up to the last answer
    marker of the first line that has content), then the first line, without wrapping quotes; an answer that
    only repeats the input is "". Generation stops at that line's end anyway (Engine.generate)."""
    line = next((x.strip() for x in raw.splitlines() if x.strip()), "")
    marker = template_marker(task)
    if marker and marker in line:
        line = line.rsplit(marker, 1)[1].strip()
    line = TEMPLATE_MARKER.sub("", line, count=1).strip() if TEMPLATE_MARKER.match(line) else line
    line = line.strip().strip("\"'`“”«»").strip()
    if normalize_answer(line) == normalize_answer(text):
        return ""
    return line


def main() -> None:
    for fmt, (user, answer) in SYNTH_EXAMPLES.items():
        print(f"[{fmt}]\n{user}\n{answer}\n")


if __name__ == "__main__":
    main()
