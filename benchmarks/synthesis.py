"""Synthesis throughput: kept samples per generator-minute, today's path against the llama-server path, one run.

Every case runs the real synthesis stage (`stages.synthesize.synthesize`) in a fresh run directory (no answer
cache) on the same materials, with the same generator model (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF) on 2
threads. The materials are the demo corpus's passages found (BM25, no LLM) for fixed queries, 2 passages of up
to 900 characters per query, as the bench's pipeline uses them (`search.summarize = false`).

Cases (`CASES` below): `before` is today's path (in-process llama-cpp-python, one request at a time, the demo's
synthesis settings: per-label calls of 3 samples, 320 new tokens at most); `server-c1/c4/c8` are the same
settings through llama.cpp's own llama-server with 1, 4 and 8 requests in flight (the engine and its
concurrency: a material's calls share their prompt and run in turn on one slot, so N in flight needs N
materials); `after-c4` (and `after-c8`) add the throughput settings: 32 samples per material, asked in calls of
8 that share the whole prompt, with compact output. With `--rounds R` the materials are cut into R rounds and
every round runs every case, so a busy spell of the shared machine falls on all cases alike. Both engines are
warmed with one tiny request first, so the times are the stage's own (model loading and server start are
excluded and reported apart). Kept samples are also checked for near-duplicates (USE cosine > 0.9 with an
earlier kept sample of the culture): more samples per material must not just mean repeats.

Where a call's time goes comes from the engines' own counters: llama.cpp's perf counters in process (prompt
tokens evaluated vs reused from the KV cache, prompt and generation milliseconds), llama-server's `timings`.

Run: `make bench-synthesis` (or `python benchmarks/synthesis.py [--cases before,after-c4] [--materials 4]`);
writes benchmarks/results/synthesis.json and prints the table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path

from culturemanager.backends.llm import CachedLLM, ChatRequest, make_backend
from culturemanager.config import Config, load_config
from culturemanager.records import Material, Query, read_jsonl, sha1_text, write_jsonl
from culturemanager.rundir import RunDir
from culturemanager.stages.search import search
from culturemanager.stages.synthesize import synthesize

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "bench-synthesis"
RESULTS = ROOT / "benchmarks" / "results" / "synthesis.json"

QUERIES = {  # two per mode and culture: material on what the demo's hate-speech task touches
    "Spanish": [("task_specific", "insults against Moroccans and Latin Americans in Spain"),
                ("task_specific", "football rivalry insults Real Madrid Barcelona fans"),
                ("task_agnostic", "Spanish social norms family and everyday language"),
                ("task_agnostic", "regional stereotypes in Spain Andalusia Catalonia"),
                ("task_specific", "online hate speech targets in Spain immigrants"),
                ("task_agnostic", "offensive words and swearing in Spanish")],
    "Turkish": [("task_specific", "insults about family honour in Turkish"),
                ("task_specific", "hostile posts against Syrian refugees in Turkey"),
                ("task_agnostic", "Turkish hospitality and religious holidays"),
                ("task_agnostic", "Kurdish and Armenian minorities in Turkish public debate"),
                ("task_specific", "football fan abuse in Turkey online"),
                ("task_agnostic", "offensive slang and swearing in Turkish")],
}

BASE = ["generator.model=qwen2.5-coder-1.5b-instruct", "generator.threads=2", "generator.temperature=0.7",
        "generator.max_new_tokens=320", "generator.timeout_s=900", "search.summarize=false", "search.top_k=2",
        "search.max_doc_chars=900", "search.retrieval=bm25", "synthesis.samples_per_material=6"]
SERVER = ["generator.backend=llama_server"]
FAST = ["synthesis.samples_per_material=32", "synthesis.samples_per_call=8", "synthesis.output=compact"]
CASES: dict[str, list[str]] = {
    "before": ["generator.backend=local", "generator.engine=llama_cpp"],
    # the same settings through llama-server at 1, 4 and 8 requests in flight: the engine and its concurrency
    "server-c1": SERVER + ["generator.concurrency=1"],
    "server-c4": SERVER + ["generator.concurrency=4"],
    "server-c8": SERVER + ["generator.concurrency=8"],
    # more samples per material, asked in calls of 8 that share the whole prompt, labels not repeated
    "after-c4": SERVER + ["generator.concurrency=4"] + FAST,
    "after-c8": SERVER + ["generator.concurrency=8"] + FAST,
    # not the same generator: the 0.5B on the after path, for the bench's data volume (not the 5x comparison)
    "after-c4-0.5b": SERVER + ["generator.concurrency=4"] + FAST + ["generator.model=qwen2.5-coder-0.5b-instruct"],
}
DEFAULT_CASES = ["before", "after-c4", "server-c4", "server-c8", "server-c1"]  # before and after next to each other


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", action="store_true", help="only the engine's scaling: generation tokens/s with "
                    "1, 2, 4 and 8 sequences decoded together, and prompt tokens/s (benchmarks/results/engine.json)")
    ap.add_argument("--cases", default=",".join(DEFAULT_CASES), help=f"comma-separated, of {', '.join(CASES)}")
    ap.add_argument("--materials", type=int, default=4, help="queries (materials) per culture, at most 6; a "
                    "material's calls run on one slot, so 8 requests in flight need 8 materials in a round")
    ap.add_argument("--rounds", type=int, default=1, help="the materials are cut into this many rounds; each "
                    "round runs every case, so a busy spell of the machine falls on all cases alike")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.engine:
        print(json.dumps(engine_scaling(), indent=2))
        return
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        ap.error(f"unknown cases {unknown}; known: {', '.join(CASES)}")
    materials = read_jsonl(build_materials(args.out / "materials-run", args.materials), Material)
    rounds = [materials[r::args.rounds] for r in range(args.rounds)]
    results = {"date": time.strftime("%Y-%m-%d"), "command": "python benchmarks/synthesis.py " + " ".join(
        f"--{k} {v}" for k, v in [("cases", ",".join(names)), ("materials", args.materials),
                                  ("rounds", args.rounds)]), "materials": len(materials), "base": BASE,
               "cases": {}, "rounds": []}
    for r, part in enumerate(rounds):
        results["rounds"].append({})
        for name in names:
            got = run_case(CASES[name], part, args.out / f"{name}-round{r}")
            results["rounds"][r][name] = got
            print(json.dumps({"round": r, "case": name, **{k: got[k] for k in ("seconds", "calls", "kept")}}),
                  flush=True)
            results["cases"] = {n: total([rd[n] for rd in results["rounds"] if n in rd], CASES[n])
                                for n in names if any(n in rd for rd in results["rounds"])}
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(table(results))


def engine_scaling(tokens: int = 64) -> dict:
    """llama-server with 8 slots, each warmed with the same short prompt: then N slots decode `tokens` tokens
    each at once (ignore_eos), N = 1, 2, 4, 8, and one ~500-token prompt is processed alone (cache off)."""
    import secrets
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from culturemanager.backends.llamaserver import LlamaServer, find_binary, server_args
    from culturemanager.backends.models import resolve_gguf

    cfg = case_config(SERVER + ["generator.concurrency=8"], OUT / "engine").generator
    key = secrets.token_hex(8)
    server = LlamaServer(find_binary(cfg.server.binary), server_args(cfg, resolve_gguf(cfg.model)), key, 300)
    url = server.start()

    def call(slot: int, n: int, content: str, cache: bool = True) -> dict:
        body = {"messages": [{"role": "user", "content": content}], "max_tokens": n, "seed": slot, "temperature": 0.7,
                "ignore_eos": True, "id_slot": slot, "cache_prompt": cache}
        return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=1800,
                          headers={"Authorization": f"Bearer {key}"}).json()["timings"]

    out: dict = {"date": time.strftime("%Y-%m-%d"), "threads": cfg.threads, "decode": {}}
    try:
        story = "Write a long story about a market in Seville, in Spanish."
        for slot in range(8):
            call(slot, 1, story)
        for n in (1, 2, 4, 8):
            t0 = time.time()
            with ThreadPoolExecutor(n) as pool:
                done = list(pool.map(lambda k: call(k, tokens, story), range(n)))
            wall = time.time() - t0
            out["decode"][n] = {"tokens": sum(t["predicted_n"] for t in done), "seconds": round(wall, 2),
                                "tokens_per_s": round(sum(t["predicted_n"] for t in done) / wall, 1),
                                "loadavg_1min": os.getloadavg()[0]}
        text = (ROOT / "examples" / "corpus" / "spanish" / "social_norms.md").read_text(encoding="utf-8")[:2200]
        t = call(0, 1, text, cache=False)
        out["prompt"] = {"tokens": t["prompt_n"], "tokens_per_s": round(t["prompt_per_second"], 1),
                         "loadavg_1min": os.getloadavg()[0]}
    finally:
        server.stop()
    path = RESULTS.with_name("engine.json")
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return out


def case_config(overrides: list[str], run_dir: Path) -> Config:
    return load_config(ROOT / "examples" / "demo.toml", BASE + overrides + [f"run.dir={run_dir}"])


def build_materials(run_dir: Path, per_culture: int) -> Path:
    """The fixed queries' passages as materials (search stage, no summaries, no LLM call)."""
    cfg = case_config(["generator.backend=fake"], run_dir)
    rd = RunDir(run_dir)
    queries = [Query(id=sha1_text(f"{c}|{text}")[:12], culture=c, task="hate", mode=mode, text=text,
                     generator="benchmark", prompt_hash="-")
               for c, qs in QUERIES.items() for mode, text in qs[:per_culture]]
    write_jsonl(rd.queries, queries)
    search(cfg, rd, CachedLLM(make_backend(cfg.generator), rd.llm_cache, rd.calls))
    return rd.materials


