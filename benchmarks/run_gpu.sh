#!/usr/bin/env bash
# All GPU measurements in one go (~3 min on one H100); results in benchmarks/results/*_cuda.json and,
# when $OUT is set, copied there.
#
# Needs: CCF_ML1M_DIR (folder of train/valid/test/items.parquet) unless ../shared/data/ml-1m exists beside the
# repository; SmolLM2's tokenizer in $CCF_TOKENIZER_DIR or outputs/smollm2-tokenizer (copy that folder along;
# any CPU benchmark run fills it). SmolLM2 has random weights of its real shape unless $SMOLLM2_GGUF is set.
# BENCH_COMPILE=1 adds the torch.compile lever (adds about a minute).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
python - <<'EOF'
import torch
assert torch.cuda.is_available(), "run_gpu.sh needs a GPU"
EOF

smollm2=(--backbone smollm2)
[[ -n "${SMOLLM2_GGUF:-}" ]] || smollm2+=(--random-weights)
compile=()
[[ "${BENCH_COMPILE:-0}" == 1 ]] && compile=(--compile)

failed=()
run() {  # a failing benchmark does not stop the others; the script fails at the end
    local start=$SECONDS
    echo "== $*" >&2
    python -m "benchmarks.$1" "${@:2}" || failed+=("$*")
    echo "   ($((SECONDS - start)) s)" >&2
}
run train_throughput "${smollm2[@]}" --levers "${compile[@]}"
run eval_throughput "${smollm2[@]}"
run ranking "${smollm2[@]}"
run ranking "${smollm2[@]}" --chunk-size 16 --out benchmarks/results/gpu-ranking-chunk16  # the CPU default
run pipeline_throughput "${smollm2[@]}"
run recommend "${smollm2[@]}"
run train_throughput --backbone llama7b
run eval_throughput --backbone llama7b
run memory --backbone llama7b

if [[ -n "${OUT:-}" ]]; then
    cp -r benchmarks/results/*_cuda.json benchmarks/results/gpu-ranking-chunk16 "$OUT"/ || true
fi
if ((${#failed[@]})); then
    printf 'FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
