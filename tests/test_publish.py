"""Publishing a run: the Hub folder, its model card, the refusals, and the folder in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open

from ccf_llm.build import build_model, load_backbone
from ccf_llm.cf import save_cf_tables, train_cf
from ccf_llm.evaluation import upsert_result
from ccf_llm.evaluation.compare import write_scores
from ccf_llm.main_job import score_cf_baseline
from ccf_llm.metrics import ctr_metrics
from ccf_llm.publishing import HubAccessError, find_measured_row, model_card, publish, write_model_folder
from ccf_llm.publishing import hub as hub_module
from ccf_llm.publishing.folder import BASELINE_DIR, CODE_FILES, DATA_FILES, local_roots
from ccf_llm.testing import TINY_CATALOG, make_tiny, tiny_backbone, tiny_tokenizer
from ccf_llm.testing.fresh import BLOCK_REPO_MODULES
from ccf_llm.testing.tiny_run import tiny_ctr_data
from ccf_llm.training import ExperimentConfig
from ccf_llm.training.run import subsample
from configuration_ccf import CCFLLMConfig
from modeling_ccf import CCFLLMForCTR, native_bf16
from pipeline_ccf import CCFLLMPipeline, parse_widget_text
from processing_ccf import PROCESSOR_FILE, CCFLLMProcessor

ROW = {
    "method": "CCF-LLM (tiny)",
    "experiment": None,
    "protocol": "full",
    "test_rows": 40,
    "settings": {"fusion": "gate", "cf": "mf"},
    "backbone": "SmolLM2-135M-Instruct",
    "fusion": "gate",
    "cf": "mf",
    "train_rows": 120,
    "device": "cpu (2 cores)",
    "seconds": 3.5,
    "command": "python scripts/train.py --config configs/tiny.yaml",
    "valid": {"auc": 0.6123, "uauc": 0.5511},
    "test": {"auc": 0.6234, "uauc": 0.5812, "auc_warm": 0.6401, "auc_cold": None},
}
CF_ROW = {**ROW, "method": "MF", "train_rows": 96, "settings": {"cf": "mf"}, "backbone": None,
          "valid": {"auc": 0.7001, "uauc": 0.6002}, "test": {"auc": 0.7103, "uauc": 0.6104, "auc_warm": 0.7205,
                                                              "auc_cold": None}}  # fmt: skip
COMPARISON = {"split": "test", "rows": 40, "minus_baseline": -0.0869, "low": -0.1502, "high": -0.0211,
              "confidence": 0.95, "resample": "users", "llm_train_rows": 120}  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, one_thread) -> Path:
    """A finished tiny run (model folder + metrics.json) whose row is in its results file, with the main job's
    CF baseline beside it."""
    run = tmp_path_factory.mktemp("run")
    make_tiny(run / "model")
    results = run / "results" / "ml1m.json"
    upsert_result(results, ROW)
    summary = {"row": ROW, "stages": {}, "config": {"data": "ml1m", "results": str(results)}}
    (run / "metrics.json").write_text(json.dumps(summary))
    (run / BASELINE_DIR).mkdir()
    (run / BASELINE_DIR / "metrics.json").write_text(json.dumps({"row": CF_ROW, "comparison": COMPARISON}))
    return run


@pytest.fixture(scope="module")
def published(run_dir: Path) -> Path:
    return write_model_folder(run_dir, run_dir.parent / "published")


def front_matter(folder: Path) -> dict:
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_folder_holds_everything_the_hub_needs(published: Path) -> None:
    for name in (
        "configuration_ccf.py",
        "modeling_ccf.py",
        "processing_ccf.py",
        "pipeline_ccf.py",
        "handler.py",
    ):
        assert (published / name).is_file(), name
    for name in ("tokenizer.json", "tokenizer_config.json", PROCESSOR_FILE, "README.md"):
        assert (published / name).is_file(), name
    processor = json.loads((published / PROCESSOR_FILE).read_text())
    assert processor["auto_map"] == {"AutoProcessor": "processing_ccf.CCFLLMProcessor"}
    assert processor["catalog"] == {str(item): title for item, title in TINY_CATALOG.items()}
    config = json.loads((published / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_ccf.CCFLLMConfig",
        "AutoModel": "modeling_ccf.CCFLLMForCTR",
    }
    assert config["custom_pipelines"]["ccf-ctr"]["impl"] == "pipeline_ccf.CCFLLMPipeline"
    assert config["custom_pipelines"]["ccf-ctr"]["pt"] == ["AutoModel"]
    with safe_open(published / "model.safetensors", "pt") as weights:
        assert {weights.get_slice(key).get_dtype() for key in weights.keys()} == {"BF16"}  # noqa: SIM118
    assert not [path.name for path in published.parent.iterdir() if path.name.startswith(".published")]


def test_card_front_matter_and_numbers_come_from_the_row(published: Path) -> None:
    meta = front_matter(published)
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "text-classification"
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["datasets"] == ["ml-1m"]
    assert meta["metrics"] == ["auc"]
    catalog = set(json.loads((published / PROCESSOR_FILE).read_text())["catalog"].values())
    for example in meta["widget"]:
        request = parse_widget_text(example["text"])
        titles = request["history"] + request.get("candidates", [request.get("candidate")])
        assert set(titles) <= catalog
    measured = {
        (result["dataset"]["split"], metric["type"]): metric["value"]
        for result in meta["model-index"][0]["results"]
        for metric in result["metrics"]
    }
    expected = {(split, key): value for split in ("valid", "test") for key, value in ROW[split].items()}
    assert measured == {key: value for key, value in expected.items() if value is not None}
    body = (published / "README.md").read_text().split("---\n", 2)[2]
    assert "| `published` | test | 0.6234 | 0.5812 | 0.6401 | — |" in body
    assert 'AutoProcessor.from_pretrained("published", trust_remote_code=True)' in body


def test_card_shows_the_cf_tables_alone_on_the_same_rows(published: Path) -> None:
    """The main job's baseline: its row beside CCF-LLM's in the table, the paired difference and what it means;
    the model-index keeps this model's numbers alone."""
    body = (published / "README.md").read_text().split("---\n", 2)[2]
    assert "| MF (CF tables alone) | test | 0.7103 | 0.6104 | 0.7205 | — |" in body
    assert "| MF (CF tables alone) | valid | 0.7001 | 0.6002 | — | — |" in body
    assert (
        "CCF-LLM minus MF alone, test AUC on the same 40 rows: -0.0869 [-0.1502, -0.0211] (95% paired bootstrap "
        "over users); the interval excludes 0: trained on 120 rows, the LLM does not yet add to the CF tables it "
        "reads." in body
    )
    values = [metric["value"] for result in front_matter(published)["model-index"][0]["results"]
              for metric in result["metrics"]]  # fmt: skip
    assert 0.7103 not in values and 0.6234 in values


