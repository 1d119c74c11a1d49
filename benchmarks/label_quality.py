"""Do the synthetic labels mean what they say? The generator's samples of each label, scored by a classifier trained
on the task's *real* labels, under each lever of synthesis, in one run: the prompt's wording
(`synthesis.label_wording`: plain, explicit) and what a call starts from (`synthesis.seed`: demonstrations, both).

For each bench task given, the referee is a logistic regression (scikit-learn, class-balanced) on the frozen target
model's mean hidden state of the task prompt, as the bench's probe, but fitted on 70% of *all* the task's labelled
rows (stratified); its ROC-AUC on the other 30% says how far it can be trusted. The materials are the bench's own:
BM25 passages of the bench corpus (`search.corpus`, no summaries) for fixed queries per task, two task-specific
and two task-agnostic. Every lever runs the real synthesis stage (`stages.synthesize.synthesize`, per-label
calls, compact output) on the same materials with the same generator, in a fresh run directory.

The referee scores every kept sample; per task and wording the report gives the samples of each label, the
referee's mean P(positive) for each label, and the ROC-AUC of its score against the synthetic label: 50 = the
synthetic labels carry nothing a classifier of real data recognizes, 100 = they separate as real labels would; and
the samples the referee agrees with (its P(1) on the sample's side of 0.5) per minute of synthesis, the throughput
that matters. For the demonstration seed it also gives how similar the kept rewrites are to their demonstration.
Intervals are bootstrap 95% intervals over the samples (2,000 resamples, each label resampled apart). The real
test inputs the referee is checked on are never in a prompt: the demonstrations shown are the bench's.

Run: `make bench-label-quality` (or `python benchmarks/label_quality.py [--tasks tr-abusive,ar-hate]
[--samples 16] [--levers plain,explicit,demonstrations] [--set synthesis.seed_limit=32]`); writes
benchmarks/results/label_quality.json and prints the table
docs/benchmarks.md shows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from culturemanager.backends.llm import CachedLLM, make_backend
from culturemanager.backends.retrieval.dense import UseMultilingual
from culturemanager.bench.config import load_bench_config
from culturemanager.bench.data import pipeline_config, split_task
from culturemanager.bench.split import stratified_split
from culturemanager.bench.stats import auc, interval, verdict
from culturemanager.bench.tasks import load_tasks, read_task_rows
from culturemanager.config import Config
from culturemanager.engine import Engine
from culturemanager.records import Material, Query, read_jsonl, sha1_text, write_jsonl
from culturemanager.rundir import RunDir
from culturemanager.stages.search import search
from culturemanager.stages.spec import demonstrations_by_culture
from culturemanager.stages.synthesize import demonstration_materials, similarity, synthesize
from culturemanager.text.formats import SYNTH_EXAMPLES
from culturemanager.text.prompts import SYNTH_COMPACT_EXAMPLE_ANSWER

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "bench-label-quality"
RESULTS = ROOT / "benchmarks" / "results" / "label_quality.json"
DRAWS = 2000
# each lever: the synthesis settings it changes from the bench's own
LEVERS: dict[str, dict] = {
    "plain": {"label_wording": "plain"},
    "explicit": {"label_wording": "explicit"},
    "demonstrations": {"seed": "demonstrations"},
    "both": {"seed": "both"},
    # plain's samples plus real texts (the demonstrations, the materials' posts) labelled by a probe of them
    "pseudo": {"pseudo_label": {"enabled": True}},
}


def queries_for(culture: str, label: str) -> list[tuple[str, str]]:
    """Two task-specific and two task-agnostic queries, the kinds the query stage writes."""
    return [("task_specific", f"{label} in {culture} society online"),
            ("task_specific", f"{culture} prejudice minorities insults {label}"),
            ("task_agnostic", f"{culture} family religion everyday life"),
            ("task_agnostic", f"{culture} social norms language customs")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=ROOT / "examples" / "bench.toml")
    ap.add_argument("--tasks", default="tr-abusive,ar-hate")
    ap.add_argument("--samples", type=int, default=16, help="samples asked for per material and label")
    ap.add_argument("--levers", "--wordings", dest="levers", default="plain,explicit",
                    help=f"comma-separated, the first is the reference: {', '.join(LEVERS)}")
    ap.add_argument("--set", action="append", default=[], help="bench config override (as `culturemanager bench`)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--results", type=Path, default=RESULTS, help="where the results JSON goes")
    args = ap.parse_args()
    wordings = [w for w in args.levers.split(",") if w]
    if bad := [w for w in wordings if w not in LEVERS]:
        ap.error(f"unknown levers {bad}; known: {', '.join(LEVERS)}")
    overrides = ["search.retrieval=bm25", "search.summarize=false", "generator.backend=llama_server",
                 "generator.concurrency=4", f"synthesis.samples_per_material={2 * args.samples}",
                 "synthesis.samples_per_call=8", "synthesis.output=compact", *args.set]
    bcfg = load_bench_config(args.config, overrides)
    tf = load_tasks(bcfg.bench.tasks)
    specs = {t.id: t for t in tf.tasks}
    ids = [t for t in args.tasks.split(",") if t]
    unknown = [t for t in ids if t not in specs]
    if unknown:
        ap.error(f"unknown tasks {unknown}; known: {', '.join(specs)}")
    tasks = [split_task(specs[t], tf.prompt_template, bcfg, args.out) for t in ids]
    base = pipeline_config(bcfg, tasks, args.out / "materials-run")
    materials = build_materials(base, args.out / "materials-run")
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "command": "python benchmarks/label_quality.py "
                     + " ".join([f"--tasks {args.tasks}", f"--samples {args.samples}", f"--levers {args.levers}"]
                                + [f"--set {s}" for s in args.set]),
                     "generator": base.generator.model, "target": base.target.model,
                     "materials": len(materials), "tasks": {}, "wordings": {}}
    engine = Engine.load(base.target)
    embedder = UseMultilingual()
    examples = example_vectors(embedder)
    referees = {td.spec.id: referee(engine, td, bcfg.data_dir, args.out / "referee") for td in tasks}
    for td in tasks:
        results["tasks"][td.spec.id] = {k: v for k, v in referees[td.spec.id].items() if k != "model"}
    # each demonstration-seeded material's own demonstration (the rewrites' similarity to it)
    seeds = {m.id: m.text for m in demonstration_materials(base, {t.id: demonstrations_by_culture(base, t)
                                                                   for t in base.tasks})}
    for w in wordings:
        t0 = time.time()
        samples, counts = run_wording(base, w, materials, args.out / w, RunDir(args.out / wordings[0]).llm_cache
                                      if w != wordings[0] else None)
        seconds = time.time() - t0
        per_task = {}
        for td in tasks:
            got = [s for ss in samples.values() for s in ss if s.task == td.task.id]
            p = referee_p(engine, td, referees[td.spec.id], got)
            per_task[td.spec.id] = refereed(got, p) | copies_of_example(
                embedder, examples, got) | rewrite_similarity(got, seeds)
            pseudo = [i for i, s in enumerate(got) if s.provenance.generator.startswith("probe:")]
            if pseudo:  # the pseudo-labelled real texts on their own, by where they came from (scored once, above)
                demo = [i for i in pseudo if got[i].provenance.mode == "demonstration"]
                per_task[td.spec.id]["pseudo_only"] = {
                    k: {x: v for x, v in refereed([got[i] for i in part], p[part]).items() if x != "examples"}
                    for k, part in (("all", pseudo), ("demonstrations", demo),
                                    ("material", [i for i in pseudo if i not in demo]))
                    if part}
                # the demonstrations' real labels (never shown to synthesis): how often the probe's label is right
                gold = {" ".join(t.split()): lab for t, lab in td.demos}
                on_demos = [(got[i].label, gold[got[i].text]) for i in demo if got[i].text in gold]
                if on_demos:
                    per_task[td.spec.id]["pseudo_only"]["demonstrations"]["agrees_with_real_label"] = round(
                        float(np.mean([a == b for a, b in on_demos])), 3)
            per_task[td.spec.id]["agreeing_per_minute"] = round(
                per_task[td.spec.id].get("agreeing", 0) / max(seconds / 60, 1e-9), 2)
        results["wordings"][w] = {"seconds": round(seconds, 1), "counts": counts, "tasks": per_task}
        print(json.dumps({"wording": w, "seconds": round(seconds, 1),
                          **{t: {k: v for k, v in r.items() if k != "examples"} for t, r in per_task.items()}},
                         ensure_ascii=False), flush=True)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if len(wordings) >= 2:
        results["differences"] = differences(tasks, results, wordings)
        args.results.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(table(results))


def build_materials(cfg: Config, run_dir: Path) -> list[Material]:
    """The fixed queries' passages as materials: the search stage, no summaries, no LLM call."""
    shutil.rmtree(run_dir, ignore_errors=True)
    rd = RunDir(run_dir)
    rd.root.mkdir(parents=True)
    queries = [Query(id=sha1_text(f"{t.id}|{c}|{text}")[:12], culture=c, task=t.id, mode=mode, text=text,
                     generator="benchmark", prompt_hash="-")
               for t in cfg.tasks for c in t.cultures for mode, text in queries_for(c, t.label)]
    write_jsonl(rd.queries, queries)
    fake = cfg.model_copy(update={"generator": cfg.generator.model_copy(update={"backend": "fake"})})
    search(fake, rd, CachedLLM(make_backend(fake.generator), rd.llm_cache, rd.calls))
    return read_jsonl(rd.materials, Material)


