"""Item attributes and user profiles: parsing, the prompt templates, the split-folder and model-folder round
trips, and CF tables tuned in stage 2."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from ccf_llm.cf import load_cf_tables
from ccf_llm.data import DataError, load_split
from ccf_llm.data.attributes import genre_text, user_profile_text, user_profiles
from ccf_llm.testing.make_tiny import TINY_CATALOG, tiny_tokenizer
from ccf_llm.testing.tiny_run import tiny_ctr_data, tiny_run_settings, write_tiny_run_inputs
from ccf_llm.training import ExperimentConfig, run_experiment
from ccf_llm.training.stages import set_trainable
from processing_ccf import CCFLLMProcessor

ATTRIBUTES = {iid: ("comedy, crime" if iid % 2 else "drama") for iid in TINY_CATALOG}
USERS = pd.DataFrame(
    {"uid": [1, 2, 3], "gender": ["M", "F", None], "age": [25, 1, None], "occupation": [12, 10, None]}
)


def test_genre_text_and_profiles_read_the_grouplens_codes_and_names() -> None:
    assert genre_text("Comedy|Crime") == "comedy, crime"
    assert genre_text(None) == "" and genre_text("(no genres listed)") == ""
    assert user_profile_text("M", 25, 12) == "The user is a 25-34-year-old male programmer."
    assert user_profile_text("F", 1, 10) == "The user is an under-18-year-old female K-12 student."
    assert (
        user_profile_text("M", 23, "writer") == "The user is an 18-24-year-old male writer."
    )  # ML-100K: years
    assert user_profile_text(None, None, None) == ""
    assert user_profiles(USERS) == {
        1: "The user is a 25-34-year-old male programmer.",
        2: "The user is an under-18-year-old female K-12 student.",
    }


def processor(**settings) -> CCFLLMProcessor:
    profiles = user_profiles(USERS)
    settings = {"max_profile_tokens": 64, "max_length": 320, **settings}  # the tiny tokenizer has few merges
    return CCFLLMProcessor(
        tiny_tokenizer(), TINY_CATALOG, attributes=ATTRIBUTES, profiles=profiles, **settings
    )


def text(processor: CCFLLMProcessor, encoded: dict) -> str:
    return processor.tokenizer.decode(encoded["input_ids"])


def test_templates_put_attributes_after_titles_and_the_profile_before_the_user_feature() -> None:
    plain = processor()
    rich = processor(item_attributes=True, user_profile=True)
    first, second, candidate = list(TINY_CATALOG)[:3]
    prompt = text(rich, rich.encode([first, second], candidate, user_id=1))
    assert f'"{TINY_CATALOG[first]}" ({ATTRIBUTES[first]})<item>' in prompt.replace(" <item>", "<item>")
    assert prompt.index("programmer.") < prompt.index("<user>") < prompt.index(TINY_CATALOG[candidate])
    assert f'titled "{TINY_CATALOG[candidate]}" ({ATTRIBUTES[candidate]}) with the feature' in prompt
    # switched off, the prompt is the titles-only prompt, token for token
    assert plain.encode([first, second], candidate, 1) == processor(item_attributes=False).encode(
        [first, second], candidate, 1
    )
    assert "comedy" not in text(plain, plain.encode([first, second], candidate, 1))


def test_attribute_tokens_pool_into_their_item_and_placeholders_keep_their_positions() -> None:
    rich = processor(item_attributes=True)
    first, candidate = list(TINY_CATALOG)[:2]
    encoded = rich.encode([first], candidate, user_id=1)
    ids, slots = encoded["input_ids"], encoded["title_index"]
    attribute_tokens = list(rich._attribute_tokens(ATTRIBUTES[first]))
    start = next(i for i in range(len(ids)) if ids[i : i + len(attribute_tokens)] == attribute_tokens)
    assert set(slots[start : start + len(attribute_tokens)]) == {1}
    items = [i for i, token in enumerate(ids) if token == rich.item_token_id]
    assert [slots[i] for i in items] == [1, 0]  # the history item's placeholder, then the candidate's
    assert ids[-len(rich._fragments["answer"]) :] == rich._fragments["answer"]


def test_a_given_profile_replaces_the_stored_one_and_unknown_users_have_none() -> None:
    rich = processor(user_profile=True)
    given = text(rich, rich.encode([], 1, user_id=1, profile="The user is a retired farmer."))
    assert "retired farmer" in given and "programmer" not in given
    assert "The user is" not in text(rich, rich.encode([], 1, user_id=5))


def test_truncation_drops_history_items_and_keeps_profile_and_question() -> None:
    rich = processor(item_attributes=True, user_profile=True, max_length=260, max_history=50)
    history = list(TINY_CATALOG) * 3
    encoded = rich.encode(history, 1, user_id=1)
    assert len(encoded["input_ids"]) <= 260
    assert 0 < len(encoded["history_ids"]) < len(history)
    prompt = text(rich, encoded)
    assert "programmer." in prompt and prompt.rstrip().endswith("Answer:")
    with pytest.raises(ValueError, match="max_length"):
        processor(item_attributes=True, user_profile=True, max_length=150)


def test_ranking_prefix_plus_suffix_equals_the_single_prompt_with_attributes() -> None:
    rich = processor(item_attributes=True, user_profile=True)
    history, candidates = [1, 2, 3], [4, 5, 6]
    prefix, suffixes = rich.encode_ranking(history, candidates, user_id=2)
    for row, item in enumerate(candidates):
        single = rich.encode(history, item, user_id=2)["input_ids"]
        suffix = [
            t for t, m in zip(suffixes["input_ids"][row], suffixes["attention_mask"][row], strict=True) if m
        ]
        assert prefix["input_ids"][0].tolist() + suffix == single


def test_processor_folder_round_trip_keeps_attributes_and_profiles(tmp_path: Path) -> None:
    rich = processor(item_attributes=True, user_profile=True)
    rich.save_pretrained(tmp_path)
    loaded = CCFLLMProcessor.from_pretrained(tmp_path)
    assert loaded.attributes == rich.attributes and loaded.profiles == rich.profiles
    assert loaded.item_attributes and loaded.user_profile
    assert loaded.encode([1, 2], 3, 1) == rich.encode([1, 2], 3, 1)


def test_split_folder_round_trip_and_genres_column(tmp_path: Path) -> None:
    data = tiny_ctr_data()
    data.item_attributes = dict(ATTRIBUTES)
    data.users = USERS
    data.save(tmp_path / "split")
    loaded = load_split(tmp_path / "split")
    assert loaded.item_attributes == ATTRIBUTES
    assert loaded.user_profiles() == user_profiles(USERS)
    items = pd.read_parquet(tmp_path / "split" / "items.parquet").drop(columns="attributes")
    items.assign(genres=["Comedy|Crime"] * len(items)).to_parquet(tmp_path / "split" / "items.parquet")
    assert set(load_split(tmp_path / "split").item_attributes.values()) == {"comedy, crime"}
    items.assign(genres=[3] * len(items)).to_parquet(tmp_path / "split" / "items.parquet")
    with pytest.raises(DataError, match=r"items\.parquet, row 0: genres"):
        load_split(tmp_path / "split")


def test_cf_tables_train_only_when_stage2_tunes_cf(tmp_path: Path, one_thread) -> None:
    from ccf_llm.testing.make_tiny import tiny_model

    model, _ = tiny_model()
    assert "item_cf.weight" not in set_trainable(model, "fusion")
    assert {"user_cf.weight", "item_cf.weight"} <= set(set_trainable(model, "fusion+cf"))
    assert not any("lora_" in name for name in set_trainable(model, "fusion+cf"))
    with pytest.raises(ValueError, match="Unknown stage"):
        set_trainable(model, "fusion+tables")


@pytest.mark.slow
def test_a_run_with_attributes_and_tuned_tables_saves_them_in_its_model_folder(
    tmp_path: Path, one_thread
) -> None:
    inputs = write_tiny_run_inputs(tmp_path / "inputs")
    data = load_split(inputs["data"])
    data.item_attributes = dict(ATTRIBUTES)
    data.users = USERS
    data.save(inputs["data"])
    settings = tiny_run_settings(
        inputs,
        tmp_path / "run",
        item_attributes=True,
        user_profile=True,
        stage2_tunes_cf=True,
        max_length=200,
    )
    settings["stage1"] = {**settings["stage1"], "epochs": 1}
    summary = run_experiment(ExperimentConfig(**settings), command="test")
    assert summary["row"]["test"]["auc"] is not None
    stage2 = load_file(tmp_path / "run" / "stage2" / "trainable.safetensors")
    assert {"user_cf.weight", "item_cf.weight"} <= set(stage2)
    final = load_file(tmp_path / "run" / "model" / "model.safetensors")
    _, items, _ = load_cf_tables(inputs["cf"])
    assert not torch.allclose(final["item_cf.weight"], items)  # tuned, and the folder keeps the tuned table
    torch.testing.assert_close(final["item_cf.weight"], stage2["item_cf.weight"])
    from ccf_llm.publishing import publish
    from modeling_ccf import CCFLLMForCTR

    folder, _ = publish(tmp_path / "run", tmp_path / "published")  # the Hub folder keeps tables and catalog
    loaded = CCFLLMProcessor.from_pretrained(folder)
    assert loaded.item_attributes and loaded.user_profile and loaded.attributes == ATTRIBUTES
    assert loaded.profiles == user_profiles(USERS)
    published = CCFLLMForCTR.from_pretrained(folder, dtype=torch.float32)
    tuned = stage2["item_cf.weight"]
    torch.testing.assert_close(published.item_cf.weight, tuned, atol=1e-2, rtol=1e-2)  # stored in bf16


def test_pipeline_reads_attributes_from_the_catalog_and_a_profile_from_the_request(one_thread) -> None:
    from ccf_llm.testing.make_tiny import tiny_model
    from pipeline_ccf import CCFLLMPipeline

    settings = {"max_length": 320, "max_profile_tokens": 64, "item_attributes": True, "user_profile": True}
    kwargs = {"attributes": ATTRIBUTES, "profiles": user_profiles(USERS), **settings}
    model, rich = tiny_model(processor_kwargs=kwargs)
    pipe = CCFLLMPipeline(model=model.eval(), processor=rich)
    request = {"user_id": 1, "history": [1, 2], "candidate": 3}

    def score(processor: CCFLLMProcessor, profile: str | None = None) -> float:
        batch = processor([[1, 2]], [3], [1], profiles=[profile])
        with torch.no_grad():
            return torch.sigmoid(model(**batch).logits).item()

    assert pipe(request)[0]["score"] == pytest.approx(score(rich), abs=1e-5)
    given = "The user is a retired farmer."
    assert pipe({**request, "profile": given})[0]["score"] == pytest.approx(score(rich, given), abs=1e-5)
    assert pipe(
        f"user: 1 | history: {TINY_CATALOG[1]}; {TINY_CATALOG[2]} | candidate: {TINY_CATALOG[3]} | profile: {given}"
    )[0]["score"] == pytest.approx(score(rich, given), abs=1e-5)
    with pytest.raises(ValueError, match="profile must be"):
        pipe({**request, "profile": 3})
