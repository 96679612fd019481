"""Publishing a run: the Hub folder, its model card, the refusals, and the folder in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open

from ccf_llm.evaluation import upsert_result
from ccf_llm.publishing import HubAccessError, find_measured_row, model_card, publish, write_model_folder
from ccf_llm.publishing import hub as hub_module
from ccf_llm.testing import make_tiny
from configuration_ccf import CCFLLMConfig
from modeling_ccf import CCFLLMForCTR, native_bf16
from pipeline_ccf import CCFLLMPipeline, parse_widget_text
from processing_ccf import CCFLLMProcessor

ROW = {
    "method": "CCF-LLM (tiny)",
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


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, one_thread) -> Path:
    """A finished tiny run (model folder + metrics.json) whose row is in its results file."""
    run = tmp_path_factory.mktemp("run")
    make_tiny(run / "model")
    results = run / "results" / "ml1m.json"
    upsert_result(results, ROW)
    summary = {"row": ROW, "stages": {}, "config": {"data": "ml1m", "results": str(results)}}
    (run / "metrics.json").write_text(json.dumps(summary))
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
    for name in ("tokenizer.json", "item_catalog.json", "ccf_processor.json", "README.md"):
        assert (published / name).is_file(), name
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
    catalog = set(json.loads((published / "item_catalog.json").read_text()).values())
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
    assert "| test | 0.6234 | 0.5812 | 0.6401 | — |" in body


def test_card_without_a_results_row_has_no_model_index(published: Path) -> None:
    config = CCFLLMConfig.from_pretrained(published)
    catalog = CCFLLMProcessor.from_pretrained(published).catalog
    card = model_card(ROW, None, catalog, config, name="x", model_ref="x", dataset="ml-1m")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert "model-index" not in meta
    assert "No measured results row" in card


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


FRESH_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, importlib.util, json, sys, warnings
    from pathlib import Path

    class Block(importlib.abc.MetaPathFinder):  # the repo's own modules must not be needed
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"ccf_llm", "configuration_ccf", "modeling_ccf", "processing_ccf", "pipeline_ccf"}:
                raise ImportError(f"{name} is blocked")

    sys.meta_path.insert(0, Block())
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
