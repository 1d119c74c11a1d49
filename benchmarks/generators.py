"""Which packaged model should generate? Speed and usable-output rate of each candidate, on the demo's prompts.

For each generator (llama.cpp engine, 2 threads) it answers the same query prompts (2 cultures x 2 modes) and
synthesis prompts (2 cultures x 2 labels, on a fixed material paragraph) at temperature 0.7, and reports
tokens/s, the share of query answers that parse into >= 1 query, and the share of requested samples that
survive parsing and validation (label in set, length bounds, not a copy of a demonstration or the material).
Label correctness is not measured here: it needs a human or a stronger judge.

Run: `make bench-generators` (or `python benchmarks/generators.py [MODEL ...]`); writes
benchmarks/results/generators.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from culturemanager.backends.llm import ChatRequest, LocalBackend
from culturemanager.config import Culture, DataFile, LLMConfig, SynthesisConfig, Task
from culturemanager.stages.synthesize import LeakIndex
from culturemanager.text.datafiles import read_texts
from culturemanager.text.prompts import build_query_messages, build_synthesis_messages, parse_queries, parse_samples

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"]
MATERIAL = {
    "Spanish": "In Spain, 'moro' is used as a slur for Moroccans and Muslims, and 'sudaca' for Latin Americans. "
               "Football rivalries such as Real Madrid against Barcelona produce heated insults online.",
    "Turkish": "In Turkey, insults aimed at someone's mother or family honour are the gravest. Syrian refugees are "
               "frequent targets of hostile posts, and football rivalries fuel abuse between fans.",
}


def main(models: list[str]) -> None:
    task = Task(id="hate", label="hate speech")
    syn = SynthesisConfig()
    cultures = [Culture(name="Spanish", language="es"), Culture(name="Turkish", language="tr")]
    demos = {c.name: read_texts([DataFile(path=ROOT / f"examples/demos/{c.name.lower()}.jsonl")]) for c in cultures}
    results = {}
    for model in models:
        backend = LocalBackend(LLMConfig(model=model, engine="llama_cpp", threads=2))
        backend.complete([ChatRequest((("user", "hi"),), 0.0, 1)])  # load outside the timing
        tokens, seconds, parsed_queries, kept, asked = 0, 0.0, 0, 0, 0
        jobs = []
        for c in cultures:
            for mode in ("task_specific", "task_agnostic"):
                messages = build_query_messages(c, task, mode, demos[c.name][:4], 3)
                jobs.append(("q", c, ChatRequest(messages, 0.7, 200, 1)))
            for label in ("1", "0"):
                messages = build_synthesis_messages(c, task, MATERIAL[c.name], demos[c.name][:2], [label] * 3, syn)
                jobs.append(("s", c, ChatRequest(messages, 0.7, 320, 2)))
        for kind, c, req in jobs:
            t0 = time.time()
            answer = backend.complete([req])[0]
            seconds += time.time() - t0
            tokens += answer.completion_tokens or 0
            if kind == "q":
                parsed_queries += bool(parse_queries(answer.text))
            else:
                asked += 3
                copies = [LeakIndex(demos[c.name], syn.leakage_ngram),
                          LeakIndex([], syn.copy_ngram, [MATERIAL[c.name]])]
                items = parse_samples(answer.text, task, syn, None).items
                kept += sum(not any(ix.leaks(t) for ix in copies) for t, _ in items[:3])
        results[model] = {"tokens_per_s": round(tokens / seconds, 1), "seconds": round(seconds, 1),
                          "query_answers_parsed": f"{parsed_queries}/4", "samples_kept": f"{kept}/{asked}"}
        print(model, results[model], flush=True)
    out = ROOT / "benchmarks" / "results" / "generators.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:] or MODELS)
