#!/usr/bin/env bash
# The full-data CF models (MF-bias, user + item biases, DIN) scored on the whole ML-1M test split, and their
# test-AUC intervals drawn twice: over users (compare_runs.py's default) and over single rows, to show how much
# the unit matters (results/README.md, "Rows or users"). About 3 minutes on 2 cores.
set -euo pipefail
bash scripts/cf_tables.sh mf_bias biases
[ -f outputs/cf/ml1m/din/cf_tables.safetensors ] ||
  python scripts/train_cf.py --model din --data ml1m --out outputs/cf/ml1m/din --quiet --no-results
full=outputs/cf-full-test
python scripts/score_cf.py --cf-dir outputs/cf/ml1m/mf_bias --config configs/ml1m.yaml --no-results --out "$full/mf_bias"
python scripts/score_cf.py --cf-dir outputs/cf/ml1m/biases --config configs/ml1m.yaml --no-results \
  --method "User + item biases (MF-bias with d = 0)" --out "$full/biases"
python scripts/score_cf.py --cf-dir outputs/cf/ml1m/din --config configs/ml1m.yaml --no-results --out "$full/din"
python scripts/compare_runs.py "$full/biases" "$full/din" --baseline "$full/mf_bias" \
  --out results/ml1m_biases_full_test_intervals.json
python scripts/compare_runs.py "$full/biases" "$full/din" --baseline "$full/mf_bias" --resample rows \
  --out results/ml1m_biases_full_test_rows_intervals.json
python scripts/update_readme.py
