"""The main job on the embedded default: ``python scripts/main.py [--config configs/ml100k-quick.yaml]``.

Trains CCF-LLM, prints its metrics beside the CF tables it reads scored alone on the same rows, publishes the
folder and loads it back in a fresh interpreter."""

from __future__ import annotations

import argparse
import shlex
import sys

from ccf_llm.main_job import run_main_job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/ml100k-quick.yaml")
    args = parser.parse_args()
    run_main_job(args.config, command=shlex.join(["python", "scripts/main.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
