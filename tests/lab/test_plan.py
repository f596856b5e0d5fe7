"""The calibration plan: few runs, about two GPU-hours, each fitted term identified, commands that do
what the runs say."""

from __future__ import annotations

import math
import shlex
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loratwin.errors import InputError
from loratwin.lab.commands import adapter_folders_needed, adapter_paths, client_commands, run_script, serve_command
from loratwin.lab.plan import MAX_RUNS, PlanFlags, plan_experiments, total_gpu_s
from loratwin.lab.runs_table import COLUMNS
from loratwin.profiles.derive.catalog import builtin_gpus, builtin_models, resolve_gpu, resolve_model

LLAMA = resolve_model("meta-llama/Llama-3.1-8B-Instruct")
H100 = resolve_gpu("h100-64gb")


def check_run_invariants(run) -> None:
    assert sum(run.rate_counts) == run.served_adapters
    assert run.max_loras <= run.served_adapters == run.max_cpu_loras  # vLLM: --max-cpu-loras >= --max-loras
    assert max(run.adapter_rank_cycle) == run.max_lora_rank
    assert list(run.rate_values) == sorted(run.rate_values) and all(r > 0 for r in run.rate_values[1:])
    assert run.rate_values[0] > 0 or run.rate_counts[0] < run.served_adapters  # someone is sent to
    levels = Counter(run.adapter_level(i) for i in range(run.served_adapters))
    assert [levels[k] for k in range(len(run.rate_values))] == list(run.rate_counts)


def test_the_reference_gpu_plan_is_short_and_identifies_each_term():
    runs = plan_experiments(LLAMA, H100)
    assert len(runs) <= MAX_RUNS and len({r.run_id for r in runs}) == len(runs)
    assert 1.5 * 3600 <= total_gpu_s(runs) <= 2.5 * 3600
    for run in runs:
        check_run_invariants(run)
        assert run.duration_s <= 300
    base = [r for r in runs if "base" in r.run_id]
    assert {r.max_loras for r in base} == {8} and min(r.load_share for r in base) < 0.2 < 1 < max(r.load_share for r in base)
    assert len({r.max_loras for r in runs}) >= 4  # LoRA slots
    assert len({r.served_adapters - r.idle_adapters for r in runs}) >= 4  # adapters in use
    assert {r.max_lora_rank for r in runs} >= {8, 16, 32}
    assert any(r.served_adapters >= 4 * r.max_loras for r in runs)  # adapter loads
    assert {r.dataset for r in runs} == {"sharegpt", "random"}  # prefill and context
    assert len({(r.max_loras, r.max_lora_rank) for r in runs}) >= 8  # KV capacity points
    # the saturating base run sends more than the rough capacity (34 req/s): 14,197 tok/s measured
    assert base[-1].aggregate_rate_req_s > 34


def test_the_plan_is_deterministic_and_scales_with_the_gpu():
    assert plan_experiments(LLAMA, H100) == plan_experiments(LLAMA, H100)
    h200 = plan_experiments(LLAMA, resolve_gpu("h200"))
    l4 = plan_experiments(LLAMA, resolve_gpu("l4"))
    assert h200[0].aggregate_rate_req_s > plan_experiments(LLAMA, H100)[0].aggregate_rate_req_s > l4[0].aggregate_rate_req_s
    assert max(r.max_loras for r in h200) > max(r.max_loras for r in l4)


@settings(max_examples=40, deadline=None)
@given(model=st.sampled_from(builtin_models()), gpu=st.sampled_from(builtin_gpus()),
       utilization=st.floats(0.5, 0.95), seed=st.integers(0, 10))
def test_every_plan_holds_the_invariants_or_is_refused_with_a_reason(model, gpu, utilization, seed):
    flags = PlanFlags(gpu_memory_utilization=utilization, seed=seed)
    try:
        runs = plan_experiments(resolve_model(model), resolve_gpu(gpu), flags)
    except InputError as err:
        assert "do not fit" in str(err) or "no room for LoRA buffers" in str(err)
        return
    assert 0 < len(runs) <= MAX_RUNS
    for run in runs:
        check_run_invariants(run)
    assert total_gpu_s(runs) <= 2.5 * 3600


