"""gates.json's warm/cold gate statistics cover the whole split, not its first rows."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from ccf_llm.evaluation.gates import gate_statistics
from ccf_llm.testing.make_tiny import tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest


def test_rows_past_the_first_2048_count() -> None:
    """Split files are sorted by user: the highest user ids (here the one cold row) come last."""
    model, processor = tiny_model("llama", "gate")
    model.eval()
    warm = {**processor.encode([1, 2, 3], 4, 1), "not_cold": 1}
    cold = {**processor.encode([5], 6, 4), "not_cold": 0}
    stats = gate_statistics(model, processor, Dataset.from_list([warm] * 2048 + [cold]))
    alone = {
        kind: gate_statistics(model, processor, Dataset.from_list([row]))
        for kind, row in (("warm", warm), ("cold", cold))
    }
    assert stats.keys() == {"warm", "cold"}
    for kind in stats:
        torch.testing.assert_close(
            torch.tensor(stats[kind]), torch.tensor(alone[kind][kind]), atol=1e-6, rtol=0
        )
