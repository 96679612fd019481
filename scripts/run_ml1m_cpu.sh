#!/usr/bin/env bash
# The ML-1M rows under the CPU protocol (configs/ml1m-cpu.yaml): TALLRec first (its LoRA is stage 1 of
# the others), then CCF-LLM and CoLLM. Logs in outputs/ml1m-cpu/; rows upserted into results/ml1m.json.
set -euo pipefail
mkdir -p outputs/ml1m-cpu
cfg=configs/ml1m-cpu.yaml
python scripts/train.py --config "$cfg" --fusion text_only --method "TALLRec (cpu-subsample)" \
  --output-dir outputs/ml1m-cpu/tallrec > outputs/ml1m-cpu/tallrec.log 2>&1
python scripts/train.py --config "$cfg" --init-from outputs/ml1m-cpu/tallrec > outputs/ml1m-cpu/ccf-llm.log 2>&1
python scripts/train.py --config "$cfg" --fusion cf_only --method "CoLLM (cpu-subsample)" \
  --init-from outputs/ml1m-cpu/tallrec --output-dir outputs/ml1m-cpu/collm > outputs/ml1m-cpu/collm.log 2>&1
