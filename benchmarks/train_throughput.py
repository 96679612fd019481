"""Training samples/s: our stage-1 and stage-2 steps vs the plain HF + peft LoRA loop, same rows, same run.

Plain (CoLLM-style): causal LM + LoRA (q_proj, v_proj, r=8), full-vocabulary logits at every position,
cross-entropy on the answer token only, random batches padded to their longest row, fp32 weights
(+ bf16 autocast where bf16 is native: GPU, AMX CPU), torch AdamW. Ours: CCFLLMForCTR, Yes/No rows of the
head on the last hidden state only, length-grouped batches, frozen base in bf16 where native (else fp32),
eager attention on a CPU (``preferred_attention``; plain keeps HF's SDPA), fused AdamW.

Variants run interleaved, one step each per round, so load from other processes hits all alike.
``ratio`` is the two-stage ratio: (stage-1 time + stage-2 time) of plain / of ours for equal rows, plain running
text prompts throughout; ``stage2_vs_plain_on_hybrid_prompts`` sets stage 2 against plain on prompts as long as
stage 2's (CoLLM's stage 2 reads hybrid prompts too), so that stage 2's longer prompts do not count against it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from benchmarks import common

set_trainable = common.import_stages().set_trainable

TARGET = {"cuda": 3.0, "cpu": 1.5}


def ours_step(model: torch.nn.Module, stage: str, amp: bool) -> Callable[[dict], torch.Tensor]:
    """One optimizer step of ``stage`` (set_trainable is cheap, so stages can share one model)."""
    inner = getattr(model, "_orig_mod", model)  # a torch.compile'd model's own module
    set_trainable(inner, stage)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    return training_step(model, optimizer, amp, before=lambda: set_trainable(inner, stage))


def plain_step(model: torch.nn.Module, amp: bool) -> Callable[[dict], torch.Tensor]:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    return training_step(model, optimizer, amp)


def training_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    amp: bool,
    before: Callable[[], object] = lambda: None,
) -> Callable[[dict], torch.Tensor]:
    """One optimizer step on a batch, returning its loss; ``before`` runs first (ours re-selects its stage)."""

    def step(batch: dict) -> torch.Tensor:
        before()
        with common.autocast(amp):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def main(argv: list[str] | None = None) -> dict:
    args = common.parser(__doc__.splitlines()[0])
    args.add_argument("--batch-size", type=int, help="default: 8 on CPU, 64 (smollm2) / 16 (llama7b) on GPU")
    args.add_argument("--steps", type=int, help="timed steps per variant (default: 6 on CPU, 10 on GPU)")
    args.add_argument(
        "--warmup", type=int, default=1, help="untimed CPU steps (GPU: one pass over all batches)"
    )
    args.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing (default for llama7b)")
    args.add_argument("--levers", action="store_true", help="also time each speed-up on its own (stage 1)")
    args.add_argument(
        "--compile",
        action="store_true",
        help="add a torch.compile lever (give it --warmup 3: it compiles then)",
    )
    args.add_argument("--big-batch", type=int, default=4, help="batch multiple of the larger-batch lever")
    args = args.parse_args(argv)
    cuda = common.device().type == "cuda"
    batch_size = args.batch_size or (
        2 if args.tiny else (64 if args.backbone == "smollm2" else 16) if cuda else 8
    )
    steps = args.steps or (2 if args.tiny else 10 if cuda else 6)
    grad_ckpt = args.grad_ckpt or (args.backbone == "llama7b" and not args.tiny)

    tokenizer = common.load_tokenizer(args)
    data = common.load_data(args.tiny, "train")
    pool = common.sample_rows(data, 50 * batch_size, args.seed)
    bf16 = common.native_bf16()
    base_dtype = torch.bfloat16 if bf16 else torch.float32
    backbone = common.make_backbone(args, tokenizer, base_dtype)
    vocab = backbone.config.vocab_size
    ours, processor = common.build_ours(backbone, tokenizer, data, base_dtype)
    attention = common.preferred_attention()
    sdpa32 = sdpa_base = ours
    if args.levers:  # the levers before the attention kernel run HF's default (SDPA), as plain does
        sdpa32 = common.build_ours(backbone, tokenizer, data, torch.float32, "sdpa")[0]
        if bf16 and attention != "sdpa":
            sdpa_base = common.build_ours(backbone, tokenizer, data, base_dtype, "sdpa")[0]
    plain_model = common.make_plain(backbone)  # the backbone itself, now fp32 with LoRA
    for model in {id(m): m for m in (ours, sdpa32, sdpa_base, plain_model)}.values():
        if grad_ckpt:
            common.enable_checkpointing(model)
        model.train()

    text = processor.with_settings(hybrid=False)
    rows = common.timed_rows(processor, pool, batch_size, steps)
    grouped_text = common.ours_batches(text, rows, batch_size, vocab, seed=args.seed)
    hybrid = common.ours_batches(processor, rows, batch_size, vocab, seed=args.seed)
    plain_rows = common.plain_batches(processor, rows, batch_size, vocab, True, args.seed)
    plain_hybrid_rows = common.plain_batches(processor, rows, batch_size, vocab, True, args.seed, hybrid=True)
    variants: common.Variants = {
        "plain": (plain_step(plain_model, bf16), plain_rows),
        "plain_hybrid": (plain_step(plain_model, bf16), plain_hybrid_rows),
        "stage1": (ours_step(ours, "text", bf16), grouped_text),
        "stage2": (ours_step(ours, "fusion", bf16), hybrid),
    }
    levers: list[tuple[str, str]] = []  # (label, variant), cumulative: each adds one speed-up
    if args.levers:
        random_text = common.ours_batches(text, rows, batch_size, vocab, grouped=False, seed=args.seed)
        variants["head"] = (ours_step(sdpa32, "text", bf16), random_text)
        variants["grouped"] = (ours_step(sdpa32, "text", bf16), grouped_text)
        levers += [("head only", "head"), ("+ length grouping", "grouped")]
        if bf16 and sdpa_base is ours:
            levers.append(("+ bf16 base weights (= stage1)", "stage1"))
        elif bf16:
            variants["bf16_base"] = (ours_step(sdpa_base, "text", True), grouped_text)
            levers.append(("+ bf16 base weights", "bf16_base"))
        else:  # shows what bf16 costs where it is emulated (not kept)
            variants["bf16_autocast"] = (ours_step(sdpa32, "text", True), grouped_text)
            levers.append(("+ bf16 autocast (emulated, not kept)", "bf16_autocast"))
        if attention != "sdpa":
            levers.append((f"+ {attention} attention (= stage1)", "stage1"))
        big_rows = common.timed_rows(processor, pool, batch_size * args.big_batch, steps)  # its own rows
        big = common.ours_batches(text, big_rows, batch_size * args.big_batch, vocab, seed=args.seed)
        variants["big_batch"] = (ours_step(ours, "text", bf16), big)
        levers.append((f"+ batch x{args.big_batch}", "big_batch"))
    if args.compile:  # stage 1's step compiled (inductor; a C++ compiler on CPU), on stage 1's batches
        compiled = torch.compile(copy.deepcopy(ours), dynamic=True)
        variants["compiled"] = (ours_step(compiled, "text", bf16), grouped_text)
        levers.append(("+ torch.compile", "compiled"))

    warmup = common.warmup_rounds(steps, args.warmup)
    timings = common.interleave(variants, warmup, steps)
    speed = {name: timing.samples_per_s for name, timing in timings.items()}
    two_stage = 2 / (1 / speed["stage1"] + 1 / speed["stage2"])
    return common.write_result(
        "train_throughput",
        args,
        {
            "ratio": round(two_stage / speed["plain"], 3),
            "target": f">= {TARGET['cuda' if cuda else 'cpu']}x plain (two-stage samples/s)",
            "ratios": {stage: round(speed[stage] / speed["plain"], 3) for stage in ("stage1", "stage2")},
            # Stage 2 against the plain loop on prompts as long as its own (the headline uses text prompts).
            "stage2_vs_plain_on_hybrid_prompts": round(speed["stage2"] / speed["plain_hybrid"], 3),
            "levers": [
                {"name": label, "ratio": round(speed[name] / speed["plain"], 3)} for label, name in levers
            ],
            **common.timing_report(timings, "loss"),
            "last_loss": {name: round(t.last, 4) for name, t in timings.items()},
            "tokens": {name: common.token_stats(batches) for name, (_, batches) in variants.items()},
            "settings": {
                "batch_size": batch_size,
                "steps": steps,
                "warmup_rounds": warmup,
                "gradient_checkpointing": grad_ckpt,
                "pool_rows": len(pool),
                "data": data.source,
                "plain": "fp32 weights" + (" + bf16 autocast" if bf16 else "") + ", torch AdamW",
                "ours": ("bf16 base + fp32 LoRA/fusion, bf16 autocast" if bf16 else "fp32")
                + f", {attention} attention, fused AdamW",
                "threads": torch.get_num_threads(),
            },
        },
    )


if __name__ == "__main__":
    main()
