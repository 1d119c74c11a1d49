"""The benchmark's report: `results.json` (the source of truth) rendered into `report.md` and three PNG plots.

`render_markdown(results)` is pure; `write_report(results, out_dir)` writes report.md, c_spec.png,
router_confusion.png and f1_by_task.png (a plot whose data is missing is skipped and the report says so).
matplotlib is imported only when a plot is drawn (the `bench` extra). Partial runs have missing or null keys:
they render as "–" instead of failing.

Run: called by `culturemanager bench`; `python -m culturemanager.bench.report RESULTS.json [OUT_DIR]` re-renders a
report from an existing results.json (OUT_DIR defaults to the json's folder).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DASH = "–"
PLOTS = {"c_spec": "c_spec.png", "router": "router_confusion.png", "f1": "f1_by_task.png"}


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
    sections = [header, scores, paper, router, c_spec, contamination, tasks_section, timings]
    return "\n\n".join(s(results) for s in sections) + "\n"


# ---------------------------------------------------------------------------------------------- sections

def header(r: dict) -> str:
    p, m = r.get("protocol") or {}, r.get("models") or {}
    seeds = ", ".join(str(s) for s in p.get("seeds") or []) or DASH
    share = f"{p['demo_share']:.0%}" if isinstance(p.get("demo_share"), int | float) else DASH
    return "\n".join([
        "# CultureManager benchmark", "",
        f"- Command: `{show(r.get('command'))}`", f"- Created: {show(r.get('created'))}",
        f"- Quick run: {show({True: 'yes', False: 'no'}.get(r.get('quick')))}",
        f"- Models: target {show(m.get('target'))}, generator {show(m.get('generator'))}",
        f"- Protocol: demo share {share}, test cap per task {show(p.get('test_cap'))}, split seed "
        f"{show(p.get('split_seed'))}, training seeds {seeds}, train steps {show(p.get('train_steps'))}, batch size "
        f"{show(p.get('batch_size'))}, max_length {show(p.get('max_length'))}",
        f"- Total wall time: {duration(get(r, 'timings', 'total'))}"])


def scores(r: dict) -> str:
    methods = r.get("methods") or []
    counts = ", ".join(f"{m.get('name', DASH)} {n_seeds(m)}" for m in methods) or DASH
    return "\n\n".join([
        "## Table 1: positive-class F1 (%)", score_table(r, "f1_positive"),
        "## Macro-F1 (%)", score_table(r, "macro_f1"),
        "## Share of test inputs answered positive (%)",
        "A method that answers \"1\" to everything scores a positive-class F1 of 2p/(1+p) (p: the positive share) "
        "with no skill at all; this table shows which rows above are that (100) or its opposite (0).",
        score_table(r, "positive_rate", bold=False),
        f"Seeds per method: {counts}. Trained methods are mean ± std over training seeds; a method with one "
        "seed shows its single value. Best mean per column in bold.",
        f"![F1 by task]({PLOTS['f1']})" if plot_data(r)["f1"] else "No F1-by-task plot: no task has a score."])


def score_table(r: dict, metric: str, bold: bool = True) -> str:
    cols = [(t, ("tasks", t)) for t in ok_tasks(r)] + [(f"{c} avg", ("cultures", c)) for c in r.get("cultures") or []]
    cols.append(("Avg", ("overall",)))
    stats = [[get(m, *path, metric) for _, path in cols] for m in r.get("methods") or []]
    best = [max((pct(s["mean"]) for s in col if has_mean(s)), default=None) if bold else None
            for col in zip(*stats)]
    rows = [[m.get("name", DASH)] + [cell(s, b) for s, b in zip(row, best)]
            for m, row in zip(r.get("methods") or [], stats)]
    return table(["Method"] + [name for name, _ in cols], rows)


def paper(r: dict) -> str:
    p = r.get("paper")
    if not p:
        return ("## The paper's numbers\n\nThe paper's numbers were not available offline. To show them here, write "
                "them as JSON ({source, paper, model, metric, tasks, rows: {method: {task: number}}, notes}) and "
                "re-render: `python -m culturemanager.bench.report results.json --paper table1.json`.")
    cols = p.get("tasks") or []
    rows = [[name] + [show(vals.get(c)) for c in cols] for name, vals in (p.get("rows") or {}).items()]
    lines = ["## The paper's numbers (reference only)", "",
             f"Reported in the paper for a different, much larger model ({show(p.get('model'))}); not comparable in "
             f"absolute terms, shown for reference. Source: {show(p.get('source'))}",
             "", f"{show(p.get('paper'))}, metric {show(p.get('metric'))}.", "", table(["Method"] + cols, rows)]
    return "\n".join(lines + (["", f"Notes: {p['notes']}"] if p.get("notes") else []))


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
        "F1 (%) of each culture's adapter (rows) on each culture's tasks (columns):",
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


def timings(r: dict) -> str:
    t = [[k, duration(v)] for k, v in (r.get("timings") or {}).items()]
    m = [[x.get("name", DASH), duration(x.get("seconds"))] for x in r.get("methods") or []]
    return "\n\n".join(["## Timings", table(["Phase", "Time"], t), "Per method:", table(["Method", "Time"], m)])


# ---------------------------------------------------------------------------------------------- formatting

def get(d, *keys):
    """d[k1][k2]... or None where any level is missing or null."""
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def show(v) -> str:
    return DASH if v is None or v == "" else str(v).replace("|", "\\|")


def has_mean(stat) -> bool:
    return isinstance(stat, dict) and isinstance(stat.get("mean"), int | float)


def pct(x: float) -> float:
    return round(100 * x, 1)


def pct_or_dash(x) -> str:
    return f"{pct(x):.1f}" if isinstance(x, int | float) else DASH


def cell(stat, best: float | None) -> str:
    """'41.2', '41.2 ± 3.1' for more than one seed, bold when it is the column's best mean, '–' when missing."""
    if not has_mean(stat):
        return DASH
    text = f"{pct(stat['mean']):.1f}"
    if len(stat.get("values") or []) > 1:
        text += f" ± {pct(stat.get('std') or 0.0):.1f}"
    return f"**{text}**" if pct(stat["mean"]) == best else text


