"""CCF-LLM model: Hub remote-code round trip, fusion variants, gradient flow, placeholders, batching."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import CONFIG_MAPPING, AutoModelForCausalLM
from transformers.dynamic_module_utils import get_imports

from ccf_llm.build import build_model
from ccf_llm.testing.make_tiny import TINY_CATALOG, TINY_SIZES, tiny_backbone, tiny_model, tiny_tokenizer
from ccf_llm.training.stages import set_trainable
from configuration_ccf import FUSIONS, SCORE_TYPES, CCFLLMConfig
from modeling_ccf import CCFLLMForCTR
from processing_ccf import CCFLLMProcessor

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest

ARCHS = ("llama", "qwen2", "mistral", "gpt2")
UNKNOWN_TITLE = "A Film Not In The Catalog (2001)"
# (history, candidate, user id): different lengths, an empty history, unknown titles and an unknown user
PROMPTS: list[tuple[list, int | str, int]] = [
    ([1, 2, 3], 4, 1),
    ([5], 6, 2),
    ([], 7, 3),
    ([8, 1, UNKNOWN_TITLE, 3, 4, 5], UNKNOWN_TITLE, 0),
]
LABELS = [1.0, 0.0, 1.0, 0.0]


def make_batch(processor: CCFLLMProcessor, prompts=PROMPTS, labels: list[float] | None = None):
    return processor(
        [h for h, _, _ in prompts], [c for _, c, _ in prompts], [u for _, _, u in prompts], labels
    )


def scores(model: CCFLLMForCTR, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def randomize_lora(model: CCFLLMForCTR, seed: int = 1) -> None:
    """LoRA's B starts at zero (a no-op adapter); give it weights so that losing them would show."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))


# --- Hub remote code: save, then load in an interpreter that cannot see this repository -------------

REMOTE_SCRIPT = r"""
import importlib.abc, json, sys

BLOCKED = {"ccf_llm", "configuration_ccf", "modeling_ccf", "processing_ccf", "pipeline_ccf"}


class BlockRepository(importlib.abc.MetaPathFinder):
    # the package is installed (editable) in this venv, which -I does not hide: hide it here
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} is hidden from this interpreter")
        return None


sys.meta_path.insert(0, BlockRepository())
importable = []
for name in sorted(BLOCKED):
    try:
        __import__(name)
        importable.append(name)
    except ImportError:
        pass

import torch
from transformers import AutoModel
from transformers.dynamic_module_utils import get_class_from_dynamic_module

prompts = json.loads(sys.argv[1])
result = {"importable": importable, "folders": {}}
for folder in sys.argv[2:]:
    processor_class = get_class_from_dynamic_module("processing_ccf.CCFLLMProcessor", folder)
    processor = processor_class.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    inputs = processor([p[0] for p in prompts], [p[1] for p in prompts], [p[2] for p in prompts])
    with torch.no_grad():
        logits = model(**inputs).logits
    result["folders"][folder] = {
        "scores": logits.tolist(),
        "dtype": str(next(model.parameters()).dtype),
        "model_module": type(model).__module__,
        "processor_module": processor_class.__module__,
    }
result["repo_modules"] = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
print("RESULT " + json.dumps(result))
"""


