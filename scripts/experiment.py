"""Run experiments by name: one YAML file each under configs/experiments/ (the logic lives in ccf_llm.experiments).

    python scripts/experiment.py --list                   # every experiment: kind, state, test AUC
    python scripts/experiment.py ccf-llm-year-tables      # runs cf-biases-year and tallrec first where unfinished
    python scripts/experiment.py 'cf-*' --dry-run         # the commands, nothing run
    python scripts/experiment.py --compare ccf-llm        # paired test-AUC intervals against its compare_with

Finished experiments (``outputs/experiments/<name>/metrics.json``) are skipped; a partial one resumes.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

from ccf_llm.experiments import comparison_command, listing, load_experiments, run, select


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="\n".join(__doc__.splitlines()[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="*", help="experiment names or shell patterns ('cf-*')")
    parser.add_argument("--list", action="store_true", help="every experiment with its state and test AUC")
    parser.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    parser.add_argument(
        "--compare", action="store_true", help="bootstrap the named experiments against their compare_with"
    )
    args = parser.parse_args(argv)
    if args.list:
        print(listing())
        return
    if not args.names:
        parser.error("name an experiment (or pass --list)")
    try:
        if args.compare:
            experiments = load_experiments()
            for name in select(args.names, experiments):
                command = comparison_command(experiments[name], experiments)
                print(shlex.join(command), flush=True)
                if not args.dry_run:
                    subprocess.run([sys.executable, *command[1:]], check=True)
            return
        run(args.names, dry_run=args.dry_run)
    except (OSError, ValueError) as err:
        parser.exit(2, f"experiment.py: {err}\n")
    except subprocess.CalledProcessError as err:
        parser.exit(err.returncode, f"experiment.py: {shlex.join(err.cmd)} failed (exit {err.returncode})\n")


if __name__ == "__main__":
    main()