def n_seeds(method: dict) -> int:
    return len(method.get("seeds") or []) or len(get(method, "overall", "f1_positive", "values") or []) or 1


def duration(seconds) -> str:
    """'1 h 12 min', '14 min 3 s', '4.2 s'."""
    if not isinstance(seconds, int | float):
        return DASH
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = round(seconds)
    if s >= 3600:
        minutes = round(s / 60)  # rounded once, so 7170 s is "2 h 0 min", not "1 h 60 min"
        return f"{minutes // 60} h {minutes % 60} min"
    return f"{s // 60} min {s % 60} s"


def table(head: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "(none)"
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def ok_tasks(r: dict) -> list[str]:
    return [t["id"] for t in r.get("tasks") or [] if t.get("status") == "ok" and t.get("id")]


# ---------------------------------------------------------------------------------------------- plots

def plot_data(r: dict) -> dict[str, bool]:
    """Which plots have something to draw (the same test decides the report's text and write_report's files)."""
    grid = lambda m: bool(m) and all(isinstance(row, list) and row for row in m)
    return {"c_spec": grid(get(r, "c_spec", "matrix")), "router": grid(get(r, "router", "confusion", "counts")),
            "f1": bool(ok_tasks(r)) and any(has_mean(get(x, "tasks", t, "f1_positive"))
                                            for x in r.get("methods") or [] for t in ok_tasks(r))}


def pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise RuntimeError("the benchmark plots need matplotlib: install the bench extra "
                           "(pip install 'culturemanager[bench]'); report.md was written already") from e
    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    return plt


def heatmap(path: Path, values, shading, rows, cols, labels: tuple[str, str, str], fmt) -> Path:
    """Annotated heatmap: `values` are written in the cells, `shading` (0..1) colours them; labels = title, y, x."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.2 * len(cols) + 3, 0.8 * len(rows) + 2))
    try:
        ax.imshow(shading, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
        ax.set_yticks(range(len(rows)), rows)
        for i, row in enumerate(values):
            for j, v in enumerate(row):
                ax.text(j, i, fmt(v), ha="center", va="center", color="white" if shading[i][j] > 0.6 else "black")
        ax.set_title(labels[0])
        ax.set_ylabel(labels[1])
        ax.set_xlabel(labels[2])
        fig.savefig(path, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def plot_c_spec(r: dict, path: Path) -> Path:
    cs = r["c_spec"]
    m = [[v if isinstance(v, int | float) else 0.0 for v in row] for row in cs["matrix"]]
    top = max(max(row) for row in m) or 1.0
    names = cs.get("cultures") or [str(i) for i in range(len(m))]
    return heatmap(path, m, [[v / top for v in row] for row in m], names, names,
                   ("C-SPEC: F1 (%)", "adapter culture", "task culture"), lambda v: f"{100 * v:.1f}")


def plot_router(r: dict, path: Path) -> Path:
    conf = r["router"]["confusion"]
    counts = conf["counts"]
    shading = [[v / (sum(row) or 1) for v in row] for row in counts]  # row-normalised: share of a true culture
    rows = conf.get("rows") or [str(i) for i in range(len(counts))]
    cols = conf.get("cols") or [str(j) for j in range(len(counts[0]))]
    return heatmap(path, counts, shading, rows, cols, ("Router decisions (counts)", "true culture", "routed option"),
                   str)


def plot_f1_by_task(r: dict, path: Path) -> Path:
    plt = pyplot()
    tasks, methods = ok_tasks(r), r.get("methods") or []
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(8.0, 1.3 * len(tasks) + 2), 5))
    try:
        colours = plt.get_cmap("tab20" if len(methods) > 10 else "tab10")
        for k, m in enumerate(methods):
            stats = [get(m, "tasks", t, "f1_positive") for t in tasks]
            means = [100 * s["mean"] if has_mean(s) else float("nan") for s in stats]
            errs = [100 * (s.get("std") or 0) if has_mean(s) and len(s.get("values") or []) > 1 else 0
                    for s in stats]
            xs = [i - 0.4 + width * (k + 0.5) for i in range(len(tasks))]
            ax.bar(xs, means, width, yerr=errs if any(errs) else None, capsize=2, label=m.get("name", DASH),
                   color=colours(k % colours.N))
        ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
        ax.set_ylabel("positive-class F1 (%)")
        ax.set_ylim(0, 100)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
        fig.savefig(path, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def paper_numbers(path: Path | None = None) -> dict | None:
    """The paper's Table 1 (reference only: a different, larger model): `path`, or the copy shipped with the
    package as paper_table1.json if there is one."""
    if path is None:
        path = Path(__file__).with_name("paper_table1.json")
        if not path.exists():
            return None
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (the paper's numbers)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), dict):
        raise ValueError(f"{path}: the paper's numbers need an object with 'rows': {{method: {{task: number}}}}")
    return data


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