def run_case(overrides: list[str], materials: list[Material], run_dir: Path) -> dict:
    """One case on some materials, in a fresh run directory: the stage's time, calls, tokens and counts."""
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = case_config(overrides, run_dir)
    rd = RunDir(run_dir)
    rd.root.mkdir(parents=True)
    write_jsonl(rd.materials, materials)
    backend = make_backend(cfg.generator)
    t0 = time.time()
    backend.complete([ChatRequest((("user", "Say OK."),), 0.0, 2)])  # loads the model / starts the server
    load_s = time.time() - t0
    profiler = Profiler(backend)
    llm = CachedLLM(backend, rd.llm_cache, rd.calls)
    try:
        t0 = time.time()
        _, counts = synthesize(cfg, rd, llm)
        seconds = time.time() - t0
    finally:
        if hasattr(backend, "close"):
            backend.close()
    calls = [json.loads(line) for line in rd.calls.read_text(encoding="utf-8").splitlines()]
    answered = [c for c in calls if c["outcome"] == "ok"]
    return {"load_s": round(load_s, 1), "seconds": round(seconds, 1), "calls": len(answered),
            "loadavg_1min_at_end": os.getloadavg()[0],
            "near_duplicates": count_near_duplicates(cfg, rd),
            "failed_calls": counts.get("failed_calls", 0), "unparsable": counts.get("unparsable_answers", 0),
            "kept": counts.get("kept", 0), "prompt_tokens": sum(c["prompt_tokens"] or 0 for c in answered),
            "generated_tokens": sum(c["completion_tokens"] or 0 for c in answered),
            "dropped": {k: v for k, v in counts.items() if k in DROP_REASONS}, "profile_rows": profiler.rows()}


