"""The benchmark's plots, drawn from results.json: the C-SPEC matrix, the router's confusion matrix, macro-F1 by
task and method. matplotlib is imported only when a plot is drawn (the `bench` extra).

Run: imported by `bench/report.py`; no entry point of its own.
"""

from __future__ import annotations

from pathlib import Path

from culturemanager.bench.format import DASH, get, has_mean, ok_tasks

PLOTS = {"c_spec": "c_spec.png", "router": "router_confusion.png", "f1": "f1_by_task.png"}

def plot_data(r: dict) -> dict[str, bool]:
    """Which plots have something to draw (the same test decides the report's text and write_report's files)."""
    grid = lambda m: bool(m) and all(isinstance(row, list) and row for row in m)
    return {"c_spec": grid(get(r, "c_spec", "matrix")), "router": grid(get(r, "router", "confusion", "counts")),
            "f1": bool(ok_tasks(r)) and any(has_mean(get(x, "raw", "tasks", t, "macro_f1"))
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
            stats = [get(m, "raw", "tasks", t, "macro_f1") for t in tasks]
            means = [100 * s["mean"] if has_mean(s) else float("nan") for s in stats]
            errs = [100 * (s.get("std") or 0) if has_mean(s) and len(s.get("values") or []) > 1 else 0
                    for s in stats]
            xs = [i - 0.4 + width * (k + 0.5) for i in range(len(tasks))]
            ax.bar(xs, means, width, yerr=errs if any(errs) else None, capsize=2, label=m.get("name", DASH),
                   color=colours(k % colours.N))
        ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
        ax.set_ylabel("macro-F1 (%)")
        ax.set_ylim(0, 100)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
        fig.savefig(path, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


