"""Score a finished run's saved model on the rows a config evaluates, as a run folder for compare_runs.

    python scripts/evaluate.py outputs/experiments/ccf-llm --config configs/ml1m.yaml \\
        --out outputs/full-test/ccf-llm

A run of configs/ml1m-cpu.yaml as it stands tests on a 2,000-row sample; with ``configs/ml1m.yaml`` this scores
the same model on the whole test split, the rows the published numbers and the full-data CF rows use. RUN may also
be one of the run's checkpoints (``RUN/stage2/checkpoint-N``, e.g. another than the one model selection kept); its
prompts are those of the run's model folder, i.e. the last stage's (a stage-1 checkpoint of a hybrid run is
scored on hybrid prompts too). The run's results row is left as it is; ``--out`` gets ``<split>_scores.parquet``
and a ``metrics.json`` whose row names the model, the rows and the command.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from ccf_llm.atomic import write_text_atomically
from ccf_llm.evaluation import split_metrics
from ccf_llm.evaluation.compare import read_scores, run_name
from ccf_llm.evaluation.rows import device_label
from ccf_llm.training import ExperimentConfig
from ccf_llm.training.run import MODEL_DIR, evaluate_saved_model
from modeling_ccf import use_bf16
from processing_ccf import PROCESSOR_FILE


def saved_model(path: Path) -> tuple[Path, Path, str]:
    """The weights folder, the prompts' (processor's) folder and the default row name of a run folder, its
    model folder or one of its stage checkpoints (weights only: the prompts are the run's model folder's)."""
    if (path / MODEL_DIR / "config.json").is_file():
        path = path / MODEL_DIR
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no saved model (config.json) there or in {path / MODEL_DIR}")
    if (path / PROCESSOR_FILE).is_file():
        return path, path, run_name(path.parent)
    run = path.parent.parent
    if path.name.startswith("checkpoint-") and (run / MODEL_DIR / PROCESSOR_FILE).is_file():
        return path, run / MODEL_DIR, f"{run_name(run)} [{path.parent.name}/{path.name}]"
    raise FileNotFoundError(
        f"{path}: no {PROCESSOR_FILE}, and not a checkpoint of a run whose {MODEL_DIR}/ folder has one"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "run",
        type=Path,
        help=f"a finished run folder (scripts/train.py), its {MODEL_DIR}/ folder or a checkpoint of one of its stages",
    )
    parser.add_argument("--config", required=True, help="the config whose data and row samples to score")
    parser.add_argument(
        "--out", required=True, type=Path, help="folder for <split>_scores.parquet and metrics.json"
    )
    parser.add_argument(
        "--split", action="append", choices=("valid", "test"), help="repeatable (default: test)"
    )
    parser.add_argument("--method", help="row name (default: the run's)")
    args = parser.parse_args(argv)
    try:
        model_dir, processor_dir, name = saved_model(args.run)
    except FileNotFoundError as err:
        parser.error(str(err))
    try:
        config = ExperimentConfig.from_yaml(args.config)
    except (OSError, ValueError, TypeError, yaml.YAMLError) as err:
        parser.error(str(err))
    splits = tuple(args.split or ("test",))
    start = time.perf_counter()
    # The scoring config's: bf16: null scores under bf16 autocast where bf16 is native.
    bf16 = use_bf16(config.bf16)
    metrics = evaluate_saved_model(model_dir, config, args.out, splits, processor_dir, bf16)
    row = {
        "method": args.method or name,
        "model": str(model_dir),
        "device": device_label(bf16),
        "seconds": round(time.perf_counter() - start, 1),
        "command": shlex.join(
            ["python", "scripts/evaluate.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "rows": {split: len(read_scores(args.out, split)) for split in splits},
        **{split: split_metrics(metrics[split], split) for split in splits},
    }
    write_text_atomically(args.out / "metrics.json", json.dumps({"row": row}, indent=2))
    print(pd.DataFrame({split: row[split] for split in splits}).T.to_string(na_rep="–"))


if __name__ == "__main__":
    main()