@pytest.fixture(scope="module")
def saved_tiny_models(tmp_path_factory) -> dict:
    """Each architecture saved as a Hub folder, its scores before saving, and one isolated reload of all."""
    root = tmp_path_factory.mktemp("hub")
    saved = {}
    for arch in ARCHS:
        model, processor = tiny_model(arch, "gate")
        randomize_lora(model)
        model.eval()
        folder = root / f"tiny_{arch}"
        saved[arch] = {"folder": folder, "scores": scores(model, make_batch(processor))}
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
    env = {
        **os.environ,
        "HF_MODULES_CACHE": str(root / "hf_modules"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    completed = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            REMOTE_SCRIPT,
            json.dumps(PROMPTS),
            *(str(s["folder"]) for s in saved.values()),
        ],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    lines = [line.partition("RESULT ")[2] for line in completed.stdout.splitlines() if "RESULT {" in line]
    assert lines, completed.stdout[-2000:] + completed.stderr[-2000:]
    return {
        "saved": saved,
        "reloaded": json.loads(lines[-1]),
        "output": completed.stdout + completed.stderr,
    }


@pytest.mark.parametrize("arch", ARCHS)
def test_remote_code_round_trip_gives_the_same_scores(saved_tiny_models: dict, arch: str) -> None:
    reloaded = saved_tiny_models["reloaded"]
    assert reloaded["importable"] == [] and reloaded["repo_modules"] == []  # really isolated
    saved = saved_tiny_models["saved"][arch]
    result = reloaded["folders"][str(saved["folder"])]
    assert result["model_module"].startswith("transformers_modules.")
    assert result["model_module"].endswith(".modeling_ccf")
    assert result["processor_module"].startswith("transformers_modules.")
    assert result["dtype"] == "torch.float32"
    torch.testing.assert_close(torch.tensor(result["scores"]), saved["scores"], atol=1e-5, rtol=0)
    assert "Do you wish to run the custom code" not in saved_tiny_models["output"]  # no interactive prompt


@pytest.mark.parametrize("arch", ARCHS)
def test_saved_folder_holds_safetensors_only(saved_tiny_models: dict, arch: str) -> None:
    folder: Path = saved_tiny_models["saved"][arch]["folder"]
    names = {path.name for path in folder.iterdir()}
    pickles = {name for name in names if name.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"))}
    assert pickles == set()
    assert "model.safetensors" in names
    assert {"config.json", "configuration_ccf.py", "modeling_ccf.py", "processing_ccf.py"} <= names
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_ccf.CCFLLMConfig",
        "AutoModel": "modeling_ccf.CCFLLMForCTR",
    }
    assert config["text_config"]["model_type"] == arch


# --- every fusion variant ----------------------------------------------------------------------


@pytest.mark.parametrize("fusion", FUSIONS)
def test_fusion_variant_forward_and_backward(fusion: str) -> None:
    model, processor = tiny_model("llama", fusion)
    if fusion == "text_only":
        processor = processor.with_settings(hybrid=False)
    inputs = make_batch(processor, labels=LABELS)
    placeholders = (inputs["input_ids"] == processor.item_token_id) | (
        inputs["input_ids"] == processor.user_token_id
    )
    assert placeholders.any() == (fusion != "text_only")
    output = model(**inputs, output_gates=True)
    assert output.logits.shape == (len(PROMPTS),)
    assert torch.isfinite(output.loss)
    if fusion in ("gate", "scalar_gate"):
        width = model.config.text_config.hidden_size if fusion == "gate" else 1
        assert output.item_gates.shape[-1] == width and output.user_gates.shape[-1] == width
        assert ((output.item_gates > 0) & (output.item_gates < 1)).all()
    output.loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert grads["user_cf.weight"] is None and grads["item_cf.weight"] is None
    fusion_grads = {name: grad for name, grad in grads.items() if name.startswith("fusion.")}
    assert (len(fusion_grads) > 0) == (fusion != "text_only")
    for name, grad in fusion_grads.items():
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    lora_b = [grad for name, grad in grads.items() if "lora_B" in name]
    assert lora_b and all(grad is not None and grad.abs().sum() > 0 for grad in lora_b)


def test_text_only_model_takes_hybrid_prompts_without_error() -> None:
    model, processor = tiny_model("llama", "text_only")
    inputs = make_batch(processor)  # placeholders present, nothing to fuse them with
    assert (inputs["input_ids"] == processor.item_token_id).any()
    assert torch.isfinite(scores(model, inputs)).all()


# --- which parameters each stage trains --------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("stage", ["text", "fusion", "fusion+lora", "joint"])
def test_stage_gradient_flow(arch: str, stage: str) -> None:
    model, processor = tiny_model(arch, "gate")
    trainable = set(set_trainable(model, stage))
    tunes_lora, tunes_fusion = stage != "fusion", stage != "text"
    inputs = make_batch(processor, labels=LABELS)  # hybrid: the fusion is used even when frozen
    model(**inputs).loss.backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    assert with_grad == trainable
    for name in with_grad:
        assert (tunes_lora and "lora_" in name) or (tunes_fusion and name.startswith("fusion.")), name
    assert any("lora_" in name for name in with_grad) == tunes_lora
    assert any(name.startswith("fusion.alg.") for name in with_grad) == tunes_fusion
    assert any(name.startswith("fusion.gate.") for name in with_grad) == tunes_fusion
    assert model.user_cf.weight.grad is None and model.item_cf.weight.grad is None
    nonzero = [name for name in with_grad if model.get_parameter(name).grad.abs().sum() > 0]
    assert nonzero


def trainable(model: CCFLLMForCTR) -> set[str]:
    return {name for name, parameter in model.named_parameters() if parameter.requires_grad}


@pytest.mark.parametrize("lora_r", [0, 8])
def test_from_pretrained_keeps_what_init_freezes(lora_r: int, tmp_path: Path) -> None:
    """CF tables frozen, and with LoRA the backbone's base weights: loading must not make them trainable again."""
    model, _ = tiny_model("llama", "gate", lora_r=lora_r)
    built = trainable(model)
    assert not {name for name in built if "_cf." in name}
    assert {name for name in built if name.startswith("fusion.")}
    backbone = {name for name in built if name.startswith("backbone.")}
    assert backbone and all("lora_" in name for name in backbone) == (lora_r > 0)
    model.save_pretrained(tmp_path)
    assert trainable(CCFLLMForCTR.from_pretrained(tmp_path)) == built


def test_text_stage_needs_lora_and_fusion_stage_needs_a_fusion() -> None:
    model, _ = tiny_model("llama", "gate", lora_r=0)
    with pytest.raises(ValueError, match="lora_r"):
        set_trainable(model, "text")
    model, _ = tiny_model("llama", "text_only")
    with pytest.raises(ValueError, match="text_only"):
        set_trainable(model, "fusion")


# --- scoring -----------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("score_type", SCORE_TYPES)
@pytest.mark.parametrize("lora_r", [0, 8])
def test_text_only_equals_plain_prompt_scoring(arch: str, score_type: str, lora_r: int) -> None:
    """An untrained LoRA (B = 0, as PEFT initialises it) leaves the backbone's scores as they are."""
    model, processor = tiny_model(arch, "text_only", lora_r=lora_r, score_type=score_type)
    model.eval()
    processor = processor.with_settings(hybrid=False)
    backbone = tiny_backbone(arch, vocab_size=len(tiny_tokenizer()), seed=0).eval()
    inputs = processor([[1, 2]], [3], [1])
    assert inputs["attention_mask"].all()
    with torch.no_grad():
        last = backbone(input_ids=inputs["input_ids"]).logits[:, -1]
    yes, no = processor.yes_token_id, processor.no_token_id
    assert (model.config.yes_token_id, model.config.no_token_id) == (yes, no)
    expected = last[:, yes] - last[:, no] if score_type == "yes_minus_no" else last[:, yes]
    torch.testing.assert_close(scores(model, inputs), expected, atol=1e-5, rtol=0)


LOGIT_TRANSFORMS = {
    "gemma2": {"final_logit_softcapping": 5.0, "head_dim": 8},
    "cohere": {"logit_scale": 0.0625},
    "granite": {"logits_scaling": 4.0},
}


@pytest.mark.parametrize("model_type", [name for name in LOGIT_TRANSFORMS if name in CONFIG_MAPPING])
@pytest.mark.parametrize("score_type", SCORE_TYPES)
def test_score_applies_the_backbones_logit_transforms(model_type: str, score_type: str) -> None:
    """Gemma 2's soft cap, Cohere's and Granite's scales: the text-only score is the backbone's own logit(Yes)
    (- logit(No)), not the head's projection alone."""
    tokenizer = tiny_tokenizer()
    config = CONFIG_MAPPING[model_type](
        **TINY_SIZES,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        **LOGIT_TRANSFORMS[model_type],
    )
    torch.manual_seed(0)
    backbone = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # logits large enough for the soft cap to bend them
        backbone.get_output_embeddings().weight.mul_(50)
    model, processor = build_model(
        backbone,
        tokenizer,
        TINY_CATALOG,
        fusion="text_only",
        lora_r=0,
        score_type=score_type,
        processor_kwargs={"max_length": 160, "hybrid": False},
    )
    model.eval()
    inputs = processor([[1, 2]], [3], [1])
    with torch.no_grad():
        last = model.backbone(input_ids=inputs["input_ids"]).logits[:, -1]
        projected = model.backbone.base_model(input_ids=inputs["input_ids"]).last_hidden_state[:, -1]
    yes, no = processor.yes_token_id, processor.no_token_id
    expected = last[:, yes] - last[:, no] if score_type == "yes_minus_no" else last[:, yes]
    torch.testing.assert_close(scores(model, inputs), expected, atol=1e-4, rtol=1e-5)
    raw = projected @ model.backbone.get_output_embeddings().weight[[yes, no]].T
    raw_score = raw[:, 0] - raw[:, 1] if score_type == "yes_minus_no" else raw[:, 0]
    assert not torch.allclose(raw_score, expected, atol=1e-2)  # the transform matters here


def test_score_keeps_float32_resolution_under_bf16_autocast() -> None:
    """The Yes/No head runs in float32 under autocast: in bf16, logits near 15 differ in steps of 0.0625, and
    rows whose scores differ by less would tie."""
    model, _ = tiny_model("llama", "gate")
    head = model.backbone.get_output_embeddings()
    rows = [model.config.yes_token_id, model.config.no_token_id]
    torch.manual_seed(0)
    last_hidden = torch.randn(64, head.weight.shape[1]) * 40  # logits of a few tens, like SmolLM2's
    with torch.no_grad():
        expected = (last_hidden @ head.weight[rows].T) @ torch.tensor([1.0, -1.0])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_autocast = model.score(last_hidden)
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, expected, atol=1e-4, rtol=1e-5)


