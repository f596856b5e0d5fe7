"""Roofline step time: a profile's StepTimeModel from a model's architecture and a GPU's datasheet.

Each term of the step time is a physical count of the model (bytes, FLOPs, GPU kernel launches, thread
blocks) over a datasheet figure of the GPU, times one efficiency factor fitted on measured hardware
(`data/roofline.yaml`, written by scripts/fit_roofline.py; what was fitted on what is in its provenance):

    base_ms              = step_overhead_ms + weight bytes / (bandwidth x bandwidth_efficiency)
    per_context_token_ms = KV bytes per token / (bandwidth x bandwidth_efficiency)
    per_seq_ms           = FLOPs per decoded token (layers + LM head) / (bf16 peak x decode_compute_efficiency)
    per_prefill_token_ms = FLOPs per prompt token (layers) / (bf16 peak x prefill_compute_efficiency)

The LoRA terms follow vLLM 0.8.5's multi-LoRA kernels (vllm/lora/ops/triton_ops/lora_shrink.py and
lora_expand.py). Every LoRA layer (qkv_proj, o_proj, gate_up_proj, down_proj in each decoder layer) runs
one shrink (x @ A, hidden -> rank) and one expand (. @ B, rank -> output) launch over all its slices (q,
k, v; gate, up). Their grids give each of the max_loras + 1 slots its own thread blocks (CTAs) for every
block of the step's tokens; the blocks of a slot without tokens exit at once. So:

    lora_step_ms             = kernel launches per step x lora_launch_ms
    lora_per_seq_per_slot_ms = thread blocks per (token, slot) x lora_empty_block_ns
                               (the blocks of idle slots: they scale with tokens x max_loras)
    lora_per_adapter_ms      = thread blocks per active adapter x lora_block_ns
                               + the adapter's A and B bytes / (bandwidth x bandwidth_efficiency)
    lora_per_rank_ms         = shrink thread blocks per rank unit x lora_rank_block_ns
                               (the shrink grid grows by one block column per 16 of max_lora_rank)
    lora_per_slot_ms         = 0 (no per-slot cost apart from the blocks above)

Block counts are taken at a busy step (>= 128 tokens: vLLM's shrink then splits K 8 ways) and at rank 16,
the block size of the shrink kernel's rank axis (ranks 8 and 16 need one block column, 32 two; the
rank term carries the difference). Launch and thread-block costs are taken as GPU-independent: they are
latencies of the SMs, which differ little across the Hopper parts; the bytes scale with bandwidth.
"""

from __future__ import annotations

import functools
import math
from importlib import resources
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from loratwin.profiles.derive.catalog import GpuSpec, ModelArchitecture
from loratwin.profiles.model import SchedulerOverheadModel, StepTimeModel
from loratwin.yamlfile import parse_yaml

_DATA = "loratwin.profiles.derive.data"

# vLLM 0.8.5's LoRA kernel configuration (lora_shrink.py, lora_expand.py) for steps of >= 128 tokens.
SHRINK_BLOCK_M, SHRINK_SPLIT_K, SHRINK_BLOCK_N = 32, 8, 16
EXPAND_BLOCK_M, EXPAND_BLOCK_N = 64, 128
# The rank at which blocks per adapter and per (token, slot) are counted (see the module docstring).
REFERENCE_RANK = 16
# LoRA layers per decoder layer, each a shrink and an expand launch.
LORA_LAYERS_PER_DECODER_LAYER = 4
KERNELS_PER_LORA_LAYER = 2

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def lora_layers(arch: ModelArchitecture) -> list[tuple[int, list[int]]]:
    """(input width, output widths of its slices) of each LoRA layer of one decoder layer, as vLLM
    0.8.5 packs them: qkv_proj (q, k, v), o_proj, gate_up_proj (gate, up), down_proj."""
    h, q, kv, inter = arch.hidden_size, arch.q_size, arch.kv_size, arch.intermediate_size
    return [(h, [q, kv, kv]), (q, [h]), (h, [inter, inter]), (inter, [h])]


