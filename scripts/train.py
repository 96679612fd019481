"""Train and evaluate one configuration: ``accelerate launch scripts/train.py --config configs/ml1m.yaml``.

Plain ``python scripts/train.py ...`` works too. Settings live in the YAML file; the flags below override
the ones most often changed from the command line. The experiments of configs/experiments/ are runs of this
script (``python scripts/experiment.py NAME --dry-run`` prints the call).
"""

from __future__ import annotations

import argparse
import shlex
import sys

import yaml

from ccf_llm.settings import parse_assignments
from ccf_llm.training import ExperimentConfig, run_experiment, summary_table
from configuration_ccf import FUSIONS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="YAML file of ExperimentConfig settings")
    parser.add_argument("--output-dir", help="where checkpoints, scores and the model folder go")
    parser.add_argument("--method", help="row name in the results file")
    parser.add_argument("--fusion", choices=FUSIONS, help=" | ".join(FUSIONS))
    parser.add_argument("--cf-dir", help="folder with cf_tables.safetensors")
    parser.add_argument("--init-from", help="a finished run whose stage-1 LoRA replaces stage 1")
    parser.add_argument("--max-train-rows", type=int, help="keep the most recent train rows (CPU protocol)")
    parser.add_argument("--results", help="results JSON to upsert the row into")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other setting (YAML value), repeatable; stage2.learning_rate=3e-3 sets one stage setting",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from its checkpoints"
    )
    args = parser.parse_args()
    flags = ("output_dir", "method", "fusion", "cf_dir", "init_from", "max_train_rows", "results")
    overrides = {key: getattr(args, key) for key in flags if getattr(args, key) is not None}
    try:  # a bad config file or --set is a usage error (message, exit 2), not a traceback
        overrides.update(parse_assignments(args.set))
        config = ExperimentConfig.from_yaml(args.config, **overrides)
    except (OSError, ValueError, TypeError, yaml.YAMLError) as err:
        parser.error(str(err))
    command = shlex.join(["python", "scripts/train.py", *sys.argv[1:]])
    summary = run_experiment(config, command=command, resume=args.resume)
    print(
        f"\n{config.method} ({config.fusion}) — {summary['row']['seconds']} s on {summary['row']['device']}"
    )
    print(summary_table(summary).to_string(na_rep="–"))  # "–": no warm or no cold rows


if __name__ == "__main__":
    main()
