"""The model card (``README.md``): YAML front matter + the ``model_cards/`` template, numbers from measurements only.

Every number on the card comes from the measured row of ``results/<dataset>.json`` for this method,
and that row must be the one this run wrote (it equals the run's ``metrics.json`` row); without such a
row the card has no ``model-index`` and says so. Beside it, where the run has one, the card shows the
run's CF model scored alone on the same rows, and the paired difference between the two.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import yaml
from transformers import PretrainedConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
CARD_TEMPLATE = REPO_ROOT / "model_cards" / "ccf_llm.md"
RESULTS_DIR = REPO_ROOT / "results"
# Hub ids of the backbones that a results row names by file or folder name.
BASE_MODELS = {
    "SmolLM2-135M-Instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "SmolLM2-135M-Instruct.Q4_1.gguf": "HuggingFaceTB/SmolLM2-135M-Instruct",
}
# Data set (results file "dataset") -> (name on the card, what the label means), from the CoLLM protocol.
DATASETS = {
    "ml-1m": ("MovieLens-1M (CoLLM split)", "rating >= 4"),
    "amazon-book": ("Amazon-Book (CoLLM split)", "rating >= 5"),
}
VARIANTS = {
    "gate": "CCF-LLM (dimension-wise attentive gate)",
    "scalar_gate": "CCF-LLM with a scalar gate per placeholder",
    "add": "CCF-LLM with additive fusion",
    "concat": "CCF-LLM with MLP fusion of the concatenation",
    "cf_only": "CoLLM-style (CF vector in every placeholder)",
    "text_only": "TALLRec-style (titles only, no placeholders)",
}
METRIC_NAMES = {"auc": "AUC", "uauc": "UAUC", "auc_warm": "AUC (warm rows)", "auc_cold": "AUC (cold rows)"}


@dataclass
class Baseline:
    """The CF model of a run scored alone on the run's rows, and CCF-LLM minus it (paired bootstrap)."""

    row: dict[str, Any]
    comparison: dict[str, Any]


@dataclass
class MeasuredRow:
    """A results-file row and where it came from."""

    row: dict[str, Any]
    dataset: str
    path: Path


def results_files(summary: dict, explicit: str | Path | None = None) -> list[Path]:
    """Where to look for the row: ``explicit``, else the run's own results file, then ``results/*.json``."""
    if explicit is not None:
        return [Path(explicit)]
    files = sorted(RESULTS_DIR.glob("*.json"))
    own = summary.get("config", {}).get("results")
    return [Path(own), *files] if own else files


def run_dataset(summary: dict) -> str:
    """The data set name a results file would carry, from the run's config (used when no row exists)."""
    data = summary.get("config", {}).get("data", "unknown")
    return {"ml1m": "ml-1m", "default": "ml-100k"}.get(data, Path(data).name)


def find_measured_row(run_row: dict, files: list[Path]) -> MeasuredRow | None:
    """The results row of ``run_row``'s method that this run measured; ``None`` when no file has the method.

    A row of the same method with other numbers was written by another run: publishing it next to these
    weights would be wrong, so that is an error.
    """
    others = []
    for path in files:
        if not path.is_file():
            continue
        content = json.loads(path.read_text())
        for row in content.get("rows", []):
            if row.get("method") != run_row["method"]:
                continue
            if all(row.get(split) == run_row.get(split) for split in ("valid", "test")):
                return MeasuredRow(row, content.get("dataset", path.stem), path)
            others.append(str(path))
    if others:
        raise ValueError(
            f"results rows for method {run_row['method']!r} in {sorted(set(others))} hold other numbers than "
            "this run's metrics.json: they were measured by another run. Publish the run that wrote the row, "
            "or point --results at a file holding this run's row."
        )
    return None


