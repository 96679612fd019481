"""Two-stage training on tiny backbones: loss falls, each stage touches only its parameters, resume and seeds."""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
import yaml
from datasets import Dataset
from safetensors.torch import save_file
from transformers import TrainingArguments
from transformers.testing_utils import CaptureLogger

import modeling_ccf
from ccf_llm.evaluation.compare import compare_runs, read_scores, run_name
from ccf_llm.evaluation.rows import cpu_name
from ccf_llm.main_job import run_main_job
from ccf_llm.testing.make_tiny import tiny_model
from ccf_llm.testing.tiny_run import tiny_ctr_data, tiny_run_settings, write_tiny_run_inputs
from ccf_llm.training import ExperimentConfig, run_experiment
from ccf_llm.training import run as run_module
from ccf_llm.training.run import load_stage1_lora, subsample
from ccf_llm.training.trainer import TRAINABLE_FILE, CTRTrainer, evaluation_order, make_collator
from modeling_ccf import native_bf16, use_bf16
from processing_ccf import PROCESSOR_FILE


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, one_thread) -> dict[str, Path]:
    return write_tiny_run_inputs(tmp_path_factory.mktemp("tiny_run"))


def tiny_config(inputs: dict[str, Path], out: Path, **changes) -> ExperimentConfig:
    return ExperimentConfig(**tiny_run_settings(inputs, out, **changes))


