"""Find and read profiles: built-in names or a YAML file path."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from loratwin.errors import InputError
from loratwin.profiles.model import Profile
from loratwin.textfile import read_user_text
from loratwin.yamlfile import parse_yaml

_DATA = "loratwin.profiles.data"


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped with loratwin."""
    return sorted(p.name[: -len(".yaml")] for p in resources.files(_DATA).iterdir() if p.name.endswith(".yaml"))


def _format_validation(source: str, err: ValidationError) -> str:
    """One line for every mistake of the file: the missing fields together, then each other one by
    its field, e.g. "profile p.yaml: missing fields step_time.base_ms, kv.capacity_tokens"."""
    missing, problems = [], []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        if e["type"] == "missing":
            missing.append(loc)
        else:
            problems.append(f"{loc}: {e['msg'].removeprefix('Value error, ')}")
    if missing:
        problems.insert(0, f"missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    return f"profile {source}: " + "; ".join(problems)


def profile_from_yaml_text(text: str, source: str) -> Profile:
    data = parse_yaml(text, source)
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping of profile fields at the top level")
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise InputError(_format_validation(source, exc)) from None


@functools.cache
def _builtin(name: str) -> Profile:
    # profiles are immutable, so one parse per process serves every simulation
    text = resources.files(_DATA).joinpath(f"{name}.yaml").read_text()
    return profile_from_yaml_text(text, f"{name}.yaml")


def load_profile(name_or_path: str | Path) -> Profile:
    """A built-in profile by name, or a profile YAML file by path."""
    name = str(name_or_path)
    if name in builtin_profiles():
        return _builtin(name)
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return profile_from_yaml_text(read_user_text(path, "a profile YAML file"), str(path))
    raise InputError(f"unknown profile {name!r}; built-in profiles: {', '.join(builtin_profiles())}, or give a YAML file")
