#!/usr/bin/env bash
# The CF tables the ML-1M runs read (outputs/cf/ml1m/NAME), trained where missing with the settings of the MF
# rows of results/ml1m.json (their commands), leaving those rows as they are.
# Usage: bash scripts/cf_tables.sh mf_bias [mf] [biases] [biases_grid] [biases_year_grid]
set -euo pipefail
for name in "$@"; do
  case $name in
    mf_bias) flags=(--model mf --bias) ;;
    mf) flags=(--model mf) ;;
    biases) flags=(--model mf --bias --set dim=0) ;;  # user + item biases alone: MF-bias with no factors
    biases_grid) flags=(--model mf --bias --set dim=0 --grid --grid-name biases) ;;  # the same, lr x weight decay on valid
    biases_year_grid) flags=(--model mf --bias --set dim=0 year_bias=true --grid --grid-name biases) ;;  # + release years
    *) echo "cf_tables.sh: unknown table '$name' (mf_bias, mf, biases, biases_grid or biases_year_grid)" >&2; exit 2 ;;
  esac
  [ -f "outputs/cf/ml1m/$name/cf_tables.safetensors" ] ||
    python scripts/train_cf.py "${flags[@]}" --data ml1m --out "outputs/cf/ml1m/$name" --quiet --no-results
done
