"""Scoring samples/s: how we evaluate a split vs the plain full-vocabulary forward, same rows, same run.

Rows: every row of randomly drawn test users (a split in miniature). Plain: the HF causal LM + LoRA, full
logits at every position, random-order batches padded to their longest row, fp32 weights (+ bf16 autocast
where bf16 is native: GPU, AMX CPU). Ours (``ratio``): CCFLLMForCTR's ``score_shared_prefixes`` on batches in
evaluation order (rows of one prefix together, short to long), each distinct prefix computed once; bf16
weights where native (else fp32), the scoring kernel of ``preferred_attention`` (SDPA, as plain).
Levers apart: ``forward`` (the Yes/No head on the last position, length-sorted batches, every prompt in
full), ``attention_lever`` (ours over ours with training's kernel, eager on a CPU, where they differ).
``matmul_ceiling``: plain's Linear-layer multiply-adds per row (padded tokens x decoder + vocabulary head)
over ours (real tokens, each prefix once, x decoder), the ratio a device bound by those matmuls alone would
show. On text prompts (like for like) and hybrid prompts (what stage 2 scores; longer): ``hybrid_ratio`` against
plain on text prompts, ``hybrid_vs_plain_on_hybrid_prompts`` against plain on the hybrid prompts' tokens. No
gradients on either side; variants run interleaved. ``--int8`` (CPU) adds a candidate lever: ours with LoRA
merged and every decoder Linear layer in dynamic int8 (``torch.ao``, per-channel weights, per-tensor
activations), its speed over ours and how far its scores move.
"""

from __future__ import annotations

import copy
import warnings

import torch
from peft.tuners.lora import LoraLayer

from benchmarks import common
from processing_ccf import CCFLLMProcessor

TARGET = 3.0