def test_loss_is_bce_on_the_score() -> None:
    model, processor = tiny_model("llama", "gate")
    model.eval()
    inputs = make_batch(processor, labels=LABELS)
    with torch.no_grad():
        output = model(**inputs)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(output.logits, torch.tensor(LABELS))
    torch.testing.assert_close(output.loss, expected)


# --- placeholders, padding and batching --------------------------------------------------------


def hybrid_embeddings(model: CCFLLMForCTR, inputs) -> torch.Tensor:
    """What the model feeds its backbone: the prompt's token embeddings with fused placeholder vectors."""
    keys = ("input_ids", "user_ids", "item_ids", "history_ids", "title_index")
    with torch.no_grad():
        return model.embed_hybrid_prompt(*(inputs[key] for key in keys))[0]


def reference_embeddings(model: CCFLLMForCTR, inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Row by row, from the definitions: plain token embeddings, and placeholders set to fused vectors.

    An item's text vector is the mean input embedding of its title tokens; the user's is the mean of
    its history items' text vectors; each is fused with its CF row by ``model.fusion`` (unknown ids,
    0 or outside the table, keep the text vector).
    """
    config, table = model.config, model.get_input_embeddings()
    plain_rows, fused_rows = [], []
    for b, ids in enumerate(inputs["input_ids"]):
        slots = inputs["title_index"][b]
        is_item, is_user = ids == config.item_token_id, ids == config.user_token_id
        plain = table(ids.masked_fill(is_item | is_user, 0))
        slot_ids = [int(inputs["item_ids"][b]), *inputs["history_ids"][b].tolist()]

        def text_vector(
            slot: int, plain=plain, slots=slots, placeholder=is_item | is_user
        ) -> torch.Tensor | None:
            tokens = (slots == slot) & ~placeholder
            return plain[tokens].mean(0) if tokens.any() else None

        def fuse(text: torch.Tensor, cf: torch.nn.Embedding, cf_id: int) -> torch.Tensor:
            known = 0 < cf_id < cf.num_embeddings
            row = cf.weight[cf_id if known else 0]
            return model.fusion(text, row, torch.tensor(known))[0]

        fused = plain.clone()
        for t in is_item.nonzero().flatten().tolist():
            slot = int(slots[t])
            fused[t] = fuse(text_vector(slot), model.item_cf, slot_ids[slot])
        history_vectors = [v for j in range(1, len(slot_ids)) if (v := text_vector(j)) is not None]
        user_text = torch.stack(history_vectors).mean(0) if history_vectors else torch.zeros_like(plain[0])
        for t in is_user.nonzero().flatten().tolist():
            fused[t] = fuse(user_text, model.user_cf, int(inputs["user_ids"][b]))
        plain_rows.append(plain)
        fused_rows.append(fused)
    return torch.stack(plain_rows), torch.stack(fused_rows)


@pytest.mark.parametrize("history_item_tokens", [True, False])
@pytest.mark.parametrize("side", ["left", "right"])
def test_placeholders_land_on_their_positions(side: str, history_item_tokens: bool) -> None:
    model, processor = tiny_model("llama", "gate")
    model.eval()
    processor = processor.with_settings(padding_side=side, history_item_tokens=history_item_tokens)
    inputs = make_batch(processor)
    assert not inputs["attention_mask"].all()  # the batch is padded
    embeds = hybrid_embeddings(model, inputs)
    with torch.no_grad():
        plain, expected = reference_embeddings(model, inputs)
    ids = inputs["input_ids"]
    placeholder = (ids == processor.item_token_id) | (ids == processor.user_token_id)
    items_per_row = (ids == processor.item_token_id).sum(1).tolist()
    history_lengths = [len(processor.encode(h, c, u)["history_ids"]) for h, c, u in PROMPTS]
    assert items_per_row == [1 + n * history_item_tokens for n in history_lengths]
    assert (ids == processor.user_token_id).sum(1).tolist() == [1] * len(PROMPTS)
    torch.testing.assert_close(embeds[~placeholder], plain[~placeholder], atol=0, rtol=0)
    torch.testing.assert_close(embeds[placeholder], expected[placeholder], atol=1e-6, rtol=0)
    assert not torch.allclose(embeds[placeholder], plain[placeholder])  # really replaced


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_left_and_right_padding_give_the_same_scores(arch: str) -> None:
    model, processor = tiny_model(arch, "gate")
    randomize_lora(model)
    model.eval()
    left = scores(model, make_batch(processor.with_settings(padding_side="left")))
    right = scores(model, make_batch(processor.with_settings(padding_side="right")))
    torch.testing.assert_close(left, right, atol=1e-5, rtol=0)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_batch_equals_one_by_one(arch: str, side: str) -> None:
    model, processor = tiny_model(arch, "gate")
    randomize_lora(model)
    model.eval()
    processor = processor.with_settings(padding_side=side)
    batched = scores(model, make_batch(processor))
    single = torch.cat([scores(model, make_batch(processor, [prompt])) for prompt in PROMPTS])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)
    assert batched.std() > 0  # rows differ, so a mix-up would show


@pytest.mark.parametrize("attention", ["sdpa", "eager"])  # eager: what training picks on a CPU
@pytest.mark.parametrize("chunk_size", [None, 1, 3])
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_rank_candidates_equals_scoring_full_prompts(
    arch: str, chunk_size: int | None, attention: str
) -> None:
    """One call or length-sorted chunks (each trimmed to its longest suffix), right or left padded."""
    model, processor = tiny_model(arch, "gate")
    model.set_attn_implementation(attention)
    randomize_lora(model)
    model.eval()
    history, candidates = [1, 2, 3], [4, 5, UNKNOWN_TITLE, 8]
    prefix, suffixes = processor.encode_ranking(history, candidates, user_id=2)
    ranked = model.rank_candidates(prefix, suffixes, chunk_size=chunk_size)
    left_padded = {key: value.clone() for key, value in suffixes.items()}
    for row, length in enumerate(suffixes["attention_mask"].sum(-1).tolist()):
        for key in ("input_ids", "title_index", "attention_mask"):
            left_padded[key][row] = suffixes[key][row].roll(int(suffixes[key].shape[1] - length))
    torch.testing.assert_close(model.rank_candidates(prefix, left_padded, chunk_size), ranked)
    with pytest.raises(ValueError, match="chunk_size must be a positive number of rows, got 0"):
        model.rank_candidates(prefix, suffixes, chunk_size=0)
    full = scores(model, processor([history] * len(candidates), candidates, [2] * len(candidates)))
    torch.testing.assert_close(ranked, full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("chunk_size", [None, 2])
@pytest.mark.parametrize("hybrid", [True, False])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_score_shared_prefixes_equals_forward(
    arch: str, side: str, hybrid: bool, chunk_size: int | None, attention: str
) -> None:
    """Rows 0, 2 and 4 share a prefix (user 1, history [1, 2, 3]); row 3 has the same history but another
    user (another <user> vector), rows 1 and 5 their own: every row's score equals the full forward's."""
    model, processor = tiny_model(arch, "gate")
    model.set_attn_implementation(attention)
    randomize_lora(model)
    model.eval()
    processor = processor.with_settings(padding_side=side, hybrid=hybrid)
    prompts = [
        ([1, 2, 3], 4, 1),
        ([5], 6, 2),
        ([1, 2, 3], 5, 1),
        ([1, 2, 3], 8, 2),
        ([1, 2, 3], UNKNOWN_TITLE, 1),
        PROMPTS[3],
    ]
    inputs = make_batch(processor, prompts)
    shared = model.score_shared_prefixes(**inputs, chunk_size=chunk_size)
    torch.testing.assert_close(shared, scores(model, inputs), atol=1e-5, rtol=0)
    assert shared.std() > 0


def test_score_shared_prefixes_needs_the_candidate_title() -> None:
    model, processor = tiny_model("llama", "gate")
    inputs = make_batch(processor)
    inputs["title_index"][1] = inputs["title_index"][1].clamp(max=-1)
    with pytest.raises(ValueError, match="row 1 has no candidate title"):
        model.score_shared_prefixes(**inputs)


def test_history_titles_without_history_ids_are_an_error() -> None:
    """Without ``history_ids`` the history titles have no slot: an error, not pooled into the candidate's."""
    model, processor = tiny_model("llama", "gate")
    inputs = dict(processor.with_settings(history_item_tokens=False)([[1, 2, 3]], [4], [1]))
    del inputs["history_ids"]
    with pytest.raises(
        ValueError,
        match=r"title_index refers to item slot 3 but only 1 slots \(candidate \+ history_ids\) were given",
    ):
        model(**inputs)


