"""The results tables of README.md and results/README.md, rendered from ``results/*.json`` beside the published numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path

# Test AUC / UAUC on the CoLLM ML-1M split as published (CoLLM, arXiv 2310.19488; BinLLM); LLM rows use Vicuna-7B.
PUBLISHED_ML1M = {
    "MF": (0.6482, 0.6361),
    "LightGCN": (0.5959, 0.6499),
    "SASRec": (0.7078, 0.6884),
    "DIN": (0.7166, 0.6459),
    "ICL (zero-shot)": (0.5320, 0.5268),
    "TALLRec": (0.7097, 0.6818),
    "CoLLM-MF": (0.7295, 0.6875),
    "CoLLM-DIN": (0.7243, 0.6897),
    "BinLLM": (0.7425, 0.6956),
}


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _signed(value: float | None) -> str:  # None: a bootstrap that found no interval (written as null)
    return "–" if value is None else f"{value:+.4f}"


def _pipes(text: str) -> str:
    """A Markdown table cell: a ``|`` in the text must not end the cell."""
    return text.replace("|", "\\|")


def _method(name: str) -> str:
    """Table-safe Markdown: "CCF-LLM (no history <item> tokens)" must not render ``<item>`` as an HTML tag."""
    return _pipes(name).replace("<", "&lt;").replace(">", "&gt;")


def results_table(results_file: str | Path) -> str:
    """Markdown: our measured rows (with device and train rows), then the published rows, each labelled."""
    content = json.loads(Path(results_file).read_text())
    lines = [
        "| method | source | backbone | train rows | device | valid AUC | test AUC | test UAUC | warm AUC | cold AUC |",
        "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in content["rows"]:
        test, valid = row["test"], row["valid"]
        lines.append(
            f"| {_method(row['method'])} | ours | {row['backbone'] or '–'} | {row['train_rows']:,} | {row['device']} | "
            f"{_cell(valid['auc'])} | {_cell(test['auc'])} | {_cell(test['uauc'])} | "
            f"{_cell(test['auc_warm'])} | {_cell(test['auc_cold'])} |"
        )
    for method, (auc, uauc) in PUBLISHED_ML1M.items():
        backbone = (
            "Vicuna-7B"
            if method in ("ICL (zero-shot)", "TALLRec", "CoLLM-MF", "CoLLM-DIN", "BinLLM")
            else "–"
        )
        lines.append(
            f"| {method} | published | {backbone} | 33,891 | – | – | {auc:.4f} | {uauc:.4f} | – | – |"
        )
    return "\n".join(lines)


def replace_section(text: str, name: str, body: str) -> str:
    """Replace what lies between ``<!-- name -->`` and ``<!-- /name -->`` (both kept)."""
    pattern = re.compile(rf"(<!-- {re.escape(name)} -->\n).*?(<!-- /{re.escape(name)} -->)", re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"no '<!-- {name} -->' ... '<!-- /{name} -->' section to fill")
    return pattern.sub(lambda match: match.group(1) + body + "\n" + match.group(2), text)


def benchmark_table(results_dir: str | Path) -> str:
    """Markdown: one line per ``benchmarks/results/*.json`` with a ratio (ours / baseline, same run)."""
    lines = [
        "| benchmark | backbone | device | ratio (ours / baseline) | target |",
        "| --- | --- | --- | ---: | --- |",
    ]
    for path in sorted(Path(results_dir).glob("*.json")):
        result = json.loads(path.read_text())
        if "ratio" not in result:
            continue
        lines.append(
            f"| {result['name']} | {result.get('backbone', '–')} | {result['device']} | "
            f"{result['ratio']:.2f} | {_pipes(result['target'])} |"
        )
    return "\n".join(lines)


def intervals_table(intervals_file: str | Path) -> str:
    """Markdown from ``scripts/compare_runs.py --out``: each run's AUC with its interval and, when the file has a
    baseline, the paired difference from it."""
    content = json.loads(Path(intervals_file).read_text())
    # Files written before compare_runs resampled users lack the field: they resampled rows.
    level = f"{content['confidence']:.0%}"
    interval = f"{level} interval ({content.get('resample', 'rows')} resampled)"
    columns = ["method", f"{content['split']} AUC", interval]
    # Files written before compare_runs reported UAUC lack it.
    with_uauc = all("uauc" in row for row in content["rows"])
    if with_uauc:
        columns.append(f"{content['split']} UAUC")
    if content["baseline"]:
        columns += [f"minus {_method(content['baseline_method'])}", interval]
    lines = ["| " + " | ".join(columns) + " |", "| --- |" + " ---: |" * (len(columns) - 1)]
    for row in content["rows"]:
        cells = [
            _method(row["method"]),
            f"{row['auc']:.4f}",
            f"{_cell(row['auc_low'])} – {_cell(row['auc_high'])}",
        ]
        if with_uauc:
            cells.append(_cell(row["uauc"]))
        if content["baseline"]:
            cells += [
                f"{row['minus_baseline']:+.4f}",
                f"{_signed(row['diff_low'])} – {_signed(row['diff_high'])}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# The documents with measured sections, relative to the repository root: the README and the results' detail.
RENDERED_DOCUMENTS = ("README.md", "results/README.md")


def render_readme(text: str, root: str | Path) -> str:
    """A document with each measured section it holds rendered from the files under ``root``: ``results:ml1m``
    from ``results/ml1m.json``, each ``intervals:NAME`` from ``results/NAME_intervals.json``, ``benchmarks``
    from ``benchmarks/results/*.json``."""
    root = Path(root)
    sections = {"results:ml1m": lambda: results_table(root / "results" / "ml1m.json")}
    for name in re.findall(r"<!-- intervals:(\w+) -->", text):
        sections[f"intervals:{name}"] = lambda name=name: intervals_table(
            root / "results" / f"{name}_intervals.json"
        )
    sections["benchmarks"] = lambda: benchmark_table(root / "benchmarks" / "results")
    for name, render in sections.items():
        if f"<!-- {name} -->" in text:
            text = replace_section(text, name, render())
    return text
