"""Would the likelihood-ratio check (`synthesis.ratio_check`) make synthetic labels carry more of the task? Applied,
after the fact, to the samples a `make bench-label-quality` run already scored: each sample's ratio under each
wording and centre, the samples the check would keep, and the referee's AUC on those against its AUC on all.

The referee's P(positive) per sample is the label-quality run's own (its `examples`), so nothing is generated and
no referee is refitted: the only model run is the ratio's scorer (Gemma-3-270m by default, the target). The texts
are the ones the results file stores, the first 160 characters of each sample. Intervals: bootstrap over the kept
samples, each label resampled apart (label_quality.auc_interval).

Run: `python benchmarks/ratio_filter.py benchmarks/results/label_quality.json
[benchmarks/results/label_quality_levers.json ...] [--wordings plain,contrast] [--centers zero,median]`;
writes benchmarks/results/ratio_filter.json and prints the table docs/benchmarks.md shows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from label_quality import auc_interval  # noqa: E402  (the label-quality bench's own interval)

from culturemanager.bench.stats import auc  # noqa: E402
from culturemanager.config import TargetConfig  # noqa: E402
from culturemanager.stages.ratio import build_ratio_prefixes, centered, ratio_scores  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "ratio_filter.json"
# the bench's three label-quality tasks: (the task's label, the culture's language), as the synthesis prompt names them
TASKS = {"tr-abusive": ("abusive language", "Turkish"), "ar-hate": ("hate speech", "Arabic"),
         "es-stereotype": ("stereotype", "Spanish")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, nargs="+", help="label-quality results files")
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--wordings", default="plain,contrast")
    ap.add_argument("--centers", default="zero,median")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    from culturemanager.engine import Engine

    engine = Engine.load(TargetConfig(model=args.model, batch_size=16))
    out: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "command": "python benchmarks/ratio_filter.py "
                 + " ".join(str(p.relative_to(ROOT)) if p.is_absolute() and ROOT in p.parents else str(p)
                            for p in args.results) + f" --wordings {args.wordings} --centers {args.centers}",
                 "model": args.model, "rows": []}
    for path in args.results:
        run = json.loads(path.read_text(encoding="utf-8"))
        for lever, lr in run["wordings"].items():
            for task, tr in lr["tasks"].items():
                ex = tr.get("examples") or []
                if task not in TASKS or len({e["label"] for e in ex}) < 2:
                    continue
                for wording in args.wordings.split(","):
                    pos, neg = build_ratio_prefixes(*TASKS[task], wording)
                    ratios = ratio_scores(engine, [(pos, neg, e["text"]) for e in ex])
                    for center in args.centers.split(","):
                        r = centered([("", "")] * len(ratios), ratios) if center == "median" else ratios
                        out["rows"].append(row(path.name, run.get("date", ""), lever, task, wording, center, ex, r))
                        print(json.dumps(out["rows"][-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(table(out))


def row(source: str, date: str, lever: str, task: str, wording: str, center: str, ex: list[dict],
        ratios: list[float]) -> dict:
    """The referee's AUC on every sample and on those whose ratio agrees with their label (margin 0)."""
    labels = np.array([e["label"] for e in ex])
    p = np.array([e["p"] for e in ex])
    agree = np.array([(r > 0) == (y == "1") for r, y in zip(ratios, labels)])
    out = {"source": source, "run_date": date, "lever": lever, "task": task, "wording": wording, "center": center,
           "samples": {lab: int((labels == lab).sum()) for lab in ("0", "1")},
           "kept": {lab: int(((labels == lab) & agree).sum()) for lab in ("0", "1")},
           "ratio_auc_vs_synthetic_label": round(100 * auc(list(labels), np.array(ratios)), 1)}
    out["all"] = list(auc_interval(labels, p, np.random.default_rng(0)))
    if min(out["kept"].values()) >= 2:
        out["kept_auc"] = list(auc_interval(labels[agree], p[agree], np.random.default_rng(1)))
    return out


def table(r: dict) -> str:
    lines = [f"Ratio scorer {r['model']}; the referee's AUC of the synthetic labels, all samples and those the check "
             "keeps.", "",
             "| run | lever | task | wording | centre | ratio's AUC vs synthetic label | kept 0 / 1 of | referee AUC, "
             "all [95% CI] | referee AUC, kept [95% CI] |", "|---|---|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        a = x["all"]
        k = x.get("kept_auc")
        kept = f"{k[0]} [{k[1]}, {k[2]}]" if k else "–"
        lines.append(f"| {x['run_date']} | {x['lever']} | {x['task']} | {x['wording']} | {x['center']} | "
                     f"{x['ratio_auc_vs_synthetic_label']} | {x['kept']['0']} / {x['kept']['1']} of "
                     f"{x['samples']['0']} / {x['samples']['1']} | {a[0]} [{a[1]}, {a[2]}] | {kept} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
