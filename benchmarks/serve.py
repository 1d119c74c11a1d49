"""Serving throughput of `culturemanager serve` on Gemma-3-270m: requests/s and p50/p99 latency at 1, 4 and 16
concurrent clients sending label classification requests of mixed cultures, with dynamic batching on and off,
and a mixed-culture batch against a single-culture batch of the same size; all in one run.

The main measurement runs the model worker on one thread (`serve.threads = 1`): on this shared 2-core machine
two threads thrash whenever other work holds a core, which makes one request at a time look many times slower
than it is; the 16-client comparison is repeated at torch's default threads (one per core) to show that.

The run served: `--run RUN_DIR` (a trained run), or else runs/bench-serve, made here once: target gemma3-270m
(max_length 128), two cultures (Spanish, Turkish), one binary task with the CultureLLM benchmark's template, and
two random-weight LoRA adapters (r=8 on q/v) on the top 4 of the 18 layers, as `train.layers = 4` trains them
(speed does not depend on what the weights learned). The load: POST /v1/classify with one text each, model
"auto" (the router, then the routed culture's adapter), texts alternating between the Spanish stereotype and
Turkish abusive-language test files of ../shared/data (a small fixed set when the data is not there).

Two servers (`culturemanager serve` subprocesses) run side by side on the same run: batching on
(serve.max_batch=16, serve.max_wait_ms=10) and off (serve.max_batch=1: one request at a time). Every
measurement alternates between the settings in rounds, so the shared machine's noise falls on both alike; the
ratios are what this measures. Clients are closed-loop: each sends its next request when the last is answered.
Mixed vs single culture: 16 clients on the batching server, model forced to "Spanish" for all (single) or
alternating "Spanish" / "Turkish" (mixed); /metrics shows the batches' sizes and adapters. A generation load
(completions, model "auto", `--tokens` greedy tokens each) shows batching where a CPU gains from it: a decoding
step reads every weight once, for one row or sixteen.

Run: `make bench-serve` (or `python benchmarks/serve.py [--rounds 3] [--per-client 2]`); writes
benchmarks/results/serve.json and prints the table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CULTUREMANAGER_DATA", ROOT.parent / "shared" / "data"))
CULTURES = ("Spanish", "Turkish")
SETTINGS = {"batching on": ["serve.max_batch=16", "serve.max_wait_ms=10"],
            "batching off": ["serve.max_batch=1", "serve.max_wait_ms=0"]}
THREADS = 1  # serve.threads of the main measurement (docs/benchmarks.md: 2 threads on a busy 2-core CPU thrash)
FALLBACK = ["Los catalanes son tacaños y no comparten nada", "Me encanta la paella de mi abuela los domingos",
            "Defol git buradan, seni istemiyoruz", "Çay ister misin? Bayramınız kutlu olsun"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, help="a trained run directory (default: runs/bench-serve, made here)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per measurement")
    p.add_argument("--per-client", type=int, default=2, help="requests per client in one round (at least 8 a round)")
    p.add_argument("--tokens", type=int, default=16, help="max_tokens of the generation load")
    p.add_argument("--default-threads-rounds", type=int, default=1,
                   help="rounds of the 16-client comparison at torch's default threads (0: skip it)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve.json")
    args = p.parse_args()
    run_dir = args.run or make_run(ROOT / "runs" / "bench-serve")
    texts = load_texts()
    auto, gen = classify(texts, lambda k: "auto"), complete(texts, args.tokens)
    single, mixed = classify(texts, lambda k: "Spanish"), classify(texts, lambda k: CULTURES[k % 2])
    out: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "command": " ".join(["python", *sys.argv]),
                 "run": str(run_dir), "rounds": args.rounds, "cpus": os.cpu_count(), "rows": []}
    rows = out["rows"]
    with servers(run_dir, [f"serve.threads={THREADS}"]) as (on, off):
        for clients in (1, 4, 16):
            n = max(args.per_client, -(-8 // clients))
            rows += compare({"batching on": (on, auto), "batching off": (off, auto)}, "classify, auto", clients, n,
                            args.rounds, THREADS)
        rows += compare({"batching on": (on, gen), "batching off": (off, gen)},
                        f"completions, auto, {args.tokens} tokens", 16, 1, args.rounds, THREADS)
        rows += compare({"single culture": (on, single), "mixed cultures": (on, mixed)},
                        "classify, forced culture, batching on", 16, args.per_client, args.rounds, THREADS)
    if args.default_threads_rounds:
        with servers(run_dir, []) as (on, off):
            rows += compare({"batching on": (on, auto), "batching off": (off, auto)}, "classify, auto", 16,
                            args.per_client, args.default_threads_rounds, f"torch default ({os.cpu_count()})")
    out["goals"] = goals(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(table(out))
    print(f"wrote {args.out}")


def classify(texts: list[str], model):
    """Request maker: client k's i-th request of a block of `clients`, a classify of one text as `model(k)`."""
    return lambda k, i, clients: ("/v1/classify", {"input": texts[(k + i * clients) % len(texts)],
                                                   "model": model(k)})