def run_wording(cfg: Config, lever: str, materials: list[Material], run_dir: Path, reuse: Path | None = None
                ) -> tuple[dict, dict]:
    """One lever's synthesis in a fresh run directory. `reuse`: an earlier lever's LLM cache (an identical request
    gets the identical answer from it, so a lever that only adds to plain's samples costs no generator call)."""
    rd = RunDir(run_dir)
    # a rerun of the same lever keeps its own cache: the generator is asked only what it was not asked before
    own = rd.llm_cache.read_bytes() if rd.llm_cache.exists() else b""
    shutil.rmtree(run_dir, ignore_errors=True)
    synthesis = type(cfg.synthesis).model_validate(cfg.synthesis.model_dump() | LEVERS[lever])
    cfg = cfg.model_copy(update={"synthesis": synthesis, "run": cfg.run.model_copy(update={"dir": run_dir})})
    rd.root.mkdir(parents=True)
    rd.llm_cache.parent.mkdir(parents=True, exist_ok=True)
    rd.llm_cache.write_bytes(own + (reuse.read_bytes() if reuse is not None and reuse.exists() else b""))
    write_jsonl(rd.materials, materials)
    backend = make_backend(cfg.generator)
    try:
        return synthesize(cfg, rd, CachedLLM(backend, rd.llm_cache, rd.calls))
    finally:
        if hasattr(backend, "close"):
            backend.close()