def int8_copy(model: torch.nn.Module) -> torch.nn.Module:
    """An fp32 copy with LoRA merged into its base layers (dynamic quantization cannot wrap peft's layers) and
    every decoder Linear layer in dynamic int8; the Yes/No head and the fusion stay fp32. The int8 kernels take
    fp32 activations only, so the copy is fp32 whatever the model's dtype and runs outside autocast."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    quantized = copy.deepcopy(model).float()
    for name, module in list(quantized.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent, child = name.rsplit(".", 1)
            setattr(quantized.get_submodule(parent), child, module.get_base_layer())
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        for layer in quantized.backbone.model.layers:
            quantize_dynamic(layer, {torch.nn.Linear: per_channel_dynamic_qconfig}, inplace=True)
    return quantized


def main(argv: list[str] | None = None) -> dict:
    args = common.parser(__doc__.splitlines()[0])
    args.add_argument(
        "--batch-size", type=int, help="default: 16 on CPU, 128 (smollm2) / 32 (llama7b) on GPU"
    )
    args.add_argument("--steps", type=int, help="timed batches per variant (default: 10)")
    args.add_argument(
        "--warmup", type=int, default=1, help="untimed CPU batches (GPU: one pass over all batches)"
    )
    args.add_argument("--int8", action="store_true", help="CPU: add the dynamic int8 lever")
    args = args.parse_args(argv)
    cuda = common.device().type == "cuda"
    batch_size = args.batch_size or (
        2 if args.tiny else (128 if args.backbone == "smollm2" else 32) if cuda else 16
    )
    steps = args.steps or (2 if args.tiny else 10)

    tokenizer = common.load_tokenizer(args)
    data = common.load_data(args.tiny, "test")
    rows = common.sample_users(data, steps * batch_size, args.seed)  # every variant scores each row once
    bf16 = common.native_bf16()
    dtype = torch.bfloat16 if bf16 else torch.float32
    backbone = common.make_backbone(args, tokenizer, dtype)
    vocab = backbone.config.vocab_size
    attention, training_attention = common.preferred_attention(training=False), common.preferred_attention()
    ours, processor = common.build_ours(backbone, tokenizer, data, dtype, attention)
    ours.to(dtype).eval()
    plain = common.make_plain(backbone).eval()
    yes, no = processor.yes_token_id, processor.no_token_id

    def unlabelled(batches: list[dict]) -> list[dict]:
        return [{key: value for key, value in batch.items() if key != "labels"} for batch in batches]

    text = processor.with_settings(hybrid=False)
    shared_order = CCFLLMProcessor.evaluation_sort_key
    variants: common.Variants = {
        name: (
            lambda batch: common.plain_scores(plain, batch, yes, no),
            common.plain_batches(processor, rows, batch_size, vocab, False, args.seed, hybrid=hybrid),
        )
        for name, hybrid in (("plain", False), ("plain_hybrid", True))
    }
    for name, prompts in (("text", text), ("hybrid", processor)):
        variants[f"{name}_forward"] = (
            lambda batch: ours(**batch).logits,
            unlabelled(common.ours_batches(prompts, rows, batch_size, vocab)),
        )
        variants[name] = (
            lambda batch: ours.score_shared_prefixes(**batch),
            unlabelled(common.ours_batches(prompts, rows, batch_size, vocab, sort_key=shared_order)),
        )
    if training_attention != attention:  # the attention lever on its own
        other = common.build_ours(backbone, tokenizer, data, dtype, training_attention)[0].to(dtype).eval()
        variants[f"text_{training_attention}"] = (
            lambda batch: other.score_shared_prefixes(**batch),
            variants["text"][1],
        )
    int8 = args.int8 and not cuda
    if int8:
        quantized = int8_copy(ours).eval()

        def score_int8(batch: dict) -> torch.Tensor:
            with torch.autocast("cpu", enabled=False):
                return quantized.score_shared_prefixes(**batch)

        variants["text_int8"] = (score_int8, variants["text"][1])
    warmup = common.warmup_rounds(steps, args.warmup)
    with torch.inference_mode(), common.autocast(bf16):
        timings = common.interleave(variants, warmup, steps)
        if int8:  # probabilities on every timed row, ours against its int8 copy
            moved = torch.cat(
                [
                    (
                        torch.sigmoid(score_int8(b)) - torch.sigmoid(ours.score_shared_prefixes(**b).float())
                    ).abs()
                    for b in variants["text"][1]
                ]
            )
    speed = {name: timing.samples_per_s for name, timing in timings.items()}
    tokens = {name: common.token_stats(batches) for name, (_, batches) in variants.items()}
    sharing = common.prefix_sharing(common.encode_rows(text, rows))
    decoder, head = common.linear_macs_per_token(plain)
    plain_macs = tokens["plain"]["padded_tokens_per_row"] * (decoder + head)
    ours_macs = tokens["text"]["real_tokens_per_row"] / sharing["token_ratio"] * decoder
    return common.write_result(
        "eval_throughput",
        args,
        {
            "ratio": round(speed["text"] / speed["plain"], 3),
            "target": f">= {TARGET}x plain",
            "hybrid_ratio": round(speed["hybrid"] / speed["plain"], 3),
            "hybrid_vs_plain_on_hybrid_prompts": round(speed["hybrid"] / speed["plain_hybrid"], 3),
            "forward_ratio": round(speed["text_forward"] / speed["plain"], 3),
            "hybrid_forward_ratio": round(speed["hybrid_forward"] / speed["plain"], 3),
            "attention_lever": (
                round(speed["text"] / speed[f"text_{training_attention}"], 3)
                if training_attention != attention
                else None
            ),
            "matmul_ceiling": round(plain_macs / ours_macs, 2),
            **(
                {
                    "int8_lever": round(speed["text_int8"] / speed["text"], 3),
                    "int8_probability_change": {
                        "max": round(float(moved.max()), 4),
                        "mean": round(float(moved.mean()), 4),
                    },
                }
                if int8
                else {}
            ),
            "prefix_sharing": {
                "rows": sharing,
                "whole_split": common.prefix_sharing(common.encode_rows(text, data.rows)),
            },
            **common.timing_report(timings, "score"),
            "tokens": tokens,
            "settings": {
                "batch_size": batch_size,
                "steps": steps,
                "warmup_rounds": warmup,
                "data": data.source,
                "plain": "fp32 weights" + (" + bf16 autocast" if bf16 else ""),
                "ours": ("bf16 weights" if bf16 else "fp32") + f", {attention} attention",
                "threads": torch.get_num_threads(),
            },
        },
    )


if __name__ == "__main__":
    main()
