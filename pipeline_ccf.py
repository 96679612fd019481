"""``pipeline(model=folder, trust_remote_code=True)`` for CCF-LLM (Hub remote code: torch + transformers only).

One request is a user (optional), the items they liked (ids or titles) and one candidate or several::

    ctr({"user_id": 12, "history": [1, "Fargo (1996)"], "candidate": "Heat"})
    -> [{"label": "Yes", "score": p}, {"label": "No", "score": 1 - p}]      # p = sigmoid(CTR score)
    ctr({"history": ["Toy Story (1995)"], "candidates": ["Heat", "Babe", 6]}, top_k=2)
    -> [{"item": "Heat (1995)", "item_id": 2, "score": p}, ...]               # best first

The widget's plain text carries the same request in one format (``INPUT_FORMAT``); a list of requests
gives a list of results (``batch_size=N``: N single-candidate prompts per forward). Titles resolve through
the model's item catalog, forgiving case, a leading or trailing article ("The Matrix" = "Matrix, The") and
a missing or different year. What the model does not know is dropped with a warning rather than refused:
an unknown user scores as the history-derived user vector alone (id 0), an unknown title as a text-only
item (id 0, its own title), an unknown id is left out of the history (as a candidate it becomes the
text-only item "item <id>").
"""

from __future__ import annotations

import os
import re
import types
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, Pipeline, PreTrainedModel
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.utils import cached_file

try:
    from .modeling_ccf import native_bf16
    from .processing_ccf import CATALOG_FILE, PROCESSOR_FILE, CCFLLMProcessor
except ImportError:  # imported as a top-level module (installed package), not as Hub remote code
    from modeling_ccf import native_bf16
    from processing_ccf import CATALOG_FILE, PROCESSOR_FILE, CCFLLMProcessor

TASK = "ccf-ctr"
INPUT_FORMAT = (
    "expected text like 'history: Toy Story (1995); Fargo (1996) | candidate: Heat (1995)' "
    "(or 'candidates: A; B; C' to rank several, optionally with 'user: 12'), or a dict "
    "{'user_id': 12, 'history': [item id or title, ...], 'candidate': item} / {..., 'candidates': [items]}"
)
TEXT_KEYS = {"user": "user_id", "history": "history", "candidate": "candidate", "candidates": "candidates"}
DICT_KEYS = ("user_id", "history", "candidate", "candidates")
# What the processor reads, fetched file by file when the model comes from a Hub repository.
PROCESSOR_FILES = (PROCESSOR_FILE, CATALOG_FILE, "tokenizer_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt", "special_tokens_map.json")

Item = int | str


def bad_input(problem: str) -> ValueError:
    """Every input error names the accepted format, so a caller can fix the request from the message alone."""
    return ValueError(f"{problem}; {INPUT_FORMAT}")


# --- the widget's text -------------------------------------------------------------------------------


