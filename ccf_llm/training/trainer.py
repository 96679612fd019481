"""One training stage on the HF ``Trainer``: pre-tokenized prompts, length-grouped batches, best epoch by valid AUC."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from datasets import Dataset
from safetensors.torch import load_file, save_file
from torch.utils.data import Sampler, SequentialSampler
from transformers import EvalPrediction, Trainer, TrainerCallback, TrainingArguments

from modeling_ccf import CCFLLMForCTR
from processing_ccf import CCFLLMProcessor

from ..atomic import replaced_atomically, write_text_atomically
from ..metrics import ctr_metrics
from .config import StageConfig
from .stages import set_trainable

logger = logging.getLogger(__name__)

TRAINABLE_FILE = "trainable.safetensors"


def load_weights_of(
    model: torch.nn.Module, weights: dict[str, torch.Tensor], expected: Iterable[str], source: str
) -> None:
    """Load ``weights``, which must be exactly the ``expected`` parameters: weights written under other settings
    (LoRA on other modules, another fusion) would otherwise load in part, silently (``strict=False``)."""
    missing, extra = sorted(set(expected) - weights.keys()), sorted(weights.keys() - set(expected))
    if missing or extra:
        raise ValueError(
            f"{source} does not match this model's settings: {len(missing)} weights missing (e.g. {missing[:1]}), "
            f"{len(extra)} not in this model or not tuned here (e.g. {extra[:1]})"
        )
    model.load_state_dict(weights, strict=False)  # strict=False: the frozen rest is not in ``weights``


def encode_dataset(dataset: Dataset, processor: CCFLLMProcessor, desc: str) -> Dataset:
    """Tokenize every prompt once (so batches are only padded), keeping label/uid/not_cold for the metrics."""

    def encode(row: dict) -> dict:
        encoded = processor.encode(row["his"], row["iid"], row["uid"])
        return {**encoded, "length": len(encoded["input_ids"])}

    keep = {"label", "uid", "not_cold"}
    return dataset.map(encode, remove_columns=[c for c in dataset.column_names if c not in keep], desc=desc)


def evaluation_order(dataset: Dataset) -> np.ndarray:
    """Rows in ``CCFLLMProcessor.evaluation_sort_key`` order (rows of one prompt prefix together, short to long).
    Training batches are grouped by the Trainer's length-grouped sampler instead, which keeps them shuffled."""
    rows = dataset.select_columns(["input_ids", "title_index", "user_id", "history_ids"])
    keys = [CCFLLMProcessor.evaluation_sort_key(row) for row in rows]
    return np.asarray(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)


def make_collator(processor: CCFLLMProcessor):
    def collate(rows: list[dict]):
        return processor.pad(rows, labels=[row["label"] for row in rows])

    return collate


def make_compute_metrics(dataset: Dataset):
    """AUC/UAUC of the predictions; the evaluation loader keeps dataset order, so row i is dataset row i."""
    uids, not_cold = np.asarray(dataset["uid"]), np.asarray(dataset["not_cold"])

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        scores = np.asarray(prediction.predictions).reshape(-1)
        return ctr_metrics(prediction.label_ids.reshape(-1), scores, uids, not_cold)

    return compute