def weight_bytes(arch: ModelArchitecture) -> int:
    """Bytes of weights one step reads: everything but the embedding table (only the batch's rows
    are looked up), which is also the LM head when the two are tied."""
    embedding = 0 if arch.tie_word_embeddings else arch.vocab_size * arch.hidden_size
    return (arch.parameters - embedding) * arch.dtype_bytes


def _layer_linear_parameters(arch: ModelArchitecture) -> int:
    return sum(width_in * sum(outs) for width_in, outs in lora_layers(arch))


def decode_flops_per_token(arch: ModelArchitecture) -> int:
    """Matrix FLOPs of one decoded token: every linear layer and the LM head (2 per multiply-add)."""
    return 2 * (arch.num_hidden_layers * _layer_linear_parameters(arch) + arch.vocab_size * arch.hidden_size)


def prefill_flops_per_token(arch: ModelArchitecture) -> int:
    """Matrix FLOPs of one prompt token: the linear layers (logits are computed for the last one only)."""
    return 2 * arch.num_hidden_layers * _layer_linear_parameters(arch)


def lora_adapter_bytes(arch: ModelArchitecture, rank: int) -> int:
    """Bytes of one adapter's A and B matrices over all LoRA layers at `rank`."""
    per_layer = sum(len(outs) * width_in + sum(outs) for width_in, outs in lora_layers(arch))
    return arch.num_hidden_layers * per_layer * rank * arch.dtype_bytes


def lora_kernel_launches(arch: ModelArchitecture) -> int:
    return arch.num_hidden_layers * LORA_LAYERS_PER_DECODER_LAYER * KERNELS_PER_LORA_LAYER


def _shrink_blocks_per_m_block(arch: ModelArchitecture, rank: int) -> int:
    slices = sum(len(outs) for _, outs in lora_layers(arch))
    return SHRINK_SPLIT_K * math.ceil(rank / SHRINK_BLOCK_N) * slices


def _expand_blocks_per_m_block(arch: ModelArchitecture) -> int:
    # the expand grid spans the widest slice of a layer for every slice
    return sum(math.ceil(max(outs) / EXPAND_BLOCK_N) * len(outs) for _, outs in lora_layers(arch))


def lora_blocks_per_token_slot(arch: ModelArchitecture, rank: int = REFERENCE_RANK) -> float:
    """Thread blocks launched per token of the step and per GPU slot, over all layers."""
    per_layer = (_shrink_blocks_per_m_block(arch, rank) / SHRINK_BLOCK_M
                 + _expand_blocks_per_m_block(arch) / EXPAND_BLOCK_M)
    return arch.num_hidden_layers * per_layer


def lora_blocks_per_adapter(arch: ModelArchitecture, rank: int = REFERENCE_RANK) -> int:
    """Thread blocks that do work for one active adapter with a few tokens (one block of rows)."""
    return arch.num_hidden_layers * (_shrink_blocks_per_m_block(arch, rank) + _expand_blocks_per_m_block(arch))


def lora_shrink_blocks_per_rank(arch: ModelArchitecture) -> float:
    """Shrink thread blocks per adapter and per unit of max_lora_rank (one block column per 16)."""
    return arch.num_hidden_layers * _shrink_blocks_per_m_block(arch, SHRINK_BLOCK_N) / SHRINK_BLOCK_N


class RooflineFactors(BaseModel):
    """The fitted efficiency factors (see the module docstring for where each one enters)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step_overhead_ms: NonNegative
    bandwidth_efficiency: Positive
    decode_compute_efficiency: Positive
    prefill_compute_efficiency: Positive
    lora_launch_ms: NonNegative
    lora_empty_block_ns: NonNegative
    lora_block_ns: NonNegative
    lora_rank_block_ns: NonNegative


class AdapterLoadFactors(BaseModel):
    """Adapter load costs (loratwin.profiles.derive.adapter_loads says how they enter)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpu_to_gpu_ms_per_layer: NonNegative
    cpu_to_gpu_padded_ms_per_layer: NonNegative
    disk_to_cpu_ms_per_layer: NonNegative
    disk_ms_per_gb: NonNegative