def losses(run: Path, stage: str) -> list[float]:
    history = json.loads((run / stage / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


@pytest.fixture(scope="module")
def finished(inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run")
    return out, run_experiment(tiny_config(inputs, out), command="test")


def test_loss_falls_and_everything_is_written(finished: tuple[Path, dict]) -> None:
    out, summary = finished
    stage1 = losses(out, "stage1")
    assert sum(stage1[-3:]) < sum(stage1[:3]), stage1
    for name in (
        "metrics.json",
        "gates.json",
        "test_scores.parquet",
        "model/config.json",
        "model/model.safetensors",
    ):
        assert (out / name).is_file(), name
    assert set(summary["row"]["test"]) == {"auc", "uauc", "auc_warm", "auc_cold"}
    assert 0.0 <= summary["row"]["test"]["auc"] <= 1.0


def test_make_plots_reads_what_a_run_writes(
    finished: tuple[Path, dict], tmp_path: Path, load_script, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, _ = finished
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "tiny").symlink_to(out)  # this run alone, whatever other tests leave beside it
    argv = ["make_plots.py", str(tmp_path / "runs"), "--out", str(tmp_path), "--method", "tiny"]
    monkeypatch.setattr("sys.argv", argv)
    load_script("make_plots").main()
    for figure in ("ml1m_roc.png", "ml1m_training_curves.png", "ml1m_gates_warm_vs_cold.png"):
        assert (tmp_path / figure).stat().st_size > 0, figure


def test_each_stage_changes_only_its_parameters(finished: tuple[Path, dict]) -> None:
    out, _ = finished
    from safetensors.torch import load_file

    stage1 = load_file(out / "stage1" / TRAINABLE_FILE)
    stage2 = load_file(out / "stage2" / TRAINABLE_FILE)
    assert stage1 and all("lora_" in name for name in stage1)
    assert stage2 and all(name.startswith("fusion.") for name in stage2)
    final = load_file(out / "model" / "model.safetensors")
    for name, value in stage1.items():  # stage 2 left the stage-1 LoRA as it was
        torch.testing.assert_close(final[name], value)


def test_stage_one_leaves_backbone_and_tables_untouched(
    inputs: dict[str, Path], finished: tuple[Path, dict]
) -> None:
    out, _ = finished
    from safetensors.torch import load_file

    from ccf_llm.cf import load_cf_tables

    final = load_file(out / "model" / "model.safetensors")
    original = load_file(inputs["llm"] / "model.safetensors")
    for name, value in original.items():
        key = f"backbone.{name}"
        if key not in final:  # LoRA-wrapped layers keep their frozen weight under base_layer
            module, _, leaf = key.rpartition(".")
            key = f"{module}.base_layer.{leaf}"
        torch.testing.assert_close(final[key], value)
    users, items, _ = load_cf_tables(inputs["cf"])
    torch.testing.assert_close(final["user_cf.weight"], users)
    torch.testing.assert_close(final["item_cf.weight"], items)


def test_zero_epoch_text_run_scores_the_untuned_model(inputs: dict[str, Path], tmp_path: Path) -> None:
    """The zero-shot row (``--fusion text_only --set stage1.epochs=0``): nothing trains, everything is scored."""
    from safetensors.torch import load_file

    config = tiny_config(inputs, tmp_path, fusion="text_only", stage1={"epochs": 0})
    summary = run_experiment(config, command="test")
    assert (
        summary["stages"] == {} and not (tmp_path / "stage1").exists() and summary["row"]["train_rows"] == 0
    )
    lora_b = [
        value
        for name, value in load_file(tmp_path / "model" / "model.safetensors").items()
        if "lora_B" in name
    ]
    assert lora_b and all(not value.any() for value in lora_b)  # LoRA as initialised: the base model
    assert 0.0 <= summary["row"]["test"]["auc"] <= 1.0 and (tmp_path / "test_scores.parquet").is_file()


def test_resume_from_a_checkpoint_ends_with_the_same_metrics(
    inputs: dict[str, Path], finished: tuple[Path, dict], tmp_path: Path
) -> None:
    out, summary = finished
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)
    # Roll stage 2 back to its first checkpoint, as if the run had been killed right after saving it.
    checkpoints = sorted((resumed / "stage2").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(checkpoints) >= 2
    for later in checkpoints[1:]:
        shutil.rmtree(later)
    (resumed / "stage2" / TRAINABLE_FILE).unlink()
    again = run_experiment(tiny_config(inputs, resumed), command="test", resume=True)
    assert again["row"]["valid"] == summary["row"]["valid"]
    assert again["row"]["test"] == summary["row"]["test"]
    first, resumed_process = again["process_seconds"]  # the first process's time up to its last step is kept
    assert 0 < first <= summary["process_seconds"][0] and resumed_process > 0
    assert again["row"]["seconds"] == round(sum(again["process_seconds"]), 1)


def test_same_seed_same_metrics(inputs: dict[str, Path], finished: tuple[Path, dict], tmp_path: Path) -> None:
    _, summary = finished
    again = run_experiment(tiny_config(inputs, tmp_path / "again"), command="test")
    assert again["row"]["test"] == summary["row"]["test"]


def test_rerun_of_a_finished_run_reloads_its_stages_and_says_so(
    inputs: dict[str, Path], finished: tuple[Path, dict], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out, summary = finished
    shutil.copytree(out, tmp_path / "run")
    with caplog.at_level(logging.WARNING, logger="ccf_llm.training.trainer"):
        again = run_experiment(tiny_config(inputs, tmp_path / "run"), command="test")
    assert all(stage.get("skipped") for stage in again["stages"].values()) and len(again["stages"]) == 2
    assert [record.getMessage().split(":")[0] for record in caplog.records] == [
        "stage 'text'",
        "stage 'fusion'",
    ]
    assert again["row"]["test"] == summary["row"]["test"]
    other_lora = tiny_config(inputs, tmp_path / "run", lora_target_modules=["q_proj", "k_proj", "v_proj"])
    with pytest.raises(
        ValueError, match=r"stage 'text': .* does not match this model's settings: \d+ weights missing"
    ):
        run_experiment(other_lora, command="test")  # not a partial load of the q/v LoRA


def test_main_job_on_a_tiny_backbone(
    inputs: dict[str, Path], tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    """The main job (configs/ml100k-quick.yaml: embedded ml-100k, MF trained first, both stages, publish,
    fresh-interpreter pipeline) end to end, with a tiny backbone in place of SmolLM2."""
    folder = run_main_job(
        Path(__file__).resolve().parents[1] / "configs" / "ml100k-quick.yaml",
        command="test",
        backbone=str(inputs["llm"]),
        output_dir=str(tmp_path / "quick"),
        results=str(tmp_path / "results.json"),
        max_train_rows=64,
        max_valid_rows=64,
        max_test_rows=64,
        cf_settings={"bias": True, "dim": 8, "max_epochs": 2, "min_epochs": 1},
    )
    shown = capfd.readouterr().out
    assert "top-5 of 9 candidates" in shown and "P(Yes) =" in shown, shown[-2000:]
    assert "no user id, history" in shown  # a list of requests
    runs_in = "bfloat16" if native_bf16() else "float32"  # the defaults on this CPU
    assert (
        f"weights: stored in bfloat16; AutoModel loads torch.{runs_in}, the pipeline runs torch.{runs_in}"
        in shown
    ), shown[-2000:]
    assert "model card: YAML parses; its 6 model-index numbers equal row" in shown
    assert (folder / "README.md").is_file() and (folder / "handler.py").is_file()
    row = json.loads((tmp_path / "results.json").read_text())["rows"][0]
    assert row["train_rows"] == 64
    assert json.loads((tmp_path / "quick" / "model" / PROCESSOR_FILE).read_text())["max_history"] == 5


def test_evaluate_script_rescores_a_saved_model_as_its_run_did(
    inputs: dict[str, Path], finished: tuple[Path, dict], tmp_path: Path, load_script
) -> None:
    """scripts/evaluate.py loads the run's model folder and, on the run's config, reproduces its test scores; the
    folder it writes is a run folder for compare_runs, under the run's method name."""
    out, summary = finished
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_run_settings(inputs, tmp_path / "unused")))
    evaluate = load_script("evaluate")
    evaluate.main([str(out), "--config", str(config), "--out", str(tmp_path / "again")])
    again, original = read_scores(tmp_path / "again"), read_scores(out)
    assert (again["uid"] == original["uid"]).all()
    assert np.abs(again["score"] - original["score"]).max() < 1e-4
    row = json.loads((tmp_path / "again" / "metrics.json").read_text())["row"]
    assert row["method"] == summary["row"]["method"] and row["rows"] == {"test": len(original)}
    assert row["test"]["auc"] == pytest.approx(summary["row"]["test"]["auc"], abs=1e-4)
    assert compare_runs([tmp_path / "again"], baseline=out, n_resamples=50).index[0] == "tiny"
    evaluate.main([str(out / "model"), "--config", str(config), "--out", str(tmp_path / "from_model")])
    assert run_name(tmp_path / "from_model") == "tiny"  # the model folder's run names it
    # A stage checkpoint (weights only) takes the run's prompts: the one selection kept scores as the run did.
    state = json.loads((out / "stage2" / "trainer_state.json").read_text())
    best = out / "stage2" / Path(state["best_model_checkpoint"]).name
    evaluate.main([str(best), "--config", str(config), "--out", str(tmp_path / "checkpoint")])
    assert np.abs(read_scores(tmp_path / "checkpoint")["score"] - original["score"]).max() < 1e-4
    assert run_name(tmp_path / "checkpoint") == f"tiny [stage2/{best.name}]"
    for not_a_model in (tmp_path, out / "stage2"):  # a usage error naming it
        with pytest.raises(SystemExit):
            evaluate.main([str(not_a_model), "--config", str(config), "--out", str(tmp_path / "none")])


def test_evaluation_during_training_pairs_scores_with_their_users(finished: tuple[Path, dict]) -> None:
    """The stage's valid UAUC (per-user, so row order matters) at its best checkpoint equals the final valid
    UAUC of the same weights, scored in dataset order after training."""
    out, summary = finished
    state = json.loads((out / "stage2" / "trainer_state.json").read_text())
    best_step = int(state["best_model_checkpoint"].rpartition("-")[2])
    (best,) = [entry for entry in state["log_history"] if "eval_uauc" in entry and entry["step"] == best_step]
    assert best["eval_auc"] == pytest.approx(summary["row"]["valid"]["auc"], abs=1e-4)
    assert best["eval_uauc"] == pytest.approx(summary["row"]["valid"]["uauc"], abs=1e-4)


def test_evaluation_order_puts_the_rows_of_one_prompt_prefix_together() -> None:
    """Rows of one prefix (user and history) must be neighbours for ``score_shared_prefixes`` to share it."""
    _, processor = tiny_model("llama", "gate")
    prompts = [([1, 2], 3, 1), ([4], 5, 2), ([1, 2], 6, 2), ([1, 2], 7, 1), ([4], 8, 2), ([1, 2], 4, 1)]
    rows = [processor.encode(history, candidate, user) for history, candidate, user in prompts]
    dataset = Dataset.from_list([{**row, "length": len(row["input_ids"])} for row in rows])
    order = evaluation_order(dataset).tolist()
    assert sorted(order) == list(range(len(prompts)))
    prefixes = [(prompts[i][2], tuple(prompts[i][0])) for i in order]
    runs = [
        prefix
        for position, prefix in enumerate(prefixes)
        if position == 0 or prefix != prefixes[position - 1]
    ]
    assert len(runs) == len(set(prefixes)) == 3, prefixes
    prefix_lengths = [rows[i]["title_index"].index(0) for i in order]
    assert prefix_lengths == sorted(prefix_lengths)


def test_cpu_protocol_samples_do_not_depend_on_the_training_seed() -> None:
    """Runs that differ in ``seed`` alone must score the same valid/test rows, or their AUCs are not comparable."""
    data = tiny_ctr_data({"train": 40, "valid": 40, "test": 40})
    limits = {"max_train_rows": 16, "max_valid_rows": 10, "max_test_rows": 10}

    def rows(**settings) -> dict[str, list]:
        splits = subsample(ExperimentConfig(**limits, **settings), data).splits
        return {
            name: split.select_columns(["uid", "iid", "timestamp"]).to_list()
            for name, split in splits.items()
        }

    first = rows(seed=1)
    assert {name: len(split) for name, split in first.items()} == {"train": 16, "valid": 10, "test": 10}
    assert rows(seed=2) == first
    other_sample = rows(seed=1, sample_seed=7)
    assert other_sample["train"] == first["train"]  # the most recent rows, whatever the seeds
    assert other_sample["valid"] != first["valid"] and other_sample["test"] != first["test"]


def test_loading_a_checkpoint_does_not_report_tied_weights_as_missing(tmp_path: Path) -> None:
    """GPT-2 (like SmolLM2) ties its output head to its input embeddings; checkpoints store them once."""
    model, _ = tiny_model("gpt2")
    tied = set(model.all_tied_weights_keys)
    assert tied == {"backbone.lm_head.weight"}
    trainer = CTRTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to=[]))
    state = {key: value for key, value in model.state_dict().items() if key not in tied}
    logger = transformers.logging.get_logger("transformers.trainer")
    with CaptureLogger(logger) as captured:
        trainer._issue_warnings_after_load(model.load_state_dict(state, strict=False))
    assert "missing keys" not in captured.out
    del state["fusion.alg.up.weight"]
    with CaptureLogger(logger) as captured:
        trainer._issue_warnings_after_load(model.load_state_dict(state, strict=False))
    assert "missing keys in the checkpoint model loaded: ['fusion.alg.up.weight']" in captured.out


def test_training_forwards_avoid_cudnn_attention_and_scoring_keeps_it(tmp_path: Path) -> None:
    """cuDNN's SDPA backward returns NaN with masked rows (``TRAINING_SDPA_BACKENDS``): training steps run their
    forwards with that backend off, evaluation with the backends as they were."""
    model, processor = tiny_model("llama", "gate")
    prompts = [([1, 2], 3, 1, 1.0), ([4], 5, 2, 0.0)]
    rows = [{**processor.encode(his, iid, uid), "label": label} for his, iid, uid, label in prompts]
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=2,
        report_to=[],
        save_strategy="no",
        remove_unused_columns=False,
    )
    dataset = Dataset.from_list(rows)
    trainer = CTRTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=make_collator(processor),
    )
    cudnn_allowed: list[tuple[bool, bool]] = []
    model.backbone.base_model.register_forward_pre_hook(
        lambda *_: cudnn_allowed.append((model.training, torch.backends.cuda.cudnn_sdp_enabled()))
    )
    trainer.train()
    trainer.predict(dataset)
    assert cudnn_allowed[:2] == [(True, False)] * 2
    assert cudnn_allowed[2:] and all(not training and allowed for training, allowed in cudnn_allowed[2:])
    assert torch.backends.cuda.cudnn_sdp_enabled()


