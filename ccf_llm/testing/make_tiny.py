"""``python -m ccf_llm.testing.make_tiny DIR``: a tiny random CCF-LLM folder in the published format.

Everything is built offline: a byte-level BPE tokenizer trained on the prompt wording and the catalog,
and a random backbone of the requested architecture built from a config. The folder is written by
``publishing.save_model_folder``, the function that writes published folders, so it holds the same files
(remote code with pipeline and handler, processor files, card, ``custom_pipelines``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import CONFIG_MAPPING, AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerFast

from ..build import build_model
from ..publishing import model_card, save_model_folder

TINY_CATALOG = {
    1: "Toy Story (1995)",
    2: "Heat (1995)",
    3: "Fargo (1996)",
    4: "The Matrix (1999)",
    5: "Babe (1995)",
    6: "Alien (1979)",
    7: "Jumanji (1995)",
    8: "Casablanca (1942)",
}
PROMPT_TEXT = (
    "A user has given high ratings to the following movies: none. Additionally, we have information about the "
    "user's preferences encoded in the feature. Using all available information, make a prediction about "
    'whether the user would enjoy the movie titled "x" with the feature? Answer with "Yes" or "No".\nAnswer: Yes No'
)
TINY_SIZES = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}


def tiny_tokenizer(catalog: dict[int, str] = TINY_CATALOG, vocab_size: int = 400) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([PROMPT_TEXT, *catalog.values()], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>")


def tiny_backbone(model_type: str = "llama", vocab_size: int = 400, seed: int = 0) -> PreTrainedModel:
    """A random causal LM of ``model_type`` (llama, qwen2, mistral, gpt2) small enough for unit tests."""
    sizes = dict(TINY_SIZES, num_key_value_heads=2, vocab_size=vocab_size, max_position_embeddings=512)
    if model_type == "gpt2":
        sizes = {
            "n_embd": 32,
            "n_layer": 2,
            "n_head": 4,
            "n_positions": 512,
            "vocab_size": vocab_size,
            "bos_token_id": 1,
            "eos_token_id": 1,
        }
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(CONFIG_MAPPING[model_type](**sizes))


def tiny_model(model_type: str = "llama", fusion: str = "gate", cf_dim: int = 8, seed: int = 0, **kwargs):
    """A tiny (model, processor) pair with random CF tables for users 1..4 and the items of the catalog."""
    tokenizer = tiny_tokenizer()
    backbone = tiny_backbone(model_type, vocab_size=len(tokenizer), seed=seed)
    generator = torch.Generator().manual_seed(seed)
    users = torch.randn(5, cf_dim, generator=generator)
    items = torch.randn(len(TINY_CATALOG) + 1, cf_dim, generator=generator)
    processor_kwargs = kwargs.pop("processor_kwargs", {"max_length": 160})
    torch.manual_seed(seed)
    return build_model(
        backbone,
        tokenizer,
        TINY_CATALOG,
        users,
        items,
        processor_kwargs=processor_kwargs,
        fusion=fusion,
        **kwargs,
    )


def make_tiny(out_dir: str | Path, model_type: str = "llama", fusion: str = "gate") -> Path:
    model, processor = tiny_model(model_type, fusion)
    out = Path(out_dir)
    row = {"method": "CCF-LLM (tiny random)", "backbone": f"tiny random {model_type}", "fusion": fusion,
           "cf": "random", "train_rows": 0}  # fmt: skip
    card = model_card(
        row, None, processor.catalog, model.config, name=out.name, model_ref=out.name, dataset="tiny"
    )
    return save_model_folder(model, processor, out, card)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--model-type", default="llama", choices=["llama", "qwen2", "mistral", "gpt2"])
    parser.add_argument("--fusion", default="gate")
    args = parser.parse_args()
    print(make_tiny(args.out_dir, args.model_type, args.fusion))


if __name__ == "__main__":
    main()
