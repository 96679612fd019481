"""Settings as the YAML files and ``--set KEY=VALUE`` give them, for the LLM and the CF configs alike."""

from __future__ import annotations

import dataclasses

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


def as_number(value, setting: dataclasses.Field):
    """A float or int setting (``None`` where its type allows it) as that number: YAML, and so ``--set``, reads
    "3e-3", without a dot, as a string. Settings of other types pass unchanged."""
    kind = str(setting.type) if not isinstance(setting.type, type) else setting.type.__name__
    optional = kind.endswith(" | None")
    kind = kind.removesuffix(" | None")
    if kind not in ("float", "int") or (optional and value is None):
        return value
    whole = kind == "int"
    try:
        number = float(value)
        if isinstance(value, bool) or number != number or (whole and not number.is_integer()):
            raise ValueError
    except (TypeError, ValueError):
        expected = "a whole number" if whole else "a number"
        raise ValueError(f"{setting.name} must be {expected}, got {value!r}") from None
    return int(number) if whole else number