def test_main_job_scores_the_cf_model_on_the_runs_rows(tmp_path: Path) -> None:
    """``score_cf_baseline``: the CF export scored on the rows the run scored (same users, labels, order), its row
    in the results layout and CCF-LLM minus it with a paired interval (here the "LLM" scores are the labels
    plus noise, far better than a 2-epoch MF)."""
    data = tiny_ctr_data({"train": 200, "valid": 48, "test": 300})
    data.save(tmp_path / "data")
    save_cf_tables(train_cf("mf", data, {"dim": 4, "max_epochs": 2}, progress=False), tmp_path / "cf")
    config = ExperimentConfig(data=str(tmp_path / "data"), cf_dir=str(tmp_path / "cf"),
                              output_dir=str(tmp_path / "run"), max_test_rows=256)  # fmt: skip
    run = tmp_path / "run"
    run.mkdir()
    sampled = subsample(config, data)
    noise = np.random.default_rng(0)
    for split in ("valid", "test"):
        rows = {column: np.asarray(sampled.splits[split][column]) for column in ("uid", "label", "not_cold")}
        llm = rows["label"] + noise.uniform(0, 1.5, len(rows["label"]))
        write_scores(run, split, rows, llm)
    baseline = score_cf_baseline(config, run, {"train_rows": 200}, "python scripts/main.py")
    assert baseline.row["method"] == "MF" and baseline.row["test_rows"] == 256
    assert baseline.row["settings"]["cf"] == "cf" and baseline.row["command"] == "python scripts/main.py"
    assert set(baseline.row["test"]) == {"auc", "uauc", "auc_warm", "auc_cold"}
    assert baseline.comparison["rows"] == 256
    assert (
        0 < baseline.comparison["low"] <= baseline.comparison["minus_baseline"] <= baseline.comparison["high"]
    )
    llm_auc = ctr_metrics(rows["label"], llm, rows["uid"])["auc"]  # the test split's, written last
    assert baseline.comparison["minus_baseline"] == pytest.approx(
        llm_auc - baseline.row["test"]["auc"], abs=1e-4
    )
    saved = json.loads((run / BASELINE_DIR / "metrics.json").read_text())
    assert saved == {"row": baseline.row, "comparison": baseline.comparison}