def test_cpu_name_reads_the_first_model_name(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n\nmodel name\t: other\n")
    assert cpu_name(cpuinfo) == "Intel(R) Xeon(R) Processor"
    cpuinfo.write_text("processor\t: 0\n")
    assert cpu_name(cpuinfo) is None
    assert cpu_name(tmp_path / "missing") is None


def test_init_from_loads_every_lora_weight_of_a_finished_run_or_says_why_not(tmp_path: Path) -> None:
    """Stage 2 starts from a finished run's stage-1 LoRA, read from its stage1 weights or its saved model folder;
    a LoRA on other modules (another ``lora_target_modules``) is an error, not a partial load."""
    trained, _ = tiny_model("llama", "gate", seed=1)
    with torch.no_grad():
        for name, weight in trained.named_parameters():
            if "lora_" in name:
                weight.normal_()
    lora = {name: weight.detach().clone() for name, weight in trained.named_parameters() if "lora_" in name}
    (tmp_path / "run" / "stage1").mkdir(parents=True)
    save_file(lora, tmp_path / "run" / "stage1" / TRAINABLE_FILE)
    trained.save_pretrained(tmp_path / "saved" / run_module.MODEL_DIR)
    for run in ("run", "saved"):
        model, _ = tiny_model("llama", "gate")
        load_stage1_lora(model, tmp_path / run)
        state = model.state_dict()
        assert all(torch.equal(state[name], weight) for name, weight in lora.items()), run
    wider, _ = tiny_model("llama", "gate", lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    with pytest.raises(ValueError, match=r"weights missing .*, 0 not in this model"):
        load_stage1_lora(wider, tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="no stage1"):
        load_stage1_lora(wider, tmp_path)


def test_bf16_on_a_cpu_that_emulates_it_is_kept_with_a_warning(monkeypatch) -> None:
    """``bf16: true`` stays on (it may be there to match bf16 rows) but warns where the CPU emulates bf16; unset,
    bf16 follows the machine, silently."""
    monkeypatch.setattr(modeling_ccf, "native_bf16", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="no native bf16"):
        assert use_bf16(ExperimentConfig(bf16=True).bf16) is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert use_bf16(ExperimentConfig(bf16=None).bf16) is False
        assert use_bf16(ExperimentConfig(bf16=False).bf16) is False
    monkeypatch.setattr(modeling_ccf, "native_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert use_bf16(ExperimentConfig(bf16=True).bf16) is True
        assert use_bf16(ExperimentConfig(bf16=None).bf16) is True


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("gradient_checkpointing_enable", {}),
        (
            "activation_checkpointing_enable",
            {"every_n_layers": 1, "offload": False},
        ),  # the newer Trainer's call
    ],
)
def test_checkpointed_attention_stays_off_cudnn_when_recomputed_in_backward(method, kwargs) -> None:
    """Gradient checkpointing recomputes attention in backward, after ``forward``'s backend restriction ended;
    under either name a transformers version's Trainer calls."""
    model, processor = tiny_model("llama", "gate")
    if not hasattr(model, method):
        pytest.skip(f"this transformers has no {method}")
    model.set_attn_implementation("sdpa")
    getattr(model, method)(**kwargs)
    model.train()
    cudnn_allowed: list[bool] = []
    for layer in model.backbone.base_model.layers:
        layer.self_attn.register_forward_pre_hook(
            lambda *_: cudnn_allowed.append(torch.backends.cuda.cudnn_sdp_enabled())
        )
    batch = processor([[1, 2], [3]], [4, 5], [1, 2], labels=[1.0, 0.0])
    model(**batch).loss.backward()
    layers = len(model.backbone.base_model.layers)
    assert len(cudnn_allowed) == 2 * layers  # each layer's attention: once forward, once recomputed
    assert not any(cudnn_allowed)
    assert torch.backends.cuda.cudnn_sdp_enabled()
