"""The roofline step time and the derived adapter loads: each term by hand on a tiny architecture, the
inverse used by the fit, and two invariants (more bandwidth or compute is never slower; a bigger model is
never faster)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loratwin.profiles.derive.adapter_loads import adapter_load_model, cpu_to_gpu_ms, disk_to_cpu_ms
from loratwin.profiles.derive.catalog import GpuSpec, ModelArchitecture, builtin_models, resolve_model
from loratwin.profiles.derive.roofline import (
    AdapterLoadFactors,
    RooflineFactors,
    decode_flops_per_token,
    factors_from_step_time,
    load_roofline_fit,
    lora_adapter_bytes,
    lora_blocks_per_adapter,
    lora_blocks_per_token_slot,
    lora_kernel_launches,
    lora_shrink_blocks_per_rank,
    prefill_flops_per_token,
    step_time_model,
    weight_bytes,
)
from loratwin.profiles.model import Profile

# 2 layers, hidden 64, 4 query heads and 2 KV heads of 16, MLP 128, vocabulary 100, bf16
TINY = ModelArchitecture(
    name="tiny", architecture="LlamaForCausalLM", num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
    num_key_value_heads=2, head_dim=16, intermediate_size=128, vocab_size=100, max_position_embeddings=4096,
    tie_word_embeddings=False, dtype_bytes=2, qkv_bias=False,
)
# 1 GB/s, 1 TFLOPS, 1 GB/s PCIe: a term in ms is its count / 1e6 (bytes) or / 1e9 (FLOPs)
UNIT_GPU = GpuSpec(name="unit", description="unit", memory_gb=1, memory_bandwidth_gb_s=1, bf16_dense_tflops=1,
                   pcie_gb_s=1, datasheet="-")
FACTORS = RooflineFactors(
    step_overhead_ms=1.0, bandwidth_efficiency=0.5, decode_compute_efficiency=0.25, prefill_compute_efficiency=0.5,
    lora_launch_ms=0.01, lora_empty_block_ns=2.0, lora_block_ns=10.0, lora_rank_block_ns=100.0,
)


def test_counts_of_the_tiny_architecture_by_hand():
    # linear weights per layer: qkv 64x(64+32+32) + o 64x64 + gate/up 64x256 + down 128x64 = 36,864
    assert decode_flops_per_token(TINY) == 2 * (2 * 36_864 + 100 * 64)
    assert prefill_flops_per_token(TINY) == 2 * 2 * 36_864
    # every parameter but the embedding table: 2 x (36,864 + 2 norms of 64) + LM head 6,400 + final norm 64
    assert weight_bytes(TINY) == 2 * (2 * (36_864 + 128) + 6_400 + 64)
    # A and B per layer at rank 1: qkv 3x64 + 128, o 64 + 64, gate_up 2x64 + 256, down 128 + 64 = 1,024
    assert lora_adapter_bytes(TINY, 16) == 2 * 1_024 * 16 * 2
    assert lora_kernel_launches(TINY) == 2 * 4 * 2
    # shrink: split-K 8 x one rank block x 7 slices = 56 per block of 32 tokens; expand: one block of 128
    # output columns for each of the 7 slices per block of 64 tokens
    assert lora_blocks_per_token_slot(TINY) == pytest.approx(2 * (56 / 32 + 7 / 64))
    assert lora_blocks_per_adapter(TINY) == 2 * (56 + 7)
    assert lora_shrink_blocks_per_rank(TINY) == pytest.approx(2 * 56 / 16)


def test_expand_blocks_follow_the_widest_slice_of_a_layer():
    wide = TINY.model_copy(update={"intermediate_size": 129})  # gate and up need two blocks of 128 columns each
    assert lora_blocks_per_adapter(wide) - lora_blocks_per_adapter(TINY) == 2 * 2


def test_step_time_terms_by_hand():
    st_ = step_time_model(TINY, UNIT_GPU, FACTORS)
    assert st_.base_ms == pytest.approx(1.0 + weight_bytes(TINY) / 0.5e6)
    assert st_.per_context_token_ms == pytest.approx(256 / 0.5e6)  # 2 layers x K,V x 2 heads x 16 x 2 bytes
    assert st_.per_seq_ms == pytest.approx(160_256 / 0.25e9)
    assert st_.per_prefill_token_ms == pytest.approx(147_456 / 0.5e9)
    assert st_.lora_step_ms == pytest.approx(16 * 0.01)
    assert st_.lora_per_seq_per_slot_ms == pytest.approx(3.71875 * 2e-6)
    assert st_.lora_per_adapter_ms == pytest.approx(126 * 10e-6 + 65_536 / 0.5e6)
    assert st_.lora_per_rank_ms == pytest.approx(7 * 100e-6)
    assert st_.lora_per_slot_ms == 0.0
    assert (st_.lora_factor_base, st_.lora_factor_per_adapter) == (1.0, 0.0)


def test_the_fit_inverse_gives_back_the_factors():
    again = factors_from_step_time(step_time_model(TINY, UNIT_GPU, FACTORS), TINY, UNIT_GPU, FACTORS)
    for name, value in FACTORS.model_dump().items():
        assert getattr(again, name) == pytest.approx(value, rel=1e-6), name


def test_the_fit_inverse_refuses_a_prefill_term_of_zero():
    step = step_time_model(TINY, UNIT_GPU, FACTORS).model_copy(update={"per_prefill_token_ms": 0.0})
    with pytest.raises(ValueError, match="per_prefill_token_ms"):
        factors_from_step_time(step, TINY, UNIT_GPU, FACTORS)


LOADS = AdapterLoadFactors(cpu_to_gpu_ms_per_layer=0.05, cpu_to_gpu_padded_ms_per_layer=0.01,
                           disk_to_cpu_ms_per_layer=0.3, disk_ms_per_gb=500.0)


def test_adapter_loads_by_hand():
    # 2 layers x 4 LoRA layers; a rank-16 adapter is 65,536 bytes (0.066 ms over 1 GB/s)
    assert cpu_to_gpu_ms(TINY, UNIT_GPU, LOADS, 16, 16) == pytest.approx(8 * 0.05)
    assert cpu_to_gpu_ms(TINY, UNIT_GPU, LOADS, 32, 16) == pytest.approx(8 * 0.06)  # copied into part of the slot
    # a rank-512 adapter (2 MiB) takes longer over the link than the fixed costs
    assert cpu_to_gpu_ms(TINY, UNIT_GPU, LOADS, 512, 512) == pytest.approx(2 * 1_024 * 512 * 2 / 1e6)
    assert disk_to_cpu_ms(TINY, LOADS, 16) == pytest.approx(8 * 0.3 + 65_536 / 1e9 * 500)


def test_adapter_load_tables_cover_every_max_rank_and_rank_below_it():
    model = adapter_load_model(TINY, UNIT_GPU, LOADS)
    assert sorted(model.cpu_to_gpu_ms) == [8, 16, 32, 64, 128, 256, 320, 512]
    assert max(model.cpu_to_gpu_ms[8]) == 8 and max(model.disk_to_cpu_ms[512]) == 512
    assert model.cpu_to_gpu(16, 12) == model.cpu_to_gpu_ms[16][16]  # an unlisted rank: the next listed one


def test_shipped_fit_loads_and_was_made_on_llama_only():
    fit = load_roofline_fit()
    assert fit.fitted_on["model"] == "meta-llama/Llama-3.1-8B-Instruct" and fit.fitted_on["gpu"] == "h100-64gb"
    assert "scripts/fit_roofline.py" in fit.provenance
    assert "qwen" not in fit.provenance.lower()


# -- invariants -----------------------------------------------------------------------------------------

def _step_ms(arch: ModelArchitecture, gpu: GpuSpec, load: tuple[int, int, int, int, int, int]) -> float:
    running, prefill, context, adapters, slots, rank = load
    step = step_time_model(arch, gpu, load_roofline_fit().step_time)
    profile = Profile.model_construct(step_time=step, scheduler_overhead=load_roofline_fit().scheduler_overhead)
    return float(profile.step_cost(slots, rank).compute_ms(running, prefill, context, adapters))


loads = st.tuples(st.integers(1, 2048), st.integers(0, 2048), st.integers(0, 10**6), st.integers(0, 64),
                  st.integers(1, 384), st.sampled_from([8, 16, 32, 64]))
gpus = st.builds(lambda bw, tf: UNIT_GPU.model_copy(update={"memory_bandwidth_gb_s": bw, "bf16_dense_tflops": tf}),
                 st.floats(100, 10_000), st.floats(50, 5_000))
architectures = st.sampled_from(builtin_models()).map(resolve_model)


@given(architectures, gpus, st.floats(1.0, 10.0), st.sampled_from(["memory_bandwidth_gb_s", "bf16_dense_tflops"]), loads)
def test_more_bandwidth_or_compute_is_never_slower(arch, gpu, factor, figure, load):
    faster = gpu.model_copy(update={figure: getattr(gpu, figure) * factor})
    assert _step_ms(arch, faster, load) <= _step_ms(arch, gpu, load) * (1 + 1e-12)


GROWABLE = ("num_hidden_layers", "hidden_size", "intermediate_size", "vocab_size", "head_dim", "num_attention_heads")


@given(architectures, st.sampled_from(GROWABLE), st.integers(1, 4096), gpus, loads)
def test_a_bigger_model_is_never_faster(arch, field, more, gpu, load):
    bigger = arch.model_copy(update={field: getattr(arch, field) + more})
    assert _step_ms(bigger, gpu, load) >= _step_ms(arch, gpu, load) * (1 - 1e-12)


@given(architectures, gpus, loads)
def test_more_kv_heads_are_never_faster(arch, gpu, load):
    if arch.num_key_value_heads < arch.num_attention_heads:
        bigger = arch.model_copy(update={"num_key_value_heads": arch.num_key_value_heads + 1})
        assert _step_ms(bigger, gpu, load) >= _step_ms(arch, gpu, load) * (1 - 1e-12)