def task_features(engine: Engine, td, texts: list[str], cache_dir: Path) -> np.ndarray:
    """The target's features of a task's rows, kept in `cache_dir` (keyed by the model, the prompt and the texts):
    the referee's fit is most of a rerun's time on two cores."""
    key = sha1_text("\x00".join([engine.target.model, str(engine.target.max_length), td.task.template or "",
                                  *texts]))[:16]
    path = cache_dir / f"features-{td.spec.id}-{key}.npy"
    if path.exists():
        return np.load(path)
    x = engine.features(td.task, texts).numpy()
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, x)
    return x


def referee(engine: Engine, td, data_dir: Path, cache_dir: Path) -> dict:
    """The probe's recipe fitted on 70% of all the task's labelled rows, checked on the other 30%."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows = read_task_rows(td.spec, data_dir)
    check_idx, fit_idx = stratified_split(rows.labels, 0.3, 0)
    x = task_features(engine, td, rows.texts, cache_dir)
    y = np.array([lab == "1" for lab in rows.labels])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000))
    model.fit(x[fit_idx], y[fit_idx])
    p = model.predict_proba(x[check_idx])[:, 1]
    gold = ["1" if v else "0" for v in y[check_idx]]
    return {"model": model, "rows": len(rows.texts), "fit": len(fit_idx), "checked_on": len(check_idx),
            "referee_auc": round(100 * auc(gold, p), 1),
            "real_mean_p": {lab: round(float(np.mean(p[y[check_idx] == (lab == "1")])), 3) for lab in ("0", "1")}}


def referee_p(engine: Engine, td, ref: dict, samples: list) -> np.ndarray:
    """The referee's P(positive) of each sample's text."""
    if not samples:
        return np.zeros(0)
    return ref["model"].predict_proba(engine.features(td.task, [s.text for s in samples]).numpy())[:, 1]


def refereed(samples: list, p: np.ndarray) -> dict:
    """Samples of one task with the referee's P(positive) of each: counts, mean P per label, and the AUC of it
    against the synthetic labels."""
    labels = [s.label for s in samples]
    out: dict = {"samples": {lab: labels.count(lab) for lab in ("0", "1")}}
    if not samples:
        return out | {"auc": None}
    out["mean_p"] = {lab: round(float(np.mean([q for q, y in zip(p, labels) if y == lab])), 3)
                     for lab in ("0", "1") if lab in labels}
    out["examples"] = [{"label": y, "p": round(float(q), 6), "text": s.text[:160]}
                       for s, q, y in zip(samples, p, labels)]
    out["agreeing"] = int(sum((q > 0.5) == (y == "1") for q, y in zip(p, labels)))
    if len(set(labels)) < 2:
        return out | {"auc": None}
    point, lo, hi = auc_interval(np.array(labels), p, np.random.default_rng(0))
    return out | {"auc": point, "auc_ci": [lo, hi]}


EXAMPLE_COSINE = 0.7


def example_vectors(embedder) -> np.ndarray:
    """The synthesis prompt's own one-shot example texts (json and compact), embedded."""
    texts = [json.loads(line)["text"] for line in SYNTH_EXAMPLES["binary"][1].splitlines()]
    texts.append(json.loads(SYNTH_COMPACT_EXAMPLE_ANSWER)["text"])
    return embedder.encode(texts)


