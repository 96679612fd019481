"""``pipeline(model=folder, trust_remote_code=True)`` for CCF-LLM (Hub remote code: torch + transformers only).

One request is a user (optional), the items they liked (ids or titles) and one candidate or several::

    ctr({"user_id": 12, "history": [1, "Fargo (1996)"], "candidate": "Heat"})
    -> [{"label": "Yes", "score": p}, {"label": "No", "score": 1 - p}]      # p = sigmoid(CTR score)
    ctr({"history": ["Toy Story (1995)"], "candidates": ["Heat", "Babe", 6]}, top_k=2)
    -> [{"item": "Heat (1995)", "item_id": 2, "score": p}, ...]               # best first
    ctr({"user_id": 12, "history": [1, "Fargo (1996)"], "exclude": [5]}, top_k=3)   # no candidates: recommend
    -> [{"item": "Babe (1995)", "item_id": 34, "cf_rank": 4, "score": p, "llm_rank": 1}, ...]

Without candidates the pipeline recommends: the model's own CF tables retrieve the ``num_candidates`` (default 50)
catalog items that score highest for the user (``CCFLLMForCTR.retrieve_candidates``; never the history's nor
``exclude``'s items, and only ``pool``'s when given), the LLM reranks them on one shared prompt prefix, and the
``top_k`` (default 10) come back with the LLM's probability, its rank and the CF rank.

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
from dataclasses import dataclass, replace
from numbers import Integral
from typing import Any

import torch
from transformers import AutoModel, Pipeline, PreTrainedModel
from transformers.pipelines import PIPELINE_REGISTRY

try:
    from .modeling_ccf import use_bf16
    from .processing_ccf import CCFLLMProcessor
except ImportError:  # imported as a top-level module (installed package), not as Hub remote code
    from modeling_ccf import use_bf16
    from processing_ccf import CCFLLMProcessor

TASK = "ccf-ctr"
INPUT_FORMAT = (
    "expected text like 'history: Toy Story (1995); Fargo (1996) | candidate: Heat (1995)' "
    "(or 'candidates: A; B; C' to rank several, optionally with 'user: 12'; without candidates it recommends, "
    "optionally with 'exclude: D; E' and 'pool: F; G'), or a dict "
    "{'user_id': 12, 'history': [item id or title, ...], 'candidate': item} / {..., 'candidates': [items]} / "
    "{'user_id': 12, 'history': [...], 'exclude': [items], 'pool': [items]}; any of them may add a 'profile' "
    "sentence (e.g. 'The user is a 25-34-year-old male programmer.'), read by models trained with user profiles"
)
TEXT_KEYS = {
    "user": "user_id",
    "history": "history",
    "candidate": "candidate",
    "candidates": "candidates",
    "exclude": "exclude",
    "pool": "pool",
    "profile": "profile",
}
DICT_KEYS = ("user_id", "history", "candidate", "candidates", "exclude", "pool", "profile")
NUM_CANDIDATES = 50  # CF candidates a recommendation reranks, by default
RECOMMEND_TOP_K = 10  # items a recommendation returns, by default

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
                f"cannot read {part.strip()[:60]!r} as 'key: value' with key user/history/candidate(s)/exclude/pool/profile"
            )
        name = TEXT_KEYS[key]
        if name in request:
            raise bad_input(f"{key!r} is given twice")
        if name == "user_id":
            try:
                request[name] = int(value.strip())
            except ValueError as err:
                raise bad_input(f"user must be an integer id, got {value.strip()[:30]!r}") from err
        elif name in ("candidate", "profile"):
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
    candidates: list[Item]  # empty for a recommendation until retrieval fills it
    ranking: bool
    recommend: bool = False
    exclude: tuple[int, ...] = ()
    pool: list[int] | None = None
    profile: str | None = None  # replaces the catalog's profile of ``user_id`` (prompts with user profiles)


def _items(value: Any, field: str) -> list[Item]:
    values = value if isinstance(value, (list, tuple)) else [value]
    for item in values:
        if isinstance(item, bool) or not isinstance(item, (Integral, str)):
            raise bad_input(f"{field} items must be catalog ids (int) or titles (str), got {item!r}")
        if isinstance(item, str) and not item.strip():
            raise bad_input(f"{field} holds an empty title")
    return [item if isinstance(item, str) else int(item) for item in values]


class CCFLLMPipeline(Pipeline):
    """CTR of one candidate ("Yes"/"No" probabilities), a ranking of several, or recommendations (no candidates:
    retrieved from the model's CF tables, then ranked), for one user's history.

    The processor (prompt settings, tokenizer, item catalog) is the model folder's own, loaded through
    ``AutoProcessor`` by ``pipeline(...)`` (or from the model's folder or repository when none is passed), so
    the folder alone defines the prompts. Several candidates share one prompt prefix, which
    ``CCFLLMForCTR.rank_candidates`` computes once.
    """

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False

    def __init__(self, model: PreTrainedModel, processor: CCFLLMProcessor | None = None, **kwargs):
        if processor is None:
            if not model.name_or_path:
                raise ValueError(
                    "the model was not loaded from a folder: pass processor=CCFLLMProcessor(...)"
                )
            revision = getattr(model.config, "_commit_hash", None)
            processor = CCFLLMProcessor.from_pretrained(model.name_or_path, revision=revision)
        if not callable(getattr(processor, "encode_ranking", None)):
            raise TypeError(
                f"the processor is a {type(processor).__name__}, not a CCFLLMProcessor: is processor_config.json "
                "missing from the model folder? (save the processor with CCFLLMProcessor.save_pretrained)"
            )
        super().__init__(model=model, processor=processor, **kwargs)
        self.model.eval()  # LoRA dropout would make scores random
        if self.model.device.type == "cpu" and self.model.dtype == torch.bfloat16 and not use_bf16():
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
        """Score one request (dict or text) or several (a list, or any iterable); ``top_k`` limits a ranking (a
        recommendation's default: 10), ``num_candidates`` is how many CF candidates a recommendation reranks (50).

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
        preprocess_params, _, postprocess_params = self._sanitize_parameters(**kwargs)
        return self._score_in_batches(list(inputs), batch_size, preprocess_params, postprocess_params)

    def _score_in_batches(
        self, inputs: list, batch_size: int, preprocess_params: dict, postprocess_params: dict
    ) -> list:
        """See ``__call__``: preprocess, forward and postprocess as HF's, but HF's batching collates requests in
        input order (no shared prefixes) and cannot mix rankings with single candidates, hence this one."""
        model_inputs = [self.preprocess(item, **preprocess_params) for item in inputs]
        results: list = [None] * len(model_inputs)
        rows = []
        for index, one in enumerate(model_inputs):
            if one["items"] is None:
                rows.append((index, one["encoded"][0]))
            else:
                results[index] = self.postprocess(self.forward(one), **postprocess_params)
        rows.sort(key=lambda row: self.processor.evaluation_sort_key(row[1]))
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            scores = self.forward({"encoded": [row for _, row in batch], "items": None})["scores"]
            for (index, _), score in zip(batch, scores, strict=True):
                results[index] = self.postprocess(
                    {"scores": score[None], "items": None}, **postprocess_params
                )
        return results

    def _sanitize_parameters(
        self, top_k: int | None = None, num_candidates: int | None = None, **kwargs
    ) -> tuple[dict, dict, dict]:
        if kwargs:
            raise ValueError(
                f"unknown parameters {sorted(kwargs)}; the parameters are top_k, num_candidates and batch_size"
            )
        for name, value in (("top_k", top_k), ("num_candidates", num_candidates)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        preprocess = {} if num_candidates is None else {"num_candidates": num_candidates}
        return preprocess, {}, {} if top_k is None else {"top_k": top_k}

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
        if "candidate" in inputs and "candidates" in inputs:
            raise bad_input("give exactly one of 'candidate' or 'candidates' (or neither, to recommend)")
        history = [self._resolve(item, "history") for item in _items(inputs.get("history") or [], "history")]
        user_id = self._user(inputs.get("user_id"))
        profile = inputs.get("profile")
        if profile is not None and not isinstance(profile, str):
            raise bad_input(f"profile must be a sentence (str), got {type(profile).__name__}")
        history = [item for item in history if item is not None]
        if "candidate" not in inputs and "candidates" not in inputs:
            if "user_id" not in inputs and "history" not in inputs:
                raise bad_input(
                    "give 'candidate' or 'candidates' to score, or a user and/or history to recommend for"
                )
            return CTRRequest(
                user_id=user_id,
                history=history,
                candidates=[],
                ranking=True,
                recommend=True,
                exclude=tuple(self._catalog_ids(inputs.get("exclude") or [], "exclude")),
                pool=self._catalog_ids(inputs["pool"], "pool") if "pool" in inputs else None,
                profile=profile,
            )
        if "exclude" in inputs or "pool" in inputs:
            raise bad_input("'exclude' and 'pool' go with recommendations (a request without candidates)")
        ranking = "candidates" in inputs
        candidates = _items(inputs["candidates"] if ranking else inputs["candidate"], "candidate")
        if not candidates or (not ranking and len(candidates) != 1):
            raise bad_input("'candidate' must be one item and 'candidates' a non-empty list")
        return CTRRequest(
            user_id=user_id,
            history=history,
            candidates=[self._resolve(item, "candidate") or f"item {item}" for item in candidates],
            ranking=ranking,
            profile=profile,
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

    def _catalog_ids(self, value: Any, field: str) -> list[int]:
        """The catalog ids of items named by id or title; what the catalog lacks is ignored, with a warning."""
        ids = []
        for item in _items(value, field):
            found = self.titles.resolve(item.strip()) if isinstance(item, str) else item
            if found in self.processor.catalog:
                ids.append(found)
            else:
                warnings.warn(f"{item!r} in {field} is not in the item catalog: ignored", stacklevel=3)
        return ids

    def preprocess(self, inputs: dict | str, num_candidates: int = NUM_CANDIDATES) -> dict[str, Any]:
        return self.model_inputs(self.request(inputs), num_candidates)

    def model_inputs(self, request: CTRRequest, num_candidates: int = NUM_CANDIDATES) -> dict[str, Any]:
        """A ranking's shared prefix and suffixes, or the one prompt of a single candidate (unpadded, so that
        batched requests pad together). A recommendation is the ranking of its ``num_candidates`` CF candidates."""
        if request.recommend:
            request = replace(request, candidates=self.retrieve(request, num_candidates))
        if request.ranking:
            prefix, suffixes = self.processor.encode_ranking(
                request.history, request.candidates, request.user_id, request.profile
            )
            items = [
                {"item": self.processor.item_title(item), "item_id": self.processor.item_id(item)}
                for item in request.candidates
            ]
            if request.recommend:  # its candidates come best first
                items = [{**item, "cf_rank": rank} for rank, item in enumerate(items, 1)]
            return {"prefix": prefix, "suffixes": suffixes, "items": items, "recommend": request.recommend}
        encoded = self.processor.encode(
            request.history, request.candidates[0], request.user_id, request.profile
        )
        return {"encoded": [encoded], "items": None}

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        if model_inputs["items"] is None:
            batch = self.processor.pad(model_inputs["encoded"]).to(self.device)
            scores = self.model.score_shared_prefixes(**batch)
        else:
            scores = self.model.rank_candidates(model_inputs["prefix"], model_inputs["suffixes"])
        return {"scores": scores, "items": model_inputs["items"], "recommend": model_inputs.get("recommend")}

    def retrieve(self, request: CTRRequest, num_candidates: int) -> list[int]:
        """A recommendation's candidates, best first: the user's CF row (or its history's) against the catalog."""
        try:
            candidates, _ = self.model.retrieve_candidates(
                request.user_id,
                [item for item in request.history if isinstance(item, int)],
                num_candidates,
                exclude=request.exclude,
                pool=self.processor.catalog if request.pool is None else request.pool,
            )
        except ValueError as err:
            raise bad_input(f"cannot recommend: {err}") from err
        if not len(candidates):
            raise bad_input("nothing to recommend: the history, 'exclude' and 'pool' leave no catalog item")
        return candidates.tolist()

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
        )  # stable: equal scores keep the candidates' order (a recommendation's: the CF ranking)
        if model_outputs.get("recommend"):
            ranked = [{**row, "llm_rank": rank} for rank, row in enumerate(ranked, 1)]
            return ranked[: top_k or RECOMMEND_TOP_K]
        return ranked[:top_k]

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """Model, code (with the ``custom_pipelines`` entry in config.json) and the processor's files."""
        super().save_pretrained(save_directory, **kwargs)
        self.processor.save_pretrained(save_directory)


PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=CCFLLMPipeline, pt_model=AutoModel, type="text")
