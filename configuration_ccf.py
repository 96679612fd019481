"""Configuration of CCF-LLM (Hub remote code: imports only transformers).

The backbone's own config is nested as ``text_config`` (LLaVA style), so any causal LM works.
Every variant of the paper and its baselines is a value of ``fusion``:

- ``gate``        CCF-LLM: dimension-wise attentive gate between text and CF vectors
- ``scalar_gate`` one gate value per placeholder instead of one per dimension
- ``add``         text vector + mapped CF vector
- ``concat``      an MLP over the concatenation
- ``cf_only``     CoLLM: the mapped CF vector alone
- ``text_only``   TALLRec: no placeholders at all
"""

from __future__ import annotations

import contextlib
from typing import ClassVar

from transformers import CONFIG_MAPPING, AutoConfig, PretrainedConfig

FUSIONS = ("gate", "scalar_gate", "add", "concat", "cf_only", "text_only")
SCORE_TYPES = ("yes_minus_no", "yes")


class CCFLLMConfig(PretrainedConfig):
    r"""
    Args:
        text_config: config (or dict) of the causal-LM backbone.
        num_users / num_items: rows of the CF tables (row 0 is padding, as in CoLLM's ids).
        cf_dim: width of the CF embeddings.
        fusion: one of :data:`FUSIONS`.
        alg_expansion: hidden width of ALG as a multiple of ``cf_dim`` (CoLLM's CIE uses 10).
        score_type: ``yes_minus_no`` (logit of "Yes" minus logit of "No") or ``yes`` (CoLLM's raw logit).
        lora_r / lora_alpha / lora_dropout / lora_target_modules: LoRA on the backbone; ``lora_r=0``
            means no adapter (and no peft import). ``lora_target_modules=None``: peft's default for the
            backbone's architecture (``q_proj``, ``v_proj`` for Llama, ``c_attn`` for GPT-2).
        user_token_id / item_token_id: ids of the ``<user>`` / ``<item>`` placeholders (added to the
            tokenizer, never looked up in the embedding table).
        yes_token_id / no_token_id: the answer tokens that the score reads.
    """

    model_type = "ccf_llm"
    sub_configs: ClassVar[dict] = {"text_config": AutoConfig}

    def __init__(
        self,
        text_config: dict | PretrainedConfig | None = None,
        num_users: int = 1,
        num_items: int = 1,
        cf_dim: int = 64,
        fusion: str = "gate",
        alg_expansion: int = 10,
        score_type: str = "yes_minus_no",
        lora_r: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.05,
        lora_target_modules: list[str] | None = None,
        user_token_id: int | None = None,
        item_token_id: int | None = None,
        yes_token_id: int | None = None,
        no_token_id: int | None = None,
        **kwargs,
    ):
        if fusion not in FUSIONS:
            raise ValueError(f"Unknown fusion {fusion!r}; expected one of {', '.join(FUSIONS)}")
        if score_type not in SCORE_TYPES:
            raise ValueError(f"Unknown score_type {score_type!r}; expected one of {', '.join(SCORE_TYPES)}")
        if isinstance(text_config, dict):
            text_config = CONFIG_MAPPING[text_config.get("model_type", "llama")](**text_config)
        elif text_config is None:
            text_config = CONFIG_MAPPING["llama"]()
        self.text_config = text_config
        self.num_users = num_users
        self.num_items = num_items
        self.cf_dim = cf_dim
        self.fusion = fusion
        self.alg_expansion = alg_expansion
        self.score_type = score_type
        self.lora_r = lora_r
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.lora_target_modules = list(lora_target_modules) if lora_target_modules is not None else None
        self.user_token_id = user_token_id
        self.item_token_id = item_token_id
        self.yes_token_id = yes_token_id
        self.no_token_id = no_token_id
        super().__init__(**kwargs)

    @property
    def uses_placeholders(self) -> bool:
        return self.fusion != "text_only"


CCFLLMConfig.register_for_auto_class()
with contextlib.suppress(ValueError):  # already registered (imported both as remote code and locally)
    AutoConfig.register(CCFLLMConfig.model_type, CCFLLMConfig)
