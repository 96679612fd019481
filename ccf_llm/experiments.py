"""Experiments as data: one YAML file per experiment under ``configs/experiments/``, run by ``scripts/experiment.py``.

A file names its base config and the settings it changes (see ``configs/experiments/ccf-llm.yaml``)::

    description: one line          # what the row is
    kind: llm                      # llm (scripts/train.py) | cf (scripts/train_cf.py, then scored) | content
    base: configs/ml1m-cpu.yaml    # llm/content: the config it starts from; cf: the config whose rows it scores
    extends: ccf-llm               # optional: start from another experiment's file (settings merged)
    init_from: tallrec             # llm: the experiment whose stage-1 LoRA it starts from (run first if unfinished)
    cf: cf-mf-bias                 # llm: the CF experiment whose tables it reads (run first if unfinished)
    compare_with: [cf-mf-bias]     # the experiments it is read against (paired intervals, --compare)
    model: mf                      # cf: mf | lightgcn | sasrec | din; bias: true for MF-bias; grid: a cf_grid.yaml grid
    settings: {method: CCF-LLM}    # llm: ExperimentConfig settings; cf: --set settings (and method); content: flags

Every experiment writes to ``outputs/experiments/<name>/``; one that holds ``metrics.json`` is finished.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CONFIG_DIR = Path("configs") / "experiments"
OUTPUT_DIR = Path("outputs") / "experiments"
KINDS = ("llm", "cf", "content")
FINISHED_FILE = "metrics.json"
CF_TABLES_FILE = "cf_tables.safetensors"
CONTENT_SCRIPT = Path("scripts") / "train_content.py"
KIND_KEYS = {  # keys a file of each kind may hold beside description, kind, base, extends, settings, compare_with
    "llm": {"init_from", "cf"},
    "cf": {"model", "bias", "grid"},
    "content": set(),
}
COMMON_KEYS = {"description", "kind", "base", "extends", "settings", "compare_with"}


@dataclass(frozen=True)
class Experiment:
    """One experiment file, with ``extends`` resolved."""

    name: str
    description: str
    kind: str
    base: str
    settings: dict = field(default_factory=dict)
    init_from: str | None = None
    cf: str | None = None
    compare_with: tuple[str, ...] = ()
    model: str | None = None
    bias: bool = False
    grid: str | None = None

    @property
    def output_dir(self) -> Path:
        return OUTPUT_DIR / self.name

    @property
    def needs(self) -> tuple[str, ...]:
        """The experiments that must be finished before this one runs."""
        return tuple(name for name in (self.cf, self.init_from) if name)


def load_experiments(root: str | Path = ".") -> dict[str, Experiment]:
    """Every experiment under ``root/configs/experiments``, checked: known keys and kinds, existing base configs,
    references (extends, init_from, cf, compare_with) to experiments of the right kind."""
    root = Path(root)
    folder = root / CONFIG_DIR
    files = {path.stem: path for path in sorted(folder.glob("*.yaml"))}
    if not files:
        raise FileNotFoundError(f"{folder}: no experiment files (*.yaml)")
    raw = {name: _read(path) for name, path in files.items()}
    experiments = {name: _resolve(name, raw, files, ()) for name in raw}
    for experiment in experiments.values():
        _check(experiment, experiments, files[experiment.name], root)
    return experiments


def _read(path: Path) -> dict:
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of experiment keys, got {type(values).__name__}")
    return values


def _resolve(name: str, raw: dict[str, dict], files: dict[str, Path], seen: tuple[str, ...]) -> Experiment:
    """The file's keys over those of the experiment it ``extends`` (settings merged, stage blocks too); the
    description and compare_with are the file's own."""
    if name in seen:
        raise ValueError(f"{files[seen[0]]}: extends forms a cycle ({' -> '.join((*seen, name))})")
    values = raw[name]
    parent_name = values.get("extends")
    if parent_name is None:
        merged = dict(values)
    else:
        if parent_name not in raw:
            raise ValueError(
                f"{files[name]}: extends {parent_name!r}, which has no file in {files[name].parent}"
            )
        parent = dataclasses.asdict(_resolve(parent_name, raw, files, (*seen, name)))
        parent.pop("compare_with")
        merged = {**parent, **values, "settings": _merge(parent["settings"], values.get("settings") or {})}
    kind = merged.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{files[name]}: kind {kind!r}; expected one of {', '.join(KINDS)}")
    unknown = sorted(set(values) - COMMON_KEYS - KIND_KEYS[kind])
    if unknown:
        known = sorted(COMMON_KEYS | KIND_KEYS[kind])
        raise ValueError(f"{files[name]}: unknown key(s) {unknown} for kind {kind}; known: {known}")
    for key in ("description", "base"):
        if not isinstance(merged.get(key), str) or not merged[key].strip():
            raise ValueError(f"{files[name]}: {key} is required (a string)")
    settings = merged.get("settings") or {}
    if not isinstance(settings, dict):
        raise ValueError(f"{files[name]}: settings must be a mapping, got {type(settings).__name__}")
    compare_with = merged.get("compare_with") or []
    if not isinstance(compare_with, list):
        raise ValueError(f"{files[name]}: compare_with must be a list of experiment names")
    fields = {f.name for f in dataclasses.fields(Experiment)}
    kept = {
        key: value for key, value in merged.items() if key in fields - {"name", "settings", "compare_with"}
    }
    return Experiment(name=name, settings=settings, compare_with=tuple(compare_with), **kept)


