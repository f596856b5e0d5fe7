"""How vLLM 0.8.5 (V1 engine, one GPU) sizes GPU memory, and so its KV cache, for a multi-LoRA server.

What vLLM does at start (gpu_worker.determine_available_memory, gpu_model_runner.profile_run):
1. loads the weights and preallocates the LoRA buffers (max_loras slots, max_lora_rank wide) on top
   of the runner's buffers; it logs this as "Model loading took X GiB";
2. runs one forward pass of max_num_batched_tokens dummy tokens and one sampler pass over
   min(max_num_seqs, max_num_batched_tokens) rows of logits (top-k and top-p on), and reads the
   allocator's peak;
3. KV cache bytes = gpu_memory_utilization x total - (peak allocated + memory in use outside
   torch's allocations: the CUDA context and the free parts of the allocator's segments), then
   blocks = bytes // (block bytes of one layer) // layers, tokens = blocks x block_size ("GPU KV
   cache size: N tokens"); it refuses to start with no bytes left ("No available memory for the
   cache blocks") or fewer than one max_model_len request needs;
4. captures CUDA graphs and warms the sampler up again, from the memory gpu_memory_utilization
   leaves free: vLLM 0.8.5 does not count CUDA graphs in the KV budget.
A step that runs out of device memory stops the server: CUDA out of memory while loading or in the
profiling forward pass, or "CUDA out of memory occurred when warming up sampler".

Bytes come from the shapes (`vllm_tensors`), placed by a model of PyTorch's caching allocator
(`allocator`). The sampler's peak is read from vLLM's code, on its FlashInfer path (top-k, then
top-p on renormalised probabilities): the bf16 logits, their float32 copy, the probabilities and
the renormalised ones, 14 bytes per logit. Which path the measured servers took is not logged; the
PyTorch path sorts the logits with int64 indices (over 26 bytes per logit, above 6 GiB at the
reference settings), more than the Llama rows leave for the peak and the non-torch memory together
(at most 5.0 GiB even if the GPU reported all of its 64 GiB). The forward pass's activations and
the CUDA graphs are estimated from shapes and were not measured (neither reaches the KV size at the
reference settings; they only order the start failures).

Fitted: `non_torch_bytes` (CUDA context, kernels and cuBLAS state: what vLLM finds in use outside
torch besides the allocator's free segment space), on the Llama-3.1-8B rows of
calibration/kv_capacity.csv only (`fit_non_torch_bytes`), with the reference GPU's total memory
taken from the catalog (h100-64gb: 64 GiB less 0.6 %; not logged). Checked on both models by
scripts/check_kv_capacity.py.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from loratwin.errors import InputError
from loratwin.profiles.derive import vllm_tensors as vt
from loratwin.profiles.derive.allocator import LARGE_SEGMENT, MIB, CachingAllocator
from loratwin.profiles.derive.catalog import ModelArchitecture
from loratwin.profiles.lora_rank import check_max_lora_rank

GIB = 1 << 30
SAMPLER_FLOAT32_COPIES = 3  # float32 logits, probabilities, top-k renormalised probabilities
MAX_CAPTURE_TOKENS = 512  # vLLM 0.8.5's largest CUDA graph batch
# Fitted on the Llama-3.1-8B rows of calibration/kv_capacity.csv (scripts/check_kv_capacity.py prints it).
REFERENCE_NON_TORCH_BYTES = 1_163_400_943


class MemoryFlags(BaseModel):
    """The server flags that size memory, besides max_loras and max_lora_rank (vLLM's names)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.9
    max_num_seqs: Annotated[int, Field(gt=0, le=1_000_000)] = 2048
    max_num_batched_tokens: Annotated[int, Field(gt=0, le=10_000_000)] = 2048
    max_model_len: Annotated[int, Field(gt=0, le=100_000_000)] | None = None  # None: the model's own
    block_size: Annotated[int, Field(gt=0, le=1024)] = 16


@dataclass(frozen=True)
class MemoryBreakdown:
    """Where the GPU's memory goes at start, in bytes, and whether the server starts."""

    total: int  # what CUDA reports for the device
    budget: int  # gpu_memory_utilization x total
    runner_buffers: int
    weights: int
    lora_buffers: int
    allocator_slack: int  # segments held beyond the tensors' own bytes (rounding, free parts)
    activation_peak: int  # profiling run: max of forward pass, logits, sampler
    non_torch: int  # fitted: CUDA context and other memory outside torch's allocator
    kv_cache: int  # bytes given to the KV cache (whole blocks); 0 when it does not start
    kv_blocks: int
    kv_tokens: int  # vLLM's "GPU KV cache size: N tokens"
    cuda_graphs: int  # estimate, taken from what the budget leaves free
    starts: bool
    failure: str | None  # the reason class: cuda_oom, cuda_oom_warming_up_sampler,
    #   no_memory_left_for_kv_cache, kv_cache_below_one_max_model_len_request
    reason: str  # vLLM's reason, in words; "" when it starts

    def as_dict(self) -> dict[str, int | bool | str | None]:
        return asdict(self)


def _max_model_len(arch: ModelArchitecture, flags: MemoryFlags) -> int:
    if flags.max_model_len is None:
        return arch.max_position_embeddings
    if flags.max_model_len > arch.max_position_embeddings:
        raise InputError(
            f"--max-model-len {flags.max_model_len} is above the model's max_position_embeddings "
            f"{arch.max_position_embeddings}, which vLLM refuses"
        )
    return flags.max_model_len


def _check(arch: ModelArchitecture, max_loras: int, max_lora_rank: int, max_cpu_loras: int | None) -> None:
    if max_loras < 1:
        raise InputError(f"--max-loras {max_loras}: must be >= 1")
    check_max_lora_rank(max_lora_rank)
    if max_cpu_loras is not None and max_cpu_loras < max_loras:
        raise InputError(f"--max-cpu-loras ({max_cpu_loras}) must be >= --max-loras ({max_loras}), as vLLM requires")
    if vt.has_lora_vocab(arch) and vt.logits_vocab(arch) > vt.MAX_LORA_VOCAB:
        raise InputError(f"{arch.name}: vocabulary {arch.vocab_size} is above what vLLM serves with LoRA")


@functools.lru_cache(maxsize=1024)
def _after_weights(arch: ModelArchitecture, flags: MemoryFlags, max_loras: int) -> CachingAllocator:
    """The allocator once runner buffers and weights are in (weights depend on max_loras only
    through Llama-type models' extra embedding rows: callers pass 0 for the others)."""
    alloc = CachingAllocator()
    alloc.allocate_all(vt.runner_buffers(arch, flags.max_num_seqs, flags.max_num_batched_tokens,
                                         _max_model_len(arch, flags), flags.block_size))
    alloc.allocate_all(vt.weight_tensors(arch, max_loras))
    return alloc


@functools.lru_cache(maxsize=16384)
def _reserved_at(arch: ModelArchitecture, flags: MemoryFlags, max_loras: int, max_lora_rank: int) -> int:
    alloc = _after_weights(arch, flags, max_loras if vt.has_lora_vocab(arch) else 0).copy()
    alloc.allocate_all(vt.lora_tensors(arch, max_loras, max_lora_rank, flags.max_num_batched_tokens))
    return alloc.reserved


def reserved_bytes(arch: ModelArchitecture, flags: MemoryFlags, max_loras: int, max_lora_rank: int) -> int:
    """Device bytes the allocator holds once weights and LoRA buffers are in, at most over
    1..max_loras slots: a slot more never frees memory here (the allocator alone can free up to
    ~90 MiB when a buffer crosses one of its size classes; the model does not promise that gain)."""
    tensors = vt.lora_tensors(arch, max_loras, max_lora_rank, flags.max_num_batched_tokens)
    one_slot = sum(vt.lora_tensors(arch, 1, max_lora_rank, 0)) + (
        vt.LORA_EXTRA_VOCAB * arch.hidden_size * arch.dtype_bytes if vt.has_lora_vocab(arch) else 0)
    # A tensor leaves at most 10 MiB of its segments unused (a request below 10 MiB takes a fresh
    # 20 MiB segment only when no free block holds it), so a configuration with enough fewer
    # slots holds less whatever the allocator does: only the last `window` counts can hold more.
    count = len(tensors) + len(vt.weight_tensors(arch, max_loras)) + 16
    window = -(-(count * 10 * MIB + LARGE_SEGMENT) // one_slot)
    return max(_reserved_at(arch, flags, s, max_lora_rank) for s in range(max(1, max_loras - window), max_loras + 1))


def slots_that_fit(arch: ModelArchitecture, total_bytes: int, flags: MemoryFlags, max_lora_rank: int) -> int:
    """A max_loras above which the weights and LoRA buffers alone exceed the GPU (none starts)."""
    def tensors(slots: int) -> int:
        return sum(vt.weight_tensors(arch, slots)) + sum(vt.lora_tensors(arch, slots, max_lora_rank, 0))

    fixed = tensors(0)
    return max(0, (total_bytes - fixed) // max(1, tensors(1) - fixed)) + 1


def _forward_bytes(arch: ModelArchitecture, tokens: int, max_lora_rank: int) -> int:
    """Estimate: a decoder layer's live activations (residual, hidden, gate/up, its product, and
    the LoRA shrink buffers in float32)."""
    d = arch.dtype_bytes
    return tokens * (d * (2 * arch.hidden_size + 3 * arch.intermediate_size) + 4 * 3 * max_lora_rank)


def _activation_phases(arch: ModelArchitecture, flags: MemoryFlags, max_loras: int, max_lora_rank: int) -> tuple[int, int, int]:
    """Peak bytes of the profiling run's forward pass, logits and sampler."""
    rows, d = min(flags.max_num_seqs, flags.max_num_batched_tokens), arch.dtype_bytes
    hidden_rows = rows * arch.hidden_size * d
    logits = rows * vt.lm_head_rows(arch) * d
    if vt.has_lora_vocab(arch):  # the extra-vocabulary logits of every slot, and their reshaped copy
        logits += 2 * (max_loras + 1) * vt.LORA_EXTRA_VOCAB * rows * d
    sampler = rows * vt.logits_vocab(arch) * (d + 4 * SAMPLER_FLOAT32_COPIES)
    forward = _forward_bytes(arch, flags.max_num_batched_tokens, max_lora_rank)
    return forward, hidden_rows + logits, hidden_rows + sampler


def vllm_memory(arch: ModelArchitecture, total_bytes: int, flags: MemoryFlags, max_loras: int, max_lora_rank: int, *,
                non_torch_bytes: int = REFERENCE_NON_TORCH_BYTES, max_cpu_loras: int | None = None) -> MemoryBreakdown:
    """vLLM's memory at start for this model on a GPU of `total_bytes`, and its KV cache."""
    _check(arch, max_loras, max_lora_rank, max_cpu_loras)
    max_model_len = _max_model_len(arch, flags)
    reserved = reserved_bytes(arch, flags, max_loras, max_lora_rank)
    runner = sum(vt.runner_buffers(arch, flags.max_num_seqs, flags.max_num_batched_tokens, max_model_len, flags.block_size))
    weights = sum(vt.weight_tensors(arch, max_loras))
    lora = sum(vt.lora_tensors(arch, max_loras, max_lora_rank, flags.max_num_batched_tokens))
    forward, logits, sampler = _activation_phases(arch, flags, max_loras, max_lora_rank)
    peak = max(forward, logits, sampler)
    budget = math.floor(flags.gpu_memory_utilization * total_bytes)
    available = budget - reserved - peak - non_torch_bytes
    block_bytes = flags.block_size * arch.kv_bytes_per_token  # one block over all layers
    graphs = _forward_bytes(arch, min(MAX_CAPTURE_TOKENS, flags.max_num_batched_tokens), max_lora_rank)
    headroom = total_bytes - non_torch_bytes - reserved

    failure, reason = None, ""
    if headroom < 0:
        failure, reason = "cuda_oom", "CUDA out of memory while loading the weights and LoRA buffers"
    elif headroom < forward or headroom < logits:
        failure, reason = "cuda_oom", "CUDA out of memory in the profiling forward pass"
    elif headroom < sampler:
        failure, reason = "cuda_oom_warming_up_sampler", "CUDA out of memory occurred when warming up sampler"
    elif available <= 0:
        failure, reason = "no_memory_left_for_kv_cache", "no available memory for the cache blocks"
    elif available < -(-max_model_len // flags.block_size) * block_bytes:
        failure = "kv_cache_below_one_max_model_len_request"
        reason = (f"the KV cache ({available / GIB:.2f} GiB) holds less than one request of "
                  f"max_model_len {max_model_len} tokens")
    elif total_bytes - budget < graphs:
        failure, reason = "cuda_oom_warming_up_sampler", "CUDA out of memory after the CUDA graphs took the free memory"
    blocks = max(available, 0) // block_bytes if failure is None else 0
    return MemoryBreakdown(
        total=total_bytes, budget=budget, runner_buffers=runner, weights=weights, lora_buffers=lora,
        allocator_slack=reserved - runner - weights - lora, activation_peak=peak, non_torch=non_torch_bytes,
        kv_cache=blocks * block_bytes, kv_blocks=blocks, kv_tokens=blocks * flags.block_size, cuda_graphs=graphs,
        starts=failure is None, failure=failure, reason=reason,
    )


def kv_available_bytes(arch: ModelArchitecture, total_bytes: int, flags: MemoryFlags, max_loras: int,
                       max_lora_rank: int, non_torch_bytes: int) -> int:
    """The bytes vLLM offers the KV cache before rounding to blocks (negative when none are left)."""
    reserved = reserved_bytes(arch, flags, max_loras, max_lora_rank)
    peak = max(_activation_phases(arch, flags, max_loras, max_lora_rank))
    return math.floor(flags.gpu_memory_utilization * total_bytes) - reserved - peak - non_torch_bytes


def fit_non_torch_bytes(arch: ModelArchitecture, total_bytes: int, flags: MemoryFlags,
                        measured: list[tuple[int, int, int]]) -> int:
    """The non-torch bytes that match measured KV sizes [(max_loras, max_lora_rank, kv_tokens)]:
    the median over the points of what each one implies, less half a block (vLLM rounds the
    bytes down to whole blocks, so a measured size is on average half a block below the bytes)."""
    if not measured:
        raise InputError("no measured KV cache sizes to fit the non-torch memory on")
    implied = sorted(
        kv_available_bytes(arch, total_bytes, flags, s, r, 0) - tokens * arch.kv_bytes_per_token
        for s, r, tokens in measured
    )
    mid = len(implied) // 2
    median = implied[mid] if len(implied) % 2 else (implied[mid - 1] + implied[mid]) // 2
    return median - flags.block_size * arch.kv_bytes_per_token // 2
