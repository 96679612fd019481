"""Two-stage training on the HF Trainer (stage 1: LoRA on text prompts; stage 2: ALG + GATE on hybrid prompts)."""

from .config import ExperimentConfig, StageConfig
from .run import run_experiment, summary_table
from .stages import STAGES, set_trainable

__all__ = ["STAGES", "ExperimentConfig", "StageConfig", "run_experiment", "set_trainable", "summary_table"]
