#!/usr/bin/env bash
# The ML-1M rows under the CPU protocol (configs/ml1m-cpu.yaml), one run at a time: TALLRec first (its
# LoRA is stage 1 of every other row but the joint one), then CCF-LLM, CoLLM and the ablations (~30 min
# each on 2 cores, ~70 min for the 4,096-row ones; MAIN_ONLY=1 skips the ablations). Logs in
# outputs/ml1m-cpu/; each run upserts its row into results/ml1m.json; missing MF tables are trained first.
# BF16=1 adds the bf16 rows (native-bf16 CPUs), BF16=1 ALL_ROWS=1 also stage 2 on all train rows, BF16=1 STAGE1_ROWS=1
# stage 1 on 8,192 rows and stage 2 from it on 8,192 and 16,384 (the latter under two seeds; against the biases
# model), BF16=1 DIN_CF=1 the 16,384-row stage 2 with DIN's tables instead of MF-bias's,
# BF16=1 LORA_INIT=1 stage 1 and the 16,384-row stage 2 again with LoRA starting at B = 0 (and with BIASES_CF=1 also
# stage 2 from it on 8,192 and 16,384 rows reading user + item biases alone), BF16=1 SEEDS=1 stage 2
# with six training seeds, BF16=1 HISTORY10=1 stage 2 on 8,192 rows with the 10 most recent liked titles (and with 5
# under two seeds), BF16=1 STAGE2_LR=1 stage 2 on 8,192 rows at learning rates 3e-3 and 1e-3, BF16=1 TUNE_LORA_ROWS=1
# stage 2 on 8,192 rows tuning LoRA too (from LORA_INIT=1's stage 1, against the biases model), BF16=1 STAGE1_LR=1
# stage 1 at learning rates 2e-4, 2e-3 and 5e-3 and for 3 epochs (against LORA_INIT=1's stage 1), BF16=1 ALL_LINEAR=1
# stage 1 with LoRA on every Linear layer (against the same), BF16=1 BIASES_GRID=1 stage 2 on 16,384 rows reading the
# biases model tuned on valid (from LORA_INIT=1's stage 1, against that model), BF16=1 TUNED_TABLES=1 the same run at
# learning rate 3e-4 and without history <item> tokens (with BIASES_GRID=1, whose run they are compared beside; against the
# same model), BF16=1 TUNED_TABLES_CHECKS=1 CoLLM in that no-history setting and the CCF-LLM run under seed 43 (with
# TUNED_TABLES=1, whose no-history run they check; against that CoLLM), BF16=1 TUNED_TABLES_LORA=1 that no-history run
# tuning LoRA in stage 2 too (against it), BF16=1 YEAR_TABLES=1 the tuned biases plus release-year biases and that
# no-history run reading them (against the tuned biases). Last, bootstrap
# intervals of every finished run's test AUC; FULL_TEST=1 also scores every finished run's model (and the all-rows
# run's last checkpoint) on the whole test split and compares those.
set -euo pipefail
mkdir -p outputs/ml1m-cpu
cfg=configs/ml1m-cpu.yaml
bash scripts/cf_tables.sh mf_bias mf  # MF-bias: every run with CF reads it (cf_dir); MF: an ablation
python scripts/train.py --config "$cfg" --fusion text_only --method "TALLRec (cpu-subsample)" \
  --output-dir outputs/ml1m-cpu/tallrec > outputs/ml1m-cpu/tallrec.log 2>&1
stage2() {
  local name=$1; shift
  python scripts/train.py --config "$cfg" --init-from outputs/ml1m-cpu/tallrec \
    --output-dir "outputs/ml1m-cpu/$name" "$@" > "outputs/ml1m-cpu/$name.log" 2>&1
}
stage2 ccf-llm  # next, the MF-bias model itself on the same rows
mf_bias_model=outputs/cf/ml1m/mf_bias/cpu-subsample-rows  # the tables the LLM runs read, scored on the CPU rows
python scripts/score_cf.py --cf-dir outputs/cf/ml1m/mf_bias --config "$cfg" --out "$mf_bias_model"
python scripts/compare_runs.py "$mf_bias_model" --split valid \
  --out results/ml1m_cpu_valid_sample_intervals.json  # how typical the 512 valid rows are: vs MF-bias's row (all 10,401)
