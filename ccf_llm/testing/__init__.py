"""Tiny random-backbone models for tests and for checking the published folder format offline."""

from .make_tiny import TINY_CATALOG, make_tiny, tiny_backbone, tiny_model, tiny_tokenizer

__all__ = ["TINY_CATALOG", "make_tiny", "tiny_backbone", "tiny_model", "tiny_tokenizer"]