def _merge(parent: dict, child: dict) -> dict:
    """Settings over settings; a stage block (``stage2: {...}``) names only what it changes."""
    merged = dict(parent)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _check(experiment: Experiment, experiments: dict[str, Experiment], path: Path, root: Path) -> None:
    if not (root / experiment.base).is_file():
        raise FileNotFoundError(f"{path}: base config {experiment.base} not found")
    references = [("init_from", experiment.init_from, "llm"), ("cf", experiment.cf, "cf")]
    references += [("compare_with", other, None) for other in experiment.compare_with]
    for key, other, kind in references:
        if other is None:
            continue
        if other not in experiments:
            raise ValueError(f"{path}: {key} names {other!r}, which has no file in {path.parent}")
        if kind and experiments[other].kind != kind:
            raise ValueError(
                f"{path}: {key} names {other!r}, a {experiments[other].kind} experiment, not {kind}"
            )
    if experiment.kind == "cf" and experiment.model is None:
        raise ValueError(f"{path}: a cf experiment needs model (mf, lightgcn, sasrec or din)")
    _order([experiment.name], experiments)  # init_from / cf cycles


def state(experiment: Experiment, root: str | Path = ".") -> str:
    """``done`` (its metrics.json is written), ``partial`` (its folder exists: rerunning resumes) or ``not started``."""
    folder = Path(root) / experiment.output_dir
    if (folder / FINISHED_FILE).is_file():
        return "done"
    return "partial" if folder.exists() else "not started"


def finished_auc(experiment: Experiment, root: str | Path = ".") -> float | None:
    """The test AUC of a finished experiment's row (its metrics.json)."""
    path = Path(root) / experiment.output_dir / FINISHED_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("row", {}).get("test", {}).get("auc")


def _order(names: Iterable[str], experiments: dict[str, Experiment]) -> list[Experiment]:
    """``names`` with the experiments they need first, each once."""
    ordered: list[Experiment] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise ValueError(f"experiments need each other in a cycle: {' -> '.join((*path, name))}")
        experiment = experiments[name]
        for needed in experiment.needs:
            visit(needed, (*path, name))
        if experiment not in ordered:
            ordered.append(experiment)

    for name in names:
        visit(name, ())
    return ordered


def select(patterns: Iterable[str], experiments: dict[str, Experiment]) -> list[str]:
    """The names matching each pattern (a name, or a shell pattern such as ``'cf-*'``), in the order given."""
    names: list[str] = []
    for pattern in patterns:
        matched = sorted(fnmatch.filter(experiments, pattern))
        if not matched:
            raise ValueError(f"no experiment {pattern!r} in {CONFIG_DIR}; --list shows them")
        names += [name for name in matched if name not in names]
    return names


def yaml_value(value: object) -> str:
    """A setting as ``--set KEY=VALUE`` reads it back (YAML): plain strings as they are, the rest as JSON."""
    if isinstance(value, str):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value)