def test_unknown_items_and_users_get_their_text_vectors() -> None:
    model, processor = tiny_model("llama", "gate")
    model.eval()
    prompts = [([1, UNKNOWN_TITLE], 0, 0), ([2], UNKNOWN_TITLE, 99), ([3, 4], 99, 2)]
    inputs = make_batch(processor, prompts)
    assert inputs["item_ids"].tolist() == [0, 0, 99]
    assert torch.isfinite(scores(model, inputs)).all()
    embeds = hybrid_embeddings(model, inputs)
    with torch.no_grad():
        plain, _ = reference_embeddings(model, inputs)
    ids, slots = inputs["input_ids"], inputs["title_index"]
    is_item = ids == processor.item_token_id

    def text_vector(b: int, slot: int) -> torch.Tensor:
        return plain[b][(slots[b] == slot) & ~is_item[b] & (ids[b] != processor.user_token_id)].mean(0)

    def at(b: int, slot: int) -> torch.Tensor:
        return embeds[b][is_item[b] & (slots[b] == slot)].squeeze(0)

    for b in range(3):  # every candidate is unknown (id 0, a title outside the catalog, an id past the table)
        torch.testing.assert_close(at(b, 0), text_vector(b, 0), atol=1e-6, rtol=0)
    torch.testing.assert_close(at(0, 2), text_vector(0, 2), atol=1e-6, rtol=0)  # unknown history title
    assert not torch.allclose(at(0, 1), text_vector(0, 1))  # a known history item is fused
    for b in (0, 1):  # user 0 and user 99 (past the table): the mean of the history text vectors
        user = embeds[b][ids[b] == processor.user_token_id].squeeze(0)
        history = torch.stack([text_vector(b, j) for j in range(1, len(prompts[b][0]) + 1)]).mean(0)
        torch.testing.assert_close(user, history, atol=1e-6, rtol=0)


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "allowed"), [("fusion", FUSIONS), ("score_type", SCORE_TYPES)])
def test_config_rejects_unknown_values(field: str, allowed: tuple[str, ...]) -> None:
    with pytest.raises(ValueError) as error:
        CCFLLMConfig(**{field: "no_such_value"})
    message = str(error.value)
    assert "no_such_value" in message
    assert all(value in message for value in allowed), message