def parse_widget_text(text: str) -> dict[str, Any]:
    """``user: 12 | history: A; B | candidate: C`` (or ``candidates: C; D``) -> the equivalent request dict.

    Parts are separated by ``|``, items by ``;``; keys are case-insensitive and only the first ``:`` of a
    part separates key from value (titles may contain colons). Every text item is a title.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise bad_input("the text is not valid Unicode") from err
    request: dict[str, Any] = {}
    for part in text.split("|"):
        key, colon, value = part.partition(":")
        key = key.strip().lower()
        if not colon or key not in TEXT_KEYS:
            raise bad_input(
                f"cannot read {part.strip()[:60]!r} as 'key: value' with key user/history/candidate(s)"
            )
        name = TEXT_KEYS[key]
        if name in request:
            raise bad_input(f"{key!r} is given twice")
        if name == "user_id":
            try:
                request[name] = int(value.strip())
            except ValueError as err:
                raise bad_input(f"user must be an integer id, got {value.strip()[:30]!r}") from err
        elif name == "candidate":
            request[name] = value.strip()
        else:
            request[name] = [title.strip() for title in value.split(";") if title.strip()]
    return request


# --- titles -> catalog ids ---------------------------------------------------------------------------

ARTICLES = r"the|a|an|les|le|la|l'|il|el|los|las|das|der|die|den|det"
_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
_ALIAS = re.compile(r"\s*\([^()]*\)\s*$")  # MovieLens appends alternative titles: "Haine, La (Hate) (1995)"
_TRAILING_ARTICLE = re.compile(rf",\s*(?:{ARTICLES})$")
_LEADING_ARTICLE = re.compile(rf"^(?:{ARTICLES})\s+|^l'")


def title_key(title: str) -> tuple[str, str | None]:
    """(normalised title, year): case-folded, article and alternative titles removed, year split off."""
    text = " ".join(title.casefold().split())
    year = _YEAR.search(text)
    if year:
        text = text[: year.start()]
    while _ALIAS.search(text) and _ALIAS.sub("", text):
        text = _ALIAS.sub("", text)
    text = _LEADING_ARTICLE.sub("", _TRAILING_ARTICLE.sub("", text))
    return text.strip(), year.group(1) if year else None


class TitleResolver:
    """Finds a catalog id for a title typed by a person: exact, then normalised with the year, then without."""

    def __init__(self, catalog: dict[int, str]):
        self.exact: dict[str, list[int]] = {}
        self.with_year: dict[tuple[str, str | None], list[int]] = {}
        self.without_year: dict[str, list[int]] = {}
        for item, title in sorted(catalog.items()):
            self.exact.setdefault(title, []).append(item)
            key = title_key(title)
            self.with_year.setdefault(key, []).append(item)
            self.without_year.setdefault(key[0], []).append(item)

    def resolve(self, title: str) -> int | None:
        """The catalog id of ``title``, or ``None``; several matches warn and give the lowest id."""
        matches = self.exact.get(title)
        if not matches:
            key = title_key(title)
            if not key[0]:  # only a year or an article: matching it would pick an arbitrary item
                return None
            matches = self.with_year.get(key) or self.without_year.get(key[0], [])
        if len(matches) > 1:
            warnings.warn(f"{title!r} matches catalog items {matches}; using {matches[0]}", stacklevel=2)
        return matches[0] if matches else None


# --- the request --------------------------------------------------------------------------------------


@dataclass
class CTRRequest:
    """One user's request with every item resolved: catalog ids, or titles for text-only items."""

    user_id: int
    history: list[Item]
    candidates: list[Item]
    ranking: bool


def _items(value: Any, field: str) -> list[Item]:
    values = value if isinstance(value, (list, tuple)) else [value]
    for item in values:
        if isinstance(item, bool) or not isinstance(item, (Integral, str)):
            raise bad_input(f"{field} items must be catalog ids (int) or titles (str), got {item!r}")
        if isinstance(item, str) and not item.strip():
            raise bad_input(f"{field} holds an empty title")
    return [item if isinstance(item, str) else int(item) for item in values]