cf_runs=()  # CF models scored on the same rows, compared beside the LLM runs at the end
stage2 collm --fusion cf_only --method "CoLLM (cpu-subsample)"
if [ -z "${MAIN_ONLY:-}" ]; then
  stage2 scalar-gate --fusion scalar_gate --method "CCF-LLM (scalar gate) (cpu-subsample)"
  stage2 tune-lora --set stage2_tunes_lora=true --method "CCF-LLM (stage 2 also tunes LoRA) (cpu-subsample)"
  stage2 add --fusion add --method "CCF-LLM (add) (cpu-subsample)"
  stage2 concat --fusion concat --method "CCF-LLM (concat) (cpu-subsample)"
  stage2 no-history-tokens --set history_item_tokens=false \
    --method "CCF-LLM (no history <item> tokens) (cpu-subsample)"
  stage2 mf-collm --cf-dir outputs/cf/ml1m/mf --method "CCF-LLM (CoLLM-style MF, no biases) (cpu-subsample)"
  stage2 stage2-rows4096 --set max_train_rows=4096 --method "CCF-LLM (stage 2 on 4,096 rows) (cpu-subsample)"
  stage2 tune-lora-rows4096 --set max_train_rows=4096 --set stage2_tunes_lora=true \
    --method "CCF-LLM (stage 2 on 4,096 rows, also tunes LoRA) (cpu-subsample)"
  python scripts/train.py --config "$cfg" --set schedule=joint --method "CCF-LLM (one joint stage) (cpu-subsample)" \
    --output-dir outputs/ml1m-cpu/joint > outputs/ml1m-cpu/joint.log 2>&1
