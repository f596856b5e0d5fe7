"""Rough sizes that place a calibration plan's runs: how many requests a GPU serves, how many LoRA slots
fit. They only choose rate levels and `--max-loras` values that span light to saturating load and small to
near-full memory; the fitted profile, not these, prices anything.

Fitted on one number of the reference measurements (and said so): the highest total throughput of the
llama-3.1-8b-instruct runs in real-vllm/runs.csv, 14,196.74 tok/s on the h100-64gb (a saturated run).
Decoding reads every weight once per step, so a GPU's saturated throughput is taken to scale with
bandwidth / weight bytes; prompt-heavy work is priced by compute at an assumed efficiency.
"""

from __future__ import annotations

from dataclasses import dataclass

from loratwin.errors import InputError
from loratwin.profiles.derive.catalog import GpuSpec, ModelArchitecture

# Saturated total tokens (prompt + output) per weight read: 14,196.74 tok/s x 16.06e9 B / 1,640e9 B/s.
TOKENS_PER_WEIGHT_READ = 139.0
# ShareGPT request lengths as the reference client filtered them: pool means of about 223 prompt and
# 196 output tokens (data README).
SHAREGPT_MEAN_PROMPT_TOKENS = 223
SHAREGPT_MEAN_OUTPUT_TOKENS = 196
# Share of peak BF16 compute a prompt-heavy step reaches: an assumption (not measured here), used only
# to place the prefill runs' rates.
PREFILL_COMPUTE_EFFICIENCY = 0.4
# What LoRA buffers may take of the memory left after the weights: the plan's largest --max-loras at a
# rank uses this share (the KV cache keeps the rest); its feasibility-edge probe uses EDGE_LORA_SHARE.
LORA_SHARE = 0.5
EDGE_LORA_SHARE = 0.8


@dataclass(frozen=True)
class GpuCapacity:
    """A model on a GPU, roughly: saturated throughput and room for LoRA buffers."""

    decode_tok_s: float  # total tokens/s of ShareGPT-like requests at saturation
    prefill_tok_s: float  # prompt tokens/s of prompt-only work at saturation
    memory_after_weights_bytes: float  # gpu memory x utilization - weights
    lora_slot_bytes_per_rank: float  # LoRA buffer bytes one slot takes per unit of max_lora_rank

    @property
    def sharegpt_req_s(self) -> float:
        return self.decode_tok_s / (SHAREGPT_MEAN_PROMPT_TOKENS + SHAREGPT_MEAN_OUTPUT_TOKENS)

    def max_slots(self, max_lora_rank: int, share: float = LORA_SHARE) -> int:
        """The most --max-loras whose buffers take `share` of the memory left after the weights."""
        return int(share * self.memory_after_weights_bytes // (max_lora_rank * self.lora_slot_bytes_per_rank))


def weight_bytes(arch: ModelArchitecture) -> int:
    return arch.parameters * arch.dtype_bytes


def lora_slot_bytes_per_rank(arch: ModelArchitecture) -> int:
    """Bytes vLLM preallocates per LoRA slot and unit of rank: A (rank x in) and B (out x rank) of the
    seven attention and MLP projections of every layer, and of the embedding and LM head (vocabulary)."""
    per_layer = sum(i + o for i, o in projection_shapes(arch).values())
    return arch.dtype_bytes * (arch.num_hidden_layers * per_layer + 2 * (arch.vocab_size + arch.hidden_size))


def projection_shapes(arch: ModelArchitecture) -> dict[str, tuple[int, int]]:
    """(in, out) features of the projections a LoRA adapter of the Llama pattern targets."""
    h, inter = arch.hidden_size, arch.intermediate_size
    return {
        "self_attn.q_proj": (h, arch.q_size),
        "self_attn.k_proj": (h, arch.kv_size),
        "self_attn.v_proj": (h, arch.kv_size),
        "self_attn.o_proj": (arch.q_size, h),
        "mlp.gate_proj": (h, inter),
        "mlp.up_proj": (h, inter),
        "mlp.down_proj": (inter, h),
    }


def gpu_capacity(arch: ModelArchitecture, gpu: GpuSpec, gpu_memory_utilization: float) -> GpuCapacity:
    """The rough capacity of `arch` on `gpu`; an InputError when the weights alone do not fit."""
    weights = weight_bytes(arch)
    usable = gpu.total_bytes * gpu_memory_utilization
    if weights >= usable:
        raise InputError(
            f"--model {arch.name}: its weights ({weights / 2**30:.1f} GiB) do not fit in {gpu_memory_utilization:g} "
            f"of the {gpu.name}'s memory ({usable / 2**30:.1f} GiB); choose a larger GPU or a smaller model"
        )
    decode = TOKENS_PER_WEIGHT_READ * gpu.memory_bandwidth_gb_s * 1e9 / weights
    prefill = PREFILL_COMPUTE_EFFICIENCY * gpu.bf16_dense_tflops * 1e12 / (2 * arch.parameters)
    return GpuCapacity(decode, prefill, usable - weights, lora_slot_bytes_per_rank(arch))
