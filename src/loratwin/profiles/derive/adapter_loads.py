"""Derived adapter load times: CPU->GPU (into a GPU slot) and disk->CPU, from the model's architecture.

vLLM 0.8.5 activates an adapter LoRA layer by LoRA layer (four per decoder layer), copying its A and B
into the slot's buffers, which are sized by max_lora_rank. The copies are issued without waiting, so a
load lasts the longer of two: a fixed time per LoRA layer (more when the adapter's rank is below
max_lora_rank: it is copied into part of the slot), and its bytes over the GPU's PCIe link (which bounds
large adapters; the measured ones, up to rank 32, all load in the fixed time). A disk->CPU load costs a
fixed time per LoRA layer plus its bytes at the host's read speed.
The constants (data/roofline.yaml) were fitted on measured loads of one model (see its provenance).
"""

from __future__ import annotations

from loratwin.profiles.derive.catalog import GpuSpec, ModelArchitecture
from loratwin.profiles.derive.roofline import LORA_LAYERS_PER_DECODER_LAYER, AdapterLoadFactors, lora_adapter_bytes
from loratwin.profiles.model import AdapterLoadModel

# vLLM 0.8.5's accepted --max-lora-rank values (LoRAConfig.possible_max_ranks); the tables hold the
# adapter ranks below each, and the profile's lookup prices an unlisted rank like the next listed one.
MAX_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
ADAPTER_RANKS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 320, 512)


def _lora_layers(arch: ModelArchitecture) -> int:
    return arch.num_hidden_layers * LORA_LAYERS_PER_DECODER_LAYER


def cpu_to_gpu_ms(arch: ModelArchitecture, gpu: GpuSpec, factors: AdapterLoadFactors, max_rank: int, rank: int) -> float:
    """One adapter of `rank` loaded into a GPU slot of a server with `max_rank`."""
    per_layer = factors.cpu_to_gpu_ms_per_layer + (factors.cpu_to_gpu_padded_ms_per_layer if rank < max_rank else 0.0)
    link_ms = lora_adapter_bytes(arch, rank) / (gpu.pcie_gb_s * 1e9) * 1e3
    return max(_lora_layers(arch) * per_layer, link_ms)


def disk_to_cpu_ms(arch: ModelArchitecture, factors: AdapterLoadFactors, rank: int) -> float:
    """One adapter of `rank` read from disk into CPU memory."""
    return _lora_layers(arch) * factors.disk_to_cpu_ms_per_layer + lora_adapter_bytes(arch, rank) / 1e9 * factors.disk_ms_per_gb


def adapter_load_model(arch: ModelArchitecture, gpu: GpuSpec, factors: AdapterLoadFactors) -> AdapterLoadModel:
    """The profile's load tables for every max_lora_rank vLLM accepts."""
    cpu, disk = {}, {}
    for max_rank in MAX_LORA_RANKS:
        ranks = [r for r in ADAPTER_RANKS if r <= max_rank]
        cpu[max_rank] = {r: round(cpu_to_gpu_ms(arch, gpu, factors, max_rank, r), 6) for r in ranks}
        disk[max_rank] = {r: round(disk_to_cpu_ms(arch, factors, r), 6) for r in ranks}
    return AdapterLoadModel(cpu_to_gpu_ms=cpu, disk_to_cpu_ms=disk)