def test_card_without_a_results_row_has_no_model_index(published: Path) -> None:
    config = CCFLLMConfig.from_pretrained(published)
    catalog = CCFLLMProcessor.from_pretrained(published).catalog
    card = model_card(ROW, None, catalog, config, name="x", model_ref="x", dataset="ml-1m")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert "model-index" not in meta
    assert "No measured results row" in card


def test_tiny_folder_holds_what_publish_writes(published: Path, tmp_path: Path) -> None:
    """``make_tiny`` writes a folder by the function that writes published folders: the same files, the same
    ``custom_pipelines`` and ``auto_map`` entries, a card with the widget examples."""
    tiny = make_tiny(tmp_path / "tiny")
    assert sorted(path.name for path in tiny.iterdir()) == sorted(path.name for path in published.iterdir())
    assert set(CODE_FILES + DATA_FILES) <= {path.name for path in tiny.iterdir()}
    for name in ("config.json", PROCESSOR_FILE):
        tiny_json, published_json = (json.loads((folder / name).read_text()) for folder in (tiny, published))
        for key in ("auto_map", "custom_pipelines"):
            assert tiny_json.get(key) == published_json.get(key), (name, key)
    assert "custom_pipelines" in json.loads((tiny / "config.json").read_text())
    assert len(front_matter(tiny)["widget"]) == 2


def json_strings(value) -> list[str]:
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in (key, *json_strings(item))]
    if isinstance(value, list):
        return [text for item in value for text in json_strings(item)]
    return [value] if isinstance(value, str) else []


def assert_no_local_paths(folder: Path) -> None:
    """No file names a path of this machine, and no JSON string is an absolute path that exists here."""
    roots = local_roots(folder)
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix != ".safetensors":
            text = path.read_text()
            assert not [root for root in roots if root in text], path
            for value in json_strings(json.loads(text)) if path.suffix == ".json" else []:
                assert not (len(value) > 1 and os.path.isabs(value) and os.path.exists(value)), (path, value)


def test_no_file_of_a_published_or_tiny_folder_holds_a_local_path(published: Path, tmp_path: Path) -> None:
    assert_no_local_paths(published)
    assert_no_local_paths(make_tiny(tmp_path / "tiny"))


def test_a_backbone_from_a_local_folder_is_recorded_by_name_not_path(tmp_path: Path) -> None:
    """``text_config._name_or_path`` of a model built from a local folder is the folder's name, never its path."""
    tiny_backbone(vocab_size=len(tiny_tokenizer())).save_pretrained(tmp_path / "SmolLM2-like")
    tiny_tokenizer().save_pretrained(tmp_path / "SmolLM2-like")
    backbone, tokenizer = load_backbone(tmp_path / "SmolLM2-like")
    assert backbone.config.name_or_path == str(tmp_path / "SmolLM2-like")
    model, _ = build_model(backbone, tokenizer, TINY_CATALOG, processor_kwargs={"max_length": 160})
    model.save_pretrained(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["text_config"]["_name_or_path"] == "SmolLM2-like"


def test_row_from_another_run_is_refused(run_dir: Path) -> None:
    results = run_dir / "results" / "ml1m.json"
    assert find_measured_row(ROW, [results]).row["test"] == ROW["test"]
    assert find_measured_row({**ROW, "method": "other"}, [results]) is None
    with pytest.raises(ValueError, match="measured by another run"):
        find_measured_row({**ROW, "test": {**ROW["test"], "auc": 0.7}}, [results])


def test_existing_folder_is_kept_unless_overwrite(run_dir: Path, published: Path) -> None:
    with pytest.raises(FileExistsError):
        write_model_folder(run_dir, published)
    (published / "stale.txt").write_text("from an earlier publish")
    write_model_folder(run_dir, published, overwrite=True)
    assert not (published / "stale.txt").exists()
    assert not [path.name for path in published.parent.iterdir() if path.name.startswith(".published")]


def test_push_is_refused_before_anything_is_written(
    run_dir: Path, tmp_path: Path, monkeypatch, load_script
) -> None:
    out = tmp_path / "never"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubAccessError, match="HF_HUB_OFFLINE"):
        publish(run_dir, out, push_to_hub="org/name")
    script = load_script("publish")
    with pytest.raises(SystemExit, match="HF_HUB_OFFLINE"):
        script.main([str(run_dir), "--out", str(out), "--push-to-hub", "org/name"])
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub_module, "is_offline_mode", lambda: False)
    monkeypatch.setattr(hub_module, "get_token", lambda: None)
    with pytest.raises(HubAccessError, match="no Hugging Face token"):
        publish(run_dir, out, push_to_hub="org/name")
    with pytest.raises(HubAccessError, match="ORG/NAME"):
        publish(run_dir, out, push_to_hub="just-a-name")
    assert not out.exists()


