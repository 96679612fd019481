"""CCF-LLM: a causal LM that reads a hybrid prompt of item titles and collaborative-filtering vectors.

Hub remote code: imports only torch, transformers and (when an adapter is configured) peft.
Read top-down in the order data flows:

1. ``ALG``   maps a CF embedding into the LLM's input space.
2. ``GATE``  mixes it, per dimension, with the text (semantic) vector of the same user or item.
3. ``CrossModalFusion`` picks the variant named by ``config.fusion`` (gate, scalar_gate, add, concat, cf_only).
4. ``CCFLLMForCTR`` replaces every ``<user>``/``<item>`` placeholder embedding by its fused vector, runs
   the backbone, and scores "Yes" vs "No" from the last hidden state only.

Placeholder bookkeeping (made by the processor): ``title_index[b, t]`` says which item a token belongs
to: ``0`` the candidate, ``j >= 1`` the j-th history item, ``-1`` neither. Title tokens are mean-pooled
into the item's semantic vector; an ``<item>`` token carries the index of the item it stands for.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import AutoModel, AutoModelForCausalLM, PreTrainedModel
from transformers.utils import ModelOutput

try:
    from .configuration_ccf import CCFLLMConfig
except ImportError:  # imported as a top-level module (installed package), not as Hub remote code
    from configuration_ccf import CCFLLMConfig


class ALG(nn.Module):
    """Alignment: CF embedding -> LLM embedding space (CoLLM's CIE shape: expand, ReLU, project)."""

    def __init__(self, cf_dim: int, hidden_size: int, expansion: int):
        super().__init__()
        self.up = nn.Linear(cf_dim, expansion * cf_dim)
        self.down = nn.Linear(expansion * cf_dim, hidden_size)

    def forward(self, cf: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(cf)))


