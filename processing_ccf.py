"""The hybrid prompt: text + placeholders, tokenized once per piece (Hub remote code: transformers + torch only).

ML-1M wording (``item_noun="movie"``; "book" for Amazon-Book), up to ``max_history`` most recent liked titles::

    A user has given high ratings to the following movies: "T1"<item>, "T2"<item>. Additionally, we have
    information about the user's preferences encoded in the feature <user>. Using all available information,
    make a prediction about whether the user would enjoy the movie titled "T" with the feature <item>?
    Answer with "Yes" or "No".
    Answer:

With ``item_attributes`` every item is followed by its attribute text (``"Fargo (1996)" (crime, drama)<item>``)
and the candidate's question too (``titled "T" (crime, drama) with the feature <item>?``); with
``user_profile`` the user's profile sentence ("The user is a 25-34-year-old male programmer.") comes right
after the history, before the ``<user>`` sentence. An item's semantic vector pools its title and attribute
tokens.

Text-only prompts (stage 1, TALLRec) drop every placeholder and the ``<user>`` sentence. Titles and the fixed
fragments are tokenized once and cached, so building a prompt is list concatenation. When a prompt would
exceed ``max_length`` the oldest history items are dropped; the question is never cut (docs/design.md).

The processor is a ``ProcessorMixin`` registered for ``AutoProcessor``: ``save_pretrained`` writes the tokenizer
files and ``processor_config.json`` (prompt settings, the item catalog and the attribute and profile tables, with
the ``auto_map`` entry), so ``AutoProcessor.from_pretrained(folder_or_repo, trust_remote_code=True)`` returns it
and ``model(**processor(histories, candidates, user_ids))`` scores like the pipeline.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoTokenizer,
    BatchFeature,
    PretrainedConfig,
    PreTrainedTokenizerBase,
    ProcessorMixin,
)
from transformers.utils import PROCESSOR_NAME, cached_file

USER_TOKEN = "<user>"
ITEM_TOKEN = "<item>"
PROCESSOR_FILE = PROCESSOR_NAME  # processor_config.json
# Folders saved before the processor was a ProcessorMixin: settings and each id -> text table in a file of its own.
LEGACY_FILES = {
    "settings": "ccf_processor.json",
    "catalog": "item_catalog.json",
    "attributes": "item_attributes.json",
    "profiles": "user_profiles.json",
}
TABLES = ("catalog", "attributes", "profiles")  # id -> text, saved with string keys (JSON)
SETTING_TYPES = {
    "hybrid": bool,
    "history_item_tokens": bool,
    "max_history": int,
    "max_length": int,
    "max_title_tokens": int,
    "item_noun": str,
    "padding_side": str,
    "item_attributes": bool,
    "user_profile": bool,
    "max_attribute_tokens": int,
    "max_profile_tokens": int,
}
HUB_KWARGS = ("cache_dir", "force_download", "proxies", "token", "local_files_only", "revision", "subfolder")
ANSWER = '? Answer with "Yes" or "No".\nAnswer:'  # how every prompt ends: the model's next token answers
Item = int | str


class CCFLLMProcessor(ProcessorMixin):
    """Builds (hybrid) prompts from user id, history and candidate, and batches them for ``CCFLLMForCTR``.

    Items are catalog ids (``int``) or titles (``str``); a title that is not in the catalog, or an id
    of ``0``/below, is an item without a CF vector (the model then uses its text vector alone).
    ``attributes`` (iid -> "comedy, crime") and ``profiles`` (uid -> sentence) are shown when
    ``item_attributes`` / ``user_profile`` are on; an item or user without an entry shows none.
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
        attributes: dict[int, str] | None = None,
        profiles: dict[int, str] | None = None,
        item_attributes: bool = False,
        user_profile: bool = False,
        max_attribute_tokens: int = 24,
        max_profile_tokens: int = 32,
    ):
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        super().__init__(tokenizer)
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
        self.attributes = {int(iid): str(text) for iid, text in (attributes or {}).items() if text}
        self.profiles = {int(uid): str(text) for uid, text in (profiles or {}).items() if text}
        self.item_attributes = item_attributes
        self.user_profile = user_profile
        self.max_attribute_tokens = max_attribute_tokens
        self.max_profile_tokens = max_profile_tokens
        self.user_token_id = tokenizer.convert_tokens_to_ids(USER_TOKEN)
        self.item_token_id = tokenizer.convert_tokens_to_ids(ITEM_TOKEN)
        self._fragments = self._tokenize_fragments()
        self.yes_token_id, self.no_token_id = self._answer_token_ids()
        self._title_tokens = lru_cache(maxsize=200_000)(self._tokenize_title)
        self._attribute_tokens = lru_cache(maxsize=200_000)(self._tokenize_attributes)
        self._profile_tokens = lru_cache(maxsize=200_000)(self._tokenize_profile)
        shortest = len(self._encode_ids([], "", 0)["input_ids"])
        longest_item = max_title_tokens + (max_attribute_tokens + 3 if item_attributes else 0)
        longest_profile = max_profile_tokens if user_profile else 0
        if shortest + longest_item + longest_profile > max_length:
            raise ValueError(
                f"max_length={max_length} cannot hold the question ({shortest} tokens) plus a {longest_item}-token "
                f"item{f' and a {longest_profile}-token profile' if longest_profile else ''}; raise max_length"
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

    def _data_tokens(self, text: str) -> list[int]:
        # Titles, attributes and profiles are data: "<item>", "<user>" or "</s>" inside stay plain text.
        return self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)

    def _tokenize_title(self, title: str) -> tuple[int, ...]:
        return tuple(self._data_tokens(title)[: self.max_title_tokens])

    def _tokenize_attributes(self, text: str) -> tuple[int, ...]:
        return tuple(self._data_tokens(text)[: self.max_attribute_tokens])

    def _tokenize_profile(self, text: str) -> tuple[int, ...]:
        return tuple(self._data_tokens(f" {text}")[: self.max_profile_tokens])

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
            "attributes_open": self._tokens(" ("),
            "attributes_close": self._tokens(")"),
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

    def item_attribute_text(self, item: Item) -> str:
        """The item's attribute text ("comedy, crime"), ``""`` when unknown (a title outside the catalog)."""
        return self.attributes.get(self.item_id(item), "")

    def user_profile_text(self, user_id: int) -> str:
        return self.profiles.get(int(user_id), "")

    def item_id(self, item: Item) -> int:
        """Catalog id of an item; 0 (no CF vector) for titles outside the catalog."""
        return self.title_to_id.get(item, 0) if isinstance(item, str) else int(item)

    def encode(
        self, history: list[Item], candidate: Item, user_id: int = 0, profile: str | None = None
    ) -> dict[str, list[int] | int]:
        """Token ids and placeholder bookkeeping of one prompt; the history is trimmed to fit ``max_length``.
        ``profile`` replaces the user's profile sentence from ``profiles`` (used when ``user_profile`` is on)."""
        history = self._recent(history)
        self._check_items([*history, candidate], user_id)
        encoded = self._encode_ids(history, candidate, user_id, profile)
        while len(encoded["input_ids"]) > self.max_length and history:
            history = history[1:]
            encoded = self._encode_ids(history, candidate, user_id, profile)
        return encoded

    def _recent(self, history: list[Item]) -> list[Item]:
        """The ``max_history`` most recent real items (ids <= 0 are padding)."""
        real = [item for item in history if isinstance(item, str) or int(item) > 0]
        return real[max(len(real) - self.max_history, 0) :]  # not [-max_history:]: max_history=0 keeps none

    def _encode_ids(
        self, history: list[Item], candidate: Item, user_id: int, profile: str | None = None
    ) -> dict[str, list[int] | int]:
        frag = self._fragments
        ids: list[int] = list(frag["head"])
        slots: list[int] = [-1] * len(ids)

        def add(tokens, slot: int = -1) -> None:
            ids.extend(tokens)
            slots.extend([slot] * len(tokens))

        def add_attributes(item: Item, slot: int) -> None:
            text = self.item_attribute_text(item) if self.item_attributes else ""
            tokens = self._attribute_tokens(text) if text else ()
            if tokens:  # pooled with the title: the item's semantic vector reads both
                add(frag["attributes_open"])
                add(tokens, slot)
                add(frag["attributes_close"])

        hybrid = self.hybrid
        for position, item in enumerate(history, start=1):
            add(frag["open"])
            add(self._title_tokens(self.item_title(item)), position)
            add(frag["close"])
            add_attributes(item, position)
            if hybrid and self.history_item_tokens:
                add([self.item_token_id], position)
            add(frag["sep"] if position < len(history) else frag["end"])
        if not history:
            add(frag["none"] + frag["end"])
        if self.user_profile:
            text = self.user_profile_text(user_id) if profile is None else profile.strip()
            if text:
                add(self._profile_tokens(text))
        if hybrid:
            add(frag["user"] + [self.user_token_id] + frag["end"])
        add(frag["ask"])
        add(self._title_tokens(self.item_title(candidate)), 0)
        add(frag["close"])
        add_attributes(candidate, 0)
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
        self, history: list[Item], candidates: list[Item], user_id: int = 0, profile: str | None = None
    ) -> tuple[BatchFeature, BatchFeature]:
        """One shared prefix (history, ``<user>``, question up to the title) and N suffixes, for ``rank_candidates``.

        The history is trimmed so that the longest candidate's prompt fits ``max_length``, and every
        candidate uses that same history, so prefix + suffix equals the prompt :meth:`encode` builds.
        """
        if not candidates:
            raise ValueError("encode_ranking needs at least one candidate")
        self._check_items(candidates, user_id)
        kept = min(len(self.encode(history, item, user_id, profile)["history_ids"]) for item in candidates)
        history = self._recent(history)[len(self._recent(history)) - kept :]
        prefix, suffixes = None, []
        for item in candidates:
            row = self._encode_ids(history, item, user_id, profile)
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
        profiles: list[str | None] | None = None,
    ) -> BatchFeature:
        lengths = {len(values) for values in (histories, user_ids, profiles) if values is not None}
        if lengths - {len(candidates)}:
            raise ValueError("histories, candidates, user_ids and profiles must have the same length")
        users = user_ids if user_ids is not None else [0] * len(candidates)
        given = profiles if profiles is not None else [None] * len(candidates)
        encoded = [
            self.encode(list(h), c, u, p)
            for h, c, u, p in zip(histories, candidates, users, given, strict=True)
        ]
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
            "item_attributes": self.item_attributes,
            "user_profile": self.user_profile,
            "max_attribute_tokens": self.max_attribute_tokens,
            "max_profile_tokens": self.max_profile_tokens,
        }

    def to_dict(self) -> dict[str, Any]:
        """``processor_config.json``: the prompt settings and the id -> text tables (the tokenizer has its own files)."""
        tables = {name: {str(key): text for key, text in getattr(self, name).items()} for name in TABLES}
        auto_map = {"auto_map": self.auto_map} if getattr(self, "auto_map", None) else {}
        return {**self.settings(), **tables, **auto_map, "processor_class": type(self).__name__}

    def __repr__(self) -> str:
        sizes = ", ".join(f"{len(getattr(self, name))} {name}" for name in TABLES)
        return f"{type(self).__name__}(tokenizer={type(self.tokenizer).__name__}, {sizes}, {self.settings()})"

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> CCFLLMProcessor:
        """A saved processor from a local folder or a Hub repository; keyword arguments naming prompt settings
        replace the saved ones (``max_history=1``)."""
        source = str(pretrained_model_name_or_path)
        if kwargs.get("tokenizer") is None:
            hub = {key: kwargs[key] for key in HUB_KWARGS if kwargs.get(key) is not None}
            # A blank config: otherwise AutoTokenizer reads config.json, whose auto_map names remote code, and
            # asks whether to trust it (an interactive prompt) before falling back to the tokenizer's own class.
            kwargs["tokenizer"] = AutoTokenizer.from_pretrained(source, config=PretrainedConfig(), **hub)
        return super().from_pretrained(source, **kwargs)

    @classmethod
    def get_processor_dict(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs
    ) -> tuple[dict, dict]:
        """``processor_config.json`` (or an older folder's files), checked: a damaged file is named with its fault."""
        source = str(pretrained_model_name_or_path)
        hub = {key: kwargs[key] for key in HUB_KWARGS if kwargs.get(key) is not None}
        processor_dict, kwargs = super().get_processor_dict(source, **kwargs)
        if processor_dict.keys() - {
            "chat_template"
        }:  # there is a processor_config.json (the template is apart)
            where = os.path.join(source, PROCESSOR_FILE)
            check_settings(processor_dict, where)
            for name in TABLES:
                check_table(processor_dict.get(name), name, where)
            return processor_dict, kwargs
        return legacy_processor_dict(source, hub), kwargs

    def with_settings(self, **changes) -> CCFLLMProcessor:
        """A copy with other prompt settings (e.g. ``hybrid=False`` for stage 1), sharing the tokenizer."""
        tables = {"attributes": self.attributes, "profiles": self.profiles}
        return type(self)(self.tokenizer, self.catalog, **tables, **{**self.settings(), **changes})