def copies_of_example(embedder, examples: np.ndarray, samples: list) -> dict:
    """How many kept samples restate the prompt's own example (in any language: USE multilingual cosine above
    EXAMPLE_COSINE), per label: the n-gram copy check cannot see a translated copy."""
    if not samples:
        return {"copies_of_example": {}}
    near = (embedder.encode([s.text for s in samples]) @ examples.T).max(1) > EXAMPLE_COSINE
    return {"copies_of_example": {lab: int(sum(n for n, s in zip(near, samples) if s.label == lab))
                                  for lab in ("0", "1")}}


def rewrite_similarity(samples: list, seeds: dict[str, str]) -> dict:
    """How much of its demonstration each kept rewrite keeps (synthesis.seed): quartiles of the similarity that
    synthesis.rewrite_max_similarity cuts at, per label."""
    out = {}
    for lab in ("0", "1"):
        sims = [similarity(seeds[s.provenance.material_id], s.text) for s in samples
                if s.label == lab and s.provenance.material_id in seeds]
        if sims:
            out[lab] = [round(float(q), 2) for q in np.quantile(sims, [0.25, 0.5, 0.75])]
    return {"rewrite_similarity": out} if out else {}


def auc_interval(labels: np.ndarray, p: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    draws = resampled_aucs(labels, p, rng)
    lo, hi = interval(100 * draws)
    return round(100 * auc(list(labels), p), 1), round(lo, 1), round(hi, 1)


def resampled_aucs(labels: np.ndarray, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """AUC of DRAWS bootstrap resamples, each label's samples resampled apart (the label counts stay)."""
    pos, neg = p[labels == "1"], p[labels == "0"]
    a = pos[rng.integers(0, len(pos), (DRAWS, len(pos)))]
    b = neg[rng.integers(0, len(neg), (DRAWS, len(neg)))]
    wins = (a[:, :, None] > b[:, None, :]).mean((1, 2)) + 0.5 * (a[:, :, None] == b[:, None, :]).mean((1, 2))
    return wins


def differences(tasks, results: dict, wordings: list[str]) -> dict:
    """AUC of each wording minus the first's, per task, with a bootstrap interval (the two sets of samples are
    independent draws of the generator: each is resampled apart)."""
    first, out = wordings[0], {}
    for w in wordings[1:]:
        for td in tasks:
            a, b = (results["wordings"][x]["tasks"][td.spec.id] for x in (first, w))
            if a.get("auc") is None or b.get("auc") is None:
                continue
            da, db = (resampled_aucs(np.array([e["label"] for e in r["examples"]]),
                                     np.array([e["p"] for e in r["examples"]]), np.random.default_rng(k))
                      for k, r in ((1, a), (2, b)))
            diff = 100 * (db - da)
            lo, hi = interval(diff)
            out[f"{w}-{first}|{td.spec.id}"] = {"difference": round(b["auc"] - a["auc"], 1),
                                                "ci": [round(lo, 1), round(hi, 1)], "verdict": verdict(lo, hi)}
    return out


def table(r: dict) -> str:
    lines = [f"Generator {r['generator']}, referee on {r['target']} features; {r['materials']} materials.", "",
             "| task (referee AUC on real held-out rows) | lever | samples 0 / 1 | copies of the prompt's example "
             "0 / 1 | referee mean P(1): 0 / 1 | AUC of the synthetic labels [95% CI] | referee-agreeing samples "
             "/ min | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for w, wr in r["wordings"].items():
        for tid, t in wr["tasks"].items():
            mp = t.get("mean_p", {})
            ci = f" [{t['auc_ci'][0]}, {t['auc_ci'][1]}]" if t.get("auc_ci") else ""
            cp = t.get("copies_of_example", {})
            lines.append(f"| {tid} ({r['tasks'][tid]['referee_auc']}) | {w} | {t['samples']['0']} / "
                         f"{t['samples']['1']} | {cp.get('0', 0)} / {cp.get('1', 0)} | "
                         f"{mp.get('0', '–')} / {mp.get('1', '–')} | "
                         f"{t.get('auc') if t.get('auc') is not None else '–'}{ci} | "
                         f"{t.get('agreeing', 0)} / {t.get('agreeing_per_minute', 0)} | {wr['seconds']} |")
    for w, wr in r["wordings"].items():
        for tid, t in wr["tasks"].items():
            for src, part in t.get("pseudo_only", {}).items():
                ci = f" [{part['auc_ci'][0]}, {part['auc_ci'][1]}]" if part.get("auc_ci") else ""
                right = part.get("agrees_with_real_label")
                lines.append(f"\n{tid}, {w}, pseudo-labelled real texts ({src}): {part['samples']['0']} / "
                             f"{part['samples']['1']}, referee AUC {part.get('auc')}{ci}"
                             + (f", the real label agrees on {right:.0%}" if right is not None else ""))
    for k, d in r.get("differences", {}).items():
        lines.append(f"\n{k}: {d['difference']:+.1f} [{d['ci'][0]:+.1f}, {d['ci'][1]:+.1f}] ({d['verdict']})")
    real = {t: v["real_mean_p"] for t, v in r["tasks"].items()}
    lines.append("\nReferee mean P(1) on real held-out rows, label 0 / 1: "
                 + ", ".join(f"{t} {v['0']} / {v['1']}" for t, v in real.items()))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
