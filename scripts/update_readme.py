"""Fill the README's measured sections from ``results/ml1m.json``, ``results/ml1m_cpu_intervals.json`` and
``benchmarks/results/*.json``.

``python scripts/update_readme.py`` — every number in those sections comes from those files.
"""

from __future__ import annotations

from pathlib import Path

from ccf_llm.evaluation.report import render_readme

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    readme = ROOT / "README.md"
    readme.write_text(render_readme(readme.read_text(), ROOT))
    print(f"updated {readme}")


if __name__ == "__main__":
    main()
