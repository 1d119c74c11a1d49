"""The benchmark report rendered from a small hand-made results dict: tables, formatting, plots and gaps."""

import copy
import json
import sys

import pytest

from culturemanager.bench.report import duration, render_markdown, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def stat(*values):
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "values": list(values)}


def scores(seeds, f1, macro):
    """f1/macro: {task: tuple of per-seed values}; culture and overall averages taken from them."""
    tasks = {t: {"f1_positive": stat(*f1[t]), "macro_f1": stat(*macro[t]), "n": 50} for t in f1}
    cultures = {c: {m: stat(*[sum(src[t][i] for t in ts) / len(ts) for i in range(len(seeds))])
                    for m, src in (("f1_positive", f1), ("macro_f1", macro))}
                for c, ts in (("Arabic", ["ar-hate"]), ("Bengali", ["bn-offensive"])) if all(t in f1 for t in ts)}
    overall = {m: stat(*[sum(src[t][i] for t in src) / len(src) for i in range(len(seeds))])
               for m, src in (("f1_positive", f1), ("macro_f1", macro))}
    ci = {m: [overall[m]["mean"] - 0.05, overall[m]["mean"] + 0.04] for m in ("macro_f1", "f1_positive")}
    return {"tasks": tasks, "cultures": cultures, "overall": overall, "overall_ci": ci}


def method(name, seeds, f1, macro):
    calibrated = {t: tuple(v + 0.1 for v in vals) for t, vals in macro.items()}
    return {"name": name, "group": "g", "description": "d", "seeds": seeds, "raw": scores(seeds, f1, macro),
            "calibrated": scores(seeds, f1, calibrated)}


@pytest.fixture
def results():
    return {
        "schema": 1, "created": "2026-11-23T22:00:00", "command": "culturemanager bench examples/bench.toml",
        "quick": False, "models": {"target": "gemma3-270m", "generator": "qwen2.5-coder-1.5b-instruct"},
        "protocol": {"demo_share": 0.1, "test_cap": 50, "split_seed": 0, "seeds": [0, 1], "train_steps": 20,
                     "batch_size": 4, "max_length": 128},
        "tasks": [
            {"id": "ar-hate", "culture": "Arabic", "rows_used": 675, "skipped": {"duplicate_text": 3}, "demos": 68,
             "test": 50, "test_positive": 13, "status": "ok", "skip_reason": None},
            {"id": "bn-offensive", "culture": "Bengali", "rows_used": 400, "skipped": {}, "demos": 40, "test": 50,
             "test_positive": 20, "status": "ok", "skip_reason": None},
            {"id": "bn-spam", "culture": "Bengali", "rows_used": 30, "skipped": {}, "demos": 3, "test": 27,
             "test_positive": 0, "status": "skipped", "skip_reason": "no positive example in the test split"},
        ],
        "cultures": ["Arabic", "Bengali"],
        "methods": [
            method("Original", [0], {"ar-hate": (0.300,), "bn-offensive": (0.500,)},
                   {"ar-hate": (0.45,), "bn-offensive": (0.55,)}),
            method("CultureLLM", [0], {"ar-hate": (0.350,)}, {"ar-hate": (0.60,)}),  # bn-offensive missing
            method("CultureManager", [0, 1], {"ar-hate": (0.40, 0.44), "bn-offensive": (0.60, 0.66)},
                   {"ar-hate": (0.50, 0.52), "bn-offensive": (0.50, 0.54)}),
        ],
        "best_baseline": "Original",
        "comparisons": [{"a": "CultureManager", "b": "Original",
                         "raw": {"macro_f1": {"difference": 0.015, "ci": [-0.02, 0.05],
                                              "verdict": "not distinguishable"},
                                 "f1_positive": {"difference": 0.125, "ci": [0.05, 0.2], "verdict": "better"},
                                 "auc": {"difference": -0.1, "ci": [-0.2, -0.01], "verdict": "worse"}},
                         "calibrated": {"macro_f1": {"difference": 0.02, "ci": [0.01, 0.03], "verdict": "better"}}}],
        "router": {"options": ["Arabic", "Bengali", "Others"], "accuracy": 0.85,
                   "per_task": {"ar-hate": 0.8, "bn-offensive": 0.9},
                   "confusion": {"rows": ["Arabic", "Bengali"], "cols": ["Arabic", "Bengali", "Others"],
                                 "counts": [[40, 5, 5], [3, 45, 2]]}},
        "c_spec": {"cultures": ["Arabic", "Bengali"], "matrix": [[0.4, 0.2], [0.3, 0.5]],
                   "score": {"mean": 0.9, "std": 0.05, "values": [0.85, 0.95]}},
        "contamination": {"kept_samples_matching_test": 0, "dropped_as_leakage": 2,
                          "synthetic_samples": {"Arabic": {"task_specific": 20, "task_agnostic": 15},
                                                "Bengali": {"task_specific": 18, "task_agnostic": 12}}},
        "paper": {"source": "https://example.org/paper", "paper": "CultureManager", "model": "GPT-3.5",
                  "metric": "F1 (%)", "tasks": ["ar-hate", "bn-offensive"],
                  "rows": {"Original": {"ar-hate": 55.2, "bn-offensive": 48.0},
                           "CultureManager": {"ar-hate": 61.7, "bn-offensive": 50.3}}},
        "timings": {"split": 1.2, "pipeline": 843.0, "train": 2000.0, "evaluate": 1500.0, "total": 4320.0},
        "versions": {"torch": "2.13.0"},
    }


