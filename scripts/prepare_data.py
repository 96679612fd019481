"""Build a CTR split from a data source, print its summary table and optionally save the parquet layout.

python scripts/prepare_data.py --source split --path ../shared/data/ml-1m --out outputs/data/ml-1m
python scripts/prepare_data.py --source movielens --path ~/ml-1m --out outputs/data/ml-1m-raw
python scripts/prepare_data.py --source amazon --reviews Books_5.json.gz --meta meta_Books.json.gz --out ...
python scripts/prepare_data.py --source default --max-train-rows 2000 --out outputs/data/default
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ccf_llm.data import SOURCES, load_source, source_options

# Flags passed on as load_source options (dest = option name); each source takes only some of them.
OPTIONS = (
    "label_threshold",
    "max_history",
    "max_train_rows",
    "min_ratings",
    "train_months",
    "valid_months",
    "test_months",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", choices=SOURCES, required=True)
    parser.add_argument("--path", type=Path, help="split folder (split) or raw MovieLens folder (movielens)")
    parser.add_argument("--reviews", type=Path, help="Amazon reviews JSON lines (.json or .json.gz)")
    parser.add_argument("--meta", type=Path, help="Amazon metadata JSON lines (.json or .json.gz)")
    parser.add_argument("--out", type=Path, help="write train/valid/test/items(/users).parquet here")
    parser.add_argument(
        "--label-threshold", type=float, help="label = rating >= this (source default if omitted)"
    )
    parser.add_argument("--max-history", type=int, help="keep the last k history items")
    parser.add_argument("--max-train-rows", type=int, help="keep only the most recent train rows")
    parser.add_argument(
        "--min-ratings", type=int, help="Amazon: keep users/books with more reviews than this"
    )
    for split in ("train", "valid", "test"):
        parser.add_argument(
            f"--{split}-months",
            type=int,
            nargs=2,
            metavar=("FIRST", "LAST"),
            help=f"inclusive month slots of {split} (MovieLens)",
        )
    args = parser.parse_args(argv)
    for option in OPTIONS:  # a usage error, not a TypeError from the source's function
        if getattr(args, option) is not None and option not in source_options(args.source):
            parser.error(f"--{option.replace('_', '-')} does not apply to --source {args.source}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = {
        option: tuple(value) if isinstance(value, list) else value  # month ranges: (first, last)
        for option in OPTIONS
        if (value := getattr(args, option)) is not None
    }
    if args.source == "amazon":
        options["progress"] = True
    try:
        data = load_source(args.source, path=args.path, reviews=args.reviews, meta=args.meta, **options)
    except ValueError as err:  # DataError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{data.name}: {len(data.items)} items")
    print(data.summary().to_string(index=False))
    if args.out is not None:
        print(f"saved to {data.save(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
