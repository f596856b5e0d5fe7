"""The memory model against every measured KV cache size and start failure (scripts/check_kv_capacity.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KV_CSV = ROOT.parent / "shared" / "data" / "calibration" / "kv_capacity.csv"


@pytest.mark.skipif(not KV_CSV.is_file(), reason="reference measurements not present")
def test_memory_model_matches_every_measured_kv_size_within_3_percent():
    spec = importlib.util.spec_from_file_location("check_kv_capacity", ROOT / "scripts" / "check_kv_capacity.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    result = script.check(KV_CSV)
    for name, m in result["models"].items():
        assert m["feasible_points"] > 25, name
        assert m["max_abs_error_pct"] <= 3.0, name
        # the same configurations fail to start, for the same reason
        assert m["start_agreement"] == m["reason_agreement"] == m["points"] == 42, name
        assert m["max_load_error_mib"] <= 2.0, name
    # the shipped non-torch bytes are what the Llama rows give
    from loratwin.profiles.derive.memory import REFERENCE_NON_TORCH_BYTES

    assert result["refit_non_torch_bytes"] == REFERENCE_NON_TORCH_BYTES
