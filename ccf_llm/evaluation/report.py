"""The measured tables of README.md and docs/experiments.md, rendered from ``results/*.json`` and
``benchmarks/results/*.json``."""

from __future__ import annotations

import json
import re
from pathlib import Path

# The README's order of method families (baselines, then the LLM methods); a family not listed comes last.
FAMILY_ORDER = (
    "MF", "MF-bias", "Biases", "LightGCN", "SASRec", "DIN", "Content GBDT", "ICL", "TALLRec", "CoLLM", "BinLLM",
    "CCF-LLM",
)  # fmt: skip
PROTOCOL_TEXT = {
    "full": "trained on all train rows",
    "cpu": (
        "trained under the CPU protocol (SmolLM2-135M-Instruct, one epoch per stage on the most recent train "
        "rows: `train rows` in the last stage, 1,024 in stage 1 unless the row's settings say otherwise; "
        "checkpoints picked on a 512-row valid sample; [docs/reproduce.md](docs/reproduce.md))"
    ),
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


def _family_rank(method: str) -> tuple[int, str]:
    return (FAMILY_ORDER.index(method) if method in FAMILY_ORDER else len(FAMILY_ORDER), method)


def best_rows(rows: list[dict]) -> dict[str, dict]:
    """Each family's measured row with the highest test AUC among those scored on the whole test split (the
    largest ``test_rows`` of the file, which the published rows share)."""
    whole = max(row["test_rows"] for row in rows)
    best: dict[str, dict] = {}
    for row in rows:
        if row["protocol"] == "published" or row["test_rows"] != whole or row["test"]["auc"] is None:
            continue
        if row["method"] not in best or row["test"]["auc"] > best[row["method"]]["test"]["auc"]:
            best[row["method"]] = row
    return best


def _line(name: str, mine: dict | None, paper: dict | None) -> str:
    cells = [_method(name)]
    if mine:
        cells += [f"`{mine['experiment']}`" if mine["experiment"] else "–", f"{mine['train_rows']:,}"]
        cells += [_cell(mine["test"][key]) for key in ("auc", "uauc", "auc_warm", "auc_cold")]
    else:
        cells += ["–"] * 6
    if paper:
        label = f" ({paper['name']})" if paper.get("name", name) != name else ""
        cells += [f"{paper['test']['auc']:.4f}{label}", _cell(paper["test"]["uauc"])]
    else:
        cells += ["–", "–"]
    return "| " + " | ".join(cells) + " |"


def results_table(results_file: str | Path) -> str:
    """Markdown: a sentence saying how the rows were measured, then one line per method family with our best
    whole-split row beside the family's published number; further published rows of a family (CoLLM-DIN
    beside CoLLM-MF) get lines of their own."""
    path = Path(results_file)
    rows = json.loads(path.read_text())["rows"]
    ours = best_rows(rows)
    published: dict[str, list[dict]] = {}
    for row in rows:
        if row["protocol"] == "published":
            published.setdefault(row["method"], []).append(row)
    lines = []
    for family in sorted(set(ours) | set(published), key=_family_rank):
        papers = published.get(family, [])
        lines.append(_line(family, ours.get(family), papers[0] if papers else None))
        lines += [_line(paper.get("name", family), None, paper) for paper in papers[1:]]

    by_protocol: dict[str, list[str]] = {}
    for row in ours.values():
        by_protocol.setdefault(row["protocol"], []).append(row["method"])
    how = "; ".join(
        f"{', '.join(sorted(families, key=_family_rank))} {PROTOCOL_TEXT.get(protocol, protocol)}"
        for protocol, families in sorted(
            by_protocol.items(), key=lambda item: list(PROTOCOL_TEXT).index(item[0])
        )
    )
    backbones = sorted(
        {row["backbone"] for papers in published.values() for row in papers if row["backbone"]}
    )
    whole = max(row["test_rows"] for row in rows)
    header = (
        f"Ours: each method's best row in `results/{path.name}`, every one scored on the whole test split "
        f"({whole:,} rows): {how}. Published: the papers' numbers on the same split"
        + (f" (their LLM rows use {', '.join(backbones)})." if backbones else ".")
    )
    columns = "| method | experiment | train rows | test AUC | test UAUC | warm AUC | cold AUC | published AUC | published UAUC |"
    return "\n".join([header, "", columns, "| --- | --- |" + " ---: |" * 7, *lines])


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
    # Files of one baseline name it once (baseline_method); files of several name each row's (baseline).
    per_row = bool(content.get("baselines"))
    if per_row:
        columns += ["against", "difference", interval]
    elif content.get("baseline"):
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
        if per_row:
            cells.append(_method(row["baseline"]))
        if per_row or content.get("baseline"):
            cells += [
                f"{row['minus_baseline']:+.4f}",
                f"{_signed(row['diff_low'])} – {_signed(row['diff_high'])}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# The documents with measured sections, relative to the repository root: the README and the findings.
RENDERED_DOCUMENTS = ("README.md", "docs/experiments.md")


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