fi
if [ -n "${BF16:-}" ]; then  # native bf16 (AMX, AVX512-BF16): ~2x faster; its own stage 1, stage 2 on 8,192 and 16,384 rows, CoLLM on 16,384
  python scripts/train.py --config "$cfg" --set bf16=true --fusion text_only --method "TALLRec (bf16) (cpu-subsample)" \
    --output-dir outputs/ml1m-cpu/tallrec-bf16 > outputs/ml1m-cpu/tallrec-bf16.log 2>&1
  python scripts/train.py --config "$cfg" --set bf16=true --fusion text_only --set stage1.epochs=0 \
    --method "ICL (zero-shot, bf16) (cpu-subsample)" --output-dir outputs/ml1m-cpu/zero-shot-bf16 \
    > outputs/ml1m-cpu/zero-shot-bf16.log 2>&1  # the base model's Yes/No, no tuning (~7 min)
  methods=(--method "TALLRec (bf16) (cpu-subsample)")
  stage2_bf16() {  # flags before --output-dir, the order the rows' recorded commands have; logs append, as reruns resume
    local name=$1; shift
    python scripts/train.py --config "$cfg" --set bf16=true --init-from "${STAGE1:-outputs/ml1m-cpu/tallrec-bf16}" "$@" \
      --output-dir "outputs/ml1m-cpu/$name" >> "outputs/ml1m-cpu/$name.log" 2>&1
  }
  stage1_bf16() {  # a TALLRec run (stage 1 alone) with its own settings, the same way
    local name=$1; shift
    python scripts/train.py --config "$cfg" --set bf16=true --fusion text_only "$@" \
      --output-dir "outputs/ml1m-cpu/$name" >> "outputs/ml1m-cpu/$name.log" 2>&1
  }
  lora_init=outputs/ml1m-cpu/tallrec-bf16-lora-init  # LORA_INIT=1's stage 1: later blocks start from or compare with it
  need_lora_init() {  # need_lora_init BLOCK: stop before BLOCK trains anything when that stage 1 is missing
    [ -d "$lora_init" ] || { echo "$1=1 needs LORA_INIT=1's stage 1 ($lora_init): add LORA_INIT=1" >&2; exit 2; }
  }
  biases_model=outputs/cf/ml1m/biases/cpu-subsample-rows  # user + item biases on the CPU rows, what stage-2 runs are held against
  score_cpu_rows() {  # score_cpu_rows TABLE METHOD: the CF model of cf_tables.sh's TABLE on the CPU rows, scored
    local rows=outputs/cf/ml1m/$1/cpu-subsample-rows  # once: its tables, like every CF table here, are trained once
    bash scripts/cf_tables.sh "$1"
    [ -f "$rows/test_scores.parquet" ] ||
      python scripts/score_cf.py --cf-dir "outputs/cf/ml1m/$1" --config "$cfg" --method "$2" --out "$rows"
  }
  score_biases_model() { score_cpu_rows biases "User + item biases (MF-bias with d = 0) (cpu-subsample rows)"; }
  biases_grid_model=outputs/cf/ml1m/biases_grid/cpu-subsample-rows  # the biases tuned on valid, on the same rows
  score_biases_grid_model() { score_cpu_rows biases_grid "User + item biases (lr x weight-decay grid) (cpu-subsample rows)"; }
  # [FAMILY=CoLLM] [TABLES=biases_year_grid] tuned_tables_stage2 NAME CHANGE [FLAGS]: stage 2 on 16,384 rows reading
  # the tuned biases (TABLES: those with release-year biases too), from LORA_INIT=1's stage 1. CHANGE (may be empty)
  # names FLAGS in the row's method; FAMILY (default CCF-LLM) names the method and, when set, prefixes the run's folder.
  tuned_tables_stage2() {
    local name=$1 change=$2 family=${FAMILY:-CCF-LLM} prefix=${FAMILY:+${FAMILY,,}-} tables=${TABLES:-biases_grid}
    local label="tuned biases${TABLES:+ + release-year} tables"; shift 2
    method="$family ($label, stage 2 on 16,384 rows, ${change:+$change, }bf16) (cpu-subsample)"
    STAGE1=$lora_init stage2_bf16 "$prefix${tables//_/-}-rows16384${name:+-$name}-bf16" --set max_train_rows=16384 \
      --cf-dir "outputs/cf/ml1m/$tables" --set stage2.evals_per_epoch=2 "$@" --resume --method "$method"
    methods+=(--method "$method")
  }
  for rows in 8,192 16,384; do  # ~70 and ~125 min on 2 cores
    method="CCF-LLM (stage 2 on $rows rows, bf16) (cpu-subsample)"
    stage2_bf16 "rows${rows//,/}-bf16" --set max_train_rows="${rows//,/}" --method "$method"
    methods+=(--method "$method")
  done
  method="CoLLM (stage 2 on 16,384 rows, bf16) (cpu-subsample)"  # ~2 h
  stage2_bf16 collm-rows16384-bf16 --set max_train_rows=16384 --fusion cf_only --method "$method"
  methods+=(--method "$method")
  if [ -n "${ALL_ROWS:-}" ]; then  # stage 2 on all 33,891 train rows: ~4.5 h, so it checkpoints 10 times; rerun to resume
    method="CCF-LLM (stage 2 on all 33,891 rows, bf16) (cpu-subsample)"
    stage2_bf16 rows-all-bf16 --set max_train_rows=null --set stage2.evals_per_epoch=10 --resume --method "$method"
    methods+=(--method "$method")
  fi
  if [ -n "${STAGE1_ROWS:-}" ]; then  # stage 1 on the 8,192 most recent rows (~1 h), then stage 2 from it on 8,192
    text_rows8192=outputs/ml1m-cpu/tallrec-rows8192-bf16  # and 16,384 (two seeds): that stage 1, which they start from
    method="TALLRec (8,192 rows, bf16) (cpu-subsample)"
    python scripts/train.py --config "$cfg" --set bf16=true --set max_train_rows=8192 --set stage1.evals_per_epoch=4 \
      --fusion text_only --resume --method "$method" --output-dir "$text_rows8192" >> "$text_rows8192.log" 2>&1
    methods+=(--method "$method")
    method="CCF-LLM (stage 1 and stage 2 on 8,192 rows, bf16) (cpu-subsample)"  # as the 8,192-row rows but for
    STAGE1=$text_rows8192 stage2_bf16 stage1-rows8192-stage2-rows8192-bf16 \
      --set max_train_rows=8192 --set stage2.evals_per_epoch=2 --resume --method "$method"  # its stage 1 (~1 h)
    methods+=(--method "$method")
    method="CCF-LLM (stage 1 on 8,192 rows, stage 2 on 16,384, bf16) (cpu-subsample)"  # as the 16,384-row row
    STAGE1=$text_rows8192 stage2_bf16 stage1-rows8192-bf16 --set max_train_rows=16384 \
      --set stage2.evals_per_epoch=2 --resume --method "$method"  # but for its stage 1, plus a halfway eval to resume
    methods+=(--method "$method")
    method="CCF-LLM (stage 1 on 8,192 rows, stage 2 on 16,384, bf16, seed 43) (cpu-subsample)"  # the same under
    STAGE1=$text_rows8192 stage2_bf16 stage1-rows8192-seed43-bf16 --set max_train_rows=16384 \
      --set stage2.evals_per_epoch=2 --set seed=43 --resume --method "$method"  # another training seed (~2 h)
    methods+=(--method "$method")
    python scripts/compare_runs.py outputs/ml1m-cpu/stage1-rows8192-seed43-bf16 \
      --baseline outputs/ml1m-cpu/stage1-rows8192-bf16 \
      --out results/ml1m_cpu_rows16384_seed_intervals.json  # how far the seed alone moves a 16,384-row run
    score_biases_model
    python scripts/compare_runs.py outputs/ml1m-cpu/stage1-rows8192-stage2-rows8192-bf16 \
      outputs/ml1m-cpu/stage1-rows8192-bf16 outputs/ml1m-cpu/stage1-rows8192-seed43-bf16 "$mf_bias_model" \
      --baseline "$biases_model" --out results/ml1m_cpu_stage1_rows_intervals.json
  fi
  if [ -n "${DIN_CF:-}" ]; then  # as the 16,384-row row but for the CF tables, plus a halfway eval so it can resume (~2 h)
    python scripts/train_cf.py --model din --data ml1m --out outputs/cf/ml1m/din --quiet
    python scripts/score_cf.py --cf-dir outputs/cf/ml1m/din --config "$cfg" \
      --out outputs/cf/ml1m/din/cpu-subsample-rows  # DIN itself on the same rows
    cf_runs+=(outputs/cf/ml1m/din/cpu-subsample-rows)
    method="CCF-LLM (DIN tables, stage 2 on 16,384 rows, bf16) (cpu-subsample)"
    stage2_bf16 din-rows16384-bf16 --set max_train_rows=16384 --cf-dir outputs/cf/ml1m/din \
      --set stage2.evals_per_epoch=2 --resume --method "$method"
    methods+=(--method "$method")
  fi
  if [ -n "${LORA_INIT:-}" ]; then  # stage 1 again with LoRA's B = 0 at start (the fix of 886159b; ~15 min), then
    method="TALLRec (bf16, LoRA B = 0 at start) (cpu-subsample)"  # stage 2 from it on 16,384 rows (~2 h, resumable)
    stage1_bf16 tallrec-bf16-lora-init --method "$method"
    method="CCF-LLM (stage 2 on 16,384 rows, bf16, LoRA B = 0 at start) (cpu-subsample)"
    STAGE1=$lora_init stage2_bf16 rows16384-bf16-lora-init --set max_train_rows=16384 \
      --set stage2.evals_per_epoch=2 --resume --method "$method"
    methods+=(--method "$method")
  fi
  if [ -n "${BIASES_CF:-}" ]; then  # the LLM reading user + item biases alone (d = 0 tables: user [b_u + b_0, 1], item
    need_lora_init BIASES_CF  # [1, b_i]) instead of MF-bias's, from LORA_INIT's stage 1 (~40 and ~75 min)
    score_biases_model
    cf_runs+=("$biases_model")
    for rows in 8,192 16,384; do
      method="CCF-LLM (biases tables, stage 2 on $rows rows, bf16) (cpu-subsample)"
      STAGE1=$lora_init stage2_bf16 "biases-rows${rows//,/}-bf16" --set max_train_rows="${rows//,/}" \
        --cf-dir outputs/cf/ml1m/biases --set stage2.evals_per_epoch=2 --resume --method "$method"
      methods+=(--method "$method")
    done
    python scripts/compare_runs.py outputs/ml1m-cpu/biases-rows{8192,16384}-bf16 "$mf_bias_model" \
      --baseline "$biases_model" --out results/ml1m_cpu_biases_intervals.json
  fi
  if [ -n "${BIASES_GRID:-}" ]; then  # as BIASES_CF's 16,384-row run but reading the biases model whose learning rate
    need_lora_init BIASES_GRID  # and weight decay won on valid (cf_grid.yaml's `biases`; ~75 min), held against it
    score_biases_grid_model
    cf_runs+=("$biases_grid_model")
    tuned_tables_stage2 "" ""
    python scripts/compare_runs.py outputs/ml1m-cpu/biases-grid-rows16384-bf16 "$mf_bias_model" \
      --baseline "$biases_grid_model" --out results/ml1m_cpu_biases_grid_intervals.json
  fi
  if [ -n "${TUNED_TABLES:-}" ]; then  # two changes to BIASES_GRID's run, one at a time (~70 min each): a third of
    need_lora_init TUNED_TABLES  # its learning rate, and no CF vectors for the history items (only the candidate's)
    score_biases_grid_model
    tuned_tables_stage2 lr3e-4 "lr 3e-4" --set stage2.learning_rate=3e-4
    tuned_tables_stage2 no-history-tokens "no history <item> tokens" --set history_item_tokens=false
    python scripts/compare_runs.py outputs/ml1m-cpu/biases-grid-rows16384{,-lr3e-4,-no-history-tokens}-bf16 \
      --baseline "$biases_grid_model" --out results/ml1m_cpu_tuned_tables_intervals.json
  fi
  if [ -n "${TUNED_TABLES_CHECKS:-}" ]; then  # TUNED_TABLES=1's no-history run, checked (~75 min each): CoLLM in its
    need_lora_init TUNED_TABLES_CHECKS  # setting (CF vectors for <user> and the candidate alone are CoLLM's own prompt),
    score_biases_grid_model  # and the run again under a second training seed
    FAMILY=CoLLM tuned_tables_stage2 no-history-tokens "no history <item> tokens" --fusion cf_only \
      --set history_item_tokens=false
    tuned_tables_stage2 no-history-tokens-seed43 "no history <item> tokens, seed 43" --set history_item_tokens=false \
      --set seed=43
    python scripts/compare_runs.py outputs/ml1m-cpu/biases-grid-rows16384-no-history-tokens{,-seed43}-bf16 \
      "$biases_grid_model" --baseline outputs/ml1m-cpu/collm-biases-grid-rows16384-no-history-tokens-bf16 \
      --out results/ml1m_cpu_tuned_tables_checks_intervals.json
  fi
  if [ -n "${TUNED_TABLES_LORA:-}" ]; then  # TUNED_TABLES=1's no-history run with LoRA tuned beside ALG/GATE (~70 min):
    need_lora_init TUNED_TABLES_LORA  # with the CF side already at the table's level, does the text side add to it?
    score_biases_grid_model
    tuned_tables_stage2 no-history-tokens-tune-lora "no history <item> tokens, also tunes LoRA" \
      --set history_item_tokens=false --set stage2_tunes_lora=true
    python scripts/compare_runs.py outputs/ml1m-cpu/biases-grid-rows16384-no-history-tokens-tune-lora-bf16 \
      "$biases_grid_model" --baseline outputs/ml1m-cpu/biases-grid-rows16384-no-history-tokens-bf16 \
      --out results/ml1m_cpu_tuned_tables_lora_intervals.json
  fi
  if [ -n "${YEAR_TABLES:-}" ]; then  # the release year of the title as a CF-side bias: the tuned biases plus a bias
    need_lora_init YEAR_TABLES  # per 5-year bin (seconds), and TUNED_TABLES=1's no-history run reading them (~70 min)
    python scripts/train_cf.py --model mf --bias --set dim=0 year_bias=true --grid --grid-name biases --data ml1m \
      --out outputs/cf/ml1m/biases_year_grid --quiet --method "User + item + release-year biases (lr x weight-decay grid)"
    score_cpu_rows biases_year_grid "User + item + release-year biases (lr x weight-decay grid) (cpu-subsample rows)"
    cf_runs+=(outputs/cf/ml1m/biases_year_grid/cpu-subsample-rows)
    TABLES=biases_year_grid tuned_tables_stage2 no-history-tokens "no history <item> tokens" --set history_item_tokens=false
    python scripts/compare_runs.py outputs/ml1m-cpu/biases-year-grid-rows16384-no-history-tokens-bf16 \
      outputs/cf/ml1m/biases_year_grid/cpu-subsample-rows --baseline "$biases_grid_model" \
      --out results/ml1m_cpu_year_tables_intervals.json
  fi
  if [ -n "${SEEDS:-}" ]; then  # how far a row moves with the training seed alone: stage 2 on 1,024 rows from the
    for seed in 42 43 44 45 46 47; do  # same stage 1 with six seeds, scored on the same rows (sample_seed); ~15 min each
      method="CCF-LLM (bf16, seed $seed) (cpu-subsample)"
      stage2_bf16 "seed$seed-bf16" --set seed=$seed --method "$method"
      methods+=(--method "$method")
      seed_runs+=("outputs/ml1m-cpu/seed$seed-bf16")
    done
    python scripts/compare_runs.py "${seed_runs[@]:1}" --baseline "${seed_runs[0]}" \
      --out results/ml1m_cpu_seed_intervals.json
  fi
  if [ -n "${HISTORY10:-}" ]; then  # the full protocol's prompt, the 10 most recent liked titles (DESIGN.md) instead of 5,
    method="CCF-LLM (stage 2 on 8,192 rows, 10 history titles, bf16) (cpu-subsample)"  # from the same stage 1 (~100 min)
    stage2_bf16 rows8192-history10-bf16 --set max_train_rows=8192 --set max_history=10 --set max_length=256 \
      --set stage2.evals_per_epoch=2 --resume --method "$method"
    methods+=(--method "$method")
    rows8192_runs=()
    for seed in 42 43; do  # with 5 titles as the 8,192-row row but from this stage 1 (B = 0), under two seeds (~60 min each)
      method="CCF-LLM (stage 2 on 8,192 rows, bf16, LoRA B = 0 at start, seed $seed) (cpu-subsample)"
      stage2_bf16 "rows8192-bf16-lora-init-seed$seed" --set max_train_rows=8192 --set seed=$seed \
        --set stage2.evals_per_epoch=2 --resume --method "$method"
      methods+=(--method "$method")
      rows8192_runs+=("outputs/ml1m-cpu/rows8192-bf16-lora-init-seed$seed")
    done
    python scripts/compare_runs.py "${rows8192_runs[@]:1}" --baseline "${rows8192_runs[0]}" \
      --out results/ml1m_cpu_rows8192_seed_intervals.json
  fi
  if [ -n "${STAGE2_LR:-}" ]; then  # is stage 2's 1e-3 too low? 8,192 rows from the same stage 1 at 3e-3 and at 1e-3, one
    for lr in 3e-3 1e-3; do  # machine (~60 min each), the difference paired on the same test rows; MF-bias's beside them
      method="CCF-LLM (stage 2 on 8,192 rows, lr $lr, bf16) (cpu-subsample)"
      stage2_bf16 "rows8192-lr$lr-bf16" --set max_train_rows=8192 --set stage2.learning_rate="${lr/e/.0e}" \
        --set stage2.evals_per_epoch=2 --resume --method "$method"
      methods+=(--method "$method")
    done
    python scripts/compare_runs.py outputs/ml1m-cpu/rows8192-lr3e-3-bf16 "$mf_bias_model" \
      --baseline outputs/ml1m-cpu/rows8192-lr1e-3-bf16 --out results/ml1m_cpu_stage2_lr_intervals.json
  fi
  if [ -n "${TUNE_LORA_ROWS:-}" ]; then  # with thousands of rows, does tuning LoRA beside ALG/GATE let the LLM add to the
    need_lora_init TUNE_LORA_ROWS  # biases it reads? 8,192 rows from LORA_INIT's stage 1 (~60 min)
    score_biases_model
    method="CCF-LLM (stage 2 on 8,192 rows, also tunes LoRA, bf16) (cpu-subsample)"
    STAGE1=$lora_init stage2_bf16 rows8192-tune-lora-bf16 --set max_train_rows=8192 --set stage2_tunes_lora=true \
      --set stage2.evals_per_epoch=2 --resume --method "$method"
    methods+=(--method "$method")
    python scripts/compare_runs.py outputs/ml1m-cpu/rows8192-tune-lora-bf16 "$mf_bias_model" \
      --baseline "$biases_model" --out results/ml1m_cpu_tune_lora_intervals.json
  fi
  if [ -n "${STAGE1_LR:-}" ]; then  # does stage 1 learn more from text at another learning rate than 5e-4, or with more
    need_lora_init STAGE1_LR  # passes? TALLRec on the same 1,024 rows (~17 min each; 3 epochs
    for lr in 2e-4 2e-3 5e-3; do  # ~32 min), against LORA_INIT's stage 1 (the same but for that setting)
      method="TALLRec (bf16, stage-1 lr $lr) (cpu-subsample)"
      stage1_bf16 "tallrec-bf16-lr$lr" --set stage1.learning_rate="${lr/e/.0e}" --method "$method"
      methods+=(--method "$method")
    done
    method="TALLRec (bf16, stage 1 for 3 epochs) (cpu-subsample)"  # valid AUC after each epoch picks the checkpoint
    stage1_bf16 tallrec-bf16-epochs3 --set stage1.epochs=3 --method "$method"
    methods+=(--method "$method")
    python scripts/compare_runs.py outputs/ml1m-cpu/tallrec-bf16-lr{2e-4,2e-3,5e-3} outputs/ml1m-cpu/tallrec-bf16-epochs3 \
      --baseline "$lora_init" --out results/ml1m_cpu_stage1_lr_intervals.json
  fi
  if [ -n "${ALL_LINEAR:-}" ]; then  # does LoRA on every Linear layer, not q/v alone (DESIGN.md's suggestion for the
    need_lora_init ALL_LINEAR  # text side), learn more? TALLRec on the same 1,024 rows (~22 min)
    method="TALLRec (bf16, LoRA on all linear layers) (cpu-subsample)"
    stage1_bf16 tallrec-bf16-all-linear --set "lora_target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]" \
      --method "$method"
    methods+=(--method "$method")
    python scripts/compare_runs.py outputs/ml1m-cpu/tallrec-bf16-all-linear --baseline "$lora_init" \
      --out results/ml1m_cpu_all_linear_intervals.json
  fi
  python scripts/make_plots.py outputs/ml1m-cpu --prefix ml1m_cpu_ "${methods[@]}"