@pytest.mark.parametrize("arch", ARCHS)
def test_config_round_trip_keeps_the_backbone_type(arch: str, tmp_path: Path) -> None:
    text_config = tiny_backbone(arch, vocab_size=64).config
    config = CCFLLMConfig(
        text_config=text_config.to_dict(), num_users=5, num_items=9, cf_dim=8, fusion="concat"
    )
    for restored in (
        CCFLLMConfig.from_dict(config.to_dict()),
        CCFLLMConfig.from_dict(json.loads(config.to_json_string())),
    ):
        assert restored.text_config.model_type == arch
        assert type(restored.text_config) is type(text_config)
        assert restored.text_config.get_text_config().hidden_size == text_config.get_text_config().hidden_size
        assert restored.text_config.vocab_size == 64
        assert (restored.fusion, restored.num_users, restored.num_items, restored.cf_dim) == (
            "concat",
            5,
            9,
            8,
        )
    config.save_pretrained(tmp_path)
    assert CCFLLMConfig.from_pretrained(tmp_path).text_config.model_type == arch
    assert CCFLLMConfig(text_config=text_config).text_config.model_type == arch


def test_gate_statistics_equal_the_forward_pass_gates() -> None:
    """The warm/cold gate plot reads the gates without running the backbone: same values as a full forward."""
    from datasets import Dataset

    from ccf_llm.evaluation.gates import gate_statistics

    model, processor = tiny_model("llama", "gate")
    model.eval()
    rows = [
        {**processor.encode(h, c, u), "not_cold": warm}
        for (h, c, u), warm in zip(PROMPTS, (1, 0, 1, 0), strict=True)
    ]
    stats = gate_statistics(model, processor, Dataset.from_list(rows), batch_size=3)
    with torch.no_grad():
        gates = model(**make_batch(processor), output_gates=True).item_gates[:, 0]
    torch.testing.assert_close(torch.tensor(stats["warm"]), gates[[0, 2]].mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.tensor(stats["cold"]), gates[[1, 3]].mean(0), atol=1e-6, rtol=0)


