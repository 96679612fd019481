#!/usr/bin/env bash
# The ML-1M results table on one GPU: TALLRec (= stage 1, text-only LoRA) first, then every stage-2 row
# (CCF-LLM, CoLLM, then the ablations) from that LoRA, MAX_PARALLEL at a time on the same GPU (a 135M
# model leaves most of an H100 idle; each run holds ~14 GB at batch 64, estimated from a CPU probe).
# The MF tables the runs read are trained first where missing (scripts/cf_tables.sh).
# Each run upserts its row into results/ml1m.json; logs and run folders in $ML1M_OUT (default outputs/ml1m).
#
# Usage: bash scripts/run_ml1m.sh
#   DEADLINE=seconds  stop every run still going that long after the start (a stopped run writes no row)
#   MAX_PARALLEL=n    stage-2 runs at once (default 5, for 80 GB)
#   MIN_LEFT=seconds  start no further run with less time than that before DEADLINE (default 0)
#   MAIN_ONLY=1       TALLRec, CCF-LLM and CoLLM only
#   RUN_ARGS="..."    flags added to every run, e.g. a smoke test on a tiny backbone:
#                     RUN_ARGS="--set backbone=DIR --set max_train_rows=512 --results /tmp/smoke.json"
# If TALLRec stops (e.g. a non-finite bf16 loss), it is run again in fp32 and every later run uses fp32 too.
set -u
out=${ML1M_OUT:-outputs/ml1m}
mkdir -p "$out"
end=$((SECONDS + ${DEADLINE:-36000}))
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True  # parallel runs: less memory lost to fragments
extra=(${RUN_ARGS:-})

run() {  # run NAME FLAGS...: one scripts/train.py run, logged to $out/NAME.log, stopped at the deadline
  local name=$1 left=$((end - SECONDS)); shift
  ((left > 0)) || { echo "$name: deadline reached before it started" >&2; return 124; }
  echo "$(date +%T) start $name" >&2
  timeout "$left" python scripts/train.py --config configs/ml1m.yaml --output-dir "$out/$name" \
    "$@" "${extra[@]}" > "$out/$name.log" 2>&1
  local status=$?
  echo "$(date +%T) end $name (exit $status)" >&2
  return $status
}

bash scripts/cf_tables.sh mf_bias mf || exit 1  # MF-bias: every run with CF reads it (cf_dir); MF: an ablation
if ! run tallrec --fusion text_only --method TALLRec; then
  tail -20 "$out/tallrec.log"
  extra+=(--set bf16=false)
  rm -rf "$out/tallrec"
  run tallrec --fusion text_only --method TALLRec || { tail -30 "$out/tallrec.log"; exit 1; }
fi
start() {  # start NAME FLAGS... in the background once a slot is free and enough time is left
  while (($(jobs -rp | wc -l) >= ${MAX_PARALLEL:-5})); do wait -n; done
  if ((end - SECONDS < ${MIN_LEFT:-0})); then echo "$1: skipped, too little time left" >&2; return; fi
  run "$@" &
}
stage2() { start "$1" --init-from "$out/tallrec" "${@:2}"; }
stage2 ccf-llm
stage2 collm --fusion cf_only --method CoLLM
if [ -z "${MAIN_ONLY:-}" ]; then  # ablations
  # Under the CPU protocol stage 2 did best on the 16,384 most recent rows, better than on all (results/README.md): again here
  stage2 recent-rows --set max_train_rows=16384 --method "CCF-LLM (stage 2 on the 16,384 most recent rows)"
  stage2 tune-lora --set stage2_tunes_lora=true --method "CCF-LLM (stage 2 also tunes LoRA)"
  stage2 add --fusion add --method "CCF-LLM (add)"
  stage2 no-history-tokens --set history_item_tokens=false --method "CCF-LLM (no history <item> tokens)"
  stage2 scalar-gate --fusion scalar_gate --method "CCF-LLM (scalar gate)"
  stage2 mf-collm --cf-dir outputs/cf/ml1m/mf --method "CCF-LLM (CoLLM-style MF, no biases)"
  stage2 concat --fusion concat --method "CCF-LLM (concat)"
  start joint --set schedule=joint --method "CCF-LLM (one joint stage)"
  start zero-shot --fusion text_only --set stage1.epochs=0 --method "ICL (zero-shot)"  # the base model, no tuning
fi
wait
python - "$out" <<'PY'
import json, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).glob("*/metrics.json")):
    row = json.loads(path.read_text())["row"]
    print(f"{row['method']:<40} valid {row['valid']['auc']:.4f}  test {row['test']['auc']:.4f} / "
          f"{row['test']['uauc']:.4f}  {row['seconds']:.0f} s")
PY
