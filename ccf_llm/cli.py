"""What the command-line scripts share: ``--set KEY=VALUE`` overrides."""

from __future__ import annotations

import yaml


def parse_assignments(assignments: list[str]) -> dict:
    """``["lr=1e-3", "dim=0"]`` as ``{"lr": "1e-3", "dim": 0}``: each value read as YAML (the configs'
    language). A ValueError names an item without ``=`` or a key, or a value YAML cannot read."""
    values = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {assignment!r}")
        try:
            values[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ValueError(f"--set {key.strip()}: {value!r} is not a YAML value ({err.problem})") from err
    return values