def _flat(settings: dict) -> dict:
    """Settings as ``--set`` keys: a stage block (``stage2: {evals_per_epoch: 2}``) is ``stage2.evals_per_epoch``."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat |= {f"{key}.{inner}": item for inner, item in value.items()}
        else:
            flat[key] = value
    return flat


def _assignments(settings: dict) -> list[str]:
    return [
        part for key, value in _flat(settings).items() for part in ("--set", f"{key}={yaml_value(value)}")
    ]


def _base_values(experiment: Experiment, root: Path) -> dict:
    return yaml.safe_load((root / experiment.base).read_text()) or {}


def _data_flags(base: dict) -> list[str]:
    flags = ["--data", str(base.get("data", "ml1m"))]
    return [*flags, "--data-dir", str(base["data_dir"])] if base.get("data_dir") else flags


def commands(
    experiment: Experiment, experiments: dict[str, Experiment], root: str | Path = "."
) -> list[list[str]]:
    """The commands that finish ``experiment`` from where it stands (empty when done), run from ``root``."""
    root = Path(root)
    if state(experiment, root) == "done":
        return []
    out = str(experiment.output_dir)
    if experiment.kind == "llm":
        return [_llm_command(experiment, experiments, root)]
    base = _base_values(experiment, root)
    if experiment.kind == "content":
        if not (root / CONTENT_SCRIPT).is_file():
            raise FileNotFoundError(
                f"{experiment.name}: a content experiment runs {CONTENT_SCRIPT}, not found"
            )
        flags = [part for key, value in experiment.settings.items() for part in _flag(key, value)]
        results = ["--results", str(base["results"])] if base.get("results") else []
        command = ["python", str(CONTENT_SCRIPT), *_data_flags(base), *flags, "--out", out]
        return [[*command, "--experiment", experiment.name, *results]]
    settings = dict(experiment.settings)
    method = settings.pop("method", None)
    steps = []
    if not (root / experiment.output_dir / CF_TABLES_FILE).is_file():  # trained, not yet scored: score only
        train = ["python", "scripts/train_cf.py", "--model", str(experiment.model)]
        train += ["--bias"] * experiment.bias + _assignments(settings)
        train += ["--grid", "--grid-name", experiment.grid] if experiment.grid else []
        train += [*_data_flags(base), "--out", out, "--quiet", "--experiment", experiment.name]
        train += ["--method", method] if method else []
        steps.append(
            train + (["--results", str(base["results"])] if base.get("results") else ["--no-results"])
        )
    score = ["python", "scripts/score_cf.py", "--cf-dir", out, "--config", experiment.base, "--out", out]
    return [*steps, [*score, "--experiment", experiment.name]]


def _llm_command(experiment: Experiment, experiments: dict[str, Experiment], root: Path) -> list[str]:
    from .training import ExperimentConfig  # torch and transformers: only for llm experiments

    settings = {**experiment.settings, "experiment": experiment.name}
    flags = {}
    if experiment.cf:
        flags["cf_dir"] = str(experiments[experiment.cf].output_dir)
    if experiment.init_from:
        flags["init_from"] = str(experiments[experiment.init_from].output_dir)
    flags["output_dir"] = str(experiment.output_dir)
    try:  # a misspelt setting is named now, not after the experiments it needs trained for hours
        ExperimentConfig.from_yaml(root / experiment.base, **_flat(settings), **flags)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{root / CONFIG_DIR / experiment.name}.yaml: {err}") from err
    command = ["python", "scripts/train.py", "--config", experiment.base, *_assignments(settings)]
    for key, value in flags.items():
        command += [f"--{key.replace('_', '-')}", value]
    return [*command, "--resume"]


def _flag(key: str, value: object) -> list[str]:
    """A content setting as its script's flag: ``features: [a, b]`` is ``--features a b``, ``true`` a bare flag."""
    flag = "--" + key.replace("_", "-")
    if value is True:
        return [flag]
    if isinstance(value, list):
        return [flag, *map(str, value)]
    return [flag, str(value)]


_say = functools.partial(print, flush=True)  # printed before the output of the command it names


def run(
    patterns: Iterable[str],
    root: str | Path = ".",
    dry_run: bool = False,
    say: Callable[[str], None] = _say,
) -> None:
    """Run the experiments ``patterns`` name, after the unfinished ones they need; finished ones are skipped.
    With ``dry_run`` only the commands are printed. A failing command stops the run (``CalledProcessError``)."""
    root = Path(root)
    experiments = load_experiments(root)
    for experiment in _order(select(patterns, experiments), experiments):
        steps = commands(experiment, experiments, root)
        if not steps:
            say(f"# {experiment.name}: done, skipped ({experiment.output_dir / FINISHED_FILE})")
            continue
        say(f"# {experiment.name}: {experiment.description}")
        for step in steps:
            say(shlex.join(step))
            if not dry_run:
                subprocess.run([sys.executable, *step[1:]], cwd=root, check=True)


def listing(root: str | Path = ".") -> str:
    """One line per experiment: name, kind, state, test AUC (when done) and description."""
    experiments = load_experiments(root)
    width = max(map(len, experiments))
    lines = [f"{'experiment':<{width}}  kind     state        test AUC  description"]
    for name, experiment in experiments.items():
        auc = finished_auc(experiment, root)
        shown = f"{auc:.4f}" if auc is not None else "–"
        lines.append(
            f"{name:<{width}}  {experiment.kind:<7}  {state(experiment, root):<11}  {shown:>8}  "
            f"{experiment.description}"
        )
    return "\n".join(lines)


def comparison_command(experiment: Experiment, experiments: dict[str, Experiment]) -> list[str]:
    """``scripts/compare_runs.py`` of the experiment against each experiment of its ``compare_with`` (paired
    intervals of the differences), into ``results/<name>_intervals.json``: one file per comparison set."""
    if not experiment.compare_with:
        raise ValueError(f"{experiment.name}: no compare_with in its file")
    baselines = [str(experiments[name].output_dir) for name in experiment.compare_with]
    out = Path("results") / f"{experiment.name}_intervals.json"
    return [
        "python",
        "scripts/compare_runs.py",
        str(experiment.output_dir),
        "--baseline",
        *baselines,
        "--out",
        str(out),
    ]
