"""A derived profile: its parts, its flags' checks, its name and tokenizer, and the YAML it is written as."""

from __future__ import annotations

import pytest

from loratwin.errors import InputError
from loratwin.profiles.derive.catalog import resolve_gpu, resolve_model
from loratwin.profiles.derive.profile import (
    ServeFlags,
    derive_profile,
    derived_profile_yaml,
    profile_name,
    tokenizer_table_for,
)
from loratwin.profiles.derive.roofline import load_roofline_fit, step_time_model
from loratwin.profiles.load import profile_from_yaml_text
from loratwin.profiles.model import KVCapacityModel

LLAMA = resolve_model("meta-llama/Llama-3.1-8B-Instruct")
KV = KVCapacityModel(capacity_tokens={16: {8: 100_000, 64: 90_000}})


def test_derived_profile_holds_the_roofline_and_the_fit_and_says_it_is_derived():
    gpu = resolve_gpu("h200")
    profile = derive_profile(LLAMA, gpu, ServeFlags(max_num_seqs=512), kv=KV, tokenizer="llama-3.1-8b-instruct")
    fit = load_roofline_fit()
    assert profile.fitted == "derived" and profile.source.startswith("DERIVED") and "not validated" in profile.source
    assert profile.step_time == step_time_model(LLAMA, gpu, fit.step_time)
    assert profile.scheduler_overhead == fit.scheduler_overhead
    assert profile.generation.output_tokens_ratio == fit.output_tokens_ratio
    assert profile.kv is KV and profile.tokenizer == "llama-3.1-8b-instruct"
    assert profile.name == "llama-3.1-8b-instruct_h200-derived" and profile.model == LLAMA.name
    assert profile.adapter_load.cpu_to_gpu(32, 8) > profile.adapter_load.cpu_to_gpu(32, 32)


def test_more_bandwidth_gives_a_faster_base_step_and_the_same_lora_launch_cost():
    h100, h200 = (derive_profile(LLAMA, resolve_gpu(g), kv=KV) for g in ("h100-80gb", "h200"))
    assert h200.step_time.base_ms < h100.step_time.base_ms
    assert h200.step_time.lora_step_ms == h100.step_time.lora_step_ms


def test_yaml_says_derived_and_not_validated_and_loads_back():
    profile = derive_profile(LLAMA, resolve_gpu("h200"), kv=KV)
    text = derived_profile_yaml(profile, "loratwin profile derive --model x --gpu h200 --out p.yaml")
    head = text.splitlines()[:4]
    assert head[0].startswith("# DERIVED profile") and "NOT validated" in head[1]
    assert head[3] == "# Written by: loratwin profile derive --model x --gpu h200 --out p.yaml"
    assert profile_from_yaml_text(text, "p.yaml") == profile


@pytest.mark.parametrize(("flags", "message"), [
    (ServeFlags(gpu_memory_utilization=0.0), r"--gpu-memory-utilization: must be in \(0, 1\], got 0.0"),
    (ServeFlags(gpu_memory_utilization=float("nan")), r"--gpu-memory-utilization: must be in \(0, 1\], got nan"),
    (ServeFlags(max_num_seqs=0), "--max-num-seqs: must be an integer from 1 to 1,000,000, got 0"),
    (ServeFlags(max_num_batched_tokens=10**8), "--max-num-batched-tokens: must be an integer from 1 to 10,000,000"),
    (ServeFlags(max_num_seqs=4096), r"--max-num-batched-tokens 2048: vLLM needs at least --max-num-seqs \(4096\)"),
    (ServeFlags(max_model_len=131_073), r"--max-model-len: .* max_position_embeddings \(131,072\), got 131073"),
])
def test_flags_vllm_would_refuse_name_themselves(flags, message):
    with pytest.raises(InputError, match=message):
        derive_profile(LLAMA, resolve_gpu("h200"), flags, kv=KV)


def test_max_model_len_defaults_to_the_models():
    assert ServeFlags().checked(LLAMA).max_model_len == 131_072


def test_names_and_tokenizer_tables():
    gpu = resolve_gpu("l4")
    assert profile_name(resolve_model("Qwen/Qwen2.5-7B-Instruct"), gpu) == "qwen2.5-7b-instruct_l4-derived"
    assert profile_name(LLAMA.model_copy(update={"name": "models/my-llama/config.json"}), gpu) == "my-llama_l4-derived"
    tables = ["llama-3.1-8b-instruct", "qwen-2.5-7b-instruct"]
    assert tokenizer_table_for("Qwen/Qwen2.5-7B-Instruct", tables) == "qwen-2.5-7b-instruct"
    assert tokenizer_table_for("meta-llama/Llama-3.1-8B-Instruct", tables) == "llama-3.1-8b-instruct"
    assert tokenizer_table_for("mistralai/Mistral-7B-Instruct-v0.3", tables) is None
