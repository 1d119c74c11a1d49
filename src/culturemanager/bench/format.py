"""Formatting for the benchmark's report: missing values as "–", percentages, durations, markdown tables.

Run: imported by `bench/report.py` and `bench/plots.py`; no entry point of its own.
"""

from __future__ import annotations

DASH = "–"


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
    return len(method.get("seeds") or []) or len(get(method, "raw", "overall", "f1_positive", "values") or []) or 1


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


def signed(x) -> str:
    return f"{100 * x:+.1f}" if isinstance(x, int | float) and x == x else DASH