def section(md: str, title: str) -> str:
    """The text of the section whose heading starts with `title`, up to the next `## ` heading."""
    start = md.index("## " + title)
    end = md.find("\n## ", start + 1)
    return md[start:end if end != -1 else None]


def row_of(text: str, first_cell: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {first_cell} |"))
    return [c.strip() for c in line.strip("|").split("|")]


TABLE1 = "Positive-class F1"


def test_table1_rows_columns_and_skipped_task(results):
    t1 = section(render_markdown(results), TABLE1)
    head = row_of(t1, "Method")
    assert head == ["Method", "ar-hate", "bn-offensive", "Arabic avg", "Bengali avg", "Avg"]
    assert "bn-spam" not in t1  # skipped task: no score column
    for name in ("Original", "CultureLLM", "CultureManager"):
        assert row_of(t1, name)


def test_cells_bold_best_and_seed_formatting(results):
    t1 = section(render_markdown(results), TABLE1)
    # one seed: plain value, no ±
    assert row_of(t1, "Original")[1] == "30.0"
    assert row_of(t1, "CultureLLM")[1] == "35.0"
    # two seeds: mean ± sample std, and the best in its column
    assert row_of(t1, "CultureManager")[1] == "**42.0 ± 2.8**"
    assert row_of(t1, "CultureManager")[2] == "**63.0 ± 4.2**"
    # missing value renders as a dash
    assert row_of(t1, "CultureLLM")[2] == "–"
    assert row_of(t1, "CultureLLM")[4] == "–"
    macro = section(render_markdown(results), "Macro-F1 (%), uncalibrated")
    assert row_of(macro, "CultureLLM")[1] == "**60.0**"  # a one-seed method can be the best too
    assert row_of(macro, "Original")[2] == "**55.0**"
    # the average carries its bootstrap interval; the calibrated table has its own numbers
    assert row_of(macro, "Original")[-1] == "50.0 [45.0, 54.0]"
    assert row_of(section(render_markdown(results), "Macro-F1 (%), calibrated"), "Original")[1] == "55.0"
    assert "Seeds per method: Original 1, CultureLLM 1, CultureManager 2" in render_markdown(results)


def test_paper_table_and_its_absence(results):
    md = render_markdown(results)
    paper = section(md, "The paper's numbers")
    assert "Reported for a different, much larger model (GPT-3.5): not comparable in level" in paper
    assert "https://example.org/paper" in paper
    assert row_of(paper, "Original (paper)") == ["Original (paper)", "55.2", "48.0", "51.6"]
    assert row_of(paper, "Original (here)") == ["Original (here)", "30.0", "50.0", "40.0"]
    # the paper's CultureManager - Original is +4.4 F1; here +12.5 with an interval above 0
    assert row_of(paper, "CultureManager − Original") == ["CultureManager − Original", "+4.4",
                                                          "+12.5 [+5.0, +20.0]", "same sign, better"]
    results["paper"] = None
    assert "Not shown: set `bench.paper`" in render_markdown(results)


def test_reading_and_differences_come_from_the_intervals(results):
    md = render_markdown(results)
    reading = section(md, "Reading")
    assert "CultureManager vs Original (raw): **not distinguishable** — macro-F1 difference +1.5 points, 95% " \
           "interval [-2.0, +5.0]" in reading
    assert "CultureManager vs Original (calibrated): **better**" in reading
    assert "The best baseline here is Original." in reading
    diff = section(md, "Paired differences")
    assert row_of(diff, "CultureManager − Original") == ["CultureManager − Original", "+1.5 [-2.0, +5.0]",
                                                         "+2.0 [+1.0, +3.0] ▲", "+12.5 [+5.0, +20.0] ▲",
                                                         "-10.0 [-20.0, -1.0] ▼"]


def test_other_sections(results):
    md = render_markdown(results)
    assert "`culturemanager bench examples/bench.toml`" in md
    assert "demo share 10%" in md and "Total wall time: 1 h 12 min" in md
    tasks = section(md, "Tasks")
    assert row_of(tasks, "bn-spam")[-1] == "skipped: no positive example in the test split"
    assert row_of(tasks, "ar-hate")[3] == "duplicate_text 3"
    router = section(md, "Router")
    assert "Overall accuracy (%): 85.0" in router
    assert row_of(router, "Arabic") == ["Arabic", "40", "5", "5"]
    assert "router_confusion.png" in router
    cspec = section(md, "Culture specificity")
    assert row_of(cspec, "Bengali") == ["Bengali", "30.0", "50.0"]
    assert "0.90 ± 0.05" in cspec and "1.0 = every culture is served best by its own adapter" in cspec
    assert row_of(section(md, "Contamination"), "Arabic") == ["Arabic", "20", "15"]
    assert row_of(section(md, "Timings"), "pipeline") == ["pipeline", "14 min 3 s"]
    assert "## Adapters" in md


def test_partial_results_render_dashes_instead_of_failing():
    md = render_markdown({"methods": [{"name": "Original"}], "tasks": [{"id": "x", "status": "ok"}],
                          "router": None, "c_spec": None, "paper": None, "timings": {"total": None}})
    assert row_of(section(md, TABLE1), "Original") == ["Original", "–", "–"]
    assert "Total wall time: –" in md
    assert render_markdown({})  # nothing at all still renders


def test_duration():
    assert duration(4320) == "1 h 12 min"
    assert duration(843) == "14 min 3 s"
    assert duration(7170) == "2 h 0 min"
    assert duration(3599.6) == "1 h 0 min"
    assert duration(4.25) == "4.2 s"
    assert duration(None) == "–"


def test_write_report_writes_the_report_and_valid_pngs(results, tmp_path):
    paths = write_report(results, tmp_path)
    assert {p.name for p in paths} == {"report.md", "c_spec.png", "router_confusion.png", "f1_by_task.png"}
    assert {p.name for p in tmp_path.iterdir()} == {p.name for p in paths}
    for p in paths:
        assert p.stat().st_size > 0
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "report.md").read_text(encoding="utf-8") == render_markdown(results)


