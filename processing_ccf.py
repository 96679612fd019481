"""The hybrid prompt: text + placeholders, tokenized once per piece (Hub remote code: transformers + torch only).

ML-1M wording (``item_noun="movie"``; "book" for Amazon-Book), up to ``max_history`` most recent liked titles::

    A user has given high ratings to the following movies: "T1"<item>, "T2"<item>. Additionally, we have
    information about the user's preferences encoded in the feature <user>. Using all available information,
    make a prediction about whether the user would enjoy the movie titled "T" with the feature <item>?
    Answer with "Yes" or "No".
    Answer:

Text-only prompts (stage 1, TALLRec) drop every placeholder and the ``<user>`` sentence. Titles and the fixed
fragments are tokenized once and cached, so building a prompt is list concatenation. When a prompt would
exceed ``max_length`` the oldest history items are dropped; the question is never cut.
"""

from __future__ import annotations

import json
import os
import shutil
from functools import lru_cache
from pathlib import Path

import torch
from transformers import AutoTokenizer, BatchFeature, PretrainedConfig, PreTrainedTokenizerBase

USER_TOKEN = "<user>"
ITEM_TOKEN = "<item>"
PROCESSOR_FILE = "ccf_processor.json"
CATALOG_FILE = "item_catalog.json"
ANSWER = '? Answer with "Yes" or "No".\nAnswer:'  # how every prompt ends: the model's next token answers
Item = int | str


