"""The end-of-run summary, rendered from `manifest.json` (the source of truth) with rich.

Run: `python -m culturemanager.summary RUN_DIR`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from culturemanager.records import DropReason
from culturemanager.rundir import RunDir


def summary_rows(manifest: dict) -> list[tuple[str, str, str]]:
    """(stage, seconds, what it did) for each finished stage."""
    rows = []
    for stage, info in manifest.get("stages", {}).items():
        c = info.get("counts", {})
        llm = c.get("llm", {})
        llm_txt = f" | LLM calls {llm.get('calls', 0)} new, {llm.get('cached', 0)} cached, " \
                  f"{llm.get('errors', 0)} failed, {llm.get('retries', 0)} retried" if any(llm.values()) else ""
        rows.append((stage, f"{info.get('seconds', 0):.1f}", describe(stage, c) + llm_txt))
    return rows


def describe(stage: str, c: dict) -> str:
    per = lambda prefix: ", ".join(f"{k[len(prefix) + 1:-1]} {v}" for k, v in c.items()
                                   if k.startswith(prefix + "["))
    if stage == "queries":
        return f"{c.get('queries', 0)} queries ({per('queries')}); unparsable {c.get('unparsable_answers', 0)}"
    if stage == "search":
        return (f"{c.get('materials', 0)} materials from {c.get('documents', 0)} documents ({per('materials')});"
                f" queries without documents {c.get('queries_without_documents', 0)},"
                f" irrelevant summaries {c.get('summary_irrelevant', 0)}")
    if stage == "synthesize":
        why = ", ".join(f"{r} {c[r]}" for r in DropReason if c.get(r))
        failed = f"; cultures whose every job failed (earlier samples kept) {c['cultures_failed']}" \
            if c.get("cultures_failed") else ""
        return f"kept {c.get('kept', 0)} ({per('kept')}); dropped {c.get('dropped', 0)} ({why or 'none'}){failed}"
    if stage == "train":
        missing = f", no samples file {c['no_samples_file']}" if c.get("no_samples_file") else ""
        return (f"trained {c.get('trained', [])}, reused {c.get('reused', [])}, "
                f"too few samples {c.get('skipped_too_few_samples', [])}{missing}")
    if stage == "route":
        return f"options {c.get('options')}; adapters {c.get('adapters')}"
    if stage == "predict":
        if "skipped" in c:
            return c["skipped"]
        counts = c.get("counts", {})
        routed = ", ".join(f"{k[7:-1]} {v}" for k, v in counts.items() if k.startswith("routed["))
        s = f"{c.get('inputs', 0)} predictions; routed: {routed}; truncated {counts.get('truncated', 0)}"
        for task, m in c.get("tasks", {}).items():
            if "scores" in m:
                s += f"; {task}: {task_scores_line(m['scores'])}"
        if "router_accuracy" in c:
            s += f"; router accuracy {c['router_accuracy']:.3f}"
        return s
    return str(c)


def task_scores_line(sc: dict) -> str:
    """One task's scores as the summary shows them: label tasks' macro-F1 (F1 of the positive label where there is
    one) and accuracy; free-text tasks' soft and exact match (and the judge's rate and agreement when it ran)."""
    if "soft_match" in sc:
        judge = sc.get("judge") or {}
        extra = (f", judge {judge['judge_match']:.3f} (agreement with soft match {judge['agreement']:.3f})"
                 if judge.get("judge_match") is not None and judge.get("agreement") is not None else "")
        return f"soft match {sc['soft_match']:.3f}, exact match {sc['exact_match']:.3f}{extra} (n={sc['n']})"
    pos = f", F1(pos) {sc['f1_positive']:.3f}" if "f1_positive" in sc else ""
    return f"macro-F1 {sc['macro_f1']:.3f}{pos}, accuracy {sc['accuracy']:.3f} (n={sc['n']})"


def print_summary(run_dir: Path, console: Console | None = None) -> None:
    console = console or Console()
    rd = RunDir(Path(run_dir))
    table = Table(title="culturemanager run", show_lines=False)
    for col in ("stage", "seconds", "result"):
        table.add_column(col, overflow="fold")
    for row in summary_rows(rd.read_manifest()):
        table.add_row(*row)
    console.print(table)
    console.print(f"run directory: {rd.root.resolve()}")


if __name__ == "__main__":
    print_summary(Path(sys.argv[1]))
