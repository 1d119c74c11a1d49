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


def test_multiple_choice_scores_the_likeliest_option_and_compares_accuracy():
    gold = ["A", "B", "C"] * 10
    right = [[0.8 if x == g else 0.1 for x in "ABC"] for g in gold]
    always_a = [[0.5, 0.3, 0.2]] * len(gold)
    a = Answers(gold={"t": gold}, culture_of={"t": "Spanish"}, family="options", labels={"t": ["A", "B", "C"]},
                p={"TaskSFT": {0: {"t": (right, right)}}, "Original": {0: {"t": (always_a, always_a)}}})
    res = {m["name"]: m for m in method_results(a, draws=100)}
    assert res["TaskSFT"]["raw"]["overall"]["accuracy"]["mean"] == 1.0
    # always "A": accuracy 1/3; F1 of A = 2*10/(2*10+20) = 1/2, of B and C 0 -> macro-F1 1/6
    assert abs(res["Original"]["raw"]["overall"]["accuracy"]["mean"] - 1 / 3) < 1e-9
    assert abs(res["Original"]["raw"]["overall"]["macro_f1"]["mean"] - 1 / 6) < 1e-9
    [row] = comparisons(a, [("TaskSFT", "Original")], draws=200)
    assert abs(row["raw"]["accuracy"]["difference"] - 2 / 3) < 1e-9 and row["raw"]["accuracy"]["verdict"] == "better"
    assert set(row["raw"]) == {"accuracy", "macro_f1"}


def test_free_text_scores_soft_and_exact_match_and_has_no_calibrated_kind():
    gold = ["Madrid", "uvas", "Buñol", "flamenco"]
    accepted = [["Madrid"], ["uvas", "doce uvas"], ["Buñol"], ["flamenco", "sevillanas"]]
    good = ["Madrid", "Se comen doce uvas", "Buñol", "sevillanas"]
    bad = ["Roma", "", "Valencia", "jota"]
    a = Answers(gold={"t": gold}, culture_of={"t": "Spanish"}, family="free_text", accepted={"t": accepted},
                language={"t": "es"}, p={"TaskSFT": {0: {"t": (good, good)}}, "Original": {0: {"t": (bad, bad)}}})
    res = {m["name"]: m for m in method_results(a, draws=100)}
    assert "calibrated" not in res["TaskSFT"]
    # soft: all four; exact: Madrid, Buñol, sevillanas (the second answer only contains "doce uvas")
    assert res["TaskSFT"]["raw"]["overall"]["soft_match"]["mean"] == 1.0
    assert abs(res["TaskSFT"]["raw"]["overall"]["exact_match"]["mean"] - 0.75) < 1e-9
    assert res["Original"]["raw"]["overall"]["soft_match"]["mean"] == 0.0
    assert res["Original"]["raw"]["tasks"]["t"]["empty_share"]["mean"] == 0.25
    [row] = comparisons(a, [("TaskSFT", "Original")], draws=200)
    assert set(row) == {"a", "b", "raw"} and row["raw"]["soft_match"]["difference"] == 1.0


def test_the_base_rate_kind_scores_a_right_ranking_with_a_lean_as_right_and_a_constant_as_nothing():
    # both methods answer "1" to every input at 0.5: the uncalibrated scores cannot tell them apart; at the task's
    # base rate (half its demonstrations positive) the one that ranks right is perfect
    leaned = [0.9 if g == "1" else 0.6 for g in GOLD]
    constant = [0.7] * len(GOLD)
    a = Answers(gold={"t": GOLD}, culture_of={"t": "Spanish"}, base_rate={"t": 0.5},
                p={"TaskSFT": {0: {"t": (leaned, leaned)}}, "Original": {0: {"t": (constant, constant)}}})
    assert a.kinds == ("raw", "calibrated", "base_rate")
    res = {m["name"]: m for m in method_results(a, draws=100)}
    assert abs(res["TaskSFT"]["raw"]["overall"]["macro_f1"]["mean"] - 1 / 3) < 1e-9
    assert abs(res["TaskSFT"]["base_rate"]["overall"]["macro_f1"]["mean"] - 1.0) < 1e-9
    assert abs(res["TaskSFT"]["base_rate"]["overall"]["positive_rate"]["mean"] - 0.5) < 1e-9
    # the constant answer: every input tied at the cut, none answered positive: macro-F1 (0 + 2/3) / 2
    assert abs(res["Original"]["base_rate"]["overall"]["macro_f1"]["mean"] - 1 / 3) < 1e-9
    [row] = comparisons(a, [("TaskSFT", "Original")], draws=200)
    assert row["raw"]["macro_f1"]["verdict"] == "not distinguishable"
    assert row["base_rate"]["macro_f1"]["verdict"] == "better"
    assert row["base_rate"]["auc"]["difference"] == row["raw"]["auc"]["difference"]  # a monotone shift


def test_without_base_rates_there_is_no_base_rate_kind():
    assert answers().kinds == ("raw", "calibrated")