FRESH_SCRIPT = BLOCK_REPO_MODULES + textwrap.dedent(
    """
    import importlib.util, json, sys, warnings
    from pathlib import Path

    warnings.simplefilter("ignore")
    from transformers import pipeline

    folder, requests = sys.argv[1], json.loads(sys.argv[2])
    ctr = pipeline(model=folder, trust_remote_code=True, device="cpu")
    spec = importlib.util.spec_from_file_location("handler", Path(folder) / "handler.py")
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    endpoint = handler.EndpointHandler(folder)
    print(json.dumps({
        "module": type(ctr).__module__,
        "dtype": str(ctr.model.dtype),
        "outputs": [ctr(request, **parameters) for request, parameters in requests],
        "endpoint": [endpoint({"inputs": request, "parameters": parameters}) for request, parameters in requests],
    }))
    """
)


def test_published_folder_works_in_a_fresh_interpreter(published: Path, tmp_path: Path) -> None:
    widget = [example["text"] for example in front_matter(published)["widget"]]
    requests = [
        ({"user_id": 2, "history": [1, "fargo"], "candidate": "Heat"}, {}),
        ([{"history": [1], "candidate": 2}, {"user_id": 3, "history": [5], "candidate": "The Matrix"}], {}),
        (widget[0], {}),
        (widget[1], {"top_k": 2}),
        ({"user_id": 3, "history": [1, 3], "candidates": [2, 4, 5, 6]}, {}),
        ([widget[0], {"history": [1], "candidate": 2}, widget[1]], {"batch_size": 2, "top_k": 2}),
    ]
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf"),
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.pop("HF_MODULES_CACHE", None)
    done = subprocess.run(
        [sys.executable, "-I", "-c", FRESH_SCRIPT, str(published), json.dumps(requests)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    assert fresh["module"].startswith("transformers_modules.") and fresh["module"].endswith(".pipeline_ccf")
    # The published weights are bf16 and load as such, in float32 where the CPU has no native bf16.
    assert fresh["dtype"] == ("torch.bfloat16" if native_bf16() else "torch.float32")
    assert fresh["endpoint"] == fresh["outputs"]

    model = CCFLLMForCTR.from_pretrained(published, dtype=torch.bfloat16)
    local = CCFLLMPipeline(model=model, processor=CCFLLMProcessor.from_pretrained(published), device="cpu")
    for (request, parameters), output in zip(requests, fresh["outputs"], strict=True):
        labels, scores = split_scores(output)
        expected_labels, expected_scores = split_scores(local(request, **parameters))
        assert labels == expected_labels
        assert scores == pytest.approx(expected_scores, abs=1e-3)


def split_scores(output: list) -> tuple[list[dict], list[float]]:
    """Rows without their scores, and the scores: one result or a list of results alike."""
    rows = [row for result in output for row in result] if isinstance(output[0], list) else output
    return [{key: value for key, value in row.items() if key != "score"} for row in rows], [
        r["score"] for r in rows
    ]