fi
# Every finished run (all score the same test rows): AUC with a 95% bootstrap interval, and minus MF-bias's on those rows
finished=(outputs/ml1m-cpu/*/test_scores.parquet)
python scripts/compare_runs.py "${finished[@]%/test_scores.parquet}" "${cf_runs[@]}" \
  --baseline "$mf_bias_model" --out results/ml1m_cpu_intervals.json
if [ -n "${FULL_TEST:-}" ]; then  # the same models on the whole test split (7,331 rows, the published numbers'), ~25 min
  full=outputs/ml1m-cpu-full-test  # each on 2 cores; a rerun skips the ones done. Beside MF-bias and DIN trained on all rows
  mkdir -p "$full"
  for run in "${finished[@]%/test_scores.parquet}"; do
    name=$(basename "$run")
    [ -f "$full/$name/metrics.json" ] || python scripts/evaluate.py "$run" --config configs/ml1m.yaml \
      --out "$full/$name" > "$full/$name.log" 2>&1
  done
  last=outputs/ml1m-cpu/rows-all-bf16/stage2/checkpoint-4237  # the all-rows run's last step: its selection, on 512
  if [ -d "$last" ] && [ ! -f "$full/rows-all-bf16-last/metrics.json" ]; then  # valid rows, kept step 2,538
    python scripts/evaluate.py "$last" --config configs/ml1m.yaml --out "$full/rows-all-bf16-last" \
      > "$full/rows-all-bf16-last.log" 2>&1
  fi
  for cf in mf_bias din; do
    python scripts/score_cf.py --cf-dir "outputs/cf/ml1m/$cf" --config configs/ml1m.yaml --no-results \
      --out "$full/cf-${cf/_/-}"
  done
  scored=("$full"/*/test_scores.parquet)
  python scripts/compare_runs.py "${scored[@]%/test_scores.parquet}" --baseline "$full/cf-mf-bias" \
    --out results/ml1m_cpu_full_test_intervals.json
  same_rows=("$full"/rows16384-bf16 "$full"/rows16384-bf16-lora-init "$full"/din-rows16384-bf16)  # CoLLM's stage-2 rows
  python scripts/compare_runs.py "${same_rows[@]}" --baseline "$full/collm-rows16384-bf16" \
    --out results/ml1m_cpu_full_test_vs_collm_intervals.json
  more_rows=("$full"/rows8192-bf16 "$full"/rows-all-bf16 "$full"/rows-all-bf16-last)  # stage 2 on fewer / more rows
  python scripts/compare_runs.py "${more_rows[@]}" --baseline "$full/rows16384-bf16" \
    --out results/ml1m_cpu_full_test_vs_16384_intervals.json
  bash scripts/cf_tables.sh biases  # the yardstick of the two comparisons below
  python scripts/score_cf.py --cf-dir outputs/cf/ml1m/biases --config configs/ml1m.yaml --no-results \
    --method "User + item biases (MF-bias with d = 0)" --out "$full/cf-biases"
  if [ -d outputs/ml1m-cpu/biases-rows16384-bf16 ]; then  # BIASES_CF=1's runs against the biases model they read
    python scripts/compare_runs.py "$full"/biases-rows16384-bf16 "$full"/biases-rows8192-bf16 "$full/cf-mf-bias" \
      --baseline "$full/cf-biases" --out results/ml1m_cpu_full_test_vs_biases_intervals.json
  fi
  if [ -d outputs/ml1m-cpu/biases-grid-rows16384-bf16 ]; then  # BIASES_GRID=1's run against the model it reads
    python scripts/score_cf.py --cf-dir outputs/cf/ml1m/biases_grid --config configs/ml1m.yaml --no-results \
      --method "User + item biases (lr x weight-decay grid)" --out "$full/cf-biases-grid"
    python scripts/compare_runs.py "$full"/biases-grid-rows16384-bf16 "$full/cf-mf-bias" "$full/cf-biases" \
      --baseline "$full/cf-biases-grid" --out results/ml1m_cpu_full_test_vs_biases_grid_intervals.json
  fi
  if [ -d outputs/ml1m-cpu/biases-grid-rows16384-no-history-tokens-bf16 ]; then  # TUNED_TABLES=1's better run, the same way
    python scripts/compare_runs.py "$full"/biases-grid-rows16384-no-history-tokens-bf16 "$full"/biases-grid-rows16384-bf16 \
      --baseline "$full/cf-biases-grid" --out results/ml1m_cpu_full_test_tuned_tables_intervals.json
  fi
  if [ -d outputs/ml1m-cpu/collm-biases-grid-rows16384-no-history-tokens-bf16 ]; then  # TUNED_TABLES_CHECKS=1's runs, against CoLLM
    python scripts/compare_runs.py "$full"/biases-grid-rows16384-no-history-tokens{,-seed43}-bf16 "$full/cf-biases-grid" \
      --baseline "$full"/collm-biases-grid-rows16384-no-history-tokens-bf16 \
      --out results/ml1m_cpu_full_test_tuned_tables_checks_intervals.json
  fi
  if [ -d outputs/ml1m-cpu/biases-grid-rows16384-no-history-tokens-tune-lora-bf16 ]; then  # TUNED_TABLES_LORA=1's run
    python scripts/compare_runs.py "$full"/biases-grid-rows16384-no-history-tokens-tune-lora-bf16 "$full/cf-biases-grid" \
      --baseline "$full"/biases-grid-rows16384-no-history-tokens-bf16 \
      --out results/ml1m_cpu_full_test_tuned_tables_lora_intervals.json  # against the same run with LoRA frozen
  fi
  if [ -d outputs/cf/ml1m/biases_year_grid ]; then  # YEAR_TABLES=1's tables (and its run, once there) against the biases
    python scripts/score_cf.py --cf-dir outputs/cf/ml1m/biases_year_grid --config configs/ml1m.yaml --no-results \
      --method "User + item + release-year biases (lr x weight-decay grid)" --out "$full/cf-biases-year-grid"
    year_run=$full/biases-year-grid-rows16384-no-history-tokens-bf16
    year_runs=("$full/cf-biases-year-grid")
    [ -d "$year_run" ] && year_runs+=("$year_run" "$full/biases-grid-rows16384-no-history-tokens-bf16")
    python scripts/compare_runs.py "${year_runs[@]}" --baseline "$full/cf-biases-grid" \
      --out results/ml1m_cpu_full_test_year_tables_intervals.json
    if [ -d "$year_run" ]; then  # the run against the year tables it reads
      python scripts/compare_runs.py "$year_run" --baseline "$full/cf-biases-year-grid" \
        --out results/ml1m_cpu_full_test_vs_year_tables_intervals.json
    fi
  fi
  if [ -d outputs/ml1m-cpu/stage1-rows8192-seed43-bf16 ]; then  # STAGE1_ROWS=1's 16,384-row runs against the same
    python scripts/compare_runs.py "$full"/stage1-rows8192-bf16 "$full"/stage1-rows8192-seed43-bf16 \
      "$full/cf-mf-bias" --baseline "$full/cf-biases" --out results/ml1m_cpu_full_test_stage1_rows_intervals.json
  fi
fi
python scripts/update_readme.py
