"""A profile's KV capacity from vLLM's memory model, for a model on a GPU (no measurement needed)."""

from __future__ import annotations

from loratwin.profiles.derive.catalog import GpuSpec, ModelArchitecture, resolve_gpu, resolve_model
from loratwin.profiles.derive.memory import REFERENCE_NON_TORCH_BYTES, MemoryFlags
from loratwin.profiles.kv_capacity import KVCapacityModel, KVMemoryModel

REFERENCE_GPU = "h100-64gb"  # the GPU of every measurement shipped (calibration/, real-vllm/)


def kv_memory_for(arch: ModelArchitecture, gpu: GpuSpec, flags: MemoryFlags | None = None,
                  non_torch_bytes: int = REFERENCE_NON_TORCH_BYTES) -> KVMemoryModel:
    """The `kv.memory` section of a profile: the memory model's inputs for `arch` on `gpu`."""
    return KVMemoryModel(
        architecture=arch,
        gpu_total_bytes=gpu.total_bytes,
        flags=flags or MemoryFlags(),
        non_torch_bytes=non_torch_bytes,
        provenance=(
            f"vLLM 0.8.5 memory model (loratwin.profiles.derive.memory) for {arch.name} on {gpu.name} "
            f"({gpu.total_bytes:,} bytes); non_torch_bytes fitted on the Llama-3.1-8B rows of "
            "calibration/kv_capacity.csv (H100 64 GB, vLLM 0.8.5); checked on both models by "
            "scripts/check_kv_capacity.py"
        ),
    )


def kv_model_for(arch: ModelArchitecture, gpu: GpuSpec, flags: MemoryFlags | None = None,
                 non_torch_bytes: int = REFERENCE_NON_TORCH_BYTES) -> KVCapacityModel:
    """KV capacity for any (max_loras, max_lora_rank) vLLM accepts, from the memory model alone."""
    memory = kv_memory_for(arch, gpu, flags, non_torch_bytes)
    return KVCapacityModel(block_size=memory.flags.block_size, measured_max_num_seqs=memory.flags.max_num_seqs,
                           memory=memory)


def reference_kv_memory(model_id: str, max_model_len: int) -> KVMemoryModel:
    """The `kv.memory` section of a built-in profile: the reference GPU and the reference runs'
    flags (gpu_memory_utilization 0.9, max_num_seqs 2048, max_num_batched_tokens 2048, block 16)."""
    return kv_memory_for(resolve_model(model_id), resolve_gpu(REFERENCE_GPU), MemoryFlags(max_model_len=max_model_len))