def complete(texts: list[str], tokens: int):
    return lambda k, i, clients: ("/v1/completions", {"model": "auto", "max_tokens": tokens,
                                                      "prompt": texts[(k + i * clients) % len(texts)]})


@contextmanager
def servers(run_dir: Path, flags: list[str]):
    """The batching-on and batching-off servers side by side, warmed up (the first calls compute the router
    prior)."""
    with server(run_dir, [*SETTINGS["batching on"], *flags]) as on, \
            server(run_dir, [*SETTINGS["batching off"], *flags]) as off:
        for url in (on, off):
            load(url, 4, 1, classify(FALLBACK, lambda k: "auto"))
        yield on, off


def compare(cases: dict, what: str, clients: int, per_client: int, rounds: int, threads) -> list[dict]:
    """Each case (name -> (server URL, request maker)) under the same load, alternating in rounds; one row each,
    with the batches the server made for it (from /metrics)."""
    blocks: dict[str, list] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (url, make) in cases.items():
            before = metrics(url)
            block = load(url, clients, per_client, make)
            block["batches"] = batch_stats(before, metrics(url))
            blocks[name].append(block)
    rows = [{"load": what, "setting": name, "threads": threads, **summary(clients, bs)} for name, bs in blocks.items()]
    for row in rows:
        print(row, flush=True)
    return rows


def goals(rows: list[dict]) -> dict:
    def rps(load: str, setting: str, threads=THREADS) -> float:
        return next(r["rps"] for r in rows if r["load"] == load and r["setting"] == setting and r["clients"] == 16
                    and r["threads"] == threads)

    g = {"batching_speedup_16_clients": round(rps("classify, auto", "batching on")
                                              / rps("classify, auto", "batching off"), 2),
         "mixed_over_single": round(rps("classify, forced culture, batching on", "mixed cultures")
                                    / rps("classify, forced culture, batching on", "single culture"), 2)}
    g["met"] = g["batching_speedup_16_clients"] >= 4 and g["mixed_over_single"] >= 0.7
    gen = [r for r in rows if r["load"].startswith("completions")]
    if gen:
        g["generation_batching_speedup_16_clients"] = round(gen[0]["rps"] / gen[1]["rps"], 2)
    return g


def make_run(run_dir: Path) -> Path:
    """runs/bench-serve: the run config, two random LoRA adapters on the top 4 layers, router.json."""
    if (run_dir / "router.json").exists():
        return run_dir
    import torch

    from culturemanager import load_config
    from culturemanager.backends.target import load_target
    from culturemanager.backends.trainer import lora_config
    from culturemanager.bench.tasks import load_tasks
    from culturemanager.config import TrainConfig
    from culturemanager.pipeline import Run

    template = load_tasks(DATA / "tasks.json").prompt_template if (DATA / "tasks.json").exists() else None
    run_dir.mkdir(parents=True, exist_ok=True)
    # the embedding router (the default) learns each culture from its demonstrations: texts the load never sends
    demos = []
    for culture, texts in zip(CULTURES, culture_texts(64, 96)):
        path = run_dir / f"demos-{culture.lower()}.jsonl"
        path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
        demos.append(f'{{ path = "{path.name}", culture = "{culture}" }}')
    config = run_dir / "run.toml"
    config.write_text("\n".join([
        '[run]\ndir = "."\n', '[target]\nmodel = "gemma3-270m"\nmax_length = 128\nbatch_size = 8\n',
        *(f'[[cultures]]\nname = "{c}"\n' for c in CULTURES),
        '[[tasks]]\nid = "harm"\nlabel = "offensive language"', f"demonstrations = [{', '.join(demos)}]",
        *([f"template = {json.dumps(template)}"] if template else []), ""]), encoding="utf-8")
    cfg = load_config(config)
    for i, culture in enumerate(CULTURES):
        torch.manual_seed(i + 1)
        base, _ = load_target(cfg.target)
        lora = lora_config(TrainConfig(layers=4), base.config.num_hidden_layers)
        lora.init_lora_weights = False  # random A and B: an adapter that changes the answers, as a trained one
        from peft import get_peft_model

        get_peft_model(base, lora).save_pretrained(Run(cfg, progress=False).rd.adapter(culture))
    Run(cfg, progress=False).stage("route")
    return run_dir


def culture_texts(start: int, stop: int) -> tuple[list[str], list[str]]:
    """Rows start..stop of the Spanish stereotype and Turkish abusive-language files (CULTURES' order); the
    fixed fallback texts when the data is not there."""
    if not (DATA / "tasks.json").exists():
        return FALLBACK[:2] * 8, FALLBACK[2:] * 8
    from culturemanager.bench.tasks import load_tasks, read_task_rows

    tasks = {t.id: t for t in load_tasks(DATA / "tasks.json").tasks}
    es, tr = (read_task_rows(tasks[t], DATA).texts[start:stop] for t in ("es-stereotype", "tr-abusive"))
    return es, tr