class CCFLLMPipeline(Pipeline):
    """CTR of one candidate ("Yes"/"No" probabilities) or a ranking of several, for one user's history.

    The processor (prompt settings, tokenizer, item catalog) is read from the model's own folder, so the
    folder alone defines the prompts. Several candidates share one prompt prefix, which
    ``CCFLLMForCTR.rank_candidates`` computes once.
    """

    _load_processor = False
    _load_tokenizer = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False

    def __init__(self, model: PreTrainedModel, processor: CCFLLMProcessor | None = None, **kwargs):
        processor = processor or load_processor(model)
        super().__init__(model=model, processor=processor, **kwargs)
        self.model.eval()  # LoRA dropout would make scores random
        if self.model.device.type == "cpu" and self.model.dtype == torch.bfloat16 and not native_bf16():
            # Only a model loaded with an explicit bf16 dtype or built by hand gets here (from_pretrained's default
            # is float32 on such a CPU); a CPU without AMX or AVX512-BF16 emulates bf16 several times slower.
            warnings.warn(
                "this CPU has no native bf16 (AMX or AVX512-BF16): the model's bfloat16 weights are converted "
                "to float32, which runs several times faster here; load it with dtype=torch.float32 to skip this",
                stacklevel=2,
            )
            self.model.float()
        self.titles = TitleResolver(processor.catalog)

    def __call__(self, inputs: dict | str | Iterable, batch_size: int | None = None, **kwargs) -> list:
        """Score one request (dict or text) or several (a list, or any iterable); ``top_k`` limits a ranking.

        With ``batch_size`` > 1 (an iterable is then read whole) the single-candidate requests run in batches
        of that size, ordered so that requests with the same user and history sit together and share one
        prefix computation (``CCFLLMForCTR.score_shared_prefixes``); rankings run one by one, their candidates
        being one batch already. Every request is checked before any is scored; results keep the input order.
        """
        if batch_size is None:
            batch_size = self._batch_size or 1
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(inputs, (dict, str)) or not isinstance(inputs, Iterable):  # one request (or a bad one)
            return super().__call__(inputs, batch_size=1, **kwargs)
        if not isinstance(inputs, (list, types.GeneratorType, torch.utils.data.Dataset)):
            inputs = list(inputs)  # HF's Pipeline iterates only these, and would take a tuple for one request
        if isinstance(inputs, list) and not inputs:
            return []
        if batch_size == 1:
            return super().__call__(inputs, batch_size=1, **kwargs)
        _, _, postprocess_params = self._sanitize_parameters(**kwargs)
        return self._score_in_batches(list(inputs), batch_size, postprocess_params)

    def _score_in_batches(self, inputs: list, batch_size: int, postprocess_params: dict) -> list:
        """See ``__call__``. Not HF's batching path: it collates requests in input order (no shared prefixes)
        and cannot mix rankings with single candidates."""
        requests = [self.request(item) for item in inputs]
        results: list = [None] * len(requests)
        rows = []
        for index, request in enumerate(requests):
            if request.ranking:
                outputs = self.forward(self.model_inputs(request))
                results[index] = self.postprocess(outputs, **postprocess_params)
            else:
                encoded = self.processor.encode(request.history, request.candidates[0], request.user_id)
                rows.append((index, encoded))
        rows.sort(key=lambda row: CCFLLMProcessor.evaluation_sort_key(row[1]))
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            scores = self.forward({"inputs": self.processor.pad([row for _, row in batch]), "items": None})
            for (index, _), score in zip(batch, scores["scores"], strict=True):
                results[index] = self.postprocess({"scores": score[None], "items": None})
        return results

    def _sanitize_parameters(self, top_k: int | None = None, **kwargs) -> tuple[dict, dict, dict]:
        if kwargs:
            raise ValueError(f"unknown parameters {sorted(kwargs)}; the parameters are top_k and batch_size")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        return {}, {}, {} if top_k is None else {"top_k": top_k}

    # --- input -> request -> model inputs ------------------------------------------------------------

    def request(self, inputs: dict | str) -> CTRRequest:
        """Parse and resolve one input; unknown users and items become what the model knows, with a warning."""
        if isinstance(inputs, str):
            inputs = parse_widget_text(inputs)
        if not isinstance(inputs, dict):
            raise bad_input(f"cannot score a {type(inputs).__name__}")
        unknown = sorted(set(inputs) - set(DICT_KEYS))
        if unknown:
            raise bad_input(f"unknown keys {unknown}")
        if ("candidate" in inputs) == ("candidates" in inputs):
            raise bad_input("give exactly one of 'candidate' or 'candidates'")
        ranking = "candidates" in inputs
        candidates = _items(inputs["candidates"] if ranking else inputs["candidate"], "candidate")
        if not candidates or (not ranking and len(candidates) != 1):
            raise bad_input("'candidate' must be one item and 'candidates' a non-empty list")
        history = [self._resolve(item, "history") for item in _items(inputs.get("history") or [], "history")]
        return CTRRequest(
            user_id=self._user(inputs.get("user_id")),
            history=[item for item in history if item is not None],
            candidates=[self._resolve(item, "candidate") or f"item {item}" for item in candidates],
            ranking=ranking,
        )

    def _user(self, user_id: Any) -> int:
        if user_id is None:
            return 0
        if isinstance(user_id, bool) or not isinstance(user_id, Integral):
            raise bad_input(f"user_id must be an integer, got {user_id!r}")
        # 0 is the documented "no user"; text-only prompts have no user at all.
        if user_id == 0 or not self.processor.hybrid:
            return 0
        if not 0 < user_id < self.model.config.num_users:
            warnings.warn(f"unknown user {user_id}: scoring from the history alone (user id 0)", stacklevel=2)
            return 0
        return int(user_id)

    def _resolve(self, item: Item, field: str) -> Item | None:
        """A catalog id, the title itself (text-only item), or ``None`` for an unknown id (history only)."""
        if isinstance(item, int):
            if item in self.processor.catalog:
                return item
            fallback = (
                "left out of the history" if field == "history" else f"scored as text-only 'item {item}'"
            )
            warnings.warn(f"unknown item id {item}: {fallback}", stacklevel=2)
            return None
        found = self.titles.resolve(item.strip())
        if found is None:
            warnings.warn(
                f"{item!r} is not in the item catalog: used as a text-only item (no CF vector)", stacklevel=2
            )
            return item.strip()
        return found

    def preprocess(self, inputs: dict | str) -> dict[str, Any]:
        return self.model_inputs(self.request(inputs))

    def model_inputs(self, request: CTRRequest) -> dict[str, Any]:
        """A ranking's shared prefix and suffixes, or the one prompt of a single candidate."""
        if request.ranking:
            prefix, suffixes = self.processor.encode_ranking(
                request.history, request.candidates, request.user_id
            )
            items = [
                {"item": self.processor.item_title(item), "item_id": self.processor.item_id(item)}
                for item in request.candidates
            ]
            return {"prefix": prefix, "suffixes": suffixes, "items": items}
        return {
            "inputs": self.processor([request.history], request.candidates, [request.user_id]),
            "items": None,
        }

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        if model_inputs["items"] is None:
            scores = self.model.score_shared_prefixes(**model_inputs["inputs"])
        else:
            scores = self.model.rank_candidates(model_inputs["prefix"], model_inputs["suffixes"])
        return {"scores": scores, "items": model_inputs["items"]}

    def postprocess(self, model_outputs: dict[str, Any], top_k: int | None = None) -> list[dict]:
        probabilities = torch.sigmoid(model_outputs["scores"]).tolist()
        if model_outputs["items"] is None:
            return [
                {"label": "Yes", "score": probabilities[0]},
                {"label": "No", "score": 1 - probabilities[0]},
            ]
        ranked = sorted(
            ({**item, "score": p} for item, p in zip(model_outputs["items"], probabilities, strict=True)),
            key=lambda row: row["score"],
            reverse=True,
        )
        return ranked[:top_k]

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """Model, code (with the ``custom_pipelines`` entry in config.json) and the processor's files."""
        super().save_pretrained(save_directory, **kwargs)
        self.processor.save_pretrained(save_directory)


def load_processor(model: PreTrainedModel) -> CCFLLMProcessor:
    """The processor saved next to the model: its local folder, or its Hub repository's files (fetched)."""
    source = model.name_or_path
    if not source:
        raise ValueError("the model was not loaded from a folder: pass processor=CCFLLMProcessor(...)")
    if os.path.isdir(source):
        return CCFLLMProcessor.from_pretrained(source)
    revision = getattr(model.config, "_commit_hash", None)
    for name in TOKENIZER_FILES:  # whichever of them the tokenizer has
        cached_file(source, name, revision=revision, _raise_exceptions_for_missing_entries=False)
    paths = [cached_file(source, name, revision=revision) for name in PROCESSOR_FILES]
    return CCFLLMProcessor.from_pretrained(Path(paths[0]).parent)


PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=CCFLLMPipeline, pt_model=AutoModel, type="text")
