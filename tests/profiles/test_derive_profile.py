"""A derived profile: its parts, its flags' checks, its name and tokenizer, and the YAML it is written as."""

from __future__ import annotations

import pytest

from loratwin.errors import InputError
from loratwin.profiles.derive.catalog import resolve_gpu, resolve_model
from loratwin.profiles.derive.memory import MemoryFlags
from loratwin.profiles.derive.profile import (
    derive_profile,
    derived_profile_yaml,
    profile_name,
    serve_flags,
    tokenizer_table_for,
)
from loratwin.profiles.derive.roofline import load_roofline_fit, step_time_model
from loratwin.profiles.load import profile_from_yaml_text
from loratwin.profiles.model import KVCapacityModel

LLAMA = resolve_model("meta-llama/Llama-3.1-8B-Instruct")
KV = KVCapacityModel(capacity_tokens={16: {8: 100_000, 64: 90_000}})


def test_derived_profile_holds_the_roofline_and_the_fit_and_says_it_is_derived():
    gpu = resolve_gpu("h200")
    profile = derive_profile(LLAMA, gpu, MemoryFlags(max_num_seqs=512), kv=KV, tokenizer="llama-3.1-8b-instruct")
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
    ({"gpu_memory_utilization": 0.0}, r"--gpu-memory-utilization: Input should be greater than 0, got 0.0"),
    ({"gpu_memory_utilization": float("nan")}, "--gpu-memory-utilization: Input should be a finite number, got nan"),
    ({"max_num_seqs": 0}, "--max-num-seqs: Input should be greater than 0, got 0"),
    ({"max_num_batched_tokens": 10**8}, "--max-num-batched-tokens: Input should be less than or equal to 10000000"),
    ({"max_num_seqs": 4096}, r"--max-num-batched-tokens 2048: vLLM needs at least --max-num-seqs \(4096\)"),
    ({"max_model_len": 131_073}, r"--max-model-len 131073: above the model's max_position_embeddings \(131,072\)"),
])
def test_flags_vllm_would_refuse_name_themselves(flags, message):
    with pytest.raises(InputError, match=message):
        serve_flags(LLAMA, **flags)


def test_derive_checks_the_flags_it_is_given():
    with pytest.raises(InputError, match="--max-num-batched-tokens 100: vLLM needs at least --max-num-seqs"):
        derive_profile(LLAMA, resolve_gpu("h200"), MemoryFlags(max_num_seqs=256, max_num_batched_tokens=100), kv=KV)


def test_max_model_len_defaults_to_the_models_and_the_memory_model_sizes_kv():
    assert serve_flags(LLAMA, max_num_seqs=2048).max_model_len == 131_072
    arch = resolve_model("Qwen/Qwen2.5-7B-Instruct")
    qwen = derive_profile(arch, resolve_gpu("h100-64gb"), serve_flags(arch, max_num_seqs=2048))
    assert qwen.kv.memory is not None and not qwen.kv.capacity_tokens  # the memory model alone, nothing measured
    assert qwen.kv.tokens(8, 16) > qwen.kv.tokens(64, 16) > 0


def test_names_and_tokenizer_tables():
    gpu = resolve_gpu("l4")
    assert profile_name(resolve_model("Qwen/Qwen2.5-7B-Instruct"), gpu) == "qwen2.5-7b-instruct_l4-derived"
    assert profile_name(LLAMA.model_copy(update={"name": "models/my-llama/config.json"}), gpu) == "my-llama_l4-derived"
    tables = ["llama-3.1-8b-instruct", "qwen-2.5-7b-instruct"]
    assert tokenizer_table_for("Qwen/Qwen2.5-7B-Instruct", tables) == "qwen-2.5-7b-instruct"
    assert tokenizer_table_for("meta-llama/Llama-3.1-8B-Instruct", tables) == "llama-3.1-8b-instruct"
    assert tokenizer_table_for("mistralai/Mistral-7B-Instruct-v0.3", tables) is None


def test_a_model_the_gpu_cannot_start_is_refused_with_the_cause():
    from loratwin.errors import InputError
    from loratwin.profiles.derive.catalog import resolve_gpu, resolve_model
    from loratwin.profiles.derive.memory import MemoryFlags
    from loratwin.profiles.derive.profile import derive_profile

    with pytest.raises(InputError, match="weights 27.5 GiB of 20.2 GiB"):
        derive_profile(resolve_model("Qwen/Qwen2.5-14B-Instruct"), resolve_gpu("l4"))
    with pytest.raises(InputError, match="lower --max-model-len"):
        derive_profile(resolve_model("meta-llama/Llama-3.1-8B-Instruct"), resolve_gpu("l4"))
    fits = derive_profile(resolve_model("meta-llama/Llama-3.1-8B-Instruct"), resolve_gpu("l4"),
                          MemoryFlags(max_num_seqs=256, max_model_len=4096))
    assert fits.server_flags().max_num_seqs == 256


def test_commands_and_the_twin_use_the_profiles_server_flags():
    from loratwin.plan.placement.result import vllm_command
    from loratwin.profiles import load_profile
    from loratwin.profiles.derive.catalog import resolve_gpu, resolve_model
    from loratwin.profiles.derive.memory import MemoryFlags
    from loratwin.profiles.derive.profile import derive_profile
    from loratwin.twin.config import ServerConfig, resolve_server
    from loratwin.workload import reference_layout

    derived = derive_profile(resolve_model("meta-llama/Llama-3.1-8B-Instruct"), resolve_gpu("l4"),
                             MemoryFlags(max_num_seqs=256, max_model_len=4096, gpu_memory_utilization=0.85))
    command = vllm_command(derived.model, ["a"], 1, 8, "./adapters", derived.serve_arguments())
    assert command[command.index("--max-num-seqs") + 1] == "256"
    assert command[command.index("--max-model-len") + 1] == "4096"
    assert command[command.index("--gpu-memory-utilization") + 1] == "0.85"
    workload = reference_layout(4, [0.1], [8], 0)
    assert resolve_server(ServerConfig(max_loras=2), workload, derived).max_num_seqs == 256
    # the built-in profiles keep the reference runs' flags, and vLLM's defaults are not repeated
    builtin = load_profile("llama-3.1-8b-instruct")
    assert builtin.serve_arguments() == ["--max-num-seqs", "2048", "--max-num-batched-tokens", "2048"]
    assert resolve_server(ServerConfig(max_loras=2), workload, builtin).max_num_seqs == 2048


def test_a_derived_profile_borrows_the_reference_tails_and_says_so():
    from loratwin.profiles import load_profile
    from loratwin.profiles.derive.profile import borrowed_tails
    from loratwin.profiles.derive.roofline import load_roofline_fit

    tails = borrowed_tails(load_roofline_fit())
    reference = load_profile("llama-3.1-8b-instruct").tails
    assert tails.first_use_stall_ms == reference.first_use_stall_ms and tails.scrape_on
    assert tails.metrics_scrape_ms_per_adapter == reference.metrics_scrape_ms_per_adapter
    assert tails.provenance.startswith("borrowed from the built-in profile llama-3.1-8b-instruct")
