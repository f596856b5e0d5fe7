"""The placement section of a profile: the cost model's twin-fitted constants, with their provenance."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from loratwin.errors import InputError
from loratwin.profiles import builtin_profiles, load_profile
from loratwin.profiles.model import PlacementModel

DATA = Path(__file__).resolve().parents[2] / "src" / "loratwin" / "profiles" / "data"


def test_defaults_are_the_fitted_constants():
    p = PlacementModel()
    assert (p.kv_queue_scale, p.kv_queue_steepness, p.stable_kv_use) == (0.71, 33.4, 0.95)
    assert "fit_kv_queue.py" in p.provenance and "check_kv_stability.py" in p.provenance


@pytest.mark.parametrize("name", builtin_profiles())
def test_every_builtin_profile_writes_the_section_out(name):
    written = yaml.safe_load((DATA / f"{name}.yaml").read_text())["placement"]
    assert set(written) == {"kv_queue_scale", "kv_queue_steepness", "stable_kv_use", "provenance"}
    assert load_profile(name).placement == PlacementModel()


def test_a_profile_without_the_section_gets_the_defaults(tmp_path):
    data = yaml.safe_load((DATA / "llama-3.1-8b-instruct-reference.yaml").read_text())
    del data["placement"]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_profile(path).placement == PlacementModel()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kv_queue_scale", 0.0),
        ("kv_queue_scale", -0.5),
        ("kv_queue_scale", math.inf),
        ("kv_queue_steepness", 0.0),
        ("kv_queue_steepness", math.nan),
        ("stable_kv_use", 0.0),
        ("stable_kv_use", 1.01),
        ("stable_kv_use", math.nan),
    ],
)
def test_bad_values_are_refused(field, value):
    with pytest.raises(ValidationError, match=field):
        PlacementModel(**{field: value})


def test_bounds_and_unknown_keys(tmp_path):
    assert PlacementModel(stable_kv_use=1.0).stable_kv_use == 1.0
    data = yaml.safe_load((DATA / "llama-3.1-8b-instruct-reference.yaml").read_text())
    path = tmp_path / "p.yaml"
    data["placement"]["stable_kv_use"] = 1.5
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=r"placement\.stable_kv_use"):
        load_profile(path)
    data["placement"]["stable_kv_use"] = 0.9
    data["placement"]["kv_queue_shape"] = 2.0
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=r"placement\.kv_queue_shape"):
        load_profile(path)