class CCFLLMProcessor:
    """Builds (hybrid) prompts from user id, history and candidate, and batches them for ``CCFLLMForCTR``.

    Items are catalog ids (``int``) or titles (``str``); a title that is not in the catalog, or an id
    of ``0``/below, is an item without a CF vector (the model then uses its text vector alone).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        catalog: dict[int, str],
        hybrid: bool = True,
        history_item_tokens: bool = True,
        max_history: int = 10,
        max_length: int = 256,
        max_title_tokens: int = 32,
        item_noun: str = "movie",
        padding_side: str = "left",
    ):
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.add_tokens([USER_TOKEN, ITEM_TOKEN], special_tokens=True)
        self.catalog = {int(iid): str(title) for iid, title in catalog.items()}
        self.title_to_id: dict[str, int] = {}
        for iid, title in sorted(self.catalog.items()):  # a title that several items share: the lowest id
            self.title_to_id.setdefault(title, iid)
        self.hybrid = hybrid
        self.history_item_tokens = history_item_tokens
        self.max_history = max_history
        self.max_length = max_length
        self.max_title_tokens = max_title_tokens
        self.item_noun = item_noun
        self.padding_side = padding_side
        self.user_token_id = tokenizer.convert_tokens_to_ids(USER_TOKEN)
        self.item_token_id = tokenizer.convert_tokens_to_ids(ITEM_TOKEN)
        self._fragments = self._tokenize_fragments()
        self.yes_token_id, self.no_token_id = self._answer_token_ids()
        self._title_tokens = lru_cache(maxsize=200_000)(self._tokenize_title)
        shortest = self._encode_ids([], "", 0)
        if len(shortest["input_ids"]) + max_title_tokens > max_length:
            raise ValueError(
                f"max_length={max_length} cannot hold the question ({len(shortest['input_ids'])} tokens) "
                f"plus a {max_title_tokens}-token title; raise max_length"
            )

    # --- tokenization ------------------------------------------------------------------------------

    def _tokens(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _answer_token_ids(self) -> tuple[int, int]:
        """The first token that " Yes" and " No" each add after the prompt's end ("Answer:"), the tokens the model
        would answer with. Not the first token of " Yes" alone: SentencePiece (Llama-2-style) tokenizers make
        that a bare "▁", the same for both answers."""
        prompt = self._fragments["answer"]
        answers = [self._tokens(f"{ANSWER} {answer}") for answer in ("Yes", "No")]
        firsts = [
            tokens[len(prompt)] for tokens in answers if tokens[: len(prompt)] == prompt and tokens != prompt
        ]
        if len(set(firsts)) != 2:
            tokenizer = self.tokenizer
            ends = [tokenizer.convert_ids_to_tokens(tokens[len(prompt) - 1 :]) for tokens in answers]
            raise ValueError(
                f"tokenizer {type(tokenizer).__name__} ({tokenizer.name_or_path or 'unnamed'}) does not continue the "
                "prompt's 'Answer:' with a first token of its own for each of ' Yes' and ' No' (from the prompt's "
                f"last token on: {ends}), so the score could not tell the answers apart"
            )
        return firsts[0], firsts[1]

    def _tokenize_title(self, title: str) -> tuple[int, ...]:
        # A title is data: "<item>", "<user>" or "</s>" inside it stay plain text, never control tokens.
        tokens = self.tokenizer.encode(title, add_special_tokens=False, split_special_tokens=True)
        return tuple(tokens[: self.max_title_tokens])

    def _check_items(self, items: list[Item], user_id: int) -> None:
        """Ids must fit in int64 and every title needs a token (the model mean-pools it): else a ValueError."""
        for value in (*(item for item in items if not isinstance(item, str)), user_id):
            if not -(2**63) <= int(value) < 2**63:
                raise ValueError(f"id {value} does not fit in int64")
        for item in items:
            if not self._title_tokens(self.item_title(item)):
                raise ValueError(f"item {item!r} has an empty title; every item needs a non-empty title")

    def _tokenize_fragments(self) -> dict[str, list[int]]:
        noun = self.item_noun
        bos = self.tokenizer.bos_token_id
        adds_bos = bos is not None and self.tokenizer("a").input_ids[:1] == [bos]
        return {
            "head": ([bos] if adds_bos else [])
            + self._tokens(f"A user has given high ratings to the following {noun}s:"),
            "none": self._tokens(" none"),
            "open": self._tokens(' "'),
            "close": self._tokens('"'),
            "sep": self._tokens(","),
            "end": self._tokens("."),
            "user": self._tokens(
                " Additionally, we have information about the user's preferences encoded in the feature"
            ),
            "ask": self._tokens(
                " Using all available information, make a prediction about whether the user would enjoy "
                f'the {noun} titled "'
            ),
            "feature": self._tokens(" with the feature"),
            "answer": self._tokens(ANSWER),
        }

    # --- one prompt --------------------------------------------------------------------------------

    def item_title(self, item: Item) -> str:
        return item if isinstance(item, str) else self.catalog.get(int(item), f"item {item}")

    def item_id(self, item: Item) -> int:
        """Catalog id of an item; 0 (no CF vector) for titles outside the catalog."""
        return self.title_to_id.get(item, 0) if isinstance(item, str) else int(item)

    def encode(self, history: list[Item], candidate: Item, user_id: int = 0) -> dict[str, list[int] | int]:
        """Token ids and placeholder bookkeeping of one prompt; the history is trimmed to fit ``max_length``."""
        history = self._recent(history)
        self._check_items([*history, candidate], user_id)
        encoded = self._encode_ids(history, candidate, user_id)
        while len(encoded["input_ids"]) > self.max_length and history:
            history = history[1:]
            encoded = self._encode_ids(history, candidate, user_id)
        return encoded

    def _recent(self, history: list[Item]) -> list[Item]:
        """The ``max_history`` most recent real items (ids <= 0 are padding)."""
        real = [item for item in history if isinstance(item, str) or int(item) > 0]
        return real[max(len(real) - self.max_history, 0) :]  # not [-max_history:]: max_history=0 keeps none

    def _encode_ids(self, history: list[Item], candidate: Item, user_id: int) -> dict[str, list[int] | int]:
        frag = self._fragments
        ids: list[int] = list(frag["head"])
        slots: list[int] = [-1] * len(ids)

        def add(tokens, slot: int = -1) -> None:
            ids.extend(tokens)
            slots.extend([slot] * len(tokens))

        hybrid = self.hybrid
        for position, item in enumerate(history, start=1):
            add(frag["open"])
            add(self._title_tokens(self.item_title(item)), position)
            add(frag["close"])
            if hybrid and self.history_item_tokens:
                add([self.item_token_id], position)
            add(frag["sep"] if position < len(history) else frag["end"])
        if not history:
            add(frag["none"] + frag["end"])
        if hybrid:
            add(frag["user"] + [self.user_token_id] + frag["end"])
        add(frag["ask"])
        add(self._title_tokens(self.item_title(candidate)), 0)
        add(frag["close"])
        if hybrid:
            add(frag["feature"])
            add([self.item_token_id], 0)
        add(frag["answer"])
        return {
            "input_ids": ids,
            "title_index": slots,
            "history_ids": [self.item_id(item) for item in history],
            "item_id": self.item_id(candidate),
            "user_id": int(user_id),
        }

    @staticmethod
    def evaluation_sort_key(encoded: dict) -> tuple:
        """Sort key of an :meth:`encode` result: prompts with one prefix (user and history) sort together,
        prefixes short to long, then by length. Batches cut from that order pad little, and
        ``CCFLLMForCTR.score_shared_prefixes`` computes each prefix once."""
        prefix_length = encoded["title_index"].index(0)  # the candidate's first title token
        return prefix_length, encoded["user_id"], tuple(encoded["history_ids"]), len(encoded["input_ids"])

    def encode_ranking(
        self, history: list[Item], candidates: list[Item], user_id: int = 0
    ) -> tuple[BatchFeature, BatchFeature]:
        """One shared prefix (history, ``<user>``, question up to the title) and N suffixes, for ``rank_candidates``.

        The history is trimmed so that the longest candidate's prompt fits ``max_length``, and every
        candidate uses that same history, so prefix + suffix equals the prompt :meth:`encode` builds.
        """
        if not candidates:
            raise ValueError("encode_ranking needs at least one candidate")
        self._check_items(candidates, user_id)
        longest = max(candidates, key=lambda item: len(self._title_tokens(self.item_title(item))))
        kept = len(self.encode(history, longest, user_id)["history_ids"])
        history = self._recent(history)[len(self._recent(history)) - kept :]
        prefix, suffixes = None, []
        for item in candidates:
            row = self._encode_ids(history, item, user_id)
            cut = row["title_index"].index(0)  # the candidate's first title token
            prefix = prefix or {
                **row,
                "input_ids": row["input_ids"][:cut],
                "title_index": row["title_index"][:cut],
                "item_id": 0,
            }
            suffixes.append(
                {
                    **row,
                    "input_ids": row["input_ids"][cut:],
                    "title_index": row["title_index"][cut:],
                    "history_ids": [],
                }
            )
        return self.pad([prefix]), self.pad(suffixes, padding_side="right")

    # --- batches -----------------------------------------------------------------------------------

    def pad(
        self, encoded: list[dict], labels: list[float] | None = None, padding_side: str | None = None
    ) -> BatchFeature:
        """Pad a list of :meth:`encode` results into model inputs (default side: ``self.padding_side``)."""
        side = padding_side or self.padding_side
        width = max(len(row["input_ids"]) for row in encoded)
        history_width = max(len(row["history_ids"]) for row in encoded)
        pad_id = self.tokenizer.pad_token_id

        def padded(values: list[int], fill: int, size: int) -> list[int]:
            filler = [fill] * (size - len(values))
            return filler + values if side == "left" else values + filler

        batch = {
            "input_ids": [padded(row["input_ids"], pad_id, width) for row in encoded],
            "attention_mask": [padded([1] * len(row["input_ids"]), 0, width) for row in encoded],
            "title_index": [padded(row["title_index"], -1, width) for row in encoded],
            "history_ids": [
                row["history_ids"] + [0] * (history_width - len(row["history_ids"])) for row in encoded
            ],
            "item_ids": [row["item_id"] for row in encoded],
            "user_ids": [row["user_id"] for row in encoded],
        }
        if labels is not None:
            batch["labels"] = [float(label) for label in labels]
        # explicit dtypes: a batch whose histories are all empty would otherwise give float history_ids
        return BatchFeature(
            {
                key: torch.tensor(value, dtype=torch.float32 if key == "labels" else torch.long)
                for key, value in batch.items()
            }
        )

    def __call__(
        self,
        histories: list[list[Item]],
        candidates: list[Item],
        user_ids: list[int] | None = None,
        labels: list[float] | None = None,
    ) -> BatchFeature:
        if len(histories) != len(candidates) or (user_ids is not None and len(user_ids) != len(candidates)):
            raise ValueError("histories, candidates and user_ids must have the same length")
        users = user_ids if user_ids is not None else [0] * len(candidates)
        encoded = [self.encode(list(h), c, u) for h, c, u in zip(histories, candidates, users, strict=True)]
        return self.pad(encoded, labels)

    def collate(self, rows: list[dict]) -> BatchFeature:
        """Data collator for rows in the CTR format (``uid``, ``iid``, ``his``, optional ``label``)."""
        labels = [row["label"] for row in rows] if "label" in rows[0] else None
        return self(
            [row["his"] for row in rows], [row["iid"] for row in rows], [row["uid"] for row in rows], labels
        )

    # --- persistence -------------------------------------------------------------------------------

    def settings(self) -> dict:
        return {
            "hybrid": self.hybrid,
            "history_item_tokens": self.history_item_tokens,
            "max_history": self.max_history,
            "max_length": self.max_length,
            "max_title_tokens": self.max_title_tokens,
            "item_noun": self.item_noun,
            "padding_side": self.padding_side,
        }

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Tokenizer files, the prompt settings and the item catalog (id -> title), next to the model."""
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(path)
        settings = {"processor_class": type(self).__name__, **self.settings()}
        (path / PROCESSOR_FILE).write_text(json.dumps(settings, indent=2))
        (path / CATALOG_FILE).write_text(
            json.dumps({str(k): v for k, v in self.catalog.items()}, ensure_ascii=False)
        )
        shutil.copy(
            __file__, path / Path(__file__).name
        )  # the processor travels with the model as remote code

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **overrides) -> CCFLLMProcessor:
        path = Path(path)
        for name in (PROCESSOR_FILE, CATALOG_FILE):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path / name} not found: is {path} a CCF-LLM model folder?")
        settings = json.loads((path / PROCESSOR_FILE).read_text())
        settings.pop("processor_class", None)
        catalog = {int(k): v for k, v in json.loads((path / CATALOG_FILE).read_text()).items()}
        # A blank config: otherwise AutoTokenizer reads config.json, whose auto_map names remote code, and
        # asks whether to trust it (an interactive prompt) before falling back to the tokenizer's own class.
        tokenizer = AutoTokenizer.from_pretrained(path, config=PretrainedConfig())
        return cls(tokenizer, catalog, **{**settings, **overrides})

    def with_settings(self, **changes) -> CCFLLMProcessor:
        """A copy with other prompt settings (e.g. ``hybrid=False`` for stage 1), sharing the tokenizer."""
        return type(self)(self.tokenizer, self.catalog, **{**self.settings(), **changes})
