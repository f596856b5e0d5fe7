"""The built-in profiles: loadable, consistent with the reference measurements they come from."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from loratwin.errors import InfeasibleConfigError, InputError
from loratwin.profiles import builtin_profiles, load_profile

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"


def test_builtin_profiles_load():
    assert builtin_profiles() == [
        "llama-3.1-8b-instruct", "llama-3.1-8b-instruct-reference",
        "qwen-2.5-7b-instruct", "qwen-2.5-7b-instruct-reference",
    ]
    for name in builtin_profiles():
        p = load_profile(name)
        assert p.name == name
        assert p.kv.block_size == 16
        assert p.tokenizer == name.removesuffix("-reference")


def test_default_profiles_are_written_by_calibrate():
    for name in ("llama-3.1-8b-instruct", "qwen-2.5-7b-instruct"):
        text = (ROOT / f"src/loratwin/profiles/data/{name}.yaml").read_text()
        assert text.startswith("# Written by: loratwin calibrate --model " + name)
        assert load_profile(name).fitted == "calibrated"


def test_kv_capacity_lookup_and_interpolation():
    p = load_profile("llama-3.1-8b-instruct")
    assert p.kv.tokens(32, 16) == 284_176  # measured point
    assert p.kv.tokens(8, 8) == 305_104
    # halfway between 32 (295,232) and 64 (282,640) at rank 8
    assert p.kv.tokens(48, 8) == round((295_232 + 282_640) / 2)
    # below the smallest measured point: the memory model, which adds 4 slots' worth of rank-8
    # LoRA buffers (52,477,952 bytes each by hand) at 131,072 bytes per token, but never less than there
    fewer, at8 = p.kv.breakdown(4, 8).kv_tokens, p.kv.breakdown(8, 8).kv_tokens
    assert abs(fewer - at8 - 4 * 52_477_952 / 131_072) <= 3 * 16
    assert p.kv.tokens(4, 8) == max(fewer, 305_104)


def test_kv_capacity_without_a_memory_model_keeps_to_the_table():
    kv = load_profile("llama-3.1-8b-instruct").kv.model_copy(update={"memory": None})
    assert kv.tokens(4, 8) == 305_104  # below the smallest measured point: that point
    with pytest.raises(InputError, match="max_lora_rank"):
        kv.tokens(32, 64)
    with pytest.raises(InputError, match="measured up to"):
        kv.tokens(500, 8)


def test_infeasible_configurations_do_not_start():
    p = load_profile("llama-3.1-8b-instruct")
    with pytest.raises(InfeasibleConfigError, match="does not start"):
        p.kv.tokens(128, 32)
    with pytest.raises(InfeasibleConfigError):
        p.kv.tokens(112, 32)  # next to an infeasible measured point
    with pytest.raises(InfeasibleConfigError):
        p.kv.tokens(128, 64)  # more rank than a measured point that did not start
    with pytest.raises(InfeasibleConfigError, match="less than one request of max_model_len 131072"):
        p.kv.tokens(500, 8)


def test_unmeasured_ranks_come_from_the_memory_model():
    p = load_profile("llama-3.1-8b-instruct")
    at32, at64 = p.kv.breakdown(32, 32), p.kv.breakdown(32, 64)
    # 32 slots x 32 more ranks of LoRA buffers, 5,773,312 bytes per slot and rank by hand (the
    # layers' A and B stacks, and those of the LM head and the embeddings)
    assert at64.lora_buffers - at32.lora_buffers == 32 * 32 * 5_773_312
    # rank 64 at 32 slots: the memory model, within the measured size at rank 32 less those buffers
    # and what the allocator holds beyond them
    more = at64.lora_buffers + at64.allocator_slack - at32.lora_buffers - at32.allocator_slack
    assert p.kv.tokens(32, 64) == at64.kv_tokens
    assert abs(at64.kv_tokens - (258_176 - more / 131_072)) <= 0.005 * 258_176
    with pytest.raises(InputError, match="--max-lora-rank 48: vLLM accepts only 8, 16, 32, 64, 128, 256, 320, 512"):
        p.kv.tokens(32, 48)


def test_profile_file_errors_name_the_field(tmp_path):
    bad = tmp_path / "p.yaml"
    data = yaml.safe_load((ROOT / "src/loratwin/profiles/data/llama-3.1-8b-instruct-reference.yaml").read_text())
    data["step_time"]["base_ms"] = -1
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=r"step_time\.base_ms"):
        load_profile(bad)
    bad.write_text("name: [unclosed\n")
    with pytest.raises(InputError, match="line"):
        load_profile(bad)


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="reference measurements not present")
def test_builtin_profiles_are_what_the_build_script_writes():
    spec = importlib.util.spec_from_file_location("build", ROOT / "scripts" / "build_reference_profiles.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    for name, data in build.build(SHARED_DATA).items():
        shipped = yaml.safe_load((ROOT / f"src/loratwin/profiles/data/{name}-reference.yaml").read_text())
        assert shipped == yaml.safe_load(yaml.safe_dump(data)), name
