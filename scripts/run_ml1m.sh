#!/usr/bin/env bash
# The ML-1M results table on one GPU: TALLRec (= stage 1, text-only LoRA) first, then every stage-2 row
# (CCF-LLM, CoLLM and the ablations) from that LoRA, all in parallel on the same GPU (a 135M model leaves
# most of an H100 idle). Each row is upserted into results/ml1m.json by its own run; logs in outputs/ml1m/.
# Usage: bash scripts/run_ml1m.sh   (DEADLINE=seconds bounds each run; MAIN_ONLY=1 skips the ablations)
set -u
mkdir -p outputs/ml1m
timeout "${DEADLINE:-36000}" python scripts/train.py --config configs/ml1m.yaml --fusion text_only --method TALLRec \
  --output-dir outputs/ml1m/tallrec > outputs/ml1m/tallrec.log 2>&1 || { tail -30 outputs/ml1m/tallrec.log; exit 1; }
stage2() {
  local name=$1; shift
  timeout "${DEADLINE:-36000}" python scripts/train.py --config configs/ml1m.yaml --init-from outputs/ml1m/tallrec \
    --output-dir "outputs/ml1m/$name" "$@" > "outputs/ml1m/$name.log" 2>&1 &
}
stage2 ccf-llm
stage2 collm --fusion cf_only --method CoLLM
if [ -z "${MAIN_ONLY:-}" ]; then  # ablations
  stage2 no-history-tokens --set history_item_tokens=false --method "CCF-LLM (no history <item> tokens)"
  stage2 scalar-gate --fusion scalar_gate --method "CCF-LLM (scalar gate)"
  stage2 add --fusion add --method "CCF-LLM (add)"
  stage2 concat --fusion concat --method "CCF-LLM (concat)"
  stage2 tune-lora --set stage2_tunes_lora=true --method "CCF-LLM (stage 2 also tunes LoRA)"
  stage2 mf-collm --cf-dir outputs/cf/ml1m/mf --method "CCF-LLM (CoLLM-style MF, no biases)"
  timeout "${DEADLINE:-36000}" python scripts/train.py --config configs/ml1m.yaml --set schedule=joint \
    --method "CCF-LLM (one joint stage)" --output-dir outputs/ml1m/joint > outputs/ml1m/joint.log 2>&1 &
fi
wait
python - <<'PY'
import json
rows = json.load(open("results/ml1m.json"))["rows"]
for row in rows:
    print(f"{row['method']:<45} valid {row['valid']['auc']}  test {row['test']['auc']} / {row['test']['uauc']}")
PY
