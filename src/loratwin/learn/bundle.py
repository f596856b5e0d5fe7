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
    """A shipped profile's models by name, or a directory written by `loratwin train`."""
    text = str(profile_or_dir)
    candidates = [Path(text), MODELS_DIR / text, MODELS_DIR / Path(text).stem]
    for directory in candidates:
        if (directory / MANIFEST).is_file():
            manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
            return ModelSet(directory, manifest)
    shipped = ", ".join(shipped_profiles()) or "none"
    raise InputError(
        f"no trained models for {text!r} (shipped: {shipped}); train some with "
        f"`loratwin train SWEEP_DIR --out DIR` and pass --models DIR"
    )
