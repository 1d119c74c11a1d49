"""The benchmark's report: `results.json` (the source of truth) rendered into `report.md` and three PNG plots.

`render_markdown(results)` is pure; `write_report(results, out_dir)` writes report.md, c_spec.png,
router_confusion.png and f1_by_task.png (bench/plots.py; a plot whose data is missing is skipped and the report
says so).
matplotlib is imported only when a plot is drawn (the `bench` extra). Partial runs have missing or null keys:
they render as "–" instead of failing.

Run: called by `culturemanager bench`; `python -m culturemanager.bench.report RESULTS.json [OUT_DIR]` re-renders a
report from an existing results.json (OUT_DIR defaults to the json's folder).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from culturemanager.bench.format import (
    DASH,
    cell,
    duration,
    get,
    has_mean,
    n_seeds,
    ok_tasks,
    pct,
    pct_or_dash,
    show,
    signed,
    table,
)
from culturemanager.bench.paper import paper, paper_numbers
from culturemanager.bench.plots import PLOTS, plot_c_spec, plot_data, plot_f1_by_task, plot_router
from culturemanager.bench.routing import routers_section


def write_report(results: dict, out_dir: Path) -> list[Path]:
    """Write report.md and every plot that has data into `out_dir`; return the written paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = out_dir / "report.md"
    report.write_text(render_markdown(results), encoding="utf-8")
    written = [report]
    draw = {"c_spec": plot_c_spec, "router": plot_router, "f1": plot_f1_by_task}
    for key, ok in plot_data(results).items():
        if ok:
            written.append(draw[key](results, out_dir / PLOTS[key]))
        else:  # a plot left from an earlier rendering would contradict the report
            (out_dir / PLOTS[key]).unlink(missing_ok=True)
    return written


def render_markdown(results: dict) -> str:
    sections = [header, reading, scores, comparisons_section, paper, router, routers_section, c_spec, contamination,
                tasks_section, adapters_section, timings]
    return "\n\n".join(s(results) for s in sections) + "\n"


# ---------------------------------------------------------------------------------------------- sections

KIND_NAMES = {"raw": "uncalibrated", "calibrated": "calibrated (each variant's content-free lean removed)",
              "base_rate": "at the task's base rate (the top share of its test inputs, as many as its "
                           "demonstrations' positive share says, answered positive)",
              "validation": "at each adapter's validation operating point (its cut on the examples held out of its "
                            "own training data; content-free calibration without one)"}
# how the "validation" kind's cut is chosen on the slice (bench.validation_cut; a run from before the setting: best_f1)
CUT_RULES = {"share": "the cut answers positive to as many of the slice's examples as it holds positives",
             "best_f1": "the cut with the best macro-F1 on the slice"}
KIND_SHORT = {"raw": "", "calibrated": " calibrated", "base_rate": " at base rate",
              "validation": " at validation cut"}


def answer_kinds(r: dict) -> tuple[str, ...]:
    """The answer kinds this run's results hold: raw, calibrated (not free text), base_rate and validation
    (two-label formats, from results that carry them)."""
    if family(r) == "free_text":
        return ("raw",)
    has = [k for k in ("base_rate", "validation") if any(k in m for m in r.get("methods") or [])]
    return ("raw", "calibrated", *has)


def header(r: dict) -> str:
    p, m = r.get("protocol") or {}, r.get("models") or {}
    seeds = ", ".join(str(s) for s in p.get("seeds") or []) or DASH
    share = f"{p['demo_share']:.0%}" if isinstance(p.get("demo_share"), int | float) else DASH
    t = p.get("train") or {}
    train = ", ".join(f"{k} {show(t.get(k))}" for k in ("layers", "target_modules", "max_examples", "epochs",
                                                        "batch_size", "lr", "schedule", "balance", "validation",
                                                        "patience") if k in t) or DASH
    return "\n".join([
        "# CultureManager benchmark", "",
        f"- Command: `{show(r.get('command'))}`", f"- Created: {show(r.get('created'))}",
        f"- Quick run: {show({True: 'yes', False: 'no'}.get(r.get('quick')))}",
        f"- Models: target {show(m.get('target'))}, generator {show(m.get('generator'))}",
        f"- Protocol: demo share {share}, test cap per task {show(p.get('test_cap'))}, split seed "
        f"{show(p.get('split_seed'))}, training seeds {seeds}, max_length {show(p.get('max_length'))}, "
        f"{show(p.get('bootstrap'))} paired bootstrap resamples of the test inputs for every interval",
        f"- Training: {train}",
        f"- Total wall time: {duration(get(r, 'timings', 'total'))}"])


