"""Evaluation helpers: the shared results file."""

from .results import row_key, split_metrics, upsert_result

__all__ = ["row_key", "split_metrics", "upsert_result"]
