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
#   bash scripts/gpu_session.sh fetch DIR   here, after it: the rows, run files and benchmark results from DIR
#                                      (the call's files) into results/ml1m.json, outputs/ and benchmarks/results/
#
# run's options: ML1M_SECONDS (deadline of the ML-1M runs, default 400), BENCH_SECONDS (of the benchmarks;
# default: what is left of the call's CALL_SECONDS, 590, once the ML-1M runs end, less 30 s for `collect`),
# MAIN_ONLY=1 (TALLRec, CCF-LLM and CoLLM only), MAX_PARALLEL and MIN_LEFT (run_ml1m.sh's).
# What the call sends back is at most 8 plain files in $OUT, 16 MiB each, 64 MiB in all, no subfolders kept
# (the device tool's limits), so `collect` puts the run files into two split archives (see there).
set -uo pipefail
cd "$(dirname "$0")/.."
run_files=(metrics.json test_scores.parquet valid_scores.parquet gates.json stage{1,2}/trainer_state.json)
weight_runs=(tallrec ccf-llm collm recent-rows)  # their tuned weights (~2-5 MB a run), not the 135M backbone
part_size=15m  # under the 16 MiB a returned file may have

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
  echo "  call $n: command='bash scripts/gpu_session.sh run'  timeout_s=${CALL_SECONDS:-590}  carry=[\".device/unpack.sh\"," \
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
  collect "$out"  # now, so the rows come back even if the call is stopped in the benchmarks
  local bench=${BENCH_SECONDS:-$((${CALL_SECONDS:-590} - 30 - SECONDS))}
  if ((bench < 10)); then  # `timeout 0` would not stop it at all
    echo "no time left for the benchmarks ($bench s)" | tee "$out/run_gpu.log"
    return 0
  fi
  timeout "$bench" bash benchmarks/run_gpu.sh 2>&1 | tee "$out/run_gpu.log"
  collect "$out"
  return 0
}

archive() {  # archive OUT NAME LIST: the files LIST names, as OUT/NAME.tar.gz.part0, part1, ... (15 MiB each)
  [ -s "$3" ] && tar -czf - -T "$3" | split -b "$part_size" -d -a 1 - "$1/$2.tar.gz.part"
}

collect() {  # collect OUT: beside ml1m.json, gpu.txt and the two logs, the run files and the benchmark files this
  local out=${1:?usage: gpu_session.sh collect OUT} lists dir file name  # session wrote (newer than gpu.txt)
  lists=$(mktemp -d)
  rm -f "$out"/*.tar.gz.part*
  for dir in outputs/ml1m/*/; do
    for file in "${run_files[@]}"; do [ -f "$dir$file" ] && echo "$dir$file"; done
  done > "$lists/session"
  ls outputs/ml1m/*.log >> "$lists/session" 2> /dev/null
  find benchmarks/results -type f -newer "$out/gpu.txt" >> "$lists/session"
  for name in "${weight_runs[@]}"; do
    for file in outputs/ml1m/"$name"/stage{1,2}/trainable.safetensors; do [ -f "$file" ] && echo "$file"; done
  done > "$lists/weights"
  archive "$out" session "$lists/session"
  archive "$out" weights "$lists/weights"
  local count
  count=$(find "$out" -type f | wc -l)
  if ((count > 8)); then  # only the weights can be that large: drop them rather than lose files at random
    echo "collect: $count files in $out, over the 8 that come back; the weights archive is left out" >&2
    rm -f "$out"/weights.tar.gz.part*
  fi
  rm -rf "$lists"
  ls -l "$out"
}

fetch() {  # the session's rows replace ours (its results file started as this one), its archives unpack here
  local from=${1:?usage: gpu_session.sh fetch DIR} name parts
  set -e
  cp --no-preserve=mode "$from/ml1m.json" results/ml1m.json  # the fetched files are read-only
  for name in session weights; do
    parts=("$from/$name".tar.gz.part*)
    [ ! -f "${parts[0]}" ] || cat "${parts[@]}" | tar -xzf -
  done
  mkdir -p outputs/gpu-session
  cp --no-preserve=mode "$from"/{gpu.txt,run_ml1m.log,run_gpu.log} outputs/gpu-session/
  git status --short results benchmarks 2> /dev/null || true
}

case "${1:-}" in
  pack) pack ;;
  run) run ;;
  collect) collect "${2:-}" ;;
  fetch) fetch "${2:-}" ;;
  *) echo "usage: bash scripts/gpu_session.sh pack | run | collect OUT | fetch DIR" >&2; exit 2 ;;
esac