METRIC_NAMES = {"macro_f1": "macro-F1", "f1_positive": "F1 positive", "auc": "AUC", "accuracy": "accuracy",
                "soft_match": "soft match", "exact_match": "exact match", "empty_share": "empty answers",
                "judge_match": "judge", "judge_agreement": "judge agreement"}
FAMILY_METRICS = {"labels": ("macro_f1", "f1_positive", "auc"), "options": ("accuracy", "macro_f1"),
                  "free_text": ("soft_match", "exact_match")}


def title(name: str) -> str:
    """A metric's name at the start of a heading: "macro-F1" -> "Macro-F1" (str.capitalize would lower the F)."""
    return name[:1].upper() + name[1:]


def family(r: dict) -> str:
    return r.get("family") or "labels"


def reading(r: dict) -> str:
    """The verdicts, from the paired intervals only (never from a point estimate), on the family's primary
    metric (macro-F1 for the two-label formats, accuracy for multiple choice, soft match for free text)."""
    rows = []
    metric = r.get("primary_metric") or "macro_f1"
    for c in r.get("comparisons") or []:
        for kind in answer_kinds(r):
            x = get(c, kind, metric)
            if x:
                rows.append(f"- {c['a']} vs {c['b']} ({kind.replace('_', ' ')}): **{x['verdict']}** — "
                            f"{METRIC_NAMES[metric]} difference "
                            f"{signed(x['difference'])} points, 95% interval [{signed(x['ci'][0])}, "
                            f"{signed(x['ci'][1])}]")
    if not rows:
        return "## Reading\n\nNo comparisons in this run."
    best = r.get("best_baseline")
    return "\n".join(["## Reading", "",
                      "Each line is a paired difference over the same test inputs (method A minus method B, mean over "
                      "tasks and seeds) with its 95% bootstrap interval: *better* or *worse* when the interval "
                      "excludes 0, *not distinguishable* when it contains 0." +
                      (f" The best baseline here is {best}." if best else ""), ""] + rows)


def scores(r: dict) -> str:
    methods = r.get("methods") or []
    counts = ", ".join(f"{m.get('name', DASH)} {n_seeds(m)}" for m in methods) or DASH
    if family(r) != "labels":
        return other_scores(r, counts)
    parts = []
    for kind in answer_kinds(r):
        parts += [f"## Macro-F1 (%), {KIND_NAMES[kind]}", score_table(r, "macro_f1", kind)]
        if kind == "base_rate":
            parts.append("The cut depends on the other test inputs' scores (never their labels), and the base rate "
                         "comes from the labelled demonstrations that only TaskSFT and the probe train on: a reading "
                         "of each method's ranking at a fixed operating point, not a method. AUC is the same as "
                         "uncalibrated (the shift is monotone).")
        if kind == "validation":
            rule = (r.get("protocol") or {}).get("validation_cut", "best_f1")
            parts.append(f"The validation cut (`bench.validation_cut = \"{rule}\"`): {CUT_RULES.get(rule, rule)}.")
    parts += ["## Positive-class F1 (%), the paper's metric (uncalibrated)", score_table(r, "f1_positive", "raw"),
              "## ROC-AUC (%) of P(positive): threshold-free, 50 for a constant answer", score_table(r, "auc", "raw"),
              "## Share of test inputs answered positive (%)",
              "A method that answers \"1\" to everything scores a positive-class F1 of 2p/(1+p) (p: the positive "
              "share) with no skill at all; this table shows which rows above are that (100) or its opposite (0).",
              score_table(r, "positive_rate", "raw", bold=False),
              f"Seeds per method: {counts}. Task and culture cells are mean ± std over training seeds; **Avg** is the "
              "mean over tasks, with its 95% paired bootstrap interval over test inputs. Best mean per column in "
              "bold.",
              f"![F1 by task]({PLOTS['f1']})" if plot_data(r)["f1"] else "No F1-by-task plot: no task has a score."]
    return "\n\n".join(parts)


def other_scores(r: dict, counts: str) -> str:
    """Multiple choice: accuracy and macro-F1 over the options, uncalibrated and calibrated (the content-free lean
    over the options removed); free text: soft match, exact match and the share of empty answers."""
    parts = []
    if family(r) == "options":
        for metric in ("accuracy", "macro_f1"):
            for kind in ("raw", "calibrated"):
                parts += [f"## {title(METRIC_NAMES[metric])} (%), {KIND_NAMES[kind]}",
                          score_table(r, metric, kind)]
    else:
        parts += ["## Soft match (%): an accepted answer's (lemmatized) words all in the answer",
                  score_table(r, "soft_match"), "## Exact match (%)", score_table(r, "exact_match"),
                  "## Empty answers (%)", score_table(r, "empty_share", bold=False),
                  "Label calibration does not apply to generated answers: free text has one answer kind."]
        if r.get("judge"):
            parts += [f"## LLM judge (%): the share of answers {show(get(r, 'judge', 'by'))} calls right",
                      score_table(r, "judge_match"),
                      "## The judge's agreement with soft match (%), on the answers it gave a verdict for",
                      score_table(r, "judge_agreement", bold=False)]
    parts.append(f"Seeds per method: {counts}. Task and culture cells are mean ± std over training seeds; **Avg** is "
                 "the mean over tasks, with its 95% paired bootstrap interval over test inputs. Best mean per column "
                 "in bold.")
    return "\n\n".join(parts)


