"""The trained models of one profile, as shipped in the package or written by `loratwin train`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loratwin.errors import InputError
from loratwin.learn.evaluators import load_model, predict, predict_target
from loratwin.learn.features import as_matrix

MODELS_DIR = Path(__file__).parent / "models"
MANIFEST = "manifest.json"


def shipped_profiles() -> list[str]:
    return sorted(p.parent.name for p in MODELS_DIR.glob(f"*/{MANIFEST}"))


@dataclass
class ModelSet:
    """The models of one profile: a manifest and one JSON document per (target, family)."""

    directory: Path
    manifest: dict[str, Any]
    _cache: dict[Path, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def profile(self) -> str:
        return str(self.manifest["profile"])

    def families(self, target: str) -> list[str]:
        return [m["family"] for m in self.manifest["models"].values() if m["target"] == target]

    def default_family(self, target: str) -> str:
        return str(self.manifest["defaults"][target])

    def model(self, target: str, family: str | None = None) -> dict[str, Any]:
        family = family or self.default_family(target)
        entry = self.manifest["models"].get(f"{target}.{family}")
        if entry is None:
            known = ", ".join(self.families(target)) or "none"
            raise InputError(f"--model: no {family!r} model of {target} for profile {self.profile} (available: {known})")
        path = self.directory / entry["file"]
        if path not in self._cache:
            self._cache[path] = load_model(path)
        return self._cache[path]

    def predict(self, target: str, rows: Sequence[Mapping[str, float]], family: str | None = None) -> np.ndarray:
        """Predictions for feature rows (name -> value): each model reads the features it names."""
        model = self.model(target, family)
        return predict_target(model, as_matrix(rows, model["features"]))

    def probability(self, target: str, rows: Sequence[Mapping[str, float]], family: str | None = None) -> np.ndarray:
        model = self.model(target, family)
        return predict(model, as_matrix(rows, model["features"]))


def load_model_set(profile_or_dir: str | Path) -> ModelSet:
    """A shipped profile's models by name, or a directory written by `loratwin train`; its manifest and
    default models checked (an InputError naming the file otherwise)."""
    text = str(profile_or_dir)
    candidates = [Path(text), MODELS_DIR / text, MODELS_DIR / Path(text).stem]
    for directory in candidates:
        if (directory / MANIFEST).is_file():
            return ModelSet(directory, read_manifest(directory))
    shipped = ", ".join(shipped_profiles()) or "none"
    raise InputError(
        f"no trained models for {text!r} (shipped: {shipped}); train some with "
        f"`loratwin train SWEEP_DIR --out DIR` and pass --models DIR"
    )


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of a models folder, with its profile, its default model per target and each of
    those models' files readable; an InputError naming the file and what is wrong otherwise."""
    from loratwin.learn.evaluators import ModelFormatError

    path = directory / MANIFEST
    expected = "expected the manifest `loratwin train` writes"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}; {expected}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it ({exc}); {expected}") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{path}: not a JSON object; {expected}")
    missing = [k for k in ("profile", "defaults", "models") if k not in manifest]
    if missing:
        raise InputError(f"{path}: missing {', '.join(missing)}; {expected}")
    defaults, models = manifest["defaults"], manifest["models"]
    if not isinstance(defaults, dict) or not isinstance(models, dict):
        raise InputError(f"{path}: defaults and models must be JSON objects; {expected}")
    for target, family in defaults.items():
        entry = models.get(f"{target}.{family}")
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise InputError(f"{path}: the default {target} model ({family}) has no entry with a file in models")
        try:
            load_model(directory / entry["file"])
        except json.JSONDecodeError as exc:
            raise InputError(f"{directory / entry['file']}: line {exc.lineno}, column {exc.colno}: invalid JSON: "
                             f"{exc.msg}; expected a model `loratwin train` writes") from None
        except (OSError, UnicodeDecodeError, ModelFormatError) as exc:
            where = str(directory / entry["file"])
            message = str(exc) if str(exc).startswith(where) else f"{where}: {exc}"
            raise InputError(f"{message}; expected a model `loratwin train` writes") from None
    return manifest
