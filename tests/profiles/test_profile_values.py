"""Every value of a profile is checked when it loads, and a mistake names its field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from loratwin.errors import InputError
from loratwin.profiles import load_profile

DATA = Path(__file__).resolve().parents[2] / "src" / "loratwin" / "profiles" / "data"
GOOD = yaml.safe_load((DATA / "llama-3.1-8b-instruct.yaml").read_text())
NAN, INF = float("nan"), float("inf")


def _set(path: tuple, value):
    def change(data: dict) -> None:
        *parents, last = path
        for key in parents:
            data = data[key]
        data[last] = value

    return change


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        # a step of 1e13 ms overflowed the engine's nanosecond clock into a step of no time at all
        (("step_time", "base_ms"), 1e13, r"step_time\.base_ms: must be a finite number of ms from 0 to 3,600,000"),
        (("step_time", "base_ms"), INF, r"step_time\.base_ms: must be a finite number"),
        (("step_time", "per_context_token_ms"), NAN, r"step_time\.per_context_token_ms: must be a finite number"),
        (("step_time", "lora_step_ms"), -1.0, r"step_time\.lora_step_ms: must be a finite number"),
        (("step_time", "lora_factor_base"), 0.0, r"step_time\.lora_factor_base: Input should be greater than 0"),
        (("step_time", "lora_factor_per_adapter"), 1e6, r"step_time\.lora_factor_per_adapter: .* from 0 to 100"),
        (("scheduler_overhead", "intercept_ms"), -INF, r"scheduler_overhead\.intercept_ms: must be a finite"),
        (("adapter_load", "cpu_to_gpu_ms", "16", "8"), NAN, r"adapter_load\.cpu_to_gpu_ms\.16\.8: must be a finite"),
        (("adapter_load", "disk_to_cpu_ms", "32", "32"), -3.0, r"adapter_load\.disk_to_cpu_ms\.32\.32: must be"),
        (("adapter_load", "disk_to_cpu_ms", "16"), {}, r"adapter_load\.disk_to_cpu_ms\.16: Dictionary should have"),
        (("adapter_load", "cpu_to_gpu_ms"), {}, r"adapter_load\.cpu_to_gpu_ms: Dictionary should have"),
        (("kv", "capacity_tokens", "16", "32"), -5, r"kv\.capacity_tokens\.16\.32: Input should be greater than 0"),
        (("kv", "capacity_tokens", "16", "32"), 0, r"kv\.capacity_tokens\.16\.32: Input should be greater than 0"),
        (("kv", "capacity_tokens", "16", "32"), 10**12, r"kv\.capacity_tokens\.16\.32: Input should be less than"),
        # one token made a server of -1 blocks: two blocks of block_size (16) tokens at least
        (("kv", "capacity_tokens", "16", "32"), 1, r"kv\.capacity_tokens: at max_lora_rank 16, max_loras 32: 1 token, "
                                                  r"fewer than 2 KV blocks of kv\.block_size 16 tokens \(32 tokens"),
        (("kv", "capacity_tokens", "16", "32"), 31, r"kv\.capacity_tokens: at max_lora_rank 16, max_loras 32: 31 tokens"),
        (("kv", "capacity_tokens", "16"), {}, r"kv\.capacity_tokens\.16: Dictionary should have"),
        (("kv", "capacity_tokens"), {}, r"kv\.capacity_tokens: Dictionary should have"),
        (("kv", "capacity_tokens"), {0: {8: 1000}}, r"kv\.capacity_tokens\.0\.\[key\]: Input should be greater"),
        (("kv", "block_size"), 0, r"kv\.block_size: Input should be greater than 0"),
        (("kv", "measured_max_num_seqs"), -1, r"kv\.measured_max_num_seqs: Input should be greater than 0"),
        (("generation", "output_tokens_ratio"), NAN, r"generation\.output_tokens_ratio: Input should be a finite"),
        (("tails", "metrics_scrape_ms_per_adapter"), -1.0, r"tails\.metrics_scrape_ms_per_adapter: must be a finite"),
        (("tails", "metrics_scrape_ms_per_series"), True, r"tails\.metrics_scrape_ms_per_series: must be a number of ms, got true"),
        (("tails", "metrics_scrape_ms_per_listed_name"), -1e-6, r"tails\.metrics_scrape_ms_per_listed_name: must be a finite"),
        (("step_time", "base_ms"), False, r"step_time\.base_ms: must be a number of ms, got false"),
        (("tails", "metrics_scrape_blocking_share"), 1.5, r"tails\.metrics_scrape_blocking_share: Input should be less"),
        (("tails", "metrics_scrape_cv"), -0.1, r"tails\.metrics_scrape_cv: Input should be greater"),
        (("tails", "metrics_poll_interval_s"), 0.0,
         r"tails\.metrics_poll_interval_s: Input should be greater than or equal to 0\.001"),
        (("tails", "metrics_poll_interval_s"), 1e-9,
         r"tails\.metrics_poll_interval_s: Input should be greater than or equal to 0\.001"),
    ],
)
def test_bad_values_are_refused_at_load_naming_the_field(tmp_path, path, value, expected):
    data = copy.deepcopy(GOOD)
    _set(path, value)(data)
    profile_file = tmp_path / "p.yaml"
    profile_file.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=rf"p\.yaml: {expected}"):
        load_profile(profile_file)


def test_several_mistakes_are_one_line_with_the_missing_fields_together(tmp_path):
    data = copy.deepcopy(GOOD)
    del data["step_time"]["base_ms"]
    del data["adapter_load"]["cpu_to_gpu_ms"]
    data["step_time"]["per_seq_ms"] = -1.0
    profile_file = tmp_path / "p.yaml"
    profile_file.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError) as caught:
        load_profile(profile_file)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"profile {profile_file}: missing fields step_time.base_ms, adapter_load.cpu_to_gpu_ms; "
                              "step_time.per_seq_ms: must be a finite number")


def test_the_smallest_kv_capacity_loads_and_runs(tmp_path):
    data = copy.deepcopy(GOOD)
    data["kv"]["capacity_tokens"]["16"]["32"] = 32  # two blocks of 16 tokens
    profile_file = tmp_path / "p.yaml"
    profile_file.write_text(yaml.safe_dump(data))
    assert load_profile(profile_file).kv.tokens(32, 16) == 32


def test_the_largest_allowed_values_load(tmp_path):
    data = copy.deepcopy(GOOD)
    data["step_time"]["base_ms"] = 3_600_000.0
    data["scheduler_overhead"]["intercept_ms"] = -10.0  # MIN_INTERCEPT_MS: a step cannot cost much below nothing
    data["kv"]["capacity_tokens"]["16"]["32"] = 1_000_000_000
    profile_file = tmp_path / "p.yaml"
    profile_file.write_text(yaml.safe_dump(data))
    assert load_profile(profile_file).step_time.base_ms == 3_600_000.0


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"\xff\xfe\x00\x01 binary", r"not a text file"), (b"name: x\x00\n", r"NUL bytes")],
)
def test_a_binary_profile_file_is_one_error(tmp_path, content, expected):
    path = tmp_path / "p.yaml"
    path.write_bytes(content)
    with pytest.raises(InputError, match=expected):
        load_profile(path)


def test_a_folder_named_like_a_profile_is_named_as_a_folder(tmp_path):
    (tmp_path / "p.yaml").mkdir()
    with pytest.raises(InputError, match=r"p\.yaml is a folder; expected a profile YAML file"):
        load_profile(tmp_path / "p.yaml")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        (("scheduler_overhead", "intercept_ms"), -1000, r"intercept_ms: must be a finite number of ms from -10"),
        (("tokenizer",), "nope", r"tokenizer: unknown tokenizer 'nope'; expected the name of a length table: "),
    ],
)
def test_an_impossible_intercept_or_an_unknown_tokenizer_is_refused(tmp_path, field, value, expected):
    data = copy.deepcopy(GOOD)
    target = data
    for key in field[:-1]:
        target = target.setdefault(key, {})
    target[field[-1]] = value
    profile_file = tmp_path / "p.yaml"
    profile_file.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=expected):
        load_profile(profile_file)