def count_near_duplicates(cfg: Config, rd: RunDir, threshold: float = 0.9) -> int:
    """Kept samples whose USE-multilingual cosine with an earlier kept sample of their culture is above
    `threshold` (the selection check's default): more samples per call must not just mean repeats."""
    from culturemanager.backends.retrieval.dense import UseMultilingual
    from culturemanager.records import Sample
    from culturemanager.stages.select import near_duplicates

    samples = [s for c in cfg.cultures if rd.samples(c.name).exists() for s in read_jsonl(rd.samples(c.name), Sample)]
    if not samples:
        return 0
    emb = UseMultilingual().encode([s.text for s in samples])
    return sum(near_duplicates(emb, [s.culture for s in samples], threshold)[1])


def total(parts: list[dict], overrides: list[str]) -> dict:
    """A case's rounds added up, with the rates."""
    seconds = sum(p["seconds"] for p in parts)
    calls, kept = sum(p["calls"] for p in parts), sum(p["kept"] for p in parts)
    unparsable = sum(p["unparsable"] for p in parts)
    gen = sum(p["generated_tokens"] for p in parts)
    dropped: Counter = Counter()
    for p in parts:
        dropped.update(p["dropped"])
    return {"settings": overrides, "seconds": round(seconds, 1), "load_s": [p["load_s"] for p in parts],
            "loadavg_1min_at_end": [p["loadavg_1min_at_end"] for p in parts],
            "calls": calls, "failed_calls": sum(p["failed_calls"] for p in parts),
            "answers_parsed": f"{calls - unparsable}/{calls}",
            "parse_rate": round((calls - unparsable) / max(1, calls), 3),
            "kept": kept, "kept_per_minute": round(kept / max(1e-9, seconds / 60), 2),
            "near_duplicates": sum(p["near_duplicates"] for p in parts),
            "distinct_kept_per_minute": round((kept - sum(p["near_duplicates"] for p in parts))
                                              / max(1e-9, seconds / 60), 2),
            "prompt_tokens": sum(p["prompt_tokens"] for p in parts), "generated_tokens": gen,
            "generated_tokens_per_s": round(gen / max(1e-9, seconds), 2),
            "generated_tokens_per_kept_sample": round(gen / max(1, kept), 1),
            "prompt_tokens_evaluated_per_kept_sample": round(
                sum(r["prompt_n"] for p in parts for r in p["profile_rows"]) / max(1, kept), 1),
            "dropped": dict(dropped), "profile": profile([row for p in parts for row in p["profile_rows"]])}


