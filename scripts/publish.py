"""Publish a training run: ``python scripts/publish.py outputs/run --out published/ccf-llm-ml1m [--push-to-hub ORG/NAME]``.

Writes a Hub-ready folder (bf16 weights, remote code, pipeline, processor, Inference Endpoints handler, model
card with the measured results row, and the CF tables alone beside it where the run scored them) and, with
``--push-to-hub``, uploads it. Without a token, without network
or with HF_HUB_OFFLINE=1 it stops before writing anything.
"""

from __future__ import annotations

import argparse
import sys

from ccf_llm.publishing import HubAccessError, publish


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="training output dir holding model/ and metrics.json")
    parser.add_argument("--out", required=True, help="folder to write (replaced only with --overwrite)")
    parser.add_argument(
        "--results", help="results JSON holding this run's row (default: the run's, results/*.json)"
    )
    parser.add_argument("--base-model", help="Hub id of the backbone for the card (default: from the row)")
    parser.add_argument(
        "--push-to-hub", metavar="ORG/NAME", help="upload the folder to this model repository"
    )
    parser.add_argument(
        "--repo-id", metavar="ORG/NAME", help="name on the card when not pushing (default: --out)"
    )
    parser.add_argument("--private", action="store_true", help="create the Hub repository as private")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    args = parser.parse_args(argv)
    try:
        folder, url = publish(
            args.run_dir,
            args.out,
            push_to_hub=args.push_to_hub,
            private=args.private,
            repo_id=args.repo_id,
            results=args.results,
            base_model=args.base_model,
            overwrite=args.overwrite,
        )
    except (HubAccessError, FileNotFoundError, FileExistsError, ValueError, RuntimeError) as err:
        sys.exit(f"publish: {err}")
    print(f"wrote {folder}" + (f"\nuploaded: {url}" if url else ""))


if __name__ == "__main__":
    main()