def score_table(r: dict, metric: str, kind: str = "raw", bold: bool = True) -> str:
    cols = [(t, ("tasks", t)) for t in ok_tasks(r)] + [(f"{c} avg", ("cultures", c)) for c in r.get("cultures") or []]
    cols.append(("Avg", ("overall",)))
    methods = r.get("methods") or []
    stats = [[get(m, kind, *path, metric) for _, path in cols] for m in methods]
    best = [max((pct(s["mean"]) for s in col if has_mean(s)), default=None) if bold else None
            for col in zip(*stats)]
    rows = []
    for m, row in zip(methods, stats):
        cells = [cell(s, b) for s, b in zip(row, best)]
        ci = get(m, kind, "overall_ci", metric)
        if ci and all(isinstance(v, int | float) and v == v for v in ci):
            cells[-1] += f" [{pct(ci[0]):.1f}, {pct(ci[1]):.1f}]"
        rows.append([m.get("name", DASH)] + cells)
    return table(["Method"] + [name for name, _ in cols], rows)


def comparisons_section(r: dict) -> str:
    rows = []
    metrics = FAMILY_METRICS[family(r)] + (("judge_match",) if r.get("judge") else ())
    columns = [(k, metrics[0]) for k in answer_kinds(r)] + [("raw", m) for m in metrics[1:]]
    for c in r.get("comparisons") or []:
        row = [f"{c.get('a')} − {c.get('b')}"]
        for kind, metric in columns:
            x = get(c, kind, metric)
            row.append(DASH if not x else f"{signed(x['difference'])} [{signed(x['ci'][0])}, {signed(x['ci'][1])}]"
                                          f" {MARK.get(x['verdict'], '')}")
        rows.append(row)
    return "\n\n".join(["## Paired differences (points, 95% interval)",
                         "▲ better, ▼ worse (the interval excludes 0); no mark: not distinguishable.",
                         table(["A − B"] + [METRIC_NAMES[m] + KIND_SHORT[k] for k, m in columns], rows)])


MARK = {"better": "▲", "worse": "▼"}


def router(r: dict) -> str:
    rt = r.get("router")
    if not rt:
        return "## Router\n\nNo router results in this run."
    culture = {t.get("id"): t.get("culture") for t in r.get("tasks") or []}
    per = [[t, show(culture.get(t)), pct_or_dash(a)] for t, a in (rt.get("per_task") or {}).items()]
    conf = rt.get("confusion") or {}
    conf_rows = [[row] + [show(v) for v in counts] for row, counts in zip(conf.get("rows") or [],
                                                                          conf.get("counts") or [])]
    plot = f"![router confusion]({PLOTS['router']})" if plot_data(r)["router"] else "No confusion plot: no data."
    return "\n\n".join([
        "## Router", f"Overall accuracy (%): {pct_or_dash(rt.get('accuracy'))}",
        table(["Task", "Culture", "Accuracy (%)"], per),
        "Confusion matrix (rows = true culture, columns = routed option):",
        table(["true \\ routed"] + list(conf.get("cols") or []), conf_rows), plot])


def c_spec(r: dict) -> str:
    cs = r.get("c_spec")
    if not plot_data(r)["c_spec"]:
        return ("## Culture specificity (C-SPEC)\n\nNo C-SPEC results in this run (no CultureManager adapters or "
                "fewer than two cultures), so c_spec.png was not written.")
    cultures = cs.get("cultures") or []
    rows = [[a] + [pct_or_dash(v) for v in row] for a, row in zip(cultures, cs["matrix"])]
    score = cs.get("score") or {}
    value = f"{score['mean']:.2f}" if has_mean(score) else DASH
    if has_mean(score) and len(score.get("values") or []) > 1:
        value += f" ± {score.get('std') or 0:.2f}"
    return "\n\n".join([
        "## Culture specificity (C-SPEC)",
        ("F1 (%)" if family(r) == "labels" else f"{title(METRIC_NAMES[r.get('primary_metric') or 'macro_f1'])} "
                                                  "(%)") + " of each culture's adapter (rows) on each culture's tasks "
                                                           "(columns):",
        table(["adapter \\ tasks"] + cultures, rows),
        f"C-SPEC score: {value}. Reading: 1.0 = every culture is served best by its own adapter.",
        f"![C-SPEC]({PLOTS['c_spec']})"])


