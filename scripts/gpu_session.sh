#!/usr/bin/env bash
# A GPU session on this workplace's device machine (15 minutes of device time in all, one call of at most
# 10): the full-data ML-1M rows (scripts/run_ml1m.sh) and then the GPU benchmarks (benchmarks/run_gpu.sh)
# in one call, with what is worth keeping copied to $OUT. That machine has torch, transformers, peft and
# accelerate but not this package or the embedded model, and reaches nothing outside.
#
#   bash scripts/gpu_session.sh pack   here (.venv active): packs SmolLM2 + the missing wheels
#                                      (../shared/tools/device-pack), the ML-1M split and the CF tables the
#                                      runs read; prints the device calls
#   bash scripts/gpu_session.sh run    there, in the last of those calls
#   bash scripts/gpu_session.sh fetch DIR   here, after it: the rows and run files from DIR (the call's files)
#                                      into results/ml1m.json, outputs/ml1m/ and benchmarks/results/
#
# run's options: ML1M_SECONDS (deadline of the ML-1M runs, default 400), BENCH_SECONDS (of the benchmarks,
# default 150), MAIN_ONLY=1 (TALLRec, CCF-LLM and CoLLM only), MAX_PARALLEL and MIN_LEFT (run_ml1m.sh's).
set -uo pipefail
cd "$(dirname "$0")/.."
keep=(metrics.json test_scores.parquet valid_scores.parquet gates.json stage{1,2}/trainer_state.json
  stage{1,2}/trainable.safetensors)  # per run folder: the tuned weights, not the 135M backbone

pack() {
  set -e
  ../shared/tools/device-pack > /dev/null
  mkdir -p .device/ml-1m
  cp ../shared/data/ml-1m/*.parquet .device/ml-1m/
  bash scripts/cf_tables.sh mf_bias mf
  local parts=(.device/pack.part-*) n
  n=${#parts[@]}
  echo "Make these device calls back to back (the machine stays warm ~30 s between calls):"
  for ((i = 0; i < n - 1; i++)); do
    echo "  call $((i + 1)): command='bash .device/unpack.sh'  carry=[\".device/unpack.sh\", \"${parts[i]}\"]"
  done
  echo "  call $n: command='bash scripts/gpu_session.sh run'  timeout_s=590  carry=[\".device/unpack.sh\"," \
    "\"${parts[n - 1]}\", \".device/ml-1m\", \"outputs/cf/ml1m/mf_bias\", \"outputs/cf/ml1m/mf\"]"
  echo "then, here: bash scripts/gpu_session.sh fetch FILES_AT"
}

run() {
  bash .device/unpack.sh || exit 1
  [ -f /tmp/devpack/ready ] || { echo "the pack is incomplete: make the earlier calls first" >&2; exit 1; }
  local gguf=(/tmp/devpack/pack/*.gguf)
  if ! command -v python > /dev/null; then  # the scripts call python; the image may name it python3 only
    mkdir -p /tmp/pybin && ln -sf "$(command -v python3)" /tmp/pybin/python && export PATH=/tmp/pybin:$PATH
  fi
  export PYTHONPATH=/tmp/devpack/site:$PWD PYTHONUNBUFFERED=1 SMOLLM2_GGUF=${gguf[0]} \
    CCF_ML1M_DIR=$PWD/.device/ml-1m CCF_CACHE=/tmp/ccf-cache
  local out=${OUT:-outputs/gpu-session}
  mkdir -p "$out"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
  DEADLINE=${ML1M_SECONDS:-400} MAX_PARALLEL=${MAX_PARALLEL:-4} MIN_LEFT=${MIN_LEFT:-150} \
    bash scripts/run_ml1m.sh 2>&1 | tee "$out/run_ml1m.log"
  cp results/ml1m.json "$out/"
  for dir in outputs/ml1m/*/; do
    for file in "${keep[@]}"; do
      [ -f "$dir$file" ] && mkdir -p "$out/$dir$(dirname "$file")" && cp "$dir$file" "$out/$dir$file"
    done
  done
  mkdir -p "$out/outputs/ml1m" && cp outputs/ml1m/*.log "$out/outputs/ml1m/"
  timeout "${BENCH_SECONDS:-150}" bash benchmarks/run_gpu.sh 2>&1 | tee "$out/run_gpu.log"
  # only the benchmark files this session wrote: the committed ones are older than gpu.txt
  find benchmarks/results -type f -newer "$out/gpu.txt" -exec cp --parents {} "$out/" \;
  return 0
}

fetch() {  # the session's rows replace ours (its results file started as this one); run files and benchmark JSONs
  local from=${1:?usage: gpu_session.sh fetch DIR}
  set -e
  cp --no-preserve=mode "$from/ml1m.json" results/ml1m.json  # the fetched files are read-only
  [ ! -d "$from/outputs" ] || cp -r --no-preserve=mode "$from/outputs/." outputs/
  [ ! -d "$from/benchmarks" ] || cp -r --no-preserve=mode "$from/benchmarks/." benchmarks/
  git status --short results benchmarks
}

case "${1:-}" in
  pack) pack ;;
  run) run ;;
  fetch) fetch "${2:-}" ;;
  *) echo "usage: bash scripts/gpu_session.sh pack | run | fetch DIR" >&2; exit 2 ;;
esac