@pytest.mark.parametrize(("flags", "message"), [
    (PlanFlags(gpu_memory_utilization=1.5), "--gpu-memory-utilization: must be in (0, 1], got 1.5"),
    (PlanFlags(max_num_seqs=0), "--max-num-seqs: must be >= 1, got 0"),
    (PlanFlags(max_num_seqs=4096), "--max-num-batched-tokens 2048: vLLM requires at least --max-num-seqs (4096)"),
    (PlanFlags(max_model_len=1024), "--max-model-len: must be at least 2048"),
    (PlanFlags(seed=-1), "--seed must be >= 0"),
])
def test_bad_flags_are_named(flags, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        plan_experiments(LLAMA, H100, flags)


def test_a_model_too_large_for_the_gpu_is_refused():
    with pytest.raises(InputError, match="weights .* do not fit in 0.9 of the a10g's memory"):
        plan_experiments(resolve_model("Qwen/Qwen2.5-14B-Instruct"), resolve_gpu("a10g"))


def test_runs_are_runs_table_rows():
    for run in plan_experiments(LLAMA, H100):
        row = run.as_runs_row()
        assert set(row) <= set(COLUMNS)
        assert math.isclose(row["aggregate_rate_req_s"], sum(float(v) * int(c) for v, c in
                            zip(row["rate_values"].split(), row["rate_counts"].split(), strict=True)))


def test_the_commands_serve_and_send_what_the_run_says():
    for run in plan_experiments(LLAMA, H100):
        serve = serve_command(run, LLAMA.name)
        assert serve[:3] == ["vllm", "serve", LLAMA.name]
        for flag, value in (("--max-loras", run.max_loras), ("--max-lora-rank", run.max_lora_rank),
                            ("--max-cpu-loras", run.served_adapters), ("--max-num-seqs", 2048),
                            ("--max-num-batched-tokens", 2048), ("--gpu-memory-utilization", "0.9"),
                            ("--max-model-len", 4096)):
            assert serve[serve.index(flag) + 1] == str(value)
        assert {"--enable-lora", "--no-enable-prefix-caching"} <= set(serve)
        modules = serve[serve.index("--lora-modules") + 1:]
        assert len(modules) == run.served_adapters
        for i, (module, path) in enumerate(zip(modules, adapter_paths(run), strict=True)):
            assert module == f"lora-{i}={path}" and f"/rank-{run.adapter_rank(i)}/adapter-" in path
        sent: Counter[str] = Counter()
        clients = client_commands(run, LLAMA.name)
        assert len(clients) == sum(1 for r in run.rate_values if r > 0)
        for client in clients:
            names = client[client.index("--lora-modules") + 1:client.index("--metadata")]
            sent.update(names)
            meta = dict(item.split("=", 1) for item in client[client.index("--metadata") + 1:])
            rate, count = float(meta["loratwin_rate_values"]), int(meta["loratwin_rate_counts"])
            assert count == len(names) and meta["loratwin_clients"] == str(len(clients))
            assert float(client[client.index("--request-rate") + 1]) == pytest.approx(rate * count, rel=1e-5)
            assert int(client[client.index("--num-prompts") + 1]) == max(1, round(rate * count * run.duration_s))
            assert "--save-result" in client and client[client.index("--percentile-metrics") + 1] == "ttft,tpot,itl,e2el"
        assert sum(sent.values()) == len(sent) == run.served_adapters - run.idle_adapters  # each adapter: one client
        script = run_script(run, LLAMA.name)
        assert f"> ./runs/{run.run_id}/server.log 2>&1 &" in script and script.endswith("kill $server; wait $server")
        for line in script.splitlines():
            if not line.startswith("#"):
                shlex.split(line)  # every line is valid shell quoting


def test_ranks_meet_every_rate_level_and_adapter_folders_are_few():
    runs = plan_experiments(LLAMA, H100)
    loads = next(r for r in runs if "loads" in r.run_id)
    pairs = {(loads.adapter_rank(i), loads.adapter_level(i)) for i in range(loads.served_adapters)}
    assert len(pairs) == len(set(loads.adapter_rank_cycle)) * len(loads.rate_values)
    assert adapter_folders_needed(runs) == {8: 8, 16: 8, 32: 8}
