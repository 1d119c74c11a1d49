"""Can a sentence embedder label real inputs with nothing but the task's name? A zero-shot labeller, measured.

Issue 29 asks for labels that do not rest on the generator's word. The cheapest candidate needs no LLM at all: the
multilingual sentence encoder the dense retriever already ships (USE multilingual v3, 16 languages; Bengali is not
one of them) embeds each real input and two descriptions, "A social media post with {task}." and "An ordinary
social media post."; the score is the input's cosine to the first minus its cosine to the second ("pair"), or its
cosine to the task's name alone ("name"). For each task of the tasks file, `--rows` balanced rows (the same rows
`benchmarks/judge.py` and `benchmarks/label_ratio.py` draw), the score's ROC-AUC against the gold labels with a
bootstrap 95% interval over the rows. 0.5 is chance; the likelihood ratio's and the judge's numbers on the same
rows are in benchmarks/results/label_ratio.json and judge.json.

Run: `python benchmarks/label_zeroshot.py [--rows 200]`; writes benchmarks/results/label_zeroshot.json and prints
the table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from culturemanager.backends.retrieval.dense import UseMultilingual, normalize
from culturemanager.bench.stats import auc, bootstrap_weights, interval, weighted_auc
from culturemanager.bench.tasks import load_tasks, read_task_rows

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CULTUREMANAGER_DATA", ROOT.parent / "shared" / "data"))
DESCRIPTIONS = ("A social media post with {task}.", "An ordinary social media post.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=Path, default=DATA / "tasks.json")
    ap.add_argument("--rows", type=int, default=200, help="balanced rows per task (half positive)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--draws", type=int, default=2000)
    args = ap.parse_args()
    from judge import balanced  # the same rows as the judge and the ratio draw for the same seed

    t0 = time.time()
    encoder = UseMultilingual()
    rng = np.random.default_rng(args.seed)
    out: dict = {"date": time.strftime("%Y-%m-%d"), "encoder": "USE multilingual v3", "rows_per_task": args.rows,
                 "seed": args.seed, "descriptions": list(DESCRIPTIONS), "tasks": {}}
    per_resample: dict[str, list[np.ndarray]] = {"pair": [], "name": []}
    for spec in load_tasks(args.tasks).tasks:
        rows = read_task_rows(spec, args.tasks.parent)
        picked = balanced(rows.labels, args.rows, args.seed)
        texts, gold = [rows.texts[i] for i in picked], [rows.labels[i] for i in picked]
        x = normalize(encoder.encode(texts))
        d = normalize(encoder.encode([DESCRIPTIONS[0].format(task=spec.task), DESCRIPTIONS[1], spec.task]))
        scores = {"pair": x @ d[0] - x @ d[1], "name": x @ d[2]}
        W = bootstrap_weights(len(texts), args.draws, rng)
        g = np.array(gold) == "1"
        row = {"rows": len(texts), "positives": int(g.sum())}
        for name, s in scores.items():
            resampled = weighted_auc(g, s, W)
            per_resample[name].append(resampled)
            lo, hi = interval(resampled)
            row[name] = {"auc": round(auc(gold, s), 3), "auc_95": [round(lo, 3), round(hi, 3)]}
        out["tasks"][spec.id] = row
    out["mean"] = {}
    for name, parts in per_resample.items():
        lo, hi = interval(np.nanmean(np.stack(parts), 0))
        out["mean"][name] = {"auc": round(float(np.mean([r[name]["auc"] for r in out["tasks"].values()])), 3),
                             "auc_95": [round(lo, 3), round(hi, 3)]}
    out["seconds"] = round(time.time() - t0, 1)
    path = ROOT / "benchmarks" / "results" / "label_zeroshot.json"
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = ["| task | rows (positive) | pair AUC [95% CI] | name AUC [95% CI] |", "|---|---|---|---|"]
    for tid, r in [*out["tasks"].items(), ("mean", {"rows": "", "positives": "", **out["mean"]})]:
        cells = [f"{r[k]['auc']:.3f} [{r[k]['auc_95'][0]:.3f}, {r[k]['auc_95'][1]:.3f}]" for k in ("pair", "name")]
        lines.append(f"| {tid} | {r['rows']} ({r['positives']}) | {cells[0]} | {cells[1]} |")
    print("\n".join(lines))
    print(f"wrote {path} ({out['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
