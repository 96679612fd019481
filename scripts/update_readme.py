"""Fill the README's measured sections from ``results/ml1m.json`` and ``benchmarks/results/*.json``.

``python scripts/update_readme.py`` — every number in those sections comes from those files.
"""

from __future__ import annotations

from pathlib import Path

from ccf_llm.evaluation.report import benchmark_table, replace_section, results_table

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    readme = ROOT / "README.md"
    text = replace_section(readme.read_text(), "results:ml1m", results_table(ROOT / "results" / "ml1m.json"))
    text = replace_section(text, "benchmarks", benchmark_table(ROOT / "benchmarks" / "results"))
    readme.write_text(text)
    print(f"updated {readme}")


if __name__ == "__main__":
    main()
