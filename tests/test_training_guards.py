"""Training settings that must do what they say: NaN stops a run, bf16 reaches scoring, accumulation and config
blocks keep their meaning, CF training leaves the LLM's seed alone, a continued run counts its earlier time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import TrainerCallback

import modeling_ccf
from ccf_llm.cf import train_cf
from ccf_llm.testing.make_tiny import tiny_model
from ccf_llm.testing.tiny_run import tiny_ctr_data
from ccf_llm.training import ExperimentConfig
from ccf_llm.training.config import StageConfig
from ccf_llm.training.trainer import WallClock, encode_dataset, predict_scores, run_stage, training_arguments


@pytest.fixture(scope="module")
def text_rows(one_thread) -> dict:
    text = tiny_model(lora_dropout=0.0)[1].with_settings(hybrid=False)
    data = tiny_ctr_data({"train": 32, "valid": 16, "test": 16})
    return {
        "text": text,
        **{split: encode_dataset(data.splits[split], text, split) for split in ("train", "valid")},
    }


def _stage(**changes) -> StageConfig:
    return StageConfig(
        **{"epochs": 1, "batch_size": 8, "eval_batch_size": 16, "warmup_ratio": 0.0, **changes}
    )


class _PoisonAfterStep(TrainerCallback):
    """Turns every trainable weight into NaN after the first step, as a bf16 blow-up would."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 1:
            with torch.no_grad():
                for parameter in self.model.parameters():
                    if parameter.requires_grad:
                        parameter.fill_(float("nan"))


def test_a_nan_loss_stops_training_at_the_next_log(text_rows: dict, tmp_path: Path) -> None:
    model, _ = tiny_model(lora_dropout=0.0)
    with pytest.raises(FloatingPointError, match=r"training (loss|grad_norm) became nan"):
        run_stage(
            model, "text", text_rows["text"], text_rows["train"], text_rows["valid"], _stage(learning_rate=1e-2),
            tmp_path, seed=0, bf16=False, resume=False, callbacks=(_PoisonAfterStep(model),),
        )  # fmt: skip


class _Losses(TrainerCallback):
    def __init__(self) -> None:
        self.logged: list[float] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.logged.append(logs["loss"])


def test_gradient_accumulation_keeps_the_loss_a_mean(text_rows: dict, tmp_path: Path) -> None:
    """The loss is a per-batch mean, so 8 rows in one batch or in 4 accumulated batches of 2 log alike."""
    logged = {}
    for batch_size, accumulation in ((8, 1), (2, 4)):
        model, _ = tiny_model(lora_dropout=0.0)
        losses = _Losses()
        run_stage(
            model, "text", text_rows["text"], text_rows["train"], text_rows["valid"],
            _stage(learning_rate=1e-6, batch_size=batch_size, gradient_accumulation_steps=accumulation),
            tmp_path / f"ga{accumulation}", seed=0, bf16=False, resume=False, callbacks=(losses,),
        )  # fmt: skip
        logged[accumulation] = losses.logged[0]
    assert logged[4] == pytest.approx(logged[1], rel=0.05), logged


def test_scoring_runs_under_bf16_autocast_when_bf16_is_on(
    text_rows: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """accelerate's autocast wraps ``forward`` only; scoring calls ``score_shared_prefixes`` and needs its own."""
    seen: list[bool] = []
    original = modeling_ccf.CCFLLMForCTR.score_shared_prefixes

    def spy(self, *args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(modeling_ccf.CCFLLMForCTR, "score_shared_prefixes", spy)
    model, _ = tiny_model(lora_dropout=0.0)
    for bf16 in (True, False):
        seen.clear()
        predict_scores(model, text_rows["valid"], text_rows["text"], 16, bf16, tmp_path / str(bf16))
        assert seen and set(seen) == {bf16}


def test_a_launcher_cannot_turn_bf16_on_behind_the_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    with pytest.raises(ValueError, match=r"mixed precision 'bf16'.*bf16: false"):
        training_arguments(_stage(), tmp_path, train_rows=8, seed=0, bf16=False)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    assert training_arguments(_stage(), tmp_path, train_rows=8, seed=0, bf16=False).mixed_precision == "no"


def test_a_stage_block_changes_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"stage1": {"epochs": 2}, "stage2": {"batch_size": 4}}))
    config = ExperimentConfig.from_yaml(path, **{"stage2.epochs": 3})
    defaults = ExperimentConfig()
    assert (config.stage1.epochs, config.stage1.learning_rate) == (2, defaults.stage1.learning_rate)
    assert (config.stage2.batch_size, config.stage2.epochs) == (4, 3)
    assert config.stage2.learning_rate == defaults.stage2.learning_rate == 1e-3
    assert ExperimentConfig(stage2={"epochs": 2}).stage2.learning_rate == 1e-3


def test_the_joint_schedule_refuses_a_stage1_to_start_from() -> None:
    with pytest.raises(ValueError, match=r"joint.*no init_from"):
        ExperimentConfig(schedule="joint", init_from="outputs/some-run")


def test_training_cf_tables_leaves_the_callers_random_state_alone(one_thread) -> None:
    """The LLM's initial LoRA and ALG/GATE follow the run's seed, whether or not its CF tables were trained first."""
    torch.manual_seed(42)
    expected = torch.rand(3)
    torch.manual_seed(42)
    train_cf("mf", tiny_ctr_data(), {"max_epochs": 1}, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_a_continued_run_counts_the_earlier_processes(tmp_path: Path) -> None:
    (tmp_path / WallClock.FILE).write_text(json.dumps({"process_seconds": [12.5]}))
    assert WallClock(tmp_path, continued=True).process_seconds()[0] == 12.5
    assert len(WallClock(tmp_path, continued=False).process_seconds()) == 1
