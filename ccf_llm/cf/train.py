"""One training / evaluation loop for every CF backbone, plus table export.

Pointwise BCE on the train split's CTR labels, Adam with (L2) weight decay as in CoLLM, evaluation of
valid AUC after every epoch, early stopping on it after a minimum number of epochs (CoLLM-style MF can
sit near AUC .5 for a long time before it learns), and the best epoch's weights restored at the end.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import itertools
import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from ccf_llm.atomic import replaced_atomically
from ccf_llm.data import CTRData
from ccf_llm.metrics import ctr_metrics
from ccf_llm.settings import as_number

from .base import Batch, CFModel, CFSplits, pad_histories, release_years
from .din import DIN
from .lightgcn import LightGCN
from .mf import MF
from .sasrec import SASRec

MODELS: dict[str, type[CFModel]] = {
    "mf": MF,
    "mf_bias": MF,
    "lightgcn": LightGCN,
    "sasrec": SASRec,
    "din": DIN,
}
# Row names in results/*.json.
METHOD_NAMES = {"mf": "MF", "mf_bias": "MF-bias", "lightgcn": "LightGCN", "sasrec": "SASRec", "din": "DIN"}
# Defaults = CoLLM's ML-1M settings where known, changed only where the ML-1M valid split preferred
# it (configs/cf_grid.yaml); explicit settings override them.
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    # CoLLM: d 256, lr 1e-3, wd 1e-4; N(0, 0.01) init instead of N(0, 1) (same valid AUC, 10x fewer epochs)
    "mf": {"dim": 256, "init_std": 0.01, "lr": 1e-3, "weight_decay": 1e-4},
    # small tables for the LLM side (d 64 + 2 bias columns); its grid is flat within +-0.002 valid AUC
    "mf_bias": {"dim": 64, "bias": True, "init_std": 0.1, "lr": 1e-3, "weight_decay": 1e-4},
    # CoLLM: d 64, 2 layers, lr 1e-2, wd 1e-4
    "lightgcn": {"dim": 64, "layers": 2, "lr": 1e-2, "weight_decay": 1e-4},
    # CoLLM's search winner: d 64, 25 items, lr 1e-2, wd 1e-2, batch 2048
    "sasrec": {
        "dim": 64,
        "history_len": 25,
        "lr": 1e-2,
        "weight_decay": 1e-2,
        "batch_size": 2048,
        "patience": 15,
    },
    # grid winner; DIN peaks after 1-3 epochs, hence the short patience
    "din": {"dim": 64, "history_len": 10, "lr": 1e-3, "weight_decay": 1e-4, "patience": 5},
}
TABLES_FILE, CONFIG_FILE, MODEL_FILE = "cf_tables.safetensors", "cf_config.json", "cf_model.safetensors"
GRID_FILE = "grid.json"  # scripts/train_cf.py --grid: one row per trained combination


@dataclass
class TrainConfig:
    """Optimisation settings shared by all backbones (model settings go to the model's constructor)."""

    lr: float = 1e-3
    weight_decay: float = 1e-4
    # Weight decay of the parameters named "bias" (MF's user/item/global biases, layers' biases); None: as the
    # others. Biases take one value per id, factors many: the best decay of the two need not be the same.
    bias_weight_decay: float | None = None
    batch_size: int = 1024
    max_epochs: int = 300
    min_epochs: int = 10  # no early stop before this many epochs
    patience: int = 20  # epochs without a better valid AUC before stopping
    seed: int = 2023
    eval_batch_size: int = 8192


def split_settings(settings: Mapping[str, Any]) -> tuple[dict[str, Any], TrainConfig]:
    """Flat settings (as in cf_grid.yaml / cf_config.json) -> (model kwargs, :class:`TrainConfig`)."""
    known = {f.name: f for f in fields(TrainConfig)}
    train = TrainConfig(**{k: as_number(v, known[k]) for k, v in settings.items() if k in known})
    return {k: v for k, v in settings.items() if k not in known}, train


def _encode(frame: pd.DataFrame, history_len: int) -> Batch:
    return {
        "uid": torch.tensor(frame["uid"].to_numpy(np.int64)),
        "iid": torch.tensor(frame["iid"].to_numpy(np.int64)),
        "label": torch.tensor(frame["label"].to_numpy(np.float32)),
        "not_cold": torch.tensor(frame["not_cold"].to_numpy(np.int64)),
        "his": pad_histories(frame["his"], history_len),
    }


def encode_splits(data: CTRData, history_len: int = 0) -> CFSplits:
    """Tensors for the loop. Table sizes are max id + 1 over all splits (row 0 = padding).

    The exported user history is the one known at the end of training (the last train row's ``his``
    plus that row's item when liked), so no valid/test label leaks into the tables the LLM reads.
    """
    columns = ["uid", "iid", "label", "not_cold", "his", "timestamp"]
    frames = {
        split: data.splits[split].select_columns(columns).to_pandas() for split in ("train", "valid", "test")
    }
    n_users = int(max(frame["uid"].max() for frame in frames.values())) + 1
    n_items = int(max(frame["iid"].max() for frame in frames.values())) + 1
    n_items = max(n_items, max(data.items, default=0) + 1)
    last = frames["train"].sort_values("timestamp", kind="stable").groupby("uid").tail(1)
    final = [
        [*his, iid] if label else list(his)
        for his, iid, label in zip(last["his"], last["iid"], last["label"], strict=True)
    ]
    user_history = torch.zeros(n_users, history_len, dtype=torch.long)
    user_history[torch.tensor(last["uid"].to_numpy(np.int64))] = pad_histories(final, history_len)
    return CFSplits(
        **{split: _encode(frame, history_len) for split, frame in frames.items()},
        user_history=user_history,
        n_users=n_users,
        n_items=n_items,
        item_years=release_years(data.items, n_items),
    )


@torch.no_grad()
def predict(model: CFModel, rows: Batch, batch_size: int = 8192) -> np.ndarray:
    """Logits for all rows, in eval mode."""
    model.eval()
    n = len(rows["label"])
    out = [model({k: v[i : i + batch_size] for k, v in rows.items()}) for i in range(0, n, batch_size)]
    return torch.cat(out).numpy()


def evaluate(model: CFModel, rows: Batch, batch_size: int = 8192) -> dict[str, float | int]:
    """AUC, UAUC and warm/cold AUC of the model on one split."""
    return rows_metrics(rows, predict(model, rows, batch_size))


def rows_metrics(rows: Batch, scores: np.ndarray) -> dict[str, float | int]:
    """AUC, UAUC and warm/cold AUC of scores already computed for one split's rows."""
    return ctr_metrics(rows["label"].numpy(), scores, rows["uid"].numpy(), rows["not_cold"].numpy())


@dataclass
class CFRun:
    """A trained backbone and how it did."""

    name: str
    settings: dict[str, Any]
    model: CFModel
    valid: dict[str, float | int]
    test: dict[str, float | int]
    best_epoch: int
    epochs: int
    seconds: float
    user_history: torch.Tensor  # what the exported user vectors are computed from
    curve: list[float] = field(default_factory=list)  # valid AUC per epoch


def _parameter_groups(model: CFModel, config: TrainConfig) -> list[dict[str, Any]]:
    """Adam's parameter groups: the bias parameters with ``bias_weight_decay`` (when set), the rest with
    ``weight_decay``."""
    if config.bias_weight_decay is None:
        return [{"params": list(model.parameters()), "weight_decay": config.weight_decay}]
    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if "bias" not in n], "weight_decay": config.weight_decay},
        {"params": [p for n, p in named if "bias" in n], "weight_decay": config.bias_weight_decay},
    ]
    return [group for group in groups if group["params"]]


