"""Fill the measured sections of README.md and docs/experiments.md from ``results/ml1m.json``,
``results/*_intervals.json`` and ``benchmarks/results/*.json``.

``python scripts/update_readme.py`` — every number in those sections comes from those files.
"""

from __future__ import annotations

from pathlib import Path

from ccf_llm.evaluation.report import RENDERED_DOCUMENTS, render_readme

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    for name in RENDERED_DOCUMENTS:
        document = ROOT / name
        document.write_text(render_readme(document.read_text(), ROOT))
        print(f"updated {document}")


if __name__ == "__main__":
    main()
