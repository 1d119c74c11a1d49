#!/usr/bin/env bash
# A short end-to-end check on a CUDA device (under 5 minutes on one GPU): train two culture adapters on the
# packaged Gemma-3-270m from the demo's data, route and predict, serve a few classify requests, on the GPU and
# then on the CPU with the same settings; prints each phase's time and the CPU/GPU speed-up, then this GPU's
# rates for `--plan` (benchmarks/rates.py --device cuda: a config's [bench.rates]).
#
# Run (in a set-up checkout: `make setup` and `culturemanager models gemma3-270m`, torch with CUDA):
#     bash benchmarks/gpu_check.sh            # GPU then CPU
#     DEVICES=cpu bash benchmarks/gpu_check.sh   # the CPU half only (what runs on a machine without a GPU)
# The generator is the fake backend (the point is the target side: training, routing, predicting, serving).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT_DIR:-runs/gpu-check}
DEVICES=${DEVICES:-"cuda cpu"}
PORT=${PORT:-8391}
mkdir -p "$OUT"
$PY - <<'PY'
import torch
print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}",
      f"({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "")
PY
declare -A TIMES
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$EPOCHREALTIME"; }
SETTINGS=(--set generator.backend=fake --set train.layers=2 --set train.max_examples=256 --set train.batch_size=8
          --set "train.target_modules=['q_proj','k_proj','v_proj','o_proj','gate_proj','up_proj','down_proj']"
          --set train.balance=true --set train.min_samples=4 --no-progress)
for dev in $DEVICES; do
  run="$OUT/$dev"
  rm -rf "$run"
  common=(--set "run.dir=$(pwd)/$run" --set "target.device=$dev" "${SETTINGS[@]}")
  $PY -m culturemanager queries examples/demo.toml "${common[@]}" >/dev/null
  $PY -m culturemanager search examples/demo.toml "${common[@]}" >/dev/null
  $PY -m culturemanager synthesize examples/demo.toml "${common[@]}" >/dev/null
  for stage in train route predict; do
    t0=$EPOCHREALTIME
    $PY -m culturemanager "$stage" examples/demo.toml "${common[@]}" >/dev/null
    TIMES[$dev-$stage]=$(elapsed "$t0")
  done
  # serve: start, classify 32 texts in 8 requests, stop
  $PY -m culturemanager serve "$run" --port "$PORT" --set "target.device=$dev" >"$run/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 120); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 1; done
  t0=$EPOCHREALTIME
  for i in $(seq 8); do
    curl -sf "http://127.0.0.1:$PORT/v1/classify" -H 'content-type: application/json' \
      -d '{"task": "hate", "input": ["Vete a tu país", "Çay ister misin?", "Los catalanes son tacaños", "Bu maç harikaydı"]}' >/dev/null
  done
  TIMES[$dev-serve]=$(elapsed "$t0")
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
printf '\n| phase | %s |\n|---|%s\n' "$(echo $DEVICES | sed 's/ / | /g') s" "$(for d in $DEVICES; do printf -- '---|'; done)"
for stage in train route predict serve; do
  row="| $stage |"
  for dev in $DEVICES; do row="$row ${TIMES[$dev-$stage]} |"; done
  echo "$row"
done
if [[ "$DEVICES" == *cuda* && "$DEVICES" == *cpu* ]]; then
  for stage in train predict serve; do
    echo "$stage speed-up (cpu / cuda): $(python3 -c "print(f'{${TIMES[cpu-$stage]} / ${TIMES[cuda-$stage]}:.1f}')")x"
  done
fi
# this GPU's rates for `--plan` (a config's [bench.rates]), Gemma-3-270m with LoRA on the top two layers
if [[ "$DEVICES" == *cuda* ]]; then
  CULTUREMANAGER_DATA=${CULTUREMANAGER_DATA:-../shared/data} $PY benchmarks/rates.py --device cuda \
    --out "$OUT/rates_cuda.json" | tail -n 12
fi
