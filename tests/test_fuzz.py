"""Fuzzing the processor: any history/candidate gives a valid, in-budget batch ending with the question, or a
ValueError that names the problem. (The pipeline's text input is fuzzed in tests/test_pipeline.py.)"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ccf_llm.testing.make_tiny import TINY_CATALOG, tiny_model

# Strings a title may hold that look like control text to the tokenizer or to the prompt.
TRICKY = ["<item>", "<user>", "<eos>", "<pad>", "Answer:", '"', "\n", ' Answer with "Yes" or "No".', "\x00"]
TITLES = st.one_of(
    st.text(min_size=1, max_size=40),  # any unicode
    st.sampled_from([*TINY_CATALOG.values(), *TRICKY, ""]),
    st.lists(st.sampled_from(TRICKY) | st.text(max_size=5), max_size=6).map("".join),
    st.text(st.sampled_from("aé漢🙂 <>"), min_size=200, max_size=2000),  # huge
)
IDS = st.integers(-5, 12) | st.integers()  # known, padding, unknown, negative, beyond int64
ITEMS = IDS | TITLES
HISTORIES = st.lists(ITEMS, max_size=12) | st.lists(st.integers(1, 8), min_size=40, max_size=200)
ROWS = st.lists(st.tuples(HISTORIES, ITEMS, IDS), min_size=1, max_size=3)
SETTINGS = st.fixed_dictionaries(
    {
        "hybrid": st.booleans(),
        "history_item_tokens": st.booleans(),
        "max_history": st.integers(0, 30),
        "max_length": st.integers(80, 260),
        "max_title_tokens": st.integers(1, 40),
        "padding_side": st.sampled_from(["left", "right"]),
    }
)
KNOWN_PROBLEMS = ("max_length", "empty title", "int64")


class Tiny(tuple):
    def __repr__(self) -> str:  # hypothesis prints its arguments: not the whole module tree
        return "tiny model and processor"


@pytest.fixture(scope="module")
def tiny(one_thread) -> Tiny:
    model, processor = tiny_model("llama", "gate")
    return Tiny((model.eval(), processor))


def real_tokens(batch, row: int) -> list[int]:
    return batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=SETTINGS, rows=ROWS)
def test_processor_gives_a_valid_batch_or_names_the_problem(tiny, changes: dict, rows: list) -> None:
    model, base = tiny
    try:
        processor = base.with_settings(**changes)
        batch = processor([h for h, _, _ in rows], [c for _, c, _ in rows], [u for _, _, u in rows])
    except ValueError as err:
        assert any(problem in str(err) for problem in KNOWN_PROBLEMS), err
        event(f"ValueError: {next(p for p in KNOWN_PROBLEMS if p in str(err))}")
        return
    event("valid batch")
    answer = processor._fragments["answer"]
    width = batch["input_ids"].shape[1]
    assert width <= processor.max_length
    for key in ("attention_mask", "title_index"):
        assert batch[key].shape == batch["input_ids"].shape, key
    for row, (history, candidate, user) in enumerate(rows):
        ids = real_tokens(batch, row)
        assert ids[-len(answer) :] == answer  # the question is never cut
        kept = processor.encode(history, candidate, user)["history_ids"]
        assert batch["history_ids"][row].tolist()[: len(kept)] == kept
        items_in_prompt = sum(token == processor.item_token_id for token in ids)
        users_in_prompt = sum(token == processor.user_token_id for token in ids)
        if processor.hybrid:
            assert users_in_prompt == 1
            assert items_in_prompt == 1 + (len(kept) if processor.history_item_tokens else 0)
        else:
            assert users_in_prompt == items_in_prompt == 0  # titles never inject placeholders
        real = [item for item in history if isinstance(item, str) or item > 0]
        assert len(kept) <= min(len(real), processor.max_history)
        slots = batch["title_index"][row][batch["attention_mask"][row].bool()]
        assert slots.min() >= -1 and slots.max() <= batch["history_ids"].shape[1]
    with torch.no_grad():
        scores = model(**batch).logits
    assert scores.shape == (len(rows),) and torch.isfinite(scores).all()


@settings(max_examples=40, deadline=None)
@given(history=st.lists(ITEMS, max_size=12), candidates=st.lists(ITEMS, min_size=1, max_size=4), user=IDS)
def test_ranking_prefix_plus_suffix_is_the_full_prompt(
    tiny, history: list, candidates: list, user: int
) -> None:
    _, processor = tiny
    try:
        prefix, suffixes = processor.encode_ranking(history, candidates, user)
    except ValueError as err:
        assert any(problem in str(err) for problem in KNOWN_PROBLEMS), err
        return
    answer = processor._fragments["answer"]
    prompts = [prefix["input_ids"][0].tolist() + real_tokens(suffixes, row) for row in range(len(candidates))]
    for prompt in prompts:  # every candidate shares the history that fits the longest one
        assert len(prompt) <= processor.max_length and prompt[-len(answer) :] == answer
    longest = max(range(len(candidates)), key=lambda row: len(prompts[row]))
    assert prompts[longest] == processor.encode(history, candidates[longest], user)["input_ids"]