def fit(
    model: CFModel, splits: CFSplits, config: TrainConfig, progress: bool = True
) -> tuple[int, list[float]]:
    """Train in place; keeps the weights of the epoch with the best valid AUC. Returns (best epoch, curve)."""
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(_parameter_groups(model, config), lr=config.lr)
    train, n = splits.train, len(splits.train["label"])
    best_auc, best_epoch, best_state, curve = -1.0, 0, copy.deepcopy(model.state_dict()), []
    bar = tqdm(range(1, config.max_epochs + 1), desc=type(model).__name__, disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, config.batch_size):
            batch = {k: v[order[start : start + config.batch_size]] for k, v in train.items()}
            loss = F.binary_cross_entropy_with_logits(model(batch), batch["label"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch["label"])
        scores = predict(model, splits.valid, config.eval_batch_size)
        if not np.isfinite(scores).all():
            raise FloatingPointError(
                f"{type(model).__name__}: non-finite scores at epoch {epoch} (lower lr?)"
            )
        auc = float(roc_auc_score(splits.valid["label"].numpy(), scores))
        curve.append(auc)
        if auc > best_auc:
            best_auc, best_epoch, best_state = auc, epoch, copy.deepcopy(model.state_dict())
        bar.set_postfix(loss=f"{total / n:.4f}", valid_auc=f"{auc:.4f}", best=f"{best_auc:.4f}@{best_epoch}")
        if epoch >= config.min_epochs and epoch - best_epoch >= config.patience:
            break
    model.load_state_dict(best_state)
    return best_epoch, curve


def train_cf(
    name: str, data: CTRData | CFSplits, settings: Mapping[str, Any] | None = None, progress: bool = True
) -> CFRun:
    """Train and evaluate backbone ``name`` (a key of :data:`MODELS`; ``mf_bias`` is MF with biases).

    ``settings`` (model and :class:`TrainConfig` keys) override :data:`DEFAULT_SETTINGS`.
    """
    if name not in MODELS:
        raise ValueError(f"unknown CF model {name!r}; choose from {sorted(MODELS)}")
    model_kwargs, config = split_settings({**DEFAULT_SETTINGS[name], **(settings or {})})
    # Seeded here, leaving the caller's random state alone (a run's LLM init follows its own seed after this).
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        start = time.perf_counter()
        splits = data if isinstance(data, CFSplits) else encode_splits(data, _history_len(name, model_kwargs))
        model = MODELS[name].from_data(splits, **model_kwargs)
        if splits.train["his"].shape[1] != model.history_len:
            raise ValueError(
                f"{name}: splits carry {splits.train['his'].shape[1]} history items, model wants {model.history_len}"
            )
        best_epoch, curve = fit(model, splits, config, progress)
    return CFRun(
        name=name,
        settings={**model_kwargs, **asdict(config)},
        model=model,
        valid=evaluate(model, splits.valid, config.eval_batch_size),
        test=evaluate(model, splits.test, config.eval_batch_size),
        best_epoch=best_epoch,
        epochs=len(curve),
        seconds=time.perf_counter() - start,
        user_history=splits.user_history,
        curve=curve,
    )


def _history_len(name: str, model_kwargs: Mapping[str, Any]) -> int:
    """How many history items the model reads: its ``history_len`` setting or constructor default."""
    if "history_len" in model_kwargs:
        return int(model_kwargs["history_len"])
    default = inspect.signature(MODELS[name].__init__).parameters.get("history_len")
    return int(default.default) if default is not None else 0


def grid_search(
    name: str,
    data: CTRData,
    base: Mapping[str, Any],
    grid: Mapping[str, list[Any]],
    progress: bool = True,
) -> tuple[CFRun, list[dict[str, Any]]]:
    """Train every combination of ``grid`` on top of ``base``; the best valid AUC wins.

    Returns the winning run and one summary row per combination (settings, valid/test AUC, seconds).
    """
    keys = list(grid)
    best: CFRun | None = None
    table = []
    for values in itertools.product(*(grid[key] for key in keys)):
        settings = {**base, **dict(zip(keys, values, strict=True))}
        run = train_cf(name, data, settings, progress)
        table.append(
            {**dict(zip(keys, values, strict=True)), "valid_auc": run.valid["auc"], "test_auc": run.test["auc"],
             "best_epoch": run.best_epoch, "seconds": round(run.seconds, 1)}
        )  # fmt: skip
        if progress:
            tqdm.write(f"{name} {table[-1]}")
        if best is None or run.valid["auc"] > best.valid["auc"]:
            best = run
    assert best is not None, "empty grid"
    return best, table


def save_cf_tables(run: CFRun, out_dir: str | os.PathLike, grid: list[dict] | None = None) -> Path:
    """Write ``cf_tables.safetensors`` (float32 ``user_embeddings`` / ``item_embeddings``), ``cf_config.json``,
    ``cf_model.safetensors`` (the model's weights: ``load_cf_model`` scores other rows with its own logit)
    and, given a search table, ``grid.json``.

    The tables file marks a finished export (``ccf_llm.training.run`` trains CF only when it is missing), so
    every file goes to a temporary name first; the old tables are removed before the first file is replaced
    and the new ones put in place last: a failure or kill leaves either the old export or no tables file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run.model.eval()
    user, item = run.model.export_tables(run.user_history)
    tables = {"user_embeddings": user.float().contiguous(), "item_embeddings": item.float().contiguous()}
    weights = {name: tensor.contiguous() for name, tensor in run.model.state_dict().items()}
    config = {
        "model": run.name,
        "dim": int(user.shape[1]),
        "n_users": int(user.shape[0]),
        "n_items": int(item.shape[0]),
        "settings": run.settings,
        "valid": run.valid,
        "test": run.test,
        "best_epoch": run.best_epoch,
        "seconds": round(run.seconds, 1),
    }
    texts = {CONFIG_FILE: config} | ({GRID_FILE: grid} if grid is not None else {})
    # The stack exits in reverse order: the tables file, entered first, is put in place last.
    with contextlib.ExitStack() as stack:
        tmp = {
            name: stack.enter_context(replaced_atomically(out / name))
            for name in (TABLES_FILE, MODEL_FILE, *texts)
        }
        save_file(tables, str(tmp[TABLES_FILE]), metadata={"model": run.name})
        save_file(weights, str(tmp[MODEL_FILE]), metadata={"model": run.name})
        for name, content in texts.items():
            tmp[name].write_text(json.dumps(content, indent=2) + "\n")
        (out / TABLES_FILE).unlink(missing_ok=True)  # no finished-export marker while the files are swapped
    return out


def load_cf_tables(directory: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(user table [n_users, d], item table [n_items, d], cf_config) of an exported backbone."""
    root = Path(directory)
    for name in (TABLES_FILE, CONFIG_FILE):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root / name}: missing (expected the output of scripts/train_cf.py)")
    tables = load_file(str(root / TABLES_FILE))
    config = json.loads((root / CONFIG_FILE).read_text())
    user, item = tables["user_embeddings"], tables["item_embeddings"]
    if user.shape[1] != item.shape[1] or user.shape[1] != config["dim"]:
        raise ValueError(
            f"{root}: table widths {user.shape[1]}/{item.shape[1]} differ from dim {config['dim']}"
        )
    return user, item, config


def load_cf_model(directory: str | os.PathLike, data: CTRData) -> tuple[CFModel, dict[str, Any]]:
    """(model in eval mode, cf_config) of an export: the backbone rebuilt on ``data`` (the data it was trained
    on: LightGCN's graph comes from its train split) with its saved weights."""
    root = Path(directory)
    for name in (CONFIG_FILE, MODEL_FILE):
        if not (root / name).is_file():
            raise FileNotFoundError(
                f"{root / name}: missing (older exports hold the tables only: rerun scripts/train_cf.py --out {root})"
            )
    config = json.loads((root / CONFIG_FILE).read_text())
    model_kwargs, _ = split_settings(config["settings"])
    splits = encode_splits(data, _history_len(config["model"], model_kwargs))
    if (splits.n_users, splits.n_items) != (config["n_users"], config["n_items"]):
        raise ValueError(
            f"{root / CONFIG_FILE}: trained with {config['n_users']} user and {config['n_items']} item rows, but "
            f"{data.name} needs {splits.n_users} and {splits.n_items}: an export of another data set?"
        )
    model = MODELS[config["model"]].from_data(splits, **model_kwargs)
    model.load_state_dict(load_file(str(root / MODEL_FILE)))
    return model.eval(), config
