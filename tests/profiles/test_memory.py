"""vLLM's memory model: bytes from shapes (a tiny architecture worked by hand), the caching
allocator's rules, the start failures, and the invariants (more slots or rank never more KV)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from loratwin.errors import InfeasibleConfigError, InputError
from loratwin.profiles import load_profile
from loratwin.profiles.derive.allocator import MIB, CachingAllocator
from loratwin.profiles.derive.catalog import ModelArchitecture, resolve_gpu, resolve_model
from loratwin.profiles.derive.kv import kv_model_for
from loratwin.profiles.derive.memory import MemoryFlags, fit_non_torch_bytes, vllm_memory
from loratwin.profiles.lora_rank import VLLM_MAX_LORA_RANKS

# q: 4 heads x 16 = 64, k and v: 2 heads x 16 = 32 each
TINY = dict(name="tiny", num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, intermediate_size=128, vocab_size=1000, max_position_embeddings=256,
            tie_word_embeddings=False, dtype_bytes=2)
QWEN_TINY = ModelArchitecture(architecture="Qwen2ForCausalLM", qkv_bias=True, **TINY)
LLAMA_TINY = ModelArchitecture(architecture="LlamaForCausalLM", qkv_bias=False, **TINY)
FLAGS = MemoryFlags(max_num_seqs=16, max_num_batched_tokens=16)
BIG = 1 << 40  # a GPU that holds anything


def test_weights_of_a_tiny_model_by_hand():
    b = vllm_memory(QWEN_TINY, BIG, FLAGS, 1, 8, non_torch_bytes=0)
    embed = 1024 * 64 * 2  # vocabulary padded to 64 rows
    layer = (128 * 64 + 128 + 64 * 64 + 2 * 128 * 64 + 64 * 128 + 2 * 64) * 2  # qkv (+bias), o, gate/up, down, norms
    rope = 256 * 16 * 2  # one cos/sin cache
    assert b.weights == embed + 2 * layer + rope + 64 * 2 + 1024 * 64 * 2  # ... final norm, LM head


def test_lora_buffers_of_a_tiny_model_by_hand():
    # per slot and rank, per layer: A and B of q/k/v (3 x 64 in, 64 + 32 + 32 out), o (64, 64),
    # gate/up (2 x 64, 2 x 128), down (128, 64): 1024 values, 2 bytes each, 2 layers
    per_slot_rank = 1024 * 2 * 2
    qwen = [vllm_memory(QWEN_TINY, BIG, FLAGS, 4, r, non_torch_bytes=0) for r in (8, 16)]
    assert qwen[1].lora_buffers - qwen[0].lora_buffers == 4 * 8 * per_slot_rank
    # Llama-type models add LoRA on the embeddings (A over vocabulary + 256, B over 64) and the LM
    # head (A over 64, B over the vocabulary + 256 padded to 1280)
    llama_per_slot_rank = per_slot_rank + (1256 + 64) * 2 + (64 + 1280) * 2
    llama = [vllm_memory(LLAMA_TINY, BIG, FLAGS, 4, r, non_torch_bytes=0) for r in (8, 16)]
    assert llama[1].lora_buffers - llama[0].lora_buffers == 4 * 8 * llama_per_slot_rank
    # and 256 extra vocabulary rows per slot in the embedding weights
    five = vllm_memory(LLAMA_TINY, BIG, FLAGS, 5, 8, non_torch_bytes=0)
    assert five.weights - llama[0].weights == 256 * 64 * 2


def test_profiling_peak_is_the_sampler_by_hand():
    b = vllm_memory(QWEN_TINY, BIG, FLAGS, 4, 8, non_torch_bytes=0)
    # 16 rows of 1000 logits: bf16 (2) + three float32 copies (12), and the 16 hidden rows kept
    assert b.activation_peak == 16 * 1000 * (2 + 12) + 16 * 64 * 2


def test_kv_cache_is_what_the_budget_leaves_in_whole_blocks():
    b = vllm_memory(QWEN_TINY, 10 * MIB * 100, FLAGS, 4, 8, non_torch_bytes=12345)
    block = 16 * QWEN_TINY.kv_bytes_per_token  # 16 tokens x (2 x 2 layers x 2 heads x 16 x 2 bytes)
    assert block == 16 * 256
    left = b.budget - (b.runner_buffers + b.weights + b.lora_buffers + b.allocator_slack) - b.activation_peak - 12345
    assert b.kv_blocks == left // block and b.kv_tokens == 16 * b.kv_blocks and b.kv_cache == b.kv_blocks * block
    assert b.budget == int(0.9 * 10 * MIB * 100) and b.starts and b.failure is None


def test_allocator_rounds_splits_and_reuses():
    a = CachingAllocator()
    a.allocate(100)  # rounded to 512 bytes, from a 2 MiB small segment
    assert (a.allocated, a.reserved) == (512, 2 * MIB)
    a.allocate(3 * MIB // 2)  # below 10 MiB: a 20 MiB segment, split (18.5 MiB stays free)
    assert (a.allocated, a.reserved) == (512 + 3 * MIB // 2, 22 * MIB)
    a.allocate(11 * MIB)  # fits the free 18.5 MiB: no new segment
    assert a.reserved == 22 * MIB
    a.allocate(23 * MIB // 2)  # 11.5 MiB: a 12 MiB segment, the 0.5 MiB rest is not split off
    assert a.reserved == 34 * MIB and a.allocated == 512 + 3 * MIB // 2 + 11 * MIB + 12 * MIB


def _failure(total: int, **flags) -> str | None:
    return vllm_memory(QWEN_TINY, total, MemoryFlags(max_num_seqs=16, max_num_batched_tokens=16, **flags), 4, 8,
                       non_torch_bytes=0).failure


def test_start_failures_in_vllms_order():
    b = vllm_memory(QWEN_TINY, BIG, FLAGS, 4, 8, non_torch_bytes=0)
    held = b.runner_buffers + b.weights + b.lora_buffers + b.allocator_slack
    assert _failure(held - 1) == "cuda_oom"  # loading
    assert _failure(held + b.activation_peak - 1) == "cuda_oom_warming_up_sampler"
    assert _failure(int((held + b.activation_peak) / 0.9)) == "no_memory_left_for_kv_cache"
    # one request of max_model_len 256 needs 16 blocks
    needed = 16 * 16 * QWEN_TINY.kv_bytes_per_token
    assert _failure(int((held + b.activation_peak + needed // 2) / 0.9)) == "kv_cache_below_one_max_model_len_request"
    assert _failure(int((held + b.activation_peak + 2 * needed) / 0.9)) is None
    # CUDA graphs come out of what gpu_memory_utilization leaves free
    assert _failure(BIG, gpu_memory_utilization=1.0) == "cuda_oom_warming_up_sampler"


def test_bad_flags_name_themselves():
    with pytest.raises(InputError, match="--max-lora-rank 12: vLLM accepts only 8, 16, 32"):
        vllm_memory(QWEN_TINY, BIG, FLAGS, 4, 12)
    with pytest.raises(InputError, match=r"--max-cpu-loras \(2\) must be >= --max-loras \(4\)"):
        vllm_memory(QWEN_TINY, BIG, FLAGS, 4, 8, max_cpu_loras=2)
    with pytest.raises(InputError, match="--max-model-len 512 is above the model's max_position_embeddings 256"):
        vllm_memory(QWEN_TINY, BIG, MemoryFlags(max_model_len=512), 4, 8)


def test_fit_recovers_the_non_torch_bytes_it_was_made_with():
    total = 4 * 1024 * MIB
    made = [(s, r, vllm_memory(QWEN_TINY, total, FLAGS, s, r, non_torch_bytes=7 * MIB).kv_tokens)
            for s in (1, 2, 4, 8) for r in (8, 16)]
    fitted = fit_non_torch_bytes(QWEN_TINY, total, FLAGS, made)
    assert abs(fitted - 7 * MIB) <= 16 * QWEN_TINY.kv_bytes_per_token  # within a block


LLAMA_8B = resolve_model("meta-llama/Llama-3.1-8B-Instruct")
QWEN_7B = resolve_model("Qwen/Qwen2.5-7B-Instruct")
H100_80 = resolve_gpu("h100-80gb").total_bytes


def _tokens(arch: ModelArchitecture, slots: int, rank: int, utilization: float = 0.9) -> int:
    b = vllm_memory(arch, H100_80, MemoryFlags(gpu_memory_utilization=utilization, max_model_len=32768), slots, rank)
    return b.kv_tokens if b.starts else 0


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([LLAMA_8B, QWEN_7B]), st.integers(1, 96), st.integers(0, 4))
@example(QWEN_7B, 18, 0)  # the allocator alone would free ~90 MiB at the 19th rank-8 slot
def test_more_slots_or_rank_never_give_more_kv(arch, slots, rank_index):
    rank, larger = VLLM_MAX_LORA_RANKS[rank_index], VLLM_MAX_LORA_RANKS[rank_index + 1]
    here = _tokens(arch, slots, rank)
    assert _tokens(arch, slots + 1, rank) <= here
    assert _tokens(arch, slots, larger) <= here


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([LLAMA_8B, QWEN_7B]), st.integers(1, 96), st.sampled_from([8, 16, 64]),
       st.floats(0.5, 0.94), st.floats(0.001, 0.05))
def test_more_utilization_never_gives_less_kv(arch, slots, rank, utilization, more):
    # up to 0.95: above it the memory left for CUDA graphs can run out (a start failure of its own)
    assert _tokens(arch, slots, rank, utilization + more) >= _tokens(arch, slots, rank, utilization)


def test_a_derived_kv_model_prices_any_accepted_rank():
    kv = kv_model_for(QWEN_7B, resolve_gpu("h100-80gb"), MemoryFlags(max_model_len=32768))
    assert kv.capacity_tokens is None and kv.ranks() == list(VLLM_MAX_LORA_RANKS)
    assert kv.tokens(8, 512) < kv.tokens(8, 64) < kv.tokens(8, 8)
    most = kv.max_slots(64)
    assert kv.tokens(most, 64) > 0
    assert vllm_memory(QWEN_7B, H100_80, MemoryFlags(max_model_len=32768), most + 1, 64).starts is False


def _profile_tokens(kv, slots: int, rank: int) -> int:
    try:
        return kv.tokens(slots, rank)
    except InfeasibleConfigError:
        return 0


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["llama-3.1-8b-instruct", "qwen-2.5-7b-instruct-reference"]), st.integers(1, 420),
       st.integers(0, 3))
def test_a_profile_joins_measurements_and_model_monotonically(name, slots, rank_index):
    # measured table where it covers the point, the memory model joined to it elsewhere
    kv = load_profile(name).kv
    rank, larger = VLLM_MAX_LORA_RANKS[rank_index], VLLM_MAX_LORA_RANKS[rank_index + 1]
    here = _profile_tokens(kv, slots, rank)
    assert _profile_tokens(kv, slots + 1, rank) <= here
    assert _profile_tokens(kv, slots, larger) <= here