def test_write_report_skips_a_plot_without_data(results, tmp_path):
    partial = copy.deepcopy(results)
    partial["c_spec"] = None
    write_report(results, tmp_path)  # an earlier full rendering in the same folder
    paths = write_report(partial, tmp_path)
    assert not (tmp_path / "c_spec.png").exists()
    assert {p.name for p in paths} == {"report.md", "router_confusion.png", "f1_by_task.png"}
    cspec = section((tmp_path / "report.md").read_text(encoding="utf-8"), "Culture specificity")
    assert "c_spec.png was not written" in cspec and "No C-SPEC results" in cspec


def test_main_re_renders_from_results_json(results, tmp_path, monkeypatch, capsys):
    from culturemanager.bench.report import main

    path = tmp_path / "results.json"
    path.write_text(json.dumps(results), encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["benchreport", str(path)])
    main()
    assert (tmp_path / "report.md").read_text(encoding="utf-8") == render_markdown(results)
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_missing_matplotlib_is_a_clear_error(results, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    with pytest.raises(RuntimeError, match=r"culturemanager\[bench\]"):
        write_report(results, tmp_path)


def test_main_adds_the_papers_numbers_from_a_file(results, tmp_path, monkeypatch):
    from culturemanager.bench.report import main

    paper = results.pop("paper")
    results["paper"] = None
    (tmp_path / "results.json").write_text(json.dumps(results), encoding="utf-8")
    (tmp_path / "table1.json").write_text(json.dumps(paper), encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["benchreport", str(tmp_path / "results.json"), "--paper",
                                      str(tmp_path / "table1.json")])
    main()
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert row_of(section(md, "The paper's numbers"), "Original (paper)") == ["Original (paper)", "55.2", "48.0",
                                                                              "51.6"]

    (tmp_path / "table1.json").write_text(json.dumps({"Original": 55.2}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"table1\.json: the paper's numbers need an object with 'rows'"):
        main()
    (tmp_path / "table1.json").write_text('{\n"rows": {,}}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"table1\.json:2: not valid JSON"):
        main()
    (tmp_path / "table1.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"table1\.json: no such file"):
        main()


def test_the_base_rate_kind_gets_its_table_reading_lines_and_difference_column(results):
    r = copy.deepcopy(results)
    for m in r["methods"]:
        m["base_rate"] = copy.deepcopy(m["raw"])
    r["methods"][2]["base_rate"]["overall"]["macro_f1"] = stat(0.7, 0.72)
    r["comparisons"][0]["base_rate"] = {"macro_f1": {"difference": 0.2, "ci": [0.1, 0.3], "verdict": "better"}}
    md = render_markdown(r)
    table = section(md, "Macro-F1 (%), at the task's base rate")
    assert row_of(table, "CultureManager")[-1].startswith("**71.0 ± 1.4**")
    assert "CultureManager vs Original (base rate): **better**" in section(md, "Reading")
    diffs = section(md, "Paired differences")
    assert "macro-F1 at base rate" in diffs and "+20.0 [+10.0, +30.0] ▲" in row_of(diffs, "CultureManager − Original")
    assert "at the task's base rate" not in render_markdown(results)  # results without the kind: no table


def test_summary_has_a_base_rate_column_only_when_the_results_have_it(results):
    from culturemanager.bench.report import summary

    assert "at base rate" not in summary(results).splitlines()[0]
    r = copy.deepcopy(results)
    for m in r["methods"]:
        m["base_rate"] = copy.deepcopy(m["calibrated"])
    head, *rows = summary(r).splitlines()
    assert head.split()[-5:] == ["calibrated", "at", "base", "rate", "AUC"]
    cm = next(x for x in rows if x.startswith("CultureManager"))
    assert cm.split()[-3] == cm.split()[-2]  # base_rate here is a copy of calibrated: the same value
