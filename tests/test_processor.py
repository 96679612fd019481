"""The hybrid-prompt processor: wording, history truncation, ids vs titles, batching, ranking, persistence."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from ccf_llm.testing.make_tiny import PROMPT_TEXT, TINY_CATALOG, tiny_tokenizer
from processing_ccf import LEGACY_FILES, PROCESSOR_FILE, CCFLLMProcessor

UNKNOWN_TITLE = "A Film Not In The Catalog (2001)"


@pytest.fixture(scope="module")
def processor() -> CCFLLMProcessor:
    return CCFLLMProcessor(tiny_tokenizer(), TINY_CATALOG, max_length=160)


def decode(processor: CCFLLMProcessor, ids: list[int]) -> str:
    return processor.tokenizer.decode(ids)


def count(ids: list[int], token_id: int) -> int:
    return sum(token == token_id for token in ids)


def test_hybrid_prompt_wording_and_placeholders(processor: CCFLLMProcessor) -> None:
    encoded = processor.encode([1, 2], 4, user_id=3)
    text = decode(processor, encoded["input_ids"])
    assert text.startswith(
        'A user has given high ratings to the following movies: "Toy Story (1995)"<item>, '
    )
    assert "encoded in the feature<user>." in text
    assert (
        'enjoy the movie titled "The Matrix (1999)" with the feature<item>? Answer with "Yes" or "No".'
        in text
    )
    assert text.endswith("\nAnswer:")
    ids = encoded["input_ids"]
    assert count(ids, processor.item_token_id) == 3  # two history items + the candidate
    assert count(ids, processor.user_token_id) == 1
    assert encoded["history_ids"] == [1, 2]
    assert encoded["item_id"] == 4
    assert encoded["user_id"] == 3
    # title_index: each title's tokens and its <item> carry the item's slot (0 = candidate), the rest -1
    slots = encoded["title_index"]
    assert len(slots) == len(ids)
    for slot, title in ((0, TINY_CATALOG[4]), (1, TINY_CATALOG[1]), (2, TINY_CATALOG[2])):
        positions = [t for t, s in enumerate(slots) if s == slot]
        placeholder = [t for t in positions if ids[t] == processor.item_token_id]
        assert len(placeholder) == 1
        title_ids = [ids[t] for t in positions if t not in placeholder]
        assert decode(processor, title_ids) == title
    assert all(slots[t] == -1 for t, token in enumerate(ids) if token == processor.user_token_id)


def test_text_only_prompt_has_no_placeholders(processor: CCFLLMProcessor) -> None:
    text_processor = processor.with_settings(hybrid=False)
    encoded = text_processor.encode([1, 2], 4, user_id=3)
    ids = encoded["input_ids"]
    assert processor.item_token_id not in ids
    assert processor.user_token_id not in ids
    text = decode(processor, ids)
    assert "Additionally" not in text
    assert 'following movies: "Toy Story (1995)", "Heat (1995)". Using all' in text
    assert text.endswith('titled "The Matrix (1999)"? Answer with "Yes" or "No".\nAnswer:')
    assert processor.hybrid  # with_settings made a copy


def test_history_item_tokens_switch(processor: CCFLLMProcessor) -> None:
    encoded = processor.with_settings(history_item_tokens=False).encode([1, 2, 3], 4, user_id=1)
    assert count(encoded["input_ids"], processor.item_token_id) == 1  # the candidate's only
    assert count(encoded["input_ids"], processor.user_token_id) == 1
    assert encoded["history_ids"] == [1, 2, 3]


def test_empty_history(processor: CCFLLMProcessor) -> None:
    encoded = processor.encode([], 5)
    assert "following movies: none." in decode(processor, encoded["input_ids"])
    assert encoded["history_ids"] == []
    assert count(encoded["input_ids"], processor.item_token_id) == 1
    batch = processor([[], [0]], [5, 6], [1, 2])  # no row has a history: ids must stay integers
    assert batch["history_ids"].shape == (2, 0)
    for key in ("input_ids", "attention_mask", "title_index", "history_ids", "item_ids", "user_ids"):
        assert batch[key].dtype == torch.long, key


def test_truncation_drops_oldest_history_and_keeps_the_question(processor: CCFLLMProcessor) -> None:
    history = [1, 2, 3, 5, 6, 7]
    candidate = 8
    fits_two = len(processor.encode(history[-2:], candidate, 1)["input_ids"])
    short = processor.with_settings(max_length=fits_two, max_title_tokens=8)
    encoded = short.encode(history, candidate, 1)
    assert encoded["history_ids"] == history[-2:]  # the most recent ones survive
    assert len(encoded["input_ids"]) <= fits_two
    text = decode(processor, encoded["input_ids"])
    assert f'"{TINY_CATALOG[candidate]}" with the feature<item>?' in text
    assert "encoded in the feature<user>." in text
    assert text.endswith("Answer:")
    assert TINY_CATALOG[history[0]] not in text


def test_question_survives_when_no_history_fits(processor: CCFLLMProcessor) -> None:
    title_tokens = len(processor.tokenizer.encode(TINY_CATALOG[8], add_special_tokens=False))
    minimal = len(processor.encode([], 8)["input_ids"])
    short = processor.with_settings(max_length=minimal, max_title_tokens=title_tokens)
    encoded = short.encode([1, 2, 3], 8)
    assert encoded["history_ids"] == []
    assert decode(processor, encoded["input_ids"]).endswith("Answer:")


def test_long_titles_are_capped(processor: CCFLLMProcessor) -> None:
    capped = processor.with_settings(max_title_tokens=3)
    encoded = capped.encode([], "The Matrix (1999) " * 20)
    assert sum(slot == 0 for slot in encoded["title_index"]) == 3 + 1  # three title tokens + <item>


def test_max_history_and_padding_ids(processor: CCFLLMProcessor) -> None:
    assert processor.with_settings(max_history=3).encode([1, 2, 3, 4, 5, 6], 7)["history_ids"] == [4, 5, 6]
    assert processor.encode([0, 1, 2], 3)["history_ids"] == [1, 2]  # CoLLM's leading 0 is padding
    assert processor.with_settings(max_history=0).encode([1, 2], 3)["history_ids"] == []


def test_ids_and_titles_give_the_same_prompt(processor: CCFLLMProcessor) -> None:
    by_id = processor.encode([1, 2, 3], 4, user_id=2)
    by_title = processor.encode(
        [TINY_CATALOG[1], TINY_CATALOG[2], TINY_CATALOG[3]], TINY_CATALOG[4], user_id=2
    )
    assert by_id == by_title


def test_unknown_title_has_no_cf_id(processor: CCFLLMProcessor) -> None:
    encoded = processor.encode([UNKNOWN_TITLE, 1], UNKNOWN_TITLE)
    assert encoded["item_id"] == 0
    assert encoded["history_ids"] == [0, 1]
    assert decode(processor, encoded["input_ids"]).count(UNKNOWN_TITLE) == 2
    # an id outside the catalog keeps its id (the model treats it as unknown) and gets a stand-in title
    assert processor.encode([], 99)["item_id"] == 99
    assert processor.item_title(99) == "item 99"


def test_a_title_that_several_items_share_has_the_lowest_id() -> None:
    processor = CCFLLMProcessor(tiny_tokenizer(), {246: "Chasing Amy (1997)", 268: "Chasing Amy (1997)"})
    assert processor.item_id("Chasing Amy (1997)") == 246


# --- the answer tokens --------------------------------------------------------------------------


def sentencepiece_style_tokenizer(across_words: bool = False) -> PreTrainedTokenizerFast:
    """A Llama-2-style tokenizer: "▁" prepended and for every space, so that " Yes" alone is "▁" + "▁Yes".
    ``across_words``: no split at the "▁"s, so that BPE merges pieces of two words (":▁")."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    if not across_words:
        tokenizer.pre_tokenizer = pre_tokenizers.Split("▁", "merged_with_next")
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"])
    tokenizer.train_from_iterator([PROMPT_TEXT, *TINY_CATALOG.values()], trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def test_answer_tokens_continue_the_prompt(processor: CCFLLMProcessor) -> None:
    """The tokens that " Yes" and " No" begin with after "Answer:": for a SentencePiece-style tokenizer not the
    first token of " Yes" alone, a bare "▁" that " No" shares; byte-level BPE (SmolLM2, the tiny tokenizer) keeps
    "ĠYes" / "ĠNo"."""
    assert processor.tokenizer.convert_ids_to_tokens([processor.yes_token_id, processor.no_token_id]) == [
        "ĠYes",
        "ĠNo",
    ]
    tokenizer = sentencepiece_style_tokenizer()
    alone = [tokenizer.encode(answer, add_special_tokens=False)[0] for answer in (" Yes", " No")]
    assert alone[0] == alone[1]
    sentencepiece = CCFLLMProcessor(tokenizer, TINY_CATALOG, max_length=160)
    yes_no = [sentencepiece.yes_token_id, sentencepiece.no_token_id]
    assert tokenizer.convert_ids_to_tokens(yes_no) == ["▁Yes", "▁No"]


def bytes_only_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE without merges: " Yes" and " No" both begin with "Ġ"."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=len(alphabet) + 2, special_tokens=["<pad>", "<eos>"], initial_alphabet=alphabet
    )
    tokenizer.train_from_iterator([PROMPT_TEXT], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>")


@pytest.mark.parametrize(
    "make_tokenizer",
    [bytes_only_tokenizer, lambda: sentencepiece_style_tokenizer(across_words=True)],  # ":▁" + "Ye" + "s"
    ids=["same first token", "merged into the prompt's end"],
)
def test_a_tokenizer_without_distinct_answer_tokens_is_refused(
    make_tokenizer: Callable[[], PreTrainedTokenizerFast],
) -> None:
    tokenizer = make_tokenizer()
    with pytest.raises(ValueError, match=rf"tokenizer {type(tokenizer).__name__} .* ' Yes' and ' No'"):
        CCFLLMProcessor(tokenizer, TINY_CATALOG, max_length=400)


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding(processor: CCFLLMProcessor, side: str) -> None:
    sided = processor.with_settings(padding_side=side)
    rows = [([1, 2, 3], 4, 1), ([], 5, 2)]
    encoded = [sided.encode(h, c, u) for h, c, u in rows]
    batch = sided([h for h, _, _ in rows], [c for _, c, _ in rows], [u for _, _, u in rows], labels=[1, 0])
    lengths = [len(row["input_ids"]) for row in encoded]
    assert batch["input_ids"].shape == (2, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert batch["labels"].dtype == torch.float32
    assert batch["labels"].tolist() == [1.0, 0.0]
    assert batch["item_ids"].tolist() == [4, 5]
    assert batch["user_ids"].tolist() == [1, 2]
    assert batch["history_ids"].tolist() == [[1, 2, 3], [0, 0, 0]]
    short = batch["attention_mask"][1].bool()
    assert batch["input_ids"][1][short].tolist() == encoded[1]["input_ids"]
    assert batch["title_index"][1][short].tolist() == encoded[1]["title_index"]
    assert (batch["title_index"][1][~short] == -1).all()
    assert (batch["input_ids"][1][~short] == processor.tokenizer.pad_token_id).all()
    first_real = int(short.nonzero()[0])
    assert (first_real > 0) == (side == "left")


def test_collate_matches_call(processor: CCFLLMProcessor) -> None:
    rows = [{"uid": 1, "iid": 4, "his": [0, 1, 2], "label": 1}, {"uid": 2, "iid": 5, "his": [0], "label": 0}]
    collated = processor.collate(rows)
    called = processor([[0, 1, 2], [0]], [4, 5], [1, 2], labels=[1, 0])
    assert collated.keys() == called.keys()
    for key in called:
        assert torch.equal(collated[key], called[key]), key


def test_bad_arguments_raise(processor: CCFLLMProcessor) -> None:
    with pytest.raises(ValueError, match="same length"):
        processor([[1]], [2, 3])
    with pytest.raises(ValueError, match="padding_side"):
        processor.with_settings(padding_side="middle")
    with pytest.raises(ValueError, match="at least one candidate"):
        processor.encode_ranking([1], [])


def test_too_small_max_length_raises(processor: CCFLLMProcessor) -> None:
    with pytest.raises(ValueError, match="max_length"):
        processor.with_settings(max_length=20)


def test_encode_ranking_prefix_plus_suffix_equals_encode(processor: CCFLLMProcessor) -> None:
    history, candidates = [1, 2, 3], [4, 5, UNKNOWN_TITLE, 8]
    prefix, suffixes = processor.encode_ranking(history, candidates, user_id=2)
    assert prefix["input_ids"].shape[0] == 1 and prefix["attention_mask"].all()
    assert prefix["history_ids"].tolist() == [[1, 2, 3]]
    assert prefix["user_ids"].tolist() == [2]
    assert processor.user_token_id in prefix["input_ids"][0].tolist()
    for row, candidate in enumerate(candidates):
        full = processor.encode(history, candidate, user_id=2)
        real = suffixes["attention_mask"][row].bool()
        assert not real[: int(real.sum())].logical_not().any()  # suffixes are right-padded
        ids = prefix["input_ids"][0].tolist() + suffixes["input_ids"][row][real].tolist()
        slots = prefix["title_index"][0].tolist() + suffixes["title_index"][row][real].tolist()
        assert ids == full["input_ids"]
        assert slots == full["title_index"]
        assert int(suffixes["item_ids"][row]) == full["item_id"]


def test_encode_ranking_shares_the_history_that_fits_the_longest_candidate(
    processor: CCFLLMProcessor,
) -> None:
    history, long_title = [1, 2, 3, 5, 6, 7], "Dr. Strangelove or How I Learned to Stop Worrying (1964)"
    candidates = [4, long_title]
    budget = len(processor.encode(history[-2:], long_title)["input_ids"])
    short = processor.with_settings(max_length=budget)
    prefix, suffixes = short.encode_ranking(history, candidates)
    assert prefix["history_ids"].tolist() == [history[-2:]]
    longest = short.encode(history, long_title)
    real = suffixes["attention_mask"][1].bool()
    assert prefix["input_ids"][0].tolist() + suffixes["input_ids"][1][real].tolist() == longest["input_ids"]
    for row in range(len(candidates)):
        assert prefix["input_ids"].shape[1] + int(suffixes["attention_mask"][row].sum()) <= budget


def test_save_load_round_trip(processor: CCFLLMProcessor, tmp_path: Path) -> None:
    custom = processor.with_settings(max_history=4, item_noun="film", padding_side="right")
    custom.save_pretrained(tmp_path)
    for name in (PROCESSOR_FILE, "processing_ccf.py", "tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / name).is_file(), name
    loaded = CCFLLMProcessor.from_pretrained(tmp_path)
    assert loaded.settings() == custom.settings()
    assert loaded.catalog == custom.catalog
    for attribute in ("user_token_id", "item_token_id", "yes_token_id", "no_token_id"):
        assert getattr(loaded, attribute) == getattr(custom, attribute), attribute
    assert loaded.tokenizer.pad_token_id == custom.tokenizer.pad_token_id
    histories, candidates = [[1, 2, 3, 5, 6, 7], [UNKNOWN_TITLE]], [4, 8]
    expected, got = custom(histories, candidates, [1, 2]), loaded(histories, candidates, [1, 2])
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert "films:" in decode(loaded, loaded.encode([1], 2)["input_ids"])
    assert CCFLLMProcessor.from_pretrained(tmp_path, max_history=1).max_history == 1


def test_saved_with_the_standard_processor_files(processor: CCFLLMProcessor, tmp_path: Path) -> None:
    """``ProcessorMixin`` files: settings and catalog in processor_config.json with the ``AutoProcessor`` entry,
    the tokenizer naming its processor; every setting a plain JSON value."""
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / PROCESSOR_FILE).read_text())
    assert saved["auto_map"] == {"AutoProcessor": "processing_ccf.CCFLLMProcessor"}
    assert saved["processor_class"] == "CCFLLMProcessor"
    assert saved["catalog"] == {str(item): title for item, title in TINY_CATALOG.items()}
    assert {key: saved[key] for key in processor.settings()} == processor.settings()
    tokenizer = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert tokenizer["processor_class"] == "CCFLLMProcessor"
    assert "auto_map" not in processor.tokenizer.init_kwargs  # saving leaves the shared tokenizer as it was


def save_legacy(processor: CCFLLMProcessor, folder: Path) -> None:
    """A folder in the layout saved before the processor was a ``ProcessorMixin``: one file per part."""
    processor.tokenizer.save_pretrained(folder)
    settings = {"processor_class": "CCFLLMProcessor", **processor.settings()}
    (folder / LEGACY_FILES["settings"]).write_text(json.dumps(settings))
    (folder / LEGACY_FILES["catalog"]).write_text(
        json.dumps({str(k): v for k, v in processor.catalog.items()})
    )


def test_folders_of_the_older_layout_still_load(processor: CCFLLMProcessor, tmp_path: Path) -> None:
    custom = processor.with_settings(max_history=3, history_item_tokens=False)
    save_legacy(custom, tmp_path)
    (tmp_path / LEGACY_FILES["attributes"]).write_text(json.dumps({"1": "animation"}))
    loaded = CCFLLMProcessor.from_pretrained(tmp_path)
    assert loaded.settings() == custom.settings()
    assert loaded.catalog == custom.catalog and loaded.attributes == {1: "animation"}
    assert loaded.encode([1, 2, 3, 5], 4, 2) == custom.encode([1, 2, 3, 5], 4, 2)


def test_from_pretrained_needs_a_model_folder(tmp_path: Path) -> None:
    tiny_tokenizer().save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match=PROCESSOR_FILE):
        CCFLLMProcessor.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda saved: {**saved, "catalog": {"one": "Toy Story (1995)"}}, "'catalog' must map integer ids to texts"),
        (lambda saved: {**saved, "catalog": ["Toy Story (1995)"]}, "'catalog' must map ids to texts, got list"),
        (lambda saved: {**saved, "profiles": {"1": 25}}, "'profiles' must map integer ids to texts"),
        (lambda saved: {**saved, "max_history": "5"}, "'max_history' must be a non-negative integer, got '5'"),
        (lambda saved: {**saved, "hybrid": "yes"}, "'hybrid' must be a bool"),
    ],
)  # fmt: skip
def test_a_damaged_processor_file_is_named_with_its_fault(
    processor: CCFLLMProcessor, tmp_path: Path, change: Callable[[dict], dict], message: str
) -> None:
    processor.save_pretrained(tmp_path)
    path = tmp_path / PROCESSOR_FILE
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    with pytest.raises(ValueError, match=rf"{path}: {message}"):
        CCFLLMProcessor.from_pretrained(tmp_path)


def test_a_file_that_is_not_json_is_named(processor: CCFLLMProcessor, tmp_path: Path) -> None:
    processor.save_pretrained(tmp_path / "new")
    path = tmp_path / "new" / PROCESSOR_FILE
    path.write_text(path.read_text()[:50])
    with pytest.raises(OSError, match=rf"{path}' is not a valid JSON file"):
        CCFLLMProcessor.from_pretrained(tmp_path / "new")
    save_legacy(processor, tmp_path / "old")
    catalog = tmp_path / "old" / LEGACY_FILES["catalog"]
    catalog.write_text('{"1": "Toy Sto')
    with pytest.raises(ValueError, match=rf"{catalog}: not valid JSON \(Unterminated string"):
        CCFLLMProcessor.from_pretrained(tmp_path / "old")
