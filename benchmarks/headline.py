"""Tables of the kept bench reports (benchmarks/results/*_report.md), as the README and docs/benchmarks.md show
them: each cell is the report's own "Avg" cell (mean ± std over seeds [paired 95% bootstrap interval over the test
inputs]), nothing computed again, so the docs cannot quote a number no kept run gave (tests/test_docs.py checks
that they show exactly this script's output). A run's results.json is the source (`benchmarks/summary.py` reads
it); the bench runs' results.json files are not kept in the repository, their report.md renderings are.

- the headline (README): CultureManager against the best baseline (TaskSFT) and the linear probe on the ten
  CultureLLM tasks. Every cell comes from the full run (`make bench`, 2026-12-02) except TaskSFT's validation cut,
  which comes from the run that scored the share cut, the rule since 2026-12-07. CultureManager's validation cut was
  not re-run with it, so its cell is the old best-macro-F1 rule's, and the table says so.
- `--report FILE [--methods A,B]`: one row per method of that report, every answer kind and the AUC.

Run: python benchmarks/headline.py [--report benchmarks/results/bench_2026-12-02_report.md --methods TaskSFT]
"""

from __future__ import annotations

import argparse
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
FULL = RESULTS / "bench_2026-12-02_report.md"  # make bench: every method, three seeds
SHARE = RESULTS / "bench_tasksft_2026-12-07_report.md"  # TaskSFT and the probe, the share cut

# (how the report section's heading starts, the column's name)
RAW = ("## Macro-F1 (%), uncalibrated", "macro-F1 raw")
CALIBRATED = ("## Macro-F1 (%), calibrated", "calibrated")
BASE_RATE = ("## Macro-F1 (%), at the task's base rate", "at base rate")
VALIDATION = ("## Macro-F1 (%), at each adapter's validation", "at its validation cut")
AUC = ("## ROC-AUC (%)", "ROC-AUC")
HEADLINE_ROWS = [("CultureManager", "CultureManager"), ("TaskSFT", "TaskSFT (the best baseline)"),
                 ("Probe (linear)", "Linear probe on the frozen model")]


def avg_cell(report: Path, section: str, method: str) -> str:
    """The last cell ("Avg") of the method's row in the section whose heading starts with `section`."""
    text = report.read_text(encoding="utf-8")
    start = text.index("\n" + section)
    end = text.find("\n## ", start + 1)
    for line in text[start:end if end > 0 else None].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == method:
            return cells[-1].replace("**", "")
    raise ValueError(f"{report}: no row {method!r} under {section!r}")


def methods(report: Path) -> list[str]:
    """The methods of a report, in its order (the rows of its first macro-F1 table)."""
    text = report.read_text(encoding="utf-8")
    block = text[text.index("\n" + RAW[0]):].split("\n\n")[1]
    return [line.strip("|").split("|")[0].strip() for line in block.splitlines()[2:]]


def markdown(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                      *["| " + " | ".join(r) + " |" for r in rows]])


def headline() -> str:
    columns = [RAW, VALIDATION, AUC]
    rows = []
    for method, shown in HEADLINE_ROWS:
        cells = [avg_cell(SHARE if method == "TaskSFT" and col is VALIDATION else FULL, col[0], method)
                 for col in columns]
        if method == "CultureManager":
            cells[1] += " (old cut)"
        rows.append([shown, *cells])
    return markdown(["Ten CultureLLM tasks, 1,000 test inputs", *[name for _, name in columns]], rows)


def report_table(report: Path, names: list[str] | None = None) -> str:
    columns = [RAW, CALIBRATED, BASE_RATE, VALIDATION, AUC]
    rows = [[m, *[avg_cell(report, col[0], m) for col in columns]] for m in names or methods(report)]
    return markdown(["Method", *[name for _, name in columns]], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", type=Path, help="one kept report.md: every method's row")
    ap.add_argument("--methods", help="comma-separated method names (default: every method)")
    a = ap.parse_args()
    print(report_table(a.report, a.methods.split(",") if a.methods else None) if a.report else headline())


if __name__ == "__main__":
    main()