def contamination(r: dict) -> str:
    c = r.get("contamination")
    if not c:
        return "## Contamination\n\nNo contamination counts in this run."
    kept = c.get("kept_samples_matching_test")
    warn = "" if kept in (0, None) else " **(should be 0: training data overlaps the test sets)**"
    syn = c.get("synthetic_samples") or {}
    modes = list(dict.fromkeys(k for v in syn.values() for k in (v or {})))
    rows = [[cult] + [show((v or {}).get(m)) for m in modes] for cult, v in syn.items()]
    return "\n\n".join([
        "## Contamination",
        f"- Kept synthetic samples matching a test input: {show(kept)} (should be 0){warn}\n"
        f"- Dropped as leakage: {show(c.get('dropped_as_leakage'))}",
        "Synthetic samples per culture and mode:", table(["Culture"] + modes, rows)])


def tasks_section(r: dict) -> str:
    rows = []
    for t in r.get("tasks") or []:
        skipped = ", ".join(f"{k} {v}" for k, v in (t.get("skipped") or {}).items()) or DASH
        status = show(t.get("status")) + (f": {t['skip_reason']}" if t.get("skip_reason") else "")
        rows.append([show(t.get(k)) for k in ("id", "culture", "rows_used")] + [skipped] +
                    [show(t.get(k)) for k in ("demos", "test", "test_positive")] + [status])
    head = ["Task", "Culture", "Rows used", "Skipped rows", "Demos", "Test", "Test positives", "Status"]
    return "## Tasks\n\n" + table(head, rows)


def adapters_section(r: dict) -> str:
    """How much each kind of adapter trained: examples, steps of the plan done, where early stopping kept it."""
    kinds: dict[str, list[dict]] = {}
    for a in (r.get("adapters") or {}).values():
        if a.get("trained"):
            kinds.setdefault(a.get("kind", DASH), []).append(a)
    rows = []
    for kind, items in kinds.items():
        rows.append([kind, str(len(items))] + [_mean(items, k) for k in ("examples", "examples_seen", "steps",
                                                                         "best_step")]
                    + [str(sum(bool(x.get("stopped_early")) for x in items))])
    return "## Adapters\n\n" + table(["Kind", "Adapters", "Examples", "Examples seen", "Steps", "Best step",
                                       "Stopped early"], rows)


def _mean(items: list[dict], key: str) -> str:
    vals = [x[key] for x in items if isinstance(x.get(key), int | float)]
    return f"{sum(vals) / len(vals):.0f}" if vals else DASH


def timings(r: dict) -> str:
    t = [[k, duration(v)] for k, v in (r.get("timings") or {}).items()]
    return "\n\n".join(["## Timings", table(["Phase", "Time"], t)])


def summary(r: dict) -> str:
    """The console's table: per method the primary metric with its interval, calibrated and at the base rate
    where those apply, and the family's second metric (AUC for the two-label formats)."""
    metrics = FAMILY_METRICS[family(r)]
    first, second = metrics[0], metrics[-1]
    others = answer_kinds(r)[1:]
    lines = [f"{'method':36s} {METRIC_NAMES[first]} [95% interval]" + "".join(f"  {KIND_SHORT[k].strip()}"
                                                                           for k in others)
             + f"  {METRIC_NAMES[second]}"]
    for m in r.get("methods") or []:
        raw = get(m, "raw", "overall")
        if not raw:
            lines.append(f"{m['name']:36s} {DASH}")
            continue
        lo, hi = get(m, "raw", "overall_ci", first) or (float("nan"), float("nan"))
        cells = "".join(f"  {pct_or_dash(get(m, k, 'overall', first, 'mean')):>{len(KIND_SHORT[k].strip())}s}"
                        for k in others)
        lines.append(f"{m['name']:36s} {pct(raw[first]['mean']):5.1f} [{pct(lo):4.1f}, {pct(hi):4.1f}]" + cells
                     + f"    {pct_or_dash(get(raw, second, 'mean')):>5s}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description="Render report.md and plots from a benchmark's results.json.")
    ap.add_argument("results", type=Path)
    ap.add_argument("out_dir", type=Path, nargs="?")
    ap.add_argument("--paper", type=Path, help="the paper's numbers as JSON, shown beside ours (reference only)")
    args = ap.parse_args()
    results = json.loads(args.results.read_text(encoding="utf-8"))
    if args.paper:
        results["paper"] = paper_numbers(args.paper)
    for p in write_report(results, args.out_dir or args.results.parent):
        print(p)


if __name__ == "__main__":
    main()
