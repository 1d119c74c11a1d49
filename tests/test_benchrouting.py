"""The bench's router measurement: route examples never include a test input, routed answers follow the router's
mixtures, the least-sure comparison, and the report section."""

from __future__ import annotations

import pytest

from culturemanager.bench.routing import RouteTask, least_sure, route_examples, routed_answers, routers_section
from culturemanager.records import BASE
from culturemanager.stages.route import OTHERS, Router


def test_route_examples_drop_every_test_input_of_any_task_and_repeats():
    tasks = [RouteTask("bn-racism", "Bengali", "bn", ["ক খ", "গ ঘ"], ["ঙ চ"]),
             RouteTask("bn-threat", "Bengali", "bn", ["ঙ চ", "ক খ"], ["ছ জ"]),  # shares its texts with bn-racism
             RouteTask("es-stance", "Spanish", "es", ["hola amigo", "Hola  amigo!"], ["adiós"])]
    examples, counts = route_examples(tasks, {"Spanish": ["qué tal"]})
    assert examples == {"Bengali": ["ক খ", "গ ঘ"], "Spanish": ["hola amigo", "qué tal"]}
    assert counts["dropped_as_test_inputs"] == 1 and counts["with_samples"]


def test_routed_answers_take_the_routed_adapter_or_mix_the_top_two():
    by_adapter = {"A": ([0.9, 0.8, 0.1], [0.9, 0.8, 0.1]), "B": ([0.1, 0.2, 0.3], [0.2, 0.2, 0.2]),
                  BASE: ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])}
    routes, probs = ["A", "B", OTHERS], [{"A": 0.75, "B": 0.25}, {"A": 0.5, "B": 0.5}, {"A": 0.9, "B": 0.1}]
    one = Router(True, ["A", "B", OTHERS], "", {"A": "a/", "B": "b/"}, 0)
    assert routed_answers(by_adapter, one, routes, probs)[0] == [0.9, 0.2, 0.5]
    two = Router(True, ["A", "B", OTHERS], "", {"A": "a/", "B": "b/"}, 0, top_k=2)
    raw, cal = routed_answers(by_adapter, two, routes, probs)
    assert raw == pytest.approx([0.75 * 0.9 + 0.25 * 0.1, 0.5 * 0.8 + 0.5 * 0.2, 0.5])
    assert cal == pytest.approx([0.75 * 0.9 + 0.25 * 0.2, 0.5 * 0.8 + 0.5 * 0.2, 0.5])


def test_least_sure_compares_on_the_lowest_confidence_share():
    gold = ["1", "0", "1", "0"]
    top1, mixed = [0.9, 0.6, 0.4, 0.1], [0.9, 0.4, 0.6, 0.1]
    out = least_sure(gold, top1, mixed, confidence=[0.99, 0.55, 0.6, 0.98], share=0.5)
    assert out["n"] == 2 and out["max_confidence"] == 0.6
    assert out["least_sure"]["top1"]["accuracy"] == 0.0 and out["least_sure"]["mixed"]["accuracy"] == 1.0
    assert out["all"]["top1"]["accuracy"] == 0.5 and out["all"]["mixed"]["accuracy"] == 1.0


def test_routers_section_renders_both_routers():
    summary = {"per_task": {"t1": 1.0, "t2": 0.5}, "accuracy": 0.75, "ms_per_input": 3.5}
    mix = {"seed": 0, **{k: {"n": 1, "max_confidence": 0.6, "least_sure": {"top1": {"macro_f1": 0.5},
                                                                          "mixed": {"macro_f1": 0.6}},
                             "all": {"top1": {"macro_f1": 0.7}, "mixed": {"macro_f1": 0.7}}}
                         for k in ("raw", "calibrated")}}
    r = {"routers": {"embedding": {**summary, "cost_vs_prompt": 0.01, "top2_mixing": mix,
                                   "left_out_others": {"A": {"to_others": 0.9, "in_set_accuracy": 1.0}}},
                     "prompt": {**summary, "ms_per_input": 350.0, "uncalibrated_accuracy": 0.4, "top2_mixing": mix}}}
    md = routers_section(r)
    assert "| t1 | 100.0 | 100.0 |" in md and "(1/100)" in md and "| A | 90.0 | 100.0 |" in md
    assert "| embedding | raw | 1 | 0.6 | 50.0 | 60.0 | 70.0 | 70.0 |" in md
    assert "No router measurement" in routers_section({})
