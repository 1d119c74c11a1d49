"""One row per method of a finished bench run: macro-F1 under every answer kind (mean ± std over training seeds,
with the paired 95% bootstrap interval over test inputs), ROC-AUC and the share answered positive, as the
Markdown table docs/benchmarks.md shows. Read from the run's results.json; nothing is computed again.

Run: python benchmarks/summary.py runs/bench/results.json [--methods TaskSFT,CultureManager]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from culturemanager.bench.format import cell, get, pct, pct_or_dash, table
from culturemanager.bench.report import KIND_SHORT, answer_kinds


def interval(ci) -> str:
    return f" [{pct(ci[0]):.1f}, {pct(ci[1]):.1f}]" if ci else ""


def with_interval(m: dict, kind: str, metric: str = "macro_f1") -> str:
    """'mean ± std [lo, hi]' in points: the report's cell plus the run's paired interval."""
    return cell(get(m, kind, "overall", metric), None) + interval(get(m, kind, "overall_ci", metric))


def rows(results: dict, names: list[str] | None = None) -> str:
    kinds = answer_kinds(results)
    head = ["Method", *[f"macro-F1{KIND_SHORT[k] or ' raw'}" for k in kinds], "ROC-AUC", "answered positive", "seeds"]
    body = [[m["name"], *[with_interval(m, k) for k in kinds],
             pct_or_dash(get(m, "raw", "overall", "auc", "mean")) + interval(get(m, "raw", "overall_ci", "auc")),
             f"{pct_or_dash(get(m, 'raw', 'overall', 'positive_rate', 'mean'))}%", ",".join(map(str, m["seeds"]))]
            for m in results["methods"] if not names or m["name"] in names]
    return table(head, body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--methods", help="comma-separated method names (default: every method)")
    a = ap.parse_args()
    results = json.loads(a.results.read_text(encoding="utf-8"))
    print(rows(results, a.methods.split(",") if a.methods else None))


if __name__ == "__main__":
    main()