def check_settings(content: Any, where: str) -> None:
    """Each saved prompt setting has its type: a hand-edited file is named here, not a TypeError deep in a prompt."""
    if not isinstance(content, dict):
        raise ValueError(
            f"{where}: expected a JSON object of processor settings, got {type(content).__name__}"
        )
    for key, kind in SETTING_TYPES.items():
        value = content.get(key, kind())
        if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value < 0)):
            wanted = "a non-negative integer" if kind is int else f"a {kind.__name__}"
            raise ValueError(f"{where}: {key!r} must be {wanted}, got {value!r}")


def check_table(table: Any, name: str, where: str) -> None:
    """An id -> text table as JSON holds it: integer-string keys, string values (``None``: no table)."""
    if table is None and name != "catalog":
        return
    if not isinstance(table, dict):
        raise ValueError(f"{where}: {name!r} must map ids to texts, got {type(table).__name__}")
    for key, text in table.items():
        if not key.lstrip("-").isdigit() or not isinstance(text, str):
            raise ValueError(f"{where}: {name!r} must map integer ids to texts, got entry {key!r}: {text!r}")


def read_json(source: str, name: str, hub: dict) -> Any:
    """A JSON file of a folder or Hub repository; ``None`` when it has no such file."""
    path = cached_file(source, name, _raise_exceptions_for_missing_entries=False, **hub)
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{os.path.join(source, name)}: not valid JSON ({err})") from err


def legacy_processor_dict(source: str, hub: dict) -> dict:
    """The processor dict of a folder saved in the older layout (``LEGACY_FILES``), checked file by file."""
    content = {key: read_json(source, name, hub) for key, name in LEGACY_FILES.items()}
    for key in ("settings", "catalog"):
        if content[key] is None:
            raise FileNotFoundError(
                f"{os.path.join(source, PROCESSOR_FILE)} not found (nor the older {LEGACY_FILES[key]}): "
                f"is {source} a CCF-LLM model folder?"
            )
    check_settings(content["settings"], os.path.join(source, LEGACY_FILES["settings"]))
    for name in TABLES:
        check_table(content[name], name, os.path.join(source, LEGACY_FILES[name]))
    return {**content.pop("settings"), **content}


CCFLLMProcessor.register_for_auto_class()
