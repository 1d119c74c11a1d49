"""bench/results.py on hand-made answers: a method that ranks every input right against one that answers the same
to every input; the paired comparison finds the first better, a pair named twice is compared once."""

from culturemanager.bench.results import Answers, comparisons, method_results

GOLD = ["1", "0"] * 20  # 40 test inputs, half positive


def answers() -> Answers:
    perfect = [0.9 if g == "1" else 0.1 for g in GOLD]
    constant = [0.7] * len(GOLD)
    return Answers(gold={"t": GOLD}, culture_of={"t": "Spanish"},
                   p={"TaskSFT": {0: {"t": (perfect, perfect)}}, "Original": {0: {"t": (constant, constant)}}})


def test_a_perfect_method_is_better_than_a_constant_one_and_the_verdict_says_so():
    [row] = comparisons(answers(), [("TaskSFT", "Original")], draws=200)
    macro = row["raw"]["macro_f1"]
    # perfect: macro-F1 1.0; constant "1": F1(pos) 2/3, F1(neg) 0 -> macro 1/3
    assert abs(macro["difference"] - (1.0 - 1 / 3)) < 1e-9
    assert macro["ci"][0] > 0 and macro["verdict"] == "better"
    assert abs(row["raw"]["auc"]["difference"] - 0.5) < 1e-9  # AUC 1.0 against 0.5


def test_a_pair_named_twice_is_compared_once_and_a_method_is_never_compared_with_itself():
    rows = comparisons(answers(), [("TaskSFT", "Original"), ("TaskSFT", "Original"), ("TaskSFT", "TaskSFT"),
                                   ("TaskSFT", "Missing")], draws=100)
    assert [(r["a"], r["b"]) for r in rows] == [("TaskSFT", "Original")]


def test_method_results_report_the_overall_macro_f1_of_each_method():
    res = {m["name"]: m for m in method_results(answers(), draws=100)}
    assert abs(res["TaskSFT"]["raw"]["overall"]["macro_f1"]["mean"] - 1.0) < 1e-9
    assert abs(res["Original"]["raw"]["overall"]["macro_f1"]["mean"] - 1 / 3) < 1e-9
