"""One row per method of a finished bench run: macro-F1 under every answer kind (mean ± std over training seeds,
with the paired 95% bootstrap interval over test inputs), ROC-AUC and the share answered positive, as the
Markdown table docs/benchmarks.md shows. Read from the run's results.json; nothing is computed again.

Run: python benchmarks/summary.py runs/bench/results.json [--methods TaskSFT,CultureManager]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KINDS = (("raw", "macro-F1 raw"), ("calibrated", "calibrated"), ("base_rate", "at base rate"),
         ("validation", "at the validation cut"))


def cell(kind: dict, metric: str = "macro_f1", with_std: bool = True) -> str:
    """'mean ± std [lo, hi]' in points, from one answer kind's overall scores."""
    s = kind["overall"][metric]
    text = f"{100 * s['mean']:.1f}"
    if with_std and len(s.get("values") or []) > 1:
        text += f" ± {100 * s['std']:.1f}"
    ci = (kind.get("overall_ci") or {}).get(metric)
    return text + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def rows(results: dict, names: list[str] | None = None) -> list[str]:
    kinds = [(k, label) for k, label in KINDS if any(k in m for m in results["methods"])]
    head = ["Method", *[label for _, label in kinds], "ROC-AUC", "answered positive", "seeds"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in results["methods"]:
        if names and m["name"] not in names:
            continue
        cells = [cell(m[k]) if k in m else "" for k, _ in kinds]
        auc = cell(m["raw"], "auc", with_std=False) if "auc" in m["raw"]["overall"] else ""
        pos = f"{100 * m['raw']['overall']['positive_rate']['mean']:.1f}%"
        out.append("| " + " | ".join([m["name"], *cells, auc, pos, ",".join(map(str, m["seeds"]))]) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--methods", help="comma-separated method names (default: every method)")
    a = ap.parse_args()
    results = json.loads(a.results.read_text(encoding="utf-8"))
    print("\n".join(rows(results, a.methods.split(",") if a.methods else None)))


if __name__ == "__main__":
    main()
