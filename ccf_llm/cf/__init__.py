"""Collaborative-filtering backbones (MF, LightGCN, SASRec, DIN), one shared training loop, and the
frozen embedding tables they export for the LLM (``cf_tables.safetensors`` + ``cf_config.json``)."""

from .base import CFModel
from .din import DIN
from .lightgcn import LightGCN
from .mf import MF
from .sasrec import SASRec
from .train import (
    DEFAULT_SETTINGS,
    MODELS,
    CFRun,
    CFSplits,
    TrainConfig,
    encode_splits,
    evaluate,
    grid_search,
    load_cf_tables,
    save_cf_tables,
    train_cf,
)

__all__ = [
    "DEFAULT_SETTINGS",
    "DIN",
    "MF",
    "MODELS",
    "CFModel",
    "CFRun",
    "CFSplits",
    "LightGCN",
    "SASRec",
    "TrainConfig",
    "encode_splits",
    "evaluate",
    "grid_search",
    "load_cf_tables",
    "save_cf_tables",
    "train_cf",
]
