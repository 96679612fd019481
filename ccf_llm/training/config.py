"""Experiment settings, read from ``configs/*.yaml``: one file is one row of the results table."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ccf_llm.settings import as_number
from configuration_ccf import FUSIONS

STAGE_DEFAULTS = {"stage1": {"learning_rate": 2e-4}, "stage2": {"learning_rate": 1e-3}}  # over StageConfig's


@dataclass
class StageConfig:
    """Optimisation settings of one training stage (``epochs: 0`` skips the stage)."""

    epochs: float = 1.0
    learning_rate: float = 1e-4
    batch_size: int = 16
    eval_batch_size: int = 64
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    gradient_accumulation_steps: int = 1
    evals_per_epoch: int = 1


@dataclass
class ExperimentConfig:
    """Everything a results row depends on. See ``configs/ml1m.yaml`` for a commented example."""

    method: str = "CCF-LLM"  # the row's family (CCF-LLM, TALLRec, CoLLM, ICL); its settings set rows apart
    experiment: str | None = None  # configs/experiments/<name>.yaml that runs this (scripts/experiment.py)
    data: str = "ml1m"  # ml1m (the shared CoLLM split) | default (embedded RecBole ml-100k) | a split folder
    data_dir: str | None = None
    results: str | None = None  # results/<dataset>.json to upsert the row into; None writes no row
    output_dir: str = "outputs/run"
    backbone: str | None = None  # HF folder or .gguf file; None = the embedded SmolLM2-135M-Instruct
    cf_dir: str | None = None  # folder with cf_tables.safetensors; None trains MF first (ccf_llm.cf)
    cf_model: str = "mf"  # what to train when cf_dir is None
    cf_settings: dict = field(default_factory=dict)  # its settings (ccf_llm.cf.train_cf)
    fusion: str = "gate"
    history_item_tokens: bool = True
    item_attributes: bool = False  # each item's attribute text (genres, categories) after its title
    user_profile: bool = False  # the user's profile sentence (age band, gender, occupation) after the history
    score_type: str = "yes_minus_no"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | None = None
    max_history: int = 10
    max_length: int = 256
    max_train_rows: int | None = None  # keep the most recent rows of train (CPU protocol); None = all
    max_valid_rows: int | None = None  # a fixed random sample of valid (CPU protocol); None = all
    max_test_rows: int | None = None  # a fixed random sample of test (smoke runs); None = all
    sample_seed: int = 42  # draws those samples; not `seed`, so runs of any seed score the same rows
    # two_stage | joint (one stage tuning LoRA and ALG/GATE, with stage2's settings)
    schedule: str = "two_stage"
    stage2_tunes_lora: bool = False
    stage2_tunes_cf: bool = False  # stage 2 (or joint) also tunes the CF tables; the model folder keeps them
    init_from: str | None = None  # a finished run whose stage-1 LoRA replaces stage 1
    stage1: StageConfig = field(default_factory=lambda: StageConfig(**STAGE_DEFAULTS["stage1"]))
    stage2: StageConfig = field(default_factory=lambda: StageConfig(**STAGE_DEFAULTS["stage2"]))
    bf16: bool | None = None  # None = on where bf16 is native (a GPU that supports it, an AMX CPU)
    seed: int = 42

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"Unknown fusion {self.fusion!r}; expected one of {', '.join(FUSIONS)}")
        if self.schedule not in ("two_stage", "joint"):
            raise ValueError(f"Unknown schedule {self.schedule!r}; expected two_stage or joint")
        if self.schedule == "joint" and self.init_from:
            raise ValueError("schedule: joint trains LoRA and ALG/GATE from the start; it takes no init_from")
        for name, defaults in STAGE_DEFAULTS.items():
            value = getattr(self, name)
            # A stage block names only what it changes; the rest keeps its defaults.
            if isinstance(value, dict):
                setattr(self, name, _build(StageConfig, {**defaults, **value}, name))

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> ExperimentConfig:
        """The file's settings with ``overrides`` on top (``None`` too: ``max_train_rows=None`` means all rows);
        ``stage2.learning_rate`` changes one stage setting."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config {path} not found")
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of settings, got {type(values).__name__}")
        for key, value in overrides.items():
            stage, dot, setting = key.partition(".")
            if not dot:
                values[key] = value
            elif stage in STAGE_DEFAULTS:
                values[stage] = {**(values.get(stage) or {}), setting: value}
            else:
                raise ValueError(f"{key}: only {' and '.join(STAGE_DEFAULTS)} have settings of their own")
        return _build(cls, values, str(path))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _build(kind: type, values: dict, where: str):
    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {unknown}; known: {sorted(fields)}")
    return kind(**{name: as_number(value, fields[name]) for name, value in values.items()})
