"""Non-LLM baselines that read the same inputs as the LLM (the CF backbones live in :mod:`ccf_llm.cf`)."""

from .content import (
    FEATURE_GROUPS,
    GRIDS,
    METHOD_NAMES,
    MODELS,
    ContentRun,
    build_features,
    fit_content_baseline,
)

__all__ = [
    "FEATURE_GROUPS",
    "GRIDS",
    "METHOD_NAMES",
    "MODELS",
    "ContentRun",
    "build_features",
    "fit_content_baseline",
]
