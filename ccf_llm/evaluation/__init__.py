"""Evaluation helpers: the shared results file."""

from .results import split_metrics, upsert_result

__all__ = ["split_metrics", "upsert_result"]
