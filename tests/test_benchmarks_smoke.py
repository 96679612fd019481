"""Every benchmark runs end to end on a tiny random backbone (``--tiny``) and reports a positive ratio.

The scripts run in this process (their ``main(argv)``), so torch/transformers/peft are imported once.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import pytest
import torch
from peft.tuners.lora import LoraLayer

from benchmarks import (
    common,
    eval_throughput,
    memory,
    pipeline_throughput,
    ranking,
    recommend,
    train_throughput,
)


@pytest.mark.parametrize(
    ("module", "extra"),
    [
        (train_throughput, ["--levers"]),
        (eval_throughput, ["--int8"]),
        (ranking, ["--candidates", "8"]),
        (pipeline_throughput, ["--batch-size", "3"]),
        (recommend, ["--candidates", "6", "--top-k", "3"]),
    ],
    ids=["train_throughput", "eval_throughput", "ranking", "pipeline_throughput", "recommend"],
)
def test_benchmark_tiny(module, extra: list[str], tmp_path: Path, capsys) -> None:
    record = module.main(["--tiny", "--out", str(tmp_path), *extra])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["ratio"] == record["ratio"] > 0
    written = json.loads(next(tmp_path.glob(f"{record['name']}_tiny_*.json")).read_text())
    assert written["ratio"] > 0 and written["versions"]["torch"] == torch.__version__
    if module in (ranking, pipeline_throughput, recommend):
        assert record["scores_equal"], record["max_abs_score_difference"]
    if module is recommend:  # --top-k 3 of the retrieved candidates
        assert len(record["recommended"]) == 3 <= record["settings"]["candidates"]
    if module is eval_throughput:
        assert record["matmul_ceiling"] > 1 and record["hybrid_vs_plain_on_hybrid_prompts"] > 0
        if not torch.cuda.is_available():  # --int8 is a CPU lever
            assert record["int8_lever"] > 0 and record["int8_probability_change"]["max"] < 0.01
    if module is train_throughput:  # stage 2 against plain on its own prompt lengths too
        assert record["stage2_vs_plain_on_hybrid_prompts"] > 0
        assert (
            record["tokens"]["plain_hybrid"]["real_tokens_per_row"]
            > record["tokens"]["plain"]["real_tokens_per_row"]
        )


def test_memory_tiny(tmp_path: Path, capsys) -> None:
    record = memory.main(["--tiny", "--out", str(tmp_path)])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == record
    if torch.cuda.is_available():
        assert record["ratio"] > 0 and record["peak_gib"]["ours_stage1"] > 0
    else:
        assert record["skipped"] == "no GPU"


def test_linear_macs_count_each_decoder_matmul_once_and_the_head_apart() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, kv_width, mlp, layers, vocab = 16, 8, 32, 2, 100
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=mlp,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    per_layer = 2 * hidden * hidden + 2 * hidden * kv_width + 3 * hidden * mlp  # q, o; k, v; gate, up, down
    lora = 8 * (hidden + hidden) + 8 * (hidden + kv_width)  # make_plain: r=8 on q_proj and v_proj
    model = LlamaForCausalLM(config)
    assert common.linear_macs_per_token(model) == (layers * per_layer, vocab * hidden)
    assert common.linear_macs_per_token(common.make_plain(model)) == (
        layers * (per_layer + lora),
        vocab * hidden,
    )


def test_int8_copy_scores_like_the_model_with_its_lora_merged() -> None:
    args = common.parser("int8").parse_args(["--tiny"])
    tokenizer = common.load_tokenizer(args)
    data = common.load_data(True, "test")
    ours, processor = common.build_ours(common.make_backbone(args, tokenizer), tokenizer, data, torch.float32)
    torch.manual_seed(0)
    untrained = copy.deepcopy(ours).eval()
    for name, parameter in ours.named_parameters():
        if "lora_B" in name:  # a trained adapter, so that merging it matters
            parameter.data.normal_(std=0.5)
    ours.eval()
    rows = common.sample_users(data, 8, args.seed)
    batch = common.ours_batches(processor.with_settings(hybrid=False), rows, 8, len(tokenizer))[0]
    batch = {key: value for key, value in batch.items() if key != "labels"}
    quantized = eval_throughput.int8_copy(ours)
    assert not any(isinstance(module, LoraLayer) for module in quantized.modules())
    with torch.inference_mode():
        reference = ours.score_shared_prefixes(**batch)
        lora_effect = (reference - untrained.score_shared_prefixes(**batch)).abs().max()
        quantization_error = (quantized.score_shared_prefixes(**batch) - reference).abs().max()
    assert quantization_error < lora_effect / 10, (quantization_error, lora_effect)


def test_enable_checkpointing_uses_the_name_that_does_not_warn() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4
    )
    plain = common.make_plain(LlamaForCausalLM(config))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # 5.25's gradient_checkpointing_enable warns
        common.enable_checkpointing(plain)
    assert all(layer.gradient_checkpointing for layer in plain.get_base_model().model.layers)
