"""Safe loading, checked on the source (``ast``) and on saved folders.

- no pickle anywhere: no pickle-based module, ``torch.load`` only with ``weights_only=True``, no ``eval``/``exec``;
- ``trust_remote_code=True`` only where a person runs a folder's own code on purpose (tests, scripts, the
  showcase, the Inference Endpoints handler that serves the folder it sits in);
- the Hub remote-code files import nothing that opens connections (they are run by anyone who loads the model);
- saved and published model folders hold safetensors weights only.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {
    ".venv",
    ".git",
    "outputs",
    "__pycache__",
    "build",
    "dist",
    ".hypothesis",
    ".pytest_cache",
    "runs",
}
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve", "cloudpickle"}
PICKLE_CALLS = {"read_pickle", "to_pickle"}  # pandas
REMOTE_CODE = ("configuration_ccf.py", "modeling_ccf.py", "processing_ccf.py", "pipeline_ccf.py")
HANDLER = "ccf_llm/publishing/handler.py"
NETWORK_MODULES = {
    "requests", "urllib", "urllib3", "http", "httpx", "aiohttp", "socket", "ssl", "ftplib", "smtplib",
    "websocket", "websockets", "huggingface_hub", "subprocess",
}  # fmt: skip
NETWORK_NAMES = {"hf_hub_download", "snapshot_download", "urlopen", "HfApi", "create_connection"}
# Where a person deliberately runs a model folder's own code.
TRUSTING = ("tests/", "scripts/", "benchmarks/", "ccf_llm/publishing/showcase.py", HANDLER)
WEIGHT_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")


def python_files() -> list[Path]:
    files = [
        path
        for path in REPO.rglob("*.py")
        if not SKIPPED_DIRS.intersection(path.relative_to(REPO).parts[:-1])
        and not any(part.endswith(".egg-info") for part in path.parts)
    ]
    assert len(files) > 30, files  # the scan really sees the repository
    return sorted(files)


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(REPO)}:{node.lineno}"


def imported_modules(tree: ast.Module) -> list[tuple[ast.AST, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node, node.module))
    return found


def call_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        owner = func.value.id if isinstance(func.value, ast.Name) else "?"
        return f"{owner}.{func.attr}"
    return ""


def keyword(node: ast.Call, name: str) -> ast.expr | None:
    return next((kw.value for kw in node.keywords if kw.arg == name), None)


def is_true(value: ast.expr | None) -> bool:
    return isinstance(value, ast.Constant) and value.value is True


@pytest.fixture(scope="module")
def sources() -> dict[Path, ast.Module]:
    return {path: parsed(path) for path in python_files()}


def test_no_pickle_module_is_imported(sources: dict[Path, ast.Module]) -> None:
    bad = [
        f"{where(path, node)} imports {name}"
        for path, tree in sources.items()
        for node, name in imported_modules(tree)
        if name.split(".")[0] in PICKLE_MODULES
    ]
    assert bad == []


def test_no_unsafe_loading_calls(sources: dict[Path, ast.Module]) -> None:
    bad = []
    for path, tree in sources.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = call_name(node)
            if name == "torch.load" and not is_true(keyword(node, "weights_only")):
                bad.append(f"{where(path, node)}: torch.load without weights_only=True")
            elif name in ("eval", "exec") or name.rpartition(".")[2] in PICKLE_CALLS:  # not model.eval()
                bad.append(f"{where(path, node)}: {name}()")
            elif name.endswith(".load") and is_true(keyword(node, "allow_pickle")):
                bad.append(f"{where(path, node)}: {name}(allow_pickle=True)")
    assert bad == []


def test_trust_remote_code_only_where_a_folder_is_run_on_purpose(sources: dict[Path, ast.Module]) -> None:
    trusting = set()
    for path, tree in sources.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and is_true(keyword(node, "trust_remote_code")):
                trusting.add(where(path, node))
    library = sorted(spot for spot in trusting if not spot.startswith(TRUSTING))
    assert library == [], "library code must not trust remote code; the caller decides"
    assert any(spot.startswith(HANDLER) for spot in trusting)  # the scan does find the known ones


@pytest.mark.parametrize("name", [*REMOTE_CODE, HANDLER])
def test_remote_code_imports_nothing_network_related(name: str) -> None:
    tree = parsed(REPO / name)
    bad = [
        f"{where(REPO / name, node)} imports {module}"
        for node, module in imported_modules(tree)
        if module.split(".")[0] in NETWORK_MODULES
    ]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            bad += [
                f"{where(REPO / name, node)} imports {a.name}" for a in node.names if a.name in NETWORK_NAMES
            ]
        elif isinstance(node, ast.Attribute) and node.attr in NETWORK_NAMES:
            bad.append(f"{where(REPO / name, node)} uses {node.attr}")
        elif isinstance(node, ast.Call) and call_name(node) in ("os.system", "os.popen", "__import__"):
            bad.append(f"{where(REPO / name, node)} calls {call_name(node)}")
    assert bad == []
    # Model and configuration code import only torch, transformers, peft, the standard library and each other.
    if name in ("configuration_ccf.py", "modeling_ccf.py"):
        roots = {module.split(".")[0] for _, module in imported_modules(tree)}
        allowed = {
            "torch",
            "transformers",
            "peft",
            "__future__",
            "contextlib",
            "copy",
            "inspect",
            "dataclasses",
            "typing",
            "collections",
            "warnings",
        }
        assert roots <= allowed | {"configuration_ccf"}, roots


def test_scanner_catches_what_it_forbids() -> None:
    source = (
        "import pickle\nimport torch\nfrom huggingface_hub import hf_hub_download\n"
        "torch.load('x')\ntorch.load('x', weights_only=False)\neval('1')\nmodel.eval()\n"
        "AutoModel.from_pretrained('x', trust_remote_code=True)\n"
    )
    tree = ast.parse(source)
    assert [name for _, name in imported_modules(tree)] == ["pickle", "torch", "huggingface_hub"]
    calls = [call_name(node) for node in ast.walk(tree) if isinstance(node, ast.Call)]
    unsafe = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and call_name(node) == "torch.load"
        and not is_true(keyword(node, "weights_only"))
    ]
    assert len(unsafe) == 2 and "eval" in calls and "model.eval" in calls


def assert_safetensors_only(folder: Path) -> None:
    files = [path for path in folder.rglob("*") if path.is_file()]
    assert any(path.suffix == ".safetensors" for path in files), files
    for path in files:
        assert not path.name.endswith(PICKLE_SUFFIXES), path
        head = path.read_bytes()[:4]
        assert not head.startswith(b"PK\x03\x04"), f"{path} is a zip (torch.save) archive"
        assert not (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")), (
            f"{path} is a pickle"
        )


def test_saved_and_published_folders_hold_safetensors_only(tmp_path: Path, one_thread) -> None:
    from ccf_llm.publishing import write_model_folder
    from ccf_llm.testing import make_tiny

    run = tmp_path / "run"
    make_tiny(run / "model")
    row = {"method": "tiny", "backbone": "tiny", "fusion": "gate", "cf": "random", "train_rows": 1,
           "device": "cpu", "seconds": 0.0, "command": "test",
           "valid": {"auc": 0.5, "uauc": 0.5}, "test": {"auc": 0.5, "uauc": 0.5, "auc_warm": None,
                                                       "auc_cold": None}}  # fmt: skip
    (run / "metrics.json").write_text(json.dumps({"row": row, "stages": {}, "config": {"data": "tiny"}}))
    published = write_model_folder(run, tmp_path / "published")
    assert_safetensors_only(run / "model")
    assert_safetensors_only(published)