def read_baseline(folder: Path) -> Baseline | None:
    """``<folder>/metrics.json`` as the main job writes it (``row`` and ``comparison``); ``None`` without one."""
    path = folder / "metrics.json"
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text())
        return Baseline(content["row"], content["comparison"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a CF baseline file with 'row' and 'comparison' ({err})") from err


def hub_base_model(config: PretrainedConfig) -> str | None:
    """The backbone's Hub id as the model's config records it (``build_model`` keeps no local paths there)."""
    name = getattr(config.text_config, "_name_or_path", "") or ""
    return name if name.count("/") == 1 and not Path(name).exists() else None


def model_index(name: str, measured: MeasuredRow) -> list[dict]:
    """The Hub's ``model-index``: one result per split, metrics copied from the row (nulls left out)."""
    display = DATASETS.get(measured.dataset, (measured.dataset, ""))[0]
    results = []
    for split in ("test", "valid"):
        metrics = [
            {"type": key, "value": value, "name": f"{split.capitalize()} {METRIC_NAMES[key]}"}
            for key, value in measured.row[split].items()
            if value is not None
        ]
        results.append(
            {
                "task": {"type": "text-classification", "name": "CTR prediction"},
                "dataset": {"name": display, "type": measured.dataset, "split": split},
                "metrics": metrics,
            }
        )
    return [{"name": name, "results": results}]


def example_items(catalog: dict[int, str]) -> list[int]:
    """Five real catalog ids (the lowest) for the examples: two liked, then three candidates."""
    items = sorted(catalog)[:5]
    if len(items) < 5:
        raise ValueError(f"the item catalog has {len(items)} items; the card's examples need 5")
    return items


def widget_examples(catalog: dict[int, str], user_id: int | None) -> list[dict[str, str]]:
    """Two requests in the documented text format, built from real catalog titles."""
    titles = [catalog[item] for item in example_items(catalog)]
    head = f"user: {user_id} | " if user_id else ""
    head += f"history: {titles[0]}; {titles[1]} | "
    return [
        {"text": f"{head}candidate: {titles[2]}", "example_title": "One candidate"},
        {"text": f"{head}candidates: {'; '.join(titles[2:])}", "example_title": "Ranking"},
    ]


def comparison_line(comparison: dict[str, Any], cf: str) -> str:
    """One sentence: CCF-LLM minus the CF model on the same rows, its interval, and what that means at this size."""
    diff, low, high = comparison["minus_baseline"], comparison["low"], comparison["high"]
    trained = f"trained on {comparison['llm_train_rows']} rows"
    if low <= 0 <= high:
        verdict = f"the interval holds 0: on {comparison['rows']} rows the two cannot be told apart"
    elif diff > 0:
        verdict = f"the interval excludes 0: {trained}, the LLM adds to the CF tables it reads"
    else:
        verdict = f"the interval excludes 0: {trained}, the LLM does not yet add to the CF tables it reads"
    return (
        f"CCF-LLM minus {cf} alone, {comparison['split']} AUC on the same {comparison['rows']} rows: {diff:+.4f} "
        f"[{low:+.4f}, {high:+.4f}] ({comparison['confidence']:.0%} paired bootstrap over {comparison['resample']}); "
        f"{verdict}."
    )


def results_section(
    name: str, measured: MeasuredRow | None, method: str, baseline: Baseline | None = None
) -> str:
    if measured is None:
        return (
            f"No measured results row for method `{method}` was found (`results/*.json`), so this card "
            "carries no `model-index` and no numbers."
        )
    rows = [(f"`{name}`", measured.row)]
    if baseline is not None:
        rows.append((f"{baseline.row['method']} (CF tables alone)", baseline.row))
    header = "| model | split | " + " | ".join(METRIC_NAMES.values()) + " |"
    lines = [header, "|" + "---|" * (len(METRIC_NAMES) + 2)]
    for split in ("test", "valid"):
        for label, row in rows:
            values = [row[split].get(key) for key in METRIC_NAMES]
            cells = " | ".join("—" if v is None else f"{v:.4f}" for v in values)
            lines.append(f"| {label} | {split} | {cells} |")
    text = (
        f"Measured for `{name}` on {DATASETS.get(measured.dataset, (measured.dataset,))[0]} "
        f"(row `{method}` of `{measured.path.name}`; warm rows: user and item both seen in training).\n\n"
        + "\n".join(lines)
    )
    if baseline is not None:
        text += "\n\n" + comparison_line(baseline.comparison, baseline.row["method"])
    return text


def setting(row: dict, key: str) -> Any:
    """A row's setting: in ``settings`` (the results-file layout), or at the top level of older rows."""
    return (row.get("settings") or {}).get(key, row.get(key))


def training_section(row: dict) -> str:
    fields = {
        "backbone": row.get("backbone"),
        "fusion": setting(row, "fusion"),
        "CF model": setting(row, "cf"),
        "training rows": row.get("train_rows"),
        "device": row.get("device"),
        "wall time (s)": row.get("seconds"),
    }
    lines = [f"- {key}: `{value}`" for key, value in fields.items() if value is not None]
    if row.get("command"):
        lines.append(f"\nReproduce with the `ccf-llm` repository:\n\n```bash\n{row['command']}\n```")
    return "\n".join(lines)


def model_card(
    run_row: dict,
    measured: MeasuredRow | None,
    catalog: dict[int, str],
    config: PretrainedConfig,
    name: str,
    model_ref: str,
    dataset: str,
    base_model: str | None = None,
    baseline: Baseline | None = None,
) -> str:
    """README.md text: front matter (widget, model-index) and the template filled from the measured row.

    ``config`` is the model's ``CCFLLMConfig`` (user table size, fusion, LoRA rank decide the examples and notes);
    ``baseline`` adds the run's CF model, scored alone on the same rows, to the results.
    """
    row = measured.row if measured else run_row
    dataset = measured.dataset if measured else dataset
    base_model = base_model or hub_base_model(config) or BASE_MODELS.get(row["backbone"])
    user_id = 1 if config.num_users > 1 and config.fusion != "text_only" else None
    widget = widget_examples(catalog, user_id)
    front = {
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        **({"base_model": base_model} if base_model else {}),  # a Hub id or nothing (a random tiny backbone)
        "datasets": [dataset],
        "metrics": ["auc"],
        "tags": ["ccf-llm", "recommendation", "ctr-prediction", "collaborative-filtering", "custom_code"],
        "widget": widget,
    }
    if measured:
        front["model-index"] = model_index(name, measured)
    items = example_items(catalog)
    dataset_name, label = DATASETS.get(dataset, (dataset, "the positive label"))
    return Template(CARD_TEMPLATE.read_text()).substitute(
        front_matter=yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=1000),
        name=name,
        variant=VARIANTS.get(config.fusion, config.fusion),
        dataset_name=dataset_name,
        label=label,
        base_model=base_model or row["backbone"],
        cf=setting(row, "cf") or "none",
        fusion=config.fusion,
        model_ref=model_ref,
        example_text=widget[0]["text"],
        example_user=user_id or 0,
        example_history=json.dumps(items[:2]),
        example_candidate=json.dumps(catalog[items[2]], ensure_ascii=False),
        example_candidate_id=items[2],
        ranking_text=widget[1]["text"],
        num_items=len(catalog),
        peft_note="Its LoRA adapter is stored unmerged, so loading needs `peft` installed."
        if config.lora_r
        else "",
        results_section=results_section(name, measured, row["method"], baseline),
        training_section=training_section(row),
    )