def load_texts() -> list[str]:
    """Spanish and Turkish test texts, alternating (so clients k and k+1 send texts of different cultures)."""
    es, tr = culture_texts(0, 64)
    return [t for pair in zip(es, tr) for t in pair]


@contextmanager
def server(run_dir: Path, flags: list[str]):
    """`culturemanager serve RUN` on a free loopback port; yields its URL."""
    cmd = [sys.executable, "-m", "culturemanager", "serve", str(run_dir), "--port", "0", "--set",
           "serve.queue_size=256", "--set", "serve.timeout_s=3600", *[x for f in flags for x in ("--set", f)]]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = ""
        while "http://" not in line:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                raise RuntimeError(f"the server ended with {proc.returncode}: {' '.join(cmd)}")
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep its log from blocking it
        yield re.search(r"(http://[\d.]+:\d+)/v1", line).group(1)
    finally:
        proc.terminate()
        proc.wait(60)


def load(url: str, clients: int, per_client: int, make) -> dict:
    """`clients` closed-loop clients, each sending `per_client` requests (`make(k, i, clients)` -> path, body):
    the block's latencies, requests/s and generated tokens."""
    latencies: list[float] = []
    errors: list[str] = []
    tokens = [0]
    lock, start = threading.Lock(), threading.Barrier(clients + 1)

    def client(k: int) -> None:
        with httpx.Client(base_url=url, timeout=3600) as http:
            start.wait()
            for i in range(per_client):
                path, body = make(k, i, clients)
                t0 = time.perf_counter()
                r = http.post(path, json=body)
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    if r.status_code != 200:
                        errors.append(f"{r.status_code} {r.text[:100]}")
                    else:
                        tokens[0] += (r.json().get("usage") or {}).get("completion_tokens", 0)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return {"requests": len(latencies), "seconds": time.perf_counter() - t0, "latencies": latencies,
            "errors": errors, "tokens": tokens[0]}


def summary(clients: int, blocks: list[dict]) -> dict:
    lat = sorted(x for b in blocks for x in b["latencies"])
    requests, seconds = sum(b["requests"] for b in blocks), sum(b["seconds"] for b in blocks)
    n = sum(b["batches"]["batches"] for b in blocks) or 1
    return {"clients": clients, "requests": requests, "rps": round(requests / seconds, 2),
            "rps_per_round": [round(b["requests"] / b["seconds"], 2) for b in blocks],
            "p50_s": round(percentile(lat, 50), 3), "p99_s": round(percentile(lat, 99), 3),
            "tokens_per_s": round(sum(b["tokens"] for b in blocks) / seconds, 2),
            "batch_texts": round(sum(b["batches"]["rows"] for b in blocks) / n, 2),
            "batch_adapters": round(sum(b["batches"]["adapters"] for b in blocks) / n, 2),
            "errors": sum(len(b["errors"]) for b in blocks)}


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (p99 of fewer than 100 samples is their maximum)."""
    return xs[min(len(xs) - 1, max(0, -(-len(xs) * q // 100) - 1))] if xs else float("nan")


def metrics(url: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        for s in family.samples:
            if not s.labels or set(s.labels) == {"le"}:
                out[s.name + (f"{{{s.labels['le']}}}" if s.labels else "")] = s.value
    return out


def batch_stats(before: dict, after: dict) -> dict:
    """Batches made between two /metrics readings: their number, and their texts and adapters in total."""
    d = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return {"batches": d["culturemanager_batch_rows_count"], "rows": d["culturemanager_batch_rows_sum"],
            "adapters": d["culturemanager_batch_adapters_sum"]}


def table(out: dict) -> str:
    lines = ["| load | threads | setting | clients | requests | requests/s (per round) | p50 s | p99 s "
             "| texts / adapters per batch | errors |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in out["rows"]:
        tokens = f", {r['tokens_per_s']} tokens/s" if r["tokens_per_s"] else ""
        lines.append(f"| {r['load']} | {r['threads']} | {r['setting']} | {r['clients']} | {r['requests']} "
                     f"| **{r['rps']}** ({', '.join(map(str, r['rps_per_round']))}){tokens} | {r['p50_s']} "
                     f"| {r['p99_s']} | {r['batch_texts']} / {r['batch_adapters']} | {r['errors']} |")
    g = out["goals"]
    lines.append(f"\nclassify, 16 clients, batching on / off: **{g['batching_speedup_16_clients']}x** (goal >= 4x); "
                 f"mixed / single culture: **{g['mixed_over_single']}x** (goal >= 0.7x); generation, 16 clients, "
                 f"batching on / off: **{g.get('generation_batching_speedup_16_clients')}x**")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
