"""Which parameters each training stage tunes (docs/design.md "Two stages")."""

from __future__ import annotations

from modeling_ccf import CCFLLMForCTR

STAGES = ("text", "fusion", "joint")
EXTRAS = ("lora", "cf")  # "+lora" / "+cf" after a stage name tune those too


def stage_name(base: str, lora: bool = False, cf: bool = False) -> str:
    """``stage_name("fusion", cf=True)`` -> ``"fusion+cf"``."""
    return "+".join([base, *(["lora"] if lora else []), *(["cf"] if cf else [])])


def set_trainable(model: CCFLLMForCTR, stage: str) -> list[str]:
    """Freeze everything, then unfreeze what ``stage`` tunes; returns the trainable parameter names.

    - ``text``        stage 1: LoRA on text-only prompts
    - ``fusion``      stage 2: ALG + GATE on hybrid prompts, LoRA and CF tables frozen
    - ``joint``       one stage tuning LoRA and ALG/GATE together (ablation)
    - ``+lora``       also LoRA (``fusion+lora``: stage 2 that tunes LoRA too)
    - ``+cf``         also the user and item CF tables (CoLLM's tuned variants, GraphLoRA)
    """
    base, *extras = stage.split("+")
    if base not in STAGES or set(extras) - set(EXTRAS) or len(set(extras)) != len(extras):
        raise ValueError(
            f"Unknown stage {stage!r}; expected one of {', '.join(STAGES)}, optionally with "
            f"{' / '.join('+' + extra for extra in EXTRAS)}"
        )
    tune_lora = base in ("text", "joint") or "lora" in extras
    tune_fusion = base != "text"
    tune_cf = "cf" in extras
    if tune_fusion and model.fusion is None:
        raise ValueError(f"stage {stage!r} tunes ALG/GATE, but fusion={model.config.fusion!r} has none")
    cf_tables = ("user_cf.weight", "item_cf.weight")
    names = []
    for name, parameter in model.named_parameters():
        trainable = (
            (tune_lora and "lora_" in name)
            or (tune_fusion and name.startswith("fusion."))
            or (tune_cf and name in cf_tables)
        )
        parameter.requires_grad_(trainable)
        if trainable:
            names.append(name)
    if not names:
        raise ValueError(
            f"stage {stage!r} leaves nothing to train (is LoRA configured? lora_r={model.config.lora_r})"
        )
    return names
