"""Collaborative-filtering backbones (MF, LightGCN, SASRec, DIN), one shared training loop, and the
frozen embedding tables they export for the LLM.

Export (``save_cf_tables`` / ``scripts/train_cf.py --out DIR``; read back with ``load_cf_tables``):

- ``cf_tables.safetensors``: float32 ``user_embeddings`` [n_users, d] and ``item_embeddings``
  [n_items, d]; row = id, row 0 = padding (n = max id + 1 over all splits).
- ``cf_config.json``: ``model``, ``dim`` (= d, the table width), ``n_users``, ``n_items``, ``settings``
  (model + training settings), ``valid`` / ``test`` metrics, ``best_epoch``, ``seconds``.
- ``cf_model.safetensors``: the model's weights; ``load_cf_model`` rebuilds it to score other rows with its
  own logit (``scripts/score_cf.py``; DIN's tables alone cannot reproduce it).

Rows per model (``user[u] @ item[i]`` is the model's logit for all but DIN):

- ``mf``: user = p_u, item = q_i (d = dim).
- ``mf_bias``: user = [p_u, b_u + b_0, 1], item = [q_i, 1, b_i] (d = dim + 2): the two appended
  columns carry the user bias (global bias folded in) and the item bias (popularity). With ``year_bias``
  the item's column also adds the learned bias of its release year's 5-year bin (the year ends its title).
- ``lightgcn``: the propagated embeddings (mean over layers).
- ``sasrec``: user = transformer state after the user's recent history, item = item embedding.
- ``din``: user = [e_u ; mean of the history embeddings of the user's recent items], item = [e_i ; h_i]
  (d = 2 dim); DIN scores with an MLP, so this is its target-free analogue, not its logit.

The "recent history" of the sequence models is the one known at the end of the train split (the
user's last train row's history plus that row's item when liked), so no valid/test label leaks into
the tables; users without train rows get an empty history.
"""

from .base import CFModel
from .din import DIN
from .lightgcn import LightGCN
from .mf import MF
from .sasrec import SASRec
from .train import (
    DEFAULT_SETTINGS,
    METHOD_NAMES,
    MODELS,
    CFRun,
    CFSplits,
    TrainConfig,
    encode_splits,
    evaluate,
    grid_search,
    load_cf_model,
    load_cf_tables,
    predict,
    rows_metrics,
    save_cf_tables,
    train_cf,
)

__all__ = [
    "DEFAULT_SETTINGS",
    "DIN",
    "METHOD_NAMES",
    "MF",
    "MODELS",
    "CFModel",
    "CFRun",
    "CFSplits",
    "LightGCN",
    "SASRec",
    "TrainConfig",
    "encode_splits",
    "evaluate",
    "grid_search",
    "load_cf_model",
    "load_cf_tables",
    "predict",
    "rows_metrics",
    "save_cf_tables",
    "train_cf",
]
