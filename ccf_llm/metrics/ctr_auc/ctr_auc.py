"""``evaluate`` metric module for CTR prediction: AUC, UAUC and warm/cold AUC.

Load it offline from its folder, ``evaluate.load(ccf_llm.metrics.CTR_AUC_PATH)``; with the config
name ``"warm_cold"`` it also takes ``not_cold`` (evaluate needs one fixed set of input names per
config). It wraps :func:`ccf_llm.metrics.ctr_metrics`, so the numbers equal the library call.
"""

import datasets
import evaluate

from ccf_llm.metrics import ctr_metrics

_DESCRIPTION = """
CTR metrics as CoLLM / CCF-LLM report them. ``auc``: ROC AUC over all rows. ``uauc``: the unweighted
mean of per-user AUC over users with more than one row and both labels (CoLLM's ``uAUC_me``);
``n_users_uauc`` counts those users. With ``not_cold`` (1 = user and item seen in training):
``auc_warm`` / ``auc_cold`` on those rows (NaN where a subset holds one class).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of float): scores (logits or probabilities; only their order matters).
    references (list of int): labels, 0 or 1.
    user_ids (list of int): the user of each row.
    not_cold (list of int): only with config "warm_cold": 1 for warm rows, 0 for cold rows.
Returns:
    dict with auc, uauc, n_users_uauc and, given not_cold, auc_warm and auc_cold.
Example:
    >>> metric = evaluate.load(CTR_AUC_PATH)
    >>> metric.compute(predictions=[0.1, 0.9, 0.8, 0.3], references=[0, 1, 1, 0], user_ids=[1, 1, 2, 2])
    {'auc': 1.0, 'uauc': 1.0, 'n_users_uauc': 2}
"""

_CITATION = """
@inproceedings{zhang2023collm,
  title={CoLLM: Integrating Collaborative Embeddings into Large Language Models for Recommendation},
  author={Zhang, Yang and Feng, Fuli and Zhang, Jizhi and Bao, Keqin and Wang, Qifan and He, Xiangnan},
  journal={arXiv preprint arXiv:2310.19488},
  year={2023}
}
"""

_BASE = {
    "predictions": datasets.Value("float64"),
    "references": datasets.Value("int64"),
    "user_ids": datasets.Value("int64"),
}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CtrAuc(evaluate.Metric):
    """AUC / UAUC / warm-cold AUC for CTR prediction, grouped by ``user_ids``."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {**_BASE, "not_cold": datasets.Value("int64")} if self.config_name == "warm_cold" else _BASE
            ),
        )

    def _compute(self, predictions, references, user_ids, not_cold=None) -> dict:
        return ctr_metrics(references, predictions, user_ids, not_cold=not_cold)