class GATE(nn.Module):
    """Attentive fusion: ``a = sigmoid(W [s; m] + b)``, ``fused = a * s + (1 - a) * m``.

    ``a`` has one value per embedding dimension (CCF-LLM) or one per vector (``per_dimension=False``).
    """

    def __init__(self, hidden_size: int, per_dimension: bool = True):
        super().__init__()
        self.proj = nn.Linear(2 * hidden_size, hidden_size if per_dimension else 1)

    def forward(self, text: torch.Tensor, mapped_cf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate = torch.sigmoid(self.proj(torch.cat([text, mapped_cf], dim=-1)))
        return gate * text + (1 - gate) * mapped_cf, gate


class CrossModalFusion(nn.Module):
    """ALG followed by the mixing rule that ``config.fusion`` names; one path for every variant."""

    def __init__(self, config: CCFLLMConfig, hidden_size: int):
        super().__init__()
        self.fusion = config.fusion
        self.alg = ALG(config.cf_dim, hidden_size, config.alg_expansion)
        if self.fusion in ("gate", "scalar_gate"):
            self.gate = GATE(hidden_size, per_dimension=self.fusion == "gate")
        elif self.fusion == "concat":
            self.mix = nn.Sequential(
                nn.Linear(2 * hidden_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, hidden_size)
            )

    def forward(
        self, text: torch.Tensor, cf: torch.Tensor, known: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``text`` [..., d_llm], ``cf`` [..., d_cf], ``known`` [...]: rows without a CF vector keep their text vector."""
        mapped = self.alg(cf.to(self.alg.up.weight.dtype)).to(text.dtype)
        gate = None
        if self.fusion in ("gate", "scalar_gate"):
            fused, gate = self.gate(text, mapped)
        elif self.fusion == "concat":
            fused = self.mix(torch.cat([text, mapped], dim=-1))
        elif self.fusion == "add":
            fused = text + mapped
        else:  # cf_only
            fused = mapped
        return torch.where(known.unsqueeze(-1), fused, text), gate


# Backward passes run SDPA without cuDNN (recent torch's default on recent GPUs): its backward returns NaN query
# gradients when a mask is passed and a query row attends to nothing (pytorch/pytorch#196678), as the padding rows
# of a left-padded batch do.
TRAINING_SDPA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def _training_attention_contexts() -> tuple[contextlib.AbstractContextManager, ...]:
    """A checkpoint's (forward, recompute) contexts: both run attention on ``TRAINING_SDPA_BACKENDS``."""
    return sdpa_kernel(TRAINING_SDPA_BACKENDS), sdpa_kernel(TRAINING_SDPA_BACKENDS)


CPU_SUFFIX_CHUNK = 16  # suffix rows per call on CPU (see ``CCFLLMForCTR.score_shared_prefixes``)


def native_bf16() -> bool:
    """Whether bf16 speeds this machine up: a GPU that supports it, or a CPU with AMX or AVX512-BF16.

    Elsewhere the CPU emulates bf16, which runs several times slower than float32.
    """
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


def use_bf16(requested: bool | None = None) -> bool:
    """The precision policy of loading, scoring and training alike: ``requested`` (a config's ``bf16``) where set,
    else whether bf16 is native here. ``True`` on a CPU that emulates bf16 is kept (it may be there to match bf16
    rows) but warned about: there it runs many times slower than float32."""
    if requested is None:
        return native_bf16()
    if requested and not torch.cuda.is_available() and not native_bf16():
        warnings.warn(
            "bf16 is on, but this CPU has no native bf16 (AMX or AVX512-BF16) and emulates it, many times slower "
            "than fp32; set bf16: false (--set bf16=false) unless the run must match bf16 rows",
            stacklevel=2,
        )
    return requested


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token, for left or right padding alike."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask * positions).argmax(-1)


@dataclass
class CCFLLMOutput(ModelOutput):
    """``logits`` is the CTR score (one per row); ``loss`` the BCE against ``labels``."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    user_gates: torch.Tensor | None = None
    item_gates: torch.Tensor | None = None


class CCFLLMPreTrainedModel(PreTrainedModel):
    config_class = CCFLLMConfig
    base_model_prefix = "ccf"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True


class CCFLLMForCTR(CCFLLMPreTrainedModel):
    """A causal-LM backbone + frozen CF tables + ALG/GATE, scored by "Yes" vs "No" at the last token."""

    def __init__(self, config: CCFLLMConfig):
        super().__init__(config)
        self.backbone = AutoModelForCausalLM.from_config(config.text_config)
        hidden_size = config.text_config.get_text_config().hidden_size
        self.user_cf = nn.Embedding(config.num_users, config.cf_dim)
        self.item_cf = nn.Embedding(config.num_items, config.cf_dim)
        self.fusion = CrossModalFusion(config, hidden_size) if config.uses_placeholders else None
        if config.lora_r > 0:
            # In a try block, which transformers' check of remote code's imports skips: only adapters need peft.
            try:
                from peft import LoraConfig, inject_adapter_in_model
            except ImportError as err:
                raise ImportError(
                    f"this model has a LoRA adapter (lora_r={config.lora_r}), which needs peft: pip install peft"
                ) from err
            lora = LoraConfig(
                r=config.lora_r,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules=config.lora_target_modules,
            )
            inject_adapter_in_model(lora, self.backbone)
            # post_init would re-draw the adapters from N(0, 0.02): keep PEFT's init (B = 0), so that
            # training starts at the backbone itself.
            for name, module in self.backbone.named_modules():
                if "lora_" in name:
                    module._is_hf_initialized = True
        self.post_init()
        self.set_default_trainable()

    def set_default_trainable(self) -> None:
        """CF tables frozen; with LoRA, the backbone's base weights too (only the adapters train); the fusion
        trainable. Again after ``from_pretrained``, whose loaded weights come back all trainable."""
        self.user_cf.weight.requires_grad_(False)
        self.item_cf.weight.requires_grad_(False)
        for name, parameter in self.backbone.named_parameters():
            parameter.requires_grad_(self.config.lora_r == 0 or "lora_" in name)
        if self.fusion is not None:
            self.fusion.requires_grad_(True)

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    @staticmethod
    def _checkpoint_kwargs(kwargs: dict | None) -> dict:
        """Non-reentrant by default, with the attention recomputed in backward kept off cuDNN too
        (``TRAINING_SDPA_BACKENDS``): ``forward``'s own restriction has ended by then."""
        kwargs = {"use_reentrant": False, **(kwargs or {})}
        if not kwargs["use_reentrant"]:  # context_fn works with non-reentrant checkpointing only
            kwargs.setdefault("context_fn", _training_attention_contexts)
        return kwargs

    # Newer transformers call this activation_checkpointing_enable; the old name stays as an alias that warns.
    if hasattr(PreTrainedModel, "activation_checkpointing_enable"):

        def activation_checkpointing_enable(
            self, activation_checkpointing_kwargs: dict | None = None, **kwargs
        ) -> None:
            """``PreTrainedModel``'s (``every_n_layers``, ``offload``), with ``_checkpoint_kwargs``' defaults."""
            checkpoint_kwargs = self._checkpoint_kwargs(activation_checkpointing_kwargs)
            super().activation_checkpointing_enable(
                activation_checkpointing_kwargs=checkpoint_kwargs, **kwargs
            )

    else:

        def gradient_checkpointing_enable(
            self, gradient_checkpointing_kwargs: dict | None = None, **kwargs
        ) -> None:
            """``PreTrainedModel``'s, with ``_checkpoint_kwargs``' defaults."""
            checkpoint_kwargs = self._checkpoint_kwargs(gradient_checkpointing_kwargs)
            super().gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpoint_kwargs, **kwargs)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """``PreTrainedModel.from_pretrained``, except that a CF table missing from the weights or sized unlike the
        config is a ``ValueError`` naming the table and both sizes: random CF rows would score silently wrong; and
        that without a ``dtype`` (or with ``"auto"``, and without a ``device_map``), a machine that would emulate bf16
        loads the weights in float32: published folders store bf16, which runs several times slower there."""
        ignore_mismatched = kwargs.pop("ignore_mismatched_sizes", False)
        if (
            kwargs.get("dtype", kwargs.get("torch_dtype")) in (None, "auto")
            and kwargs.get("device_map") is None
        ):
            kwargs.pop("torch_dtype", None)
            kwargs["dtype"] = "auto" if use_bf16() else torch.float32
        wants_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(
            *args, ignore_mismatched_sizes=True, output_loading_info=True, **kwargs
        )
        mismatched = {entry[0]: entry for entry in info.get("mismatched_keys", ())}  # (key, found, expected)
        config = model.config
        for key, rows in (("user_cf.weight", "num_users"), ("item_cf.weight", "num_items")):
            if key in mismatched or key in info.get("missing_keys", ()):
                found = f"has shape {tuple(mismatched[key][1])}" if key in mismatched else "is missing"
                raise ValueError(
                    f"CF table {key} {found} in the weights, but config.json expects shape "
                    f"({getattr(config, rows)}, {config.cf_dim}) ({rows}={getattr(config, rows)}, "
                    f"cf_dim={config.cf_dim}); the folder's weights and config.json do not belong together"
                )
        if mismatched and not ignore_mismatched:
            raise ValueError(
                f"weights with other shapes than config.json: {sorted(mismatched)}; "
                "pass ignore_mismatched_sizes=True to re-initialise them"
            )
        model.set_default_trainable()
        return (model, info) if wants_info else model

    # --- the hybrid prompt -------------------------------------------------------------------------

    def embed_hybrid_prompt(
        self,
        input_ids: torch.Tensor,
        user_ids: torch.Tensor | None = None,
        item_ids: torch.Tensor | None = None,
        history_ids: torch.Tensor | None = None,
        title_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Token embeddings with every placeholder replaced by its fused text+CF vector."""
        config = self.config
        is_item = input_ids == config.item_token_id if config.item_token_id is not None else None
        is_user = input_ids == config.user_token_id if config.user_token_id is not None else None
        placeholders = torch.zeros_like(input_ids, dtype=torch.bool)
        for mask in (is_item, is_user):
            if mask is not None:
                placeholders |= mask
        # Placeholder ids lie past the vocabulary: look up a harmless id, then overwrite.
        embeds = self.get_input_embeddings()(input_ids.masked_fill(placeholders, 0))
        if self.fusion is None or not placeholders.any():
            return embeds, None, None
        if item_ids is None or title_index is None:
            raise ValueError(
                "A hybrid prompt needs item_ids and title_index (build inputs with CCFLLMProcessor)"
            )
        batch = input_ids.shape[0]
        if history_ids is None:
            history_ids = item_ids.new_zeros(batch, 0)
        slot_ids = torch.cat([item_ids.view(batch, 1), history_ids], dim=1)  # slot 0 = candidate
        item_text, has_title = self._mean_pool_titles(embeds, title_index, placeholders, slot_ids.shape[1])
        item_fused, item_gates = self.fusion(
            item_text, self.item_cf(self._clip(slot_ids)), self._known(slot_ids)
        )

        rows, cols = is_item.nonzero(as_tuple=True)
        embeds = embeds.index_put((rows, cols), item_fused[rows, title_index[rows, cols]])
        user_gates = None
        if is_user is not None and is_user.any():
            if user_ids is None:
                raise ValueError("The prompt has a <user> placeholder but no user_ids were given")
            # The user's semantic vector: the mean of its history items' title vectors.
            history_mask = has_title[:, 1:].unsqueeze(-1).to(embeds.dtype)
            user_text = (item_text[:, 1:] * history_mask).sum(1) / history_mask.sum(1).clamp(min=1)
            user_fused, user_gates = self.fusion(
                user_text,
                self.user_cf(self._clip(user_ids, self.config.num_users)),
                self._known(user_ids, True),
            )
            rows, cols = is_user.nonzero(as_tuple=True)
            embeds = embeds.index_put((rows, cols), user_fused[rows])
        return embeds, user_gates, item_gates

    @staticmethod
    def _mean_pool_titles(
        embeds: torch.Tensor, title_index: torch.Tensor, placeholders: torch.Tensor, num_slots: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean of the input embeddings of each item's title tokens -> [batch, slots, d], and which slots had any."""
        largest = int(title_index.max())
        if largest >= num_slots:  # e.g. history_ids left out: history titles would pool into the wrong slot
            raise ValueError(
                f"title_index refers to item slot {largest} but only {num_slots} slots (candidate + history_ids) "
                "were given"
            )
        weight = ((title_index >= 0) & ~placeholders).to(embeds.dtype)
        slot = title_index.clamp(min=0)
        sums = embeds.new_zeros(embeds.shape[0], num_slots, embeds.shape[-1])
        sums.scatter_add_(1, slot.unsqueeze(-1).expand_as(embeds), embeds * weight.unsqueeze(-1))
        counts = embeds.new_zeros(embeds.shape[0], num_slots).scatter_add_(1, slot, weight)
        return sums / counts.clamp(min=1).unsqueeze(-1), counts > 0

    def _clip(self, ids: torch.Tensor, size: int | None = None) -> torch.Tensor:
        return ids.clamp(min=0, max=(size or self.config.num_items) - 1)

    def _known(self, ids: torch.Tensor, users: bool = False) -> torch.Tensor:
        """Ids with a CF row: 0 is padding, negative or too large means unknown (text only)."""
        size = self.config.num_users if users else self.config.num_items
        return (ids > 0) & (ids < size)

    # --- scoring -----------------------------------------------------------------------------------

    def score(self, last_hidden: torch.Tensor) -> torch.Tensor:
        """The CTR score from the last hidden state, using only the "Yes"/"No" rows of the output head.

        In float32 even under bf16 autocast: a bf16 logit near 15 moves in steps of 0.0625, coarser than many of
        the Yes-No differences that rank the rows."""
        head = self.backbone.get_output_embeddings()
        rows = [self.config.yes_token_id, self.config.no_token_id]
        with torch.autocast(last_hidden.device.type, enabled=False):
            logits = last_hidden.float() @ head.weight[rows].float().T
            if getattr(head, "bias", None) is not None:
                logits = logits + head.bias[rows].float()
            logits = self._backbone_logit_transforms(logits)
        if self.config.score_type == "yes":
            return logits[:, 0]
        return logits[:, 0] - logits[:, 1]

    def _backbone_logit_transforms(self, logits: torch.Tensor) -> torch.Tensor:
        """What the backbone's causal-LM head does to its logits after the projection, so that the score is the
        backbone's logit(Yes) - logit(No): Cohere's ``logit_scale``, Granite's ``logits_scaling`` and the
        ``final_logit_softcapping`` of Gemma 2 and later (which changes the difference, not only its scale)."""
        text_config = self.config.text_config.get_text_config()
        family = text_config.model_type
        # By family: MPT has a logit_scale that transformers never applies, HyperCLOVA X multiplies by its scaling.
        scale = getattr(text_config, "logit_scale", None)
        if family.startswith("cohere") and scale is not None:
            logits = logits * scale
        scaling = getattr(text_config, "logits_scaling", None)
        if family.startswith("granite") and scaling is not None:
            logits = logits / scaling
        cap = getattr(text_config, "final_logit_softcapping", None)
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        user_ids: torch.Tensor | None = None,
        item_ids: torch.Tensor | None = None,
        history_ids: torch.Tensor | None = None,
        title_index: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_gates: bool = False,
    ) -> CCFLLMOutput:
        embeds, user_gates, item_gates = self.embed_hybrid_prompt(
            input_ids, user_ids, item_ids, history_ids, title_index
        )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        # Positions count real tokens only, so left padding and batching do not change a row's score.
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        training = self.training and torch.is_grad_enabled()
        with sdpa_kernel(TRAINING_SDPA_BACKENDS) if training else contextlib.nullcontext():
            hidden = self.backbone.base_model(
                inputs_embeds=embeds,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=False,
            ).last_hidden_state
        last = last_token_index(attention_mask)
        logits = self.score(hidden[torch.arange(hidden.shape[0], device=hidden.device), last]).float()
        loss = None
        if labels is not None:
            loss = nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        return CCFLLMOutput(
            loss=loss,
            logits=logits,
            user_gates=user_gates if output_gates else None,
            item_gates=item_gates if output_gates else None,
        )

    # --- prompts that share a prefix: computed once, reused through the KV cache ---------------------

    @torch.no_grad()
    def rank_candidates(self, prefix: dict, candidates: dict, chunk_size: int | None = None) -> torch.Tensor:
        """Scores of N candidates that share one prompt prefix, computing the prefix once (KV cache).

        ``prefix`` is one row (history and ``<user>``; see ``CCFLLMProcessor.encode_ranking``), ``candidates``
        N padded suffixes (candidate title, its ``<item>`` and the question). Equals scoring the N full
        prompts one by one. ``chunk_size``: see :meth:`score_shared_prefixes`.
        """
        count = candidates["input_ids"].shape[0]
        return self._score_suffixes(prefix, candidates, prefix["input_ids"].new_zeros(count), chunk_size)

    @torch.no_grad()
    def retrieve_candidates(
        self,
        user_id: int = 0,
        history_ids: Iterable[int] = (),
        num_candidates: int = 50,
        exclude: Iterable[int] = (),
        pool: Iterable[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``num_candidates`` items whose CF rows score highest against the user's: (item ids, CF scores),
        best first; the candidates to rerank with :meth:`rank_candidates`. See :func:`retrieve_from_tables`."""
        if self.fusion is None or min(self.config.num_users, self.config.num_items) < 2:
            raise ValueError(
                f"this model has no CF tables to retrieve from (fusion={self.config.fusion!r}, "
                f"num_users={self.config.num_users}, num_items={self.config.num_items}); give the candidates"
            )
        return retrieve_from_tables(
            self.user_cf.weight, self.item_cf.weight, user_id, history_ids, num_candidates, exclude, pool
        )

    @torch.no_grad()
    def score_shared_prefixes(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        title_index: torch.Tensor,
        item_ids: torch.Tensor,
        user_ids: torch.Tensor | None = None,
        history_ids: torch.Tensor | None = None,
        chunk_size: int | None = None,
        **unused,
    ) -> torch.Tensor:
        """``forward(...).logits`` of a batch of full prompts, computing each distinct prefix (everything before
        the candidate's title: instruction, history, ``<user>``) once: a user's rows with the same history share
        it, so fewer tokens run (figures: ``benchmarks/README.md``).

        ``chunk_size``: suffixes run in length-sorted chunks of this many rows, each padded only to its own
        longest. Default: 16 on CPU, where time follows the token count, so less padding is faster; all rows in
        one call on accelerators, where kernel launches rather than tokens dominate at these sizes."""
        device, batch = input_ids.device, input_ids.shape[0]
        user_ids = user_ids if user_ids is not None else input_ids.new_zeros(batch)
        history_ids = history_ids if history_ids is not None else input_ids.new_zeros(batch, 0)
        # Split and deduplicate on Python lists: one device-to-host copy per tensor, not one sync per row.
        columns = (input_ids, attention_mask, title_index, user_ids, history_ids)
        prefixes: dict[tuple, int] = {}
        prefix_rows, suffix_rows, prefix_of, first_rows = [], [], [], []
        for row, (ids, mask, slots, user, history) in enumerate(
            zip(*(c.tolist() for c in columns), strict=True)
        ):
            ids = [token for token, real in zip(ids, mask, strict=True) if real]
            slots = [slot for slot, real in zip(slots, mask, strict=True) if real]
            if 0 not in slots:
                raise ValueError(
                    f"row {row} has no candidate title (title_index 0); build it with CCFLLMProcessor"
                )
            cut = slots.index(0)
            key = (tuple(ids[:cut]), user, tuple(history))
            if key not in prefixes:
                prefixes[key] = len(prefixes)
                prefix_rows.append((ids[:cut], slots[:cut]))
                first_rows.append(row)
            prefix_of.append(prefixes[key])
            suffix_rows.append((ids[cut:], slots[cut:]))

        def padded(rows: list[tuple[list[int], list[int]]], side: str) -> dict[str, torch.Tensor]:
            width = max(len(ids) for ids, _ in rows)

            def pad(values: list[int], fill: int) -> list[int]:
                filler = [fill] * (width - len(values))
                return filler + values if side == "left" else values + filler

            return {
                "input_ids": torch.tensor([pad(ids, 0) for ids, _ in rows], device=device),
                "title_index": torch.tensor([pad(slots, -1) for _, slots in rows], device=device),
                "attention_mask": torch.tensor([pad([1] * len(ids), 0) for ids, _ in rows], device=device),
            }

        owners = torch.tensor(first_rows, device=device)  # the row each prefix was first seen in
        prefix = {
            **padded(prefix_rows, "left"),
            "user_ids": user_ids[owners],
            "history_ids": history_ids[owners],
            "item_ids": item_ids.new_zeros(len(owners)),  # the candidate is in the suffix
        }
        suffix = {**padded(suffix_rows, "right"), "item_ids": item_ids}
        return self._score_suffixes(prefix, suffix, torch.tensor(prefix_of, device=device), chunk_size)

    def _score_suffixes(
        self, prefix: dict, suffix: dict, prefix_of: torch.Tensor, chunk_size: int | None
    ) -> torch.Tensor:
        """Scores of padded ``suffix`` rows, row i continuing left-padded ``prefix`` row ``prefix_of[i]``."""
        decoder = self.backbone.base_model
        cache_name = (
            "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"
        )
        prefix_embeds, _, _ = self.embed_hybrid_prompt(
            prefix["input_ids"],
            prefix.get("user_ids"),
            prefix["item_ids"],
            prefix.get("history_ids"),
            prefix.get("title_index"),
        )
        prefix_mask = prefix.get("attention_mask", torch.ones_like(prefix["input_ids"]))
        cache = decoder(
            inputs_embeds=prefix_embeds,
            attention_mask=prefix_mask,
            position_ids=(prefix_mask.cumsum(-1) - 1).clamp(min=0),
            use_cache=True,
        )[cache_name]
        lengths = suffix["attention_mask"].sum(-1)
        if chunk_size is None:
            chunk_size = CPU_SUFFIX_CHUNK if lengths.device.type == "cpu" else len(lengths)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive number of rows, got {chunk_size}")
        chunks = lengths.argsort(stable=True).split(chunk_size)
        scores = torch.empty(len(lengths), device=lengths.device)
        title_index = suffix.get("title_index")
        for number, rows in enumerate(chunks):
            # Every chunk continues the same prefixes: all but the last work on a copy of the cache.
            chunk_cache = cache if number == len(chunks) - 1 else copy.deepcopy(cache)
            chunk_cache.batch_select_indices(prefix_of[rows])
            mask = suffix["attention_mask"][rows]
            columns = mask.any(0)  # drop the columns that are padding in every row of the chunk
            mask = mask[:, columns]
            embeds, _, _ = self.embed_hybrid_prompt(
                suffix["input_ids"][rows][:, columns],
                None,
                suffix["item_ids"][rows],
                None,
                None if title_index is None else title_index[rows][:, columns],
            )
            owner_mask = prefix_mask[prefix_of[rows]]
            hidden = decoder(
                inputs_embeds=embeds,
                attention_mask=torch.cat([owner_mask, mask], dim=1),
                position_ids=owner_mask.sum(-1, keepdim=True) + (mask.cumsum(-1) - 1).clamp(min=0),
                use_cache=True,
                **{cache_name: chunk_cache},
            ).last_hidden_state
            last = last_token_index(mask)
            scores[rows] = self.score(hidden[torch.arange(len(rows), device=hidden.device), last]).float()
        return scores


def retrieve_from_tables(
    user_table: torch.Tensor,
    item_table: torch.Tensor,
    user_id: int = 0,
    history_ids: Iterable[int] = (),
    num_candidates: int = 50,
    exclude: Iterable[int] = (),
    pool: Iterable[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(item ids, CF scores) of the ``num_candidates`` best items for one user, best first, ties to the lower id.

    The score is ``user_table[u] @ item_table[i]``, the CF model's own logit for MF, MF-bias/biases, LightGCN and
    SASRec tables (``ccf_llm/cf``; DIN's is its target-free analogue). A user without a row (id 0 or out of
    range) is the mean of its history items' rows, whose bias-layout column of ones, if any, stays one; with no
    known history item, the mean user row. Padding and the items of the history and ``exclude`` never come
    back; ``pool``, when given, holds the only items considered (ids without a row are ignored).
    """
    if isinstance(num_candidates, bool) or not isinstance(num_candidates, int) or num_candidates < 1:
        raise ValueError(f"num_candidates must be a positive integer, got {num_candidates!r}")
    # float64: the ranking must not depend on the device's or thread count's float32 summation order
    users, items = user_table.detach().double(), item_table.detach().double()
    rows = len(items)
    history = [int(item) for item in history_ids if 0 < int(item) < rows]
    if 0 < int(user_id) < len(users):
        query = users[int(user_id)]
    else:
        query = items[history].mean(0) if history else users[1:].mean(0)
        # MF-bias user rows end [b_u + b_0, 1] (ccf_llm/cf/mf.py): that 1 adds each item's whole bias b_i.
        query = torch.where((users[1:] == 1).all(0), torch.ones_like(query), query)
    allowed = torch.zeros(rows, dtype=torch.bool, device=items.device)
    if pool is None:
        allowed[1:] = True
    else:
        allowed[[int(item) for item in pool if 0 < int(item) < rows]] = True
    allowed[[*history, *(int(item) for item in exclude if 0 < int(item) < rows)]] = False
    candidates = allowed.nonzero()[:, 0]
    scores = items[candidates] @ query
    order = scores.sort(descending=True, stable=True).indices[:num_candidates]  # ids ascend: ties go low
    return candidates[order], scores[order]


CCFLLMForCTR.register_for_auto_class("AutoModel")
with contextlib.suppress(ValueError):  # already registered
    AutoModel.register(CCFLLMConfig, CCFLLMForCTR)
