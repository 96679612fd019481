"""Which parameters each training stage tunes (DESIGN.md "Two stages")."""

from __future__ import annotations

from modeling_ccf import CCFLLMForCTR

STAGES = ("text", "fusion", "fusion+lora", "joint")


def set_trainable(model: CCFLLMForCTR, stage: str) -> list[str]:
    """Freeze everything, then unfreeze what ``stage`` tunes; returns the trainable parameter names.

    - ``text``        stage 1: LoRA on text-only prompts
    - ``fusion``      stage 2: ALG + GATE on hybrid prompts, LoRA and CF tables frozen
    - ``fusion+lora`` stage 2 that also tunes LoRA (ablation)
    - ``joint``       one stage tuning LoRA and ALG/GATE together (ablation)
    """
    if stage not in STAGES:
        raise ValueError(f"Unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    tune_lora = stage in ("text", "fusion+lora", "joint")
    tune_fusion = stage != "text"
    if tune_fusion and model.fusion is None:
        raise ValueError(f"stage {stage!r} tunes ALG/GATE, but fusion={model.config.fusion!r} has none")
    names = []
    for name, parameter in model.named_parameters():
        trainable = (tune_lora and "lora_" in name) or (tune_fusion and name.startswith("fusion."))
        parameter.requires_grad_(trainable)
        if trainable:
            names.append(name)
    if not names:
        raise ValueError(
            f"stage {stage!r} leaves nothing to train (is LoRA configured? lora_r={model.config.lora_r})"
        )
    return names
