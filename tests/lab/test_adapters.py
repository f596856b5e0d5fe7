"""Adapters in the PEFT layout, read back with a small safetensors reader of this test's own."""

from __future__ import annotations

import json
import math
import shutil
import struct
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from loratwin.budget import OverBudgetError
from loratwin.lab.adapters import adapters_size, check_adapters_fit, write_adapters
from loratwin.lab.safetensors import encode
from loratwin.profiles.derive.catalog import resolve_model

SMALL = resolve_model("meta-llama/Llama-3.2-1B-Instruct")


def read_safetensors(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, tensors as float32): 8-byte little-endian header length, JSON header, raw data."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    body = data[8 + length:]
    tensors, end = {}, 0
    for name, entry in sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                              key=lambda kv: kv[1]["data_offsets"][0]):
        begin, stop = entry["data_offsets"]
        assert begin == end, f"{name}: data not back to back"
        assert entry["dtype"] == "BF16"
        raw = np.frombuffer(body[begin:stop], dtype="<u2")
        assert raw.size == math.prod(entry["shape"])
        tensors[name] = (raw.astype(np.uint32) << 16).view(np.float32).reshape(entry["shape"])
        end = stop
    assert end == len(body)
    return header, tensors


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("adapters")
    write_adapters(SMALL, 4, 2, seed=5, folder=folder)
    return folder


def test_an_adapter_has_peft_names_shapes_dtype_and_config(written):
    config = json.loads((written / "adapter-000" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["task_type"] == "CAUSAL_LM"
    assert config["base_model_name_or_path"] == "meta-llama/Llama-3.2-1B-Instruct"
    assert set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    header, tensors = read_safetensors(written / "adapter-000" / "adapter_model.safetensors")
    assert header["__metadata__"] == {"format": "pt"}
    (length,) = struct.unpack("<Q", (written / "adapter-000" / "adapter_model.safetensors").read_bytes()[:8])
    assert length % 8 == 0  # the data starts 8-byte aligned
    h, q, kv, inter = 2048, 32 * 64, 8 * 64, 8192
    shapes = {"self_attn.q_proj": (h, q), "self_attn.k_proj": (h, kv), "self_attn.v_proj": (h, kv),
              "self_attn.o_proj": (q, h), "mlp.gate_proj": (h, inter), "mlp.up_proj": (h, inter),
              "mlp.down_proj": (inter, h)}
    expected = {}
    for layer in range(16):
        for module, (inp, out) in shapes.items():
            expected[f"base_model.model.model.layers.{layer}.{module}.lora_A.weight"] = [4, inp]
            expected[f"base_model.model.model.layers.{layer}.{module}.lora_B.weight"] = [out, 4]
    assert {k: v["shape"] for k, v in header.items() if k != "__metadata__"} == expected
    a = tensors["base_model.model.model.layers.3.mlp.down_proj.lora_A.weight"]
    b = tensors["base_model.model.model.layers.3.mlp.down_proj.lora_B.weight"]
    bound = 1 / math.sqrt(inter)
    assert np.abs(a).max() <= bound * 1.01 and np.abs(a).max() > bound * 0.9
    assert 0.8e-3 < b.std() < 1.2e-3
    assert sum(p.stat().st_size for p in written.rglob("*") if p.is_file()) == adapters_size(SMALL, 4, 2)


def test_adapters_are_their_seeds_and_indices(written, tmp_path):
    write_adapters(SMALL, 4, 3, seed=5, folder=tmp_path)
    for name in ("adapter-000", "adapter-001"):
        assert (tmp_path / name / "adapter_model.safetensors").read_bytes() == \
            (written / name / "adapter_model.safetensors").read_bytes()
    first = (written / "adapter-000" / "adapter_model.safetensors").read_bytes()
    assert first != (written / "adapter-001" / "adapter_model.safetensors").read_bytes()
    other = tmp_path / "other"
    other.mkdir()
    write_adapters(SMALL, 4, 1, seed=6, folder=other)
    assert (other / "adapter-000" / "adapter_model.safetensors").read_bytes() != first


def test_bf16_rounds_to_nearest_even():
    values = np.array([1.0, -2.5, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-7 + 2**-9, 0.0], np.float32)
    bits = np.frombuffer(encode(values, "BF16"), "<u2")
    # 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: to the even one (1); 1 + 3 x 2^-8 to 1 + 2^-6
    assert [hex(b) for b in bits] == ["0x3f80", "0xc020", "0x3f80", "0x3f82", "0x3f81", "0x0"]


def test_a_disk_too_small_is_refused_before_writing(tmp_path, monkeypatch):
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: Usage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(OverBudgetError, match=r"--out .*/new: 3 adapters of rank 4 .* take 17.0 MB and the disk "
                                               r"holds 1.0 MB free"):
        check_adapters_fit(SMALL, 4, 3, tmp_path / "new")
    assert not (tmp_path / "new").exists()
