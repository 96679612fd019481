"""CTR evaluation metrics (:func:`ctr_metrics`; :func:`auc_interval` bootstraps an AUC's uncertainty) and the
offline ``evaluate`` module wrapping them."""

from pathlib import Path

from .ctr import auc_interval, ctr_metrics, per_user_auc

CTR_AUC_PATH = str(Path(__file__).resolve().parent / "ctr_auc")
"""Folder of the ``evaluate`` metric module: ``evaluate.load(CTR_AUC_PATH)`` works offline."""

__all__ = ["CTR_AUC_PATH", "auc_interval", "ctr_metrics", "per_user_auc"]
