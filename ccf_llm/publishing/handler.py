"""Inference Endpoints handler for a published CCF-LLM folder (copied there as ``handler.py``).

The Hub's hosted widget runs no custom code; an Inference Endpoint runs this file instead. It is built
on the folder's own pipeline (``pipeline_ccf.py``), so the endpoint answers exactly what
``pipeline(model=folder, trust_remote_code=True)`` answers, the widget's text included::

    {"inputs": "user: 12 | history: Toy Story (1995); Fargo (1996) | candidate: Heat (1995)"}
    {"inputs": {"history": [1, 2], "candidates": [3, 4, 5]}, "parameters": {"top_k": 2}}
    {"inputs": "user: 12 | history: Toy Story (1995)", "parameters": {"top_k": 5, "num_candidates": 50}}
"""

from __future__ import annotations

from typing import Any

from transformers import pipeline


class EndpointHandler:
    """``EndpointHandler(path)(request)``: the Inference Endpoints contract around the CCF-LLM pipeline."""

    def __init__(self, path: str = ""):
        self.pipeline = pipeline(model=path or ".", trust_remote_code=True)

    def __call__(self, data: dict[str, Any]) -> list:
        """``{"inputs": request or list of requests, "parameters": {"top_k": k, "num_candidates": c, "batch_size": n}}``
        -> the pipeline's output (a request without candidates recommends)."""
        if not isinstance(data, dict) or "inputs" not in data:
            raise ValueError('expected a payload {"inputs": ..., "parameters": {...}}')
        return self.pipeline(data["inputs"], **(data.get("parameters") or {}))