class NaNGuard(TrainerCallback):
    """Stop at the first non-finite training loss or gradient norm instead of training on (a bf16 run can go to
    NaN). Needs ``logging_nan_inf_filter=False``, or the Trainer logs earlier losses in place of a NaN."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        for name in ("loss", "grad_norm"):
            value = (logs or {}).get(name)
            if value is not None and not math.isfinite(value):
                raise FloatingPointError(
                    f"training {name} became {value} at step {state.global_step}: lower the learning rate or "
                    "turn bf16 off"
                )


class WallClock(TrainerCallback):
    """A run's wall time per process that worked on it, written at training steps (at most once a second), at
    each stage's end and when the run is done, so a run continued across sessions (``--resume``, or finished stages
    reloaded) reports all of its time, not only the last process's. The one clock of a run's ``seconds``."""

    FILE = "wall_clock.json"

    def __init__(self, run_dir: Path, continued: bool) -> None:
        self.path = run_dir / self.FILE
        counted = continued and self.path.is_file()
        self.earlier = json.loads(self.path.read_text())["process_seconds"] if counted else []
        self.start = time.perf_counter()
        self.written_at = -math.inf

    @classmethod
    def of_run(cls, run_dir: Path, resume: bool) -> WallClock:
        """The clock of a run folder: continued with ``resume``, or where a finished stage will be reloaded."""
        return cls(run_dir, continued=resume or any(run_dir.glob(f"*/{TRAINABLE_FILE}")))

    def process_seconds(self) -> list[float]:
        return [*self.earlier, round(time.perf_counter() - self.start, 1)]

    def seconds(self) -> float:
        """All processes' time together (the results row's ``seconds``)."""
        return round(sum(self.process_seconds()), 1)

    def write(self) -> None:
        write_text_atomically(self.path, json.dumps({"process_seconds": self.process_seconds()}))
        self.written_at = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and time.perf_counter() - self.written_at >= 1.0:
            self.write()

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.write()


class CTRTrainer(Trainer):
    """The ``Trainer``, except in evaluation: rows keep dataset order (transformers 5 groups evaluation rows by
    length whenever training does, which would pair scores with other rows' users in UAUC and warm/cold AUC),
    and rows that share a prompt prefix compute it once (``CCFLLMForCTR.score_shared_prefixes``)."""

    def _get_eval_sampler(self, eval_dataset: Dataset) -> Sampler | None:
        if self.args.world_size > 1:
            return None  # accelerate shards in order; the gather drops its padding rows
        return SequentialSampler(eval_dataset)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        labels = inputs.get("labels")
        # accelerate's autocast wraps only ``model.forward``: scoring under ``bf16`` needs its own
        with torch.no_grad(), self.accelerator.autocast():
            logits = self.accelerator.unwrap_model(model).score_shared_prefixes(**inputs)
        loss = None
        if labels is not None:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        return (loss, None, None) if prediction_loss_only else (loss, logits, labels)

    def _issue_warnings_after_load(self, load_result) -> None:
        """Tied weights (SmolLM2's output head is its input embeddings) are saved once: not missing."""
        tied = getattr(self.accelerator.unwrap_model(self.model), "all_tied_weights_keys", None) or {}
        missing = [key for key in load_result.missing_keys if key not in tied]
        super()._issue_warnings_after_load(load_result._replace(missing_keys=missing))


def training_arguments(
    stage: StageConfig, output_dir: Path, train_rows: int, seed: int, bf16: bool
) -> TrainingArguments:
    world = process_state().num_processes
    steps_per_epoch = max(
        math.ceil(train_rows / (stage.batch_size * stage.gradient_accumulation_steps * world)), 1
    )
    eval_steps = max(steps_per_epoch // max(stage.evals_per_epoch, 1), 1)
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    sampling = (
        {"train_sampling_strategy": "group_by_length"}
        if "train_sampling_strategy" in fields
        else {"group_by_length": True}
    )
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=stage.batch_size,
        per_device_eval_batch_size=stage.eval_batch_size,
        gradient_accumulation_steps=stage.gradient_accumulation_steps,
        learning_rate=stage.learning_rate,
        weight_decay=stage.weight_decay,
        warmup_steps=int(stage.warmup_ratio * steps_per_epoch * stage.epochs),
        num_train_epochs=stage.epochs,
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=eval_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="auc",
        greater_is_better=True,
        logging_steps=max(min(eval_steps // 4, 50), 1),
        logging_nan_inf_filter=False,  # NaNGuard must see a NaN loss
        report_to=["tensorboard"],
        remove_unused_columns=False,
        label_names=["labels"],
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        disable_tqdm=False,
        **sampling,
        **device_arguments(bf16),
    )


def process_state() -> PartialState:
    """accelerate's facts of this process (main or not, how many in the launch). Without a GPU, the processes of a
    launch are CPU processes (DDP over gloo), as the Trainer's ``use_cpu`` makes them (``explicit_cpu``)."""
    return PartialState(cpu=not torch.cuda.is_available())


def device_arguments(bf16: bool) -> dict:
    """The ``TrainingArguments`` of device and precision, for training and scoring alike. ``bf16`` comes from the
    experiment config; a launcher's bf16/fp16 (``ACCELERATE_MIXED_PRECISION``) would otherwise override a
    ``bf16: false`` silently."""
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if not bf16 and launched != "no":
        raise ValueError(
            f"the launcher asks for mixed precision {launched!r} (accelerate launch's --mixed_precision or config "
            "file) but the experiment config has bf16: false; launch with mixed_precision no (the experiment "
            "config decides: bf16: null turns bf16 on where it is native) or set bf16: true"
        )
    return {"bf16": bf16, "use_cpu": explicit_cpu(bf16), "dataloader_pin_memory": torch.cuda.is_available()}


def explicit_cpu(bf16: bool) -> bool:
    """Whether the Trainer must be told ``use_cpu``: without it, several processes without a GPU stay
    undistributed (each would train the whole run alone and write the same files; with it, DDP over gloo),
    and bf16 autocast on a CPU is refused."""
    return not torch.cuda.is_available() and (process_state().num_processes > 1 or bf16)


def run_stage(
    model: CCFLLMForCTR,
    stage_name: str,
    processor: CCFLLMProcessor,
    train: Dataset,
    valid: Dataset,
    stage: StageConfig,
    output_dir: Path,
    seed: int,
    bf16: bool,
    resume: bool,
    callbacks: tuple[TrainerCallback, ...] = (),
) -> dict:
    """Train the parameters ``stage_name`` tunes; leaves the best (by valid AUC) weights in ``model``.

    A finished stage writes its trainable weights to ``output_dir/trainable.safetensors`` and is skipped
    (weights reloaded) when run again; an interrupted one resumes from its last checkpoint with ``resume``.
    """
    trainable = set_trainable(model, stage_name)
    done = output_dir / TRAINABLE_FILE
    if done.is_file():
        logger.warning(
            "stage %r: %s holds this stage's finished weights; reloading them instead of training "
            "(delete that folder to train the stage again)",
            stage_name,
            done,
        )
        load_weights_of(
            model, load_file(done), trainable, f"stage {stage_name!r}: {done} (delete that folder to retrain)"
        )
        return {"skipped": True, "trainable": len(trainable)}
    valid = valid.select(evaluation_order(valid))  # no metric depends on row order
    trainer = CTRTrainer(
        model=model,
        args=training_arguments(stage, output_dir, len(train), seed, bf16),
        train_dataset=train,
        eval_dataset=valid,
        data_collator=make_collator(processor),
        compute_metrics=make_compute_metrics(valid),
        callbacks=[NaNGuard(), *callbacks],
    )
    complete = [path for path in output_dir.glob("checkpoint-*") if saved_completely(path)]
    last = max(complete, key=lambda path: int(path.name.rpartition("-")[2]), default=None)
    result = trainer.train(resume_from_checkpoint=str(last) if resume and last else None)
    trainer.save_state()  # trainer_state.json: the log history behind the training-curve plots
    if trainer.is_world_process_zero():
        state = {
            name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if name in trainable
        }
        with replaced_atomically(done) as tmp:
            save_file(state, tmp)
    return {"train_seconds": result.metrics.get("train_runtime"), "best_valid_auc": trainer.state.best_metric}


def saved_completely(checkpoint: Path) -> bool:
    """A run killed while saving leaves a checkpoint whose trainer_state.json (written last) is missing or cut."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def predict_scores(
    model: CCFLLMForCTR,
    dataset: Dataset,
    processor: CCFLLMProcessor,
    batch_size: int,
    bf16: bool,
    output_dir: Path,
) -> np.ndarray:
    """Scores for every row of an encoded dataset, in dataset order (Trainer drops distributed padding rows)."""
    args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_eval_batch_size=batch_size,
        remove_unused_columns=False,
        label_names=["labels"],
        report_to=[],
        disable_tqdm=False,
        **device_arguments(bf16),
    )
    trainer = CTRTrainer(model=model, args=args, data_collator=make_collator(processor))
    order = evaluation_order(dataset)
    scores = np.empty(len(dataset), dtype=np.float32)
    scores[order] = np.asarray(trainer.predict(dataset.select(order)).predictions).reshape(-1)
    return scores
