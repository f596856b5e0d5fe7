"""Random-weight LoRA adapters in the PEFT layout, for serving in calibration runs.

Each adapter is a folder: `adapter_config.json` (peft_type LORA, r, lora_alpha, target_modules,
base_model_name_or_path, task_type CAUSAL_LM) and `adapter_model.safetensors` with PEFT's tensor names,
`base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` (r x in) and `...lora_B.weight`
(out x r) for the attention and MLP projections of every layer, in the model's dtype.

What an adapter costs to serve depends on its rank and shapes, not on its values. The values are
random so that nothing special-cases zeros: A uniform in +-1/sqrt(in) (PEFT's Kaiming-uniform bound),
B normal with a small spread (B_STD), so generation stays close to the base model's and output lengths
stay those of the prompts' dataset. Adapter k of a seed draws from its own stream: the same
(model, rank, seed) always gives the same bytes, whatever --count.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from loratwin.budget import PROCESS_BYTES, Estimate, require, require_disk
from loratwin.errors import InputError
from loratwin.lab.capacity import projection_shapes
from loratwin.lab.safetensors import TensorSpec, file_size, write_safetensors
from loratwin.profiles.derive.catalog import ModelArchitecture

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
ADAPTER_FOLDERS = ("adapter-*",)  # what make-adapters writes into its --out folder
B_STD = 1e-3
MAX_RANK = 512  # vLLM 0.8.5's largest --max-lora-rank
MAX_COUNT = 10_000
# By the model's bytes per value: 2-byte models are written in bf16 (vLLM casts adapter weights to the
# model's dtype when it loads them, so a float16 model serves them the same).
SAFETENSORS_DTYPE = {2: "BF16", 4: "F32"}
METADATA = {"format": "pt"}


def adapter_folder(index: int) -> str:
    return f"adapter-{index:03d}"


def tensor_specs(arch: ModelArchitecture, rank: int) -> list[TensorSpec]:
    """PEFT's tensors for a rank-`rank` adapter on every targeted projection, layer by layer."""
    dtype = SAFETENSORS_DTYPE[arch.dtype_bytes]
    specs = []
    for layer in range(arch.num_hidden_layers):
        for module, (inp, out) in projection_shapes(arch).items():
            prefix = f"base_model.model.model.layers.{layer}.{module}"
            specs.append(TensorSpec(f"{prefix}.lora_A.weight", dtype, (rank, inp)))
            specs.append(TensorSpec(f"{prefix}.lora_B.weight", dtype, (out, rank)))
    return specs


def adapter_config(arch: ModelArchitecture, rank: int) -> dict:
    return {
        "base_model_name_or_path": arch.name,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "lora_alpha": 2 * rank,
        "lora_dropout": 0.0,
        "modules_to_save": None,
        "peft_type": "LORA",
        "r": rank,
        "target_modules": sorted(m.split(".")[-1] for m in projection_shapes(arch)),
        "task_type": "CAUSAL_LM",
        "use_dora": False,
        "use_rslora": False,
    }


def adapters_size(arch: ModelArchitecture, rank: int, count: int) -> int:
    """Bytes `count` adapters take on disk."""
    config = len(json.dumps(adapter_config(arch, rank), indent=2)) + 1
    return count * (file_size(tensor_specs(arch, rank), METADATA) + config)


def check_adapter_flags(rank: int, count: int, seed: int) -> None:
    if not 1 <= rank <= MAX_RANK:
        raise InputError(f"--rank must be from 1 to {MAX_RANK} (vLLM's largest --max-lora-rank), got {rank}")
    if not 1 <= count <= MAX_COUNT:
        raise InputError(f"--count must be from 1 to {MAX_COUNT:,}, got {count}")
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")


def check_adapters_fit(arch: ModelArchitecture, rank: int, count: int, out: Path) -> int:
    """Refuse, before writing, adapters the disk cannot hold or whose largest tensor the memory limit
    cannot; their size in bytes otherwise."""
    size = adapters_size(arch, rank, count)
    require_disk(size, out, f"{count} adapters of rank {rank} for {arch.name}")
    largest = max(rank * (inp + out) for inp, out in projection_shapes(arch).values())
    # one tensor at a time: float32 values, the rounding's temporaries and the encoded copy, ~16 B a value
    require(Estimate(PROCESS_BYTES + 16 * largest, 0.0, f"adapter tensors of up to {largest:,} values"))
    return size


def write_adapters(arch: ModelArchitecture, rank: int, count: int, seed: int, folder: Path) -> None:
    """Write `count` adapters into the existing `folder` (one sub-folder each)."""
    specs = tensor_specs(arch, rank)
    config = json.dumps(adapter_config(arch, rank), indent=2) + "\n"
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        target = folder / adapter_folder(index)
        target.mkdir()
        (target / CONFIG_FILE).write_text(config)
        write_safetensors(target / WEIGHTS_FILE, specs, lambda spec, rng=rng: _values(spec, rng), METADATA)


def _values(spec: TensorSpec, rng: np.random.Generator) -> np.ndarray:
    if spec.name.endswith("lora_A.weight"):
        bound = 1.0 / math.sqrt(spec.shape[1])
        return rng.uniform(-bound, bound, size=spec.shape).astype(np.float32)
    return rng.normal(0.0, B_STD, size=spec.shape).astype(np.float32)