class RooflineFit(BaseModel):
    """Contents of data/roofline.yaml: the factors and the profile parts taken over from the fit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fitted_on: dict[str, str | float]
    provenance: str
    step_time: RooflineFactors
    adapter_load: AdapterLoadFactors
    scheduler_overhead: SchedulerOverheadModel
    output_tokens_ratio: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
    checks: dict[str, float] = Field(default_factory=dict)


@functools.cache
def load_roofline_fit() -> RooflineFit:
    """The shipped fit (data/roofline.yaml)."""
    text = resources.files(_DATA).joinpath("roofline.yaml").read_text()
    return RooflineFit.model_validate(parse_yaml(text, "roofline.yaml"))


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 12)


def step_time_model(arch: ModelArchitecture, gpu: GpuSpec, factors: RooflineFactors) -> StepTimeModel:
    """The step-time terms of `arch` on `gpu` (module docstring)."""
    bandwidth = gpu.memory_bandwidth_gb_s * 1e9 * factors.bandwidth_efficiency
    flops = gpu.bf16_dense_tflops * 1e12
    return StepTimeModel(
        base_ms=round(factors.step_overhead_ms + _ms(weight_bytes(arch) / bandwidth), 12),
        per_seq_ms=_ms(decode_flops_per_token(arch) / (flops * factors.decode_compute_efficiency)),
        per_prefill_token_ms=_ms(prefill_flops_per_token(arch) / (flops * factors.prefill_compute_efficiency)),
        per_context_token_ms=_ms(arch.kv_bytes_per_token / bandwidth),
        lora_step_ms=round(lora_kernel_launches(arch) * factors.lora_launch_ms, 12),
        lora_per_rank_ms=_ms(lora_shrink_blocks_per_rank(arch) * factors.lora_rank_block_ns * 1e-9),
        lora_per_slot_ms=0.0,
        lora_per_adapter_ms=_ms(lora_blocks_per_adapter(arch) * factors.lora_block_ns * 1e-9
                                + lora_adapter_bytes(arch, REFERENCE_RANK) / bandwidth),
        lora_per_seq_per_slot_ms=_ms(lora_blocks_per_token_slot(arch) * factors.lora_empty_block_ns * 1e-9),
    )


def factors_from_step_time(step: StepTimeModel, arch: ModelArchitecture, gpu: GpuSpec,
                           base: RooflineFactors) -> RooflineFactors:
    """The inverse of `step_time_model` for the LoRA and prefill terms: the factors that give `step`'s
    fitted terms on `arch` and `gpu`, the base factors (overhead, bandwidth, decode) kept from `base`.
    A term fitted at 0 gives a factor of 0; a prefill term of 0 is refused (no finite efficiency)."""
    if step.per_prefill_token_ms <= 0:
        raise ValueError("per_prefill_token_ms fitted at 0: no prefill efficiency follows from it")
    bandwidth = gpu.memory_bandwidth_gb_s * 1e9 * base.bandwidth_efficiency
    flops = gpu.bf16_dense_tflops * 1e12
    adapter_read_ms = _ms(lora_adapter_bytes(arch, REFERENCE_RANK) / bandwidth)
    return base.model_copy(update={
        "prefill_compute_efficiency": prefill_flops_per_token(arch) / (flops * step.per_prefill_token_ms * 1e-3),
        "lora_launch_ms": step.lora_step_ms / lora_kernel_launches(arch),
        "lora_empty_block_ns": step.lora_per_seq_per_slot_ms * 1e6 / lora_blocks_per_token_slot(arch),
        "lora_block_ns": max(0.0, step.lora_per_adapter_ms - adapter_read_ms) * 1e6 / lora_blocks_per_adapter(arch),
        "lora_rank_block_ns": step.lora_per_rank_ms * 1e6 / lora_shrink_blocks_per_rank(arch),
    })