@pytest.mark.parametrize(("arch", "targets"), [("llama", {"q_proj", "v_proj"}), ("gpt2", {"c_attn"})])
def test_lora_targets_default_to_peft_per_architecture(arch: str, targets: set[str]) -> None:
    """A config built without ``lora_target_modules`` leaves them to peft, which knows each architecture; a list
    given (or saved) stays."""
    config = CCFLLMConfig(text_config=tiny_backbone(arch, vocab_size=64).config.to_dict())
    assert config.lora_target_modules is None
    wrapped = {
        name.split(".")[-2] for name, _ in CCFLLMForCTR(config).named_modules() if name.endswith("lora_A")
    }
    assert wrapped == targets
    assert CCFLLMConfig.from_dict(
        {**config.to_dict(), "lora_target_modules": ["q_proj"]}
    ).lora_target_modules == ["q_proj"]


def test_peft_is_needed_only_with_an_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers checks a remote-code file's imports before loading it: peft must not be one of them."""
    assert "peft" not in get_imports(str(Path(__file__).resolve().parents[1] / "modeling_ccf.py"))
    monkeypatch.setitem(sys.modules, "peft", None)  # as if peft were not installed
    text_config = tiny_backbone("llama", vocab_size=64).config.to_dict()
    CCFLLMForCTR(CCFLLMConfig(text_config=text_config, lora_r=0))
    with pytest.raises(ImportError, match=r"LoRA adapter \(lora_r=8\), which needs peft"):
        CCFLLMForCTR(CCFLLMConfig(text_config=text_config, lora_r=8))