DROP_REASONS = {"empty_text", "too_short", "too_long", "no_label", "label_not_in_set", "copies_demonstration",
                "copies_material", "duplicate", "leaks_evaluation", "no_valid_answer"}


class Profiler:
    """Where the time of the calls went, from the engine's own counters: prompt tokens evaluated and reused,
    milliseconds of prompt processing and of generation per call."""

    def __init__(self, backend):
        self.backend = backend
        self.engine = "server" if hasattr(backend, "timings") else "in_process"
        if self.engine == "server":
            self.start = len(backend.timings)
        else:
            self._wrap_in_process()

    def _wrap_in_process(self) -> None:
        import llama_cpp

        # LocalBackend keeps its llama_cpp.Llama inside the generate closure; read its perf counters per call
        llm = next(c.cell_contents for c in self.backend._generate.__closure__
                   if isinstance(c.cell_contents, llama_cpp.Llama))
        inner, self._rows = self.backend._generate, []

        def generate(r):
            llama_cpp.llama_perf_context_reset(llm._ctx.ctx)
            out = inner(r)
            p = llama_cpp.llama_perf_context(llm._ctx.ctx)
            self._rows.append({"prompt_n": p.n_p_eval, "prompt_ms": p.t_p_eval_ms, "predicted_n": p.n_eval,
                               "predicted_ms": p.t_eval_ms, "prompt_total": out.prompt_tokens or 0})
            return out

        self.backend._generate = generate

    def rows(self) -> list[dict]:
        if self.engine == "in_process":
            return self._rows
        return [{"prompt_n": t.get("prompt_n", 0), "prompt_ms": t.get("prompt_ms", 0.0),
                 "predicted_n": t.get("predicted_n", 0), "predicted_ms": t.get("predicted_ms", 0.0),
                 "prompt_total": t.get("prompt_n", 0) + t.get("cache_n", 0)} for t in self.backend.timings[self.start:]]


def profile(rows: list[dict]) -> dict:
    """Per call: prompt tokens (all, and evaluated: the rest came from the KV cache), seconds of prompt
    processing and of generation. For the server these are per slot: with requests in flight together they add
    up to more than the wall time, and tokens/s per sequence falls while the sum over slots rises."""
    tot: Counter = Counter()
    for r in rows:
        tot.update(r)
    n = max(1, len(rows))
    return {"calls": len(rows), "prompt_tokens_per_call": round(tot["prompt_total"] / n, 1),
            "prompt_tokens_evaluated_per_call": round(tot["prompt_n"] / n, 1),
            "prompt_reused_share": round(1 - tot["prompt_n"] / max(1, tot["prompt_total"]), 3),
            "prompt_s_per_call": round(tot["prompt_ms"] / 1e3 / n, 2),
            "generation_s_per_call": round(tot["predicted_ms"] / 1e3 / n, 2),
            "generated_tokens_per_call": round(tot["predicted_n"] / n, 1),
            "prompt_tokens_per_s": round(tot["prompt_n"] / max(1e-9, tot["prompt_ms"] / 1e3), 1),
            "generated_tokens_per_s_per_sequence": round(tot["predicted_n"] / max(1e-9, tot["predicted_ms"] / 1e3), 1),
            "prompt_share_of_call_time": round(tot["prompt_ms"] / max(1e-9, tot["prompt_ms"] + tot["predicted_ms"]), 3)}


def table(results: dict) -> str:
    cases = results["cases"]
    base = cases.get("before", {}).get("kept_per_minute")
    dbase = cases.get("before", {}).get("distinct_kept_per_minute")
    lines = ["| case | calls | answers parsed | kept (near-dup.) | stage s | kept / min | vs before | distinct kept / "
             "min | vs before | prompt tokens evaluated / kept | generated tokens / kept | generated tok/s | prompt "
             "share of call time |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, c in cases.items():
        ratio = f"{c['kept_per_minute'] / base:.2f}x" if base else "–"
        dratio = f"{c['distinct_kept_per_minute'] / dbase:.2f}x" if dbase else "–"
        lines.append(f"| {name} | {c['calls']} | {c['answers_parsed']} | {c['kept']} ({c['near_duplicates']}) | "
                     f"{c['seconds']:.0f} | {c['kept_per_minute']:.1f} | {ratio} | "
                     f"{c['distinct_kept_per_minute']:.1f} | {dratio} | "
                     f"{c['prompt_tokens_evaluated_per_kept_sample']:.0f} | "
                     f"{c['generated_tokens_per_kept_sample']:.0f} | {c['generated_tokens_per_s']:.1f} | "
                     f"{c['profile']['prompt_share_of_call_time']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
