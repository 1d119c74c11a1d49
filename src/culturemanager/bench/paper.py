"""The paper's numbers beside ours in the bench's report: its Table 1 read from `bench.paper` (or `--paper`), the
table of its rows and ours, and whether each paired comparison's difference has the paper's sign.

The paper's model is a different, much larger one: its numbers are a reference for *orderings*, never for levels.
Run: imported by `bench/assemble.py` (reading the file) and `bench/report.py` (rendering); no entry point of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

from culturemanager.bench.format import DASH, get, ok_tasks, pct_or_dash, show, signed, table


def paper_numbers(path: Path) -> dict:
    """The paper's Table 1 (reference only: a different, larger model), from `bench.paper` or `--paper`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (the paper's numbers)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), dict):
        raise ValueError(f"{path}: the paper's numbers need an object with 'rows': {{method: {{task: number}}}}")
    return data


def paper(r: dict) -> str:
    p = r.get("paper")
    if p and (r.get("family") or "labels") != "labels":
        return ("## The paper's numbers\n\nNot shown: the paper's Table 1 scores the two-label CultureLLM tasks "
                "(positive-class F1); this run's tasks are scored otherwise.")
    if not p:
        return ("## The paper's numbers\n\nNot shown: set `bench.paper` to the paper's numbers (a JSON file shaped "
                "like ../shared/data/paper_table1.json), or re-render: `python -m culturemanager.bench.report "
                "results.json --paper table1.json`.")
    cols = [t for t in p.get("tasks") or [] if t in ok_tasks(r)] or (p.get("tasks") or [])
    ours = {m.get("name"): m for m in r.get("methods") or []}
    rows = []
    for name, vals in (p.get("rows") or {}).items():
        avg = [vals[t] for t in cols if isinstance(vals.get(t), int | float)]
        rows.append([f"{name} (paper)"] + [show(vals.get(t)) for t in cols] +
                    [f"{sum(avg) / len(avg):.1f}" if avg else DASH])
        if name in ours:
            rows.append([f"{name} (here)"] + [pct_or_dash(get(ours[name], "raw", "tasks", t, "f1_positive", "mean"))
                                              for t in cols] +
                        [pct_or_dash(get(ours[name], "raw", "overall", "f1_positive", "mean"))])
    lines = ["## The paper's numbers beside ours (positive-class F1, %)", "",
             f"Reported for a different, much larger model ({show(p.get('model'))}): not comparable in level, "
             f"comparable in *ordering*. Source: {show(p.get('source'))}", "", table(["Method"] + cols + ["Avg"], rows)]
    order = orderings(r)
    if order:
        lines += ["", "Orderings: does the paper's difference between two methods (avg F1 over these tasks) have the "
                  "same sign here, and is ours distinguishable from 0?", "",
                  table(["A − B", "paper", "here [95% interval]", "here"], order)]
    return "\n".join(lines + (["", f"Notes: {p['notes']}"] if p.get("notes") else []))


def orderings(r: dict) -> list[list[str]]:
    p = r.get("paper") or {}
    cols = [t for t in p.get("tasks") or [] if t in ok_tasks(r)]
    prow = p.get("rows") or {}

    def avg(name):
        vals = [prow[name][t] for t in cols if isinstance(prow.get(name, {}).get(t), int | float)]
        return sum(vals) / len(vals) if vals else None

    out = []
    for c in r.get("comparisons") or []:
        a, b, x = avg(c.get("a")), avg(c.get("b")), get(c, "raw", "f1_positive")
        if a is None or b is None or not x:
            continue
        same = (a - b > 0) == (x["difference"] > 0)
        out.append([f"{c['a']} − {c['b']}", f"{a - b:+.1f}",
                    f"{signed(x['difference'])} [{signed(x['ci'][0])}, {signed(x['ci'][1])}]",
                    f"{'same sign' if same else 'opposite sign'}, {x['verdict']}"])
    return out
