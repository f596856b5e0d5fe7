"""Replaying real runs, error measures, calibration pieces, and the validate/calibrate commands."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from loratwin.errors import InputError
from loratwin.profiles import load_profile
from loratwin.profiles.model import PlacementModel
from loratwin.validate import error_table, half_smape, load_runs, replay_runs, run_workload
from loratwin.validate.calibrate import (
    calibrate,
    fit_adapter_loads,
    fit_base_step,
    fit_kv_capacity,
    fit_output_ratio,
    fit_scheduler_overhead,
    fit_step_time_on_runs,
)
from loratwin.validate.errors import bias, mape
from loratwin.validate.replay import STEP_TERM_FIELDS
from loratwin.validate.runs import LATENCY_METRICS

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
RUNS_CSV = SHARED / "real-vllm" / "runs.csv"
CALIBRATION = SHARED / "calibration"
needs_data = pytest.mark.skipif(not RUNS_CSV.is_file(), reason="reference measurements not present")


def test_error_measures():
    assert half_smape([100, 200], [100, 200]) == 0
    assert half_smape([100], [300]) == pytest.approx(50.0)  # |100-300| / (100+300)
    assert mape([100], [110]) == pytest.approx(10.0)
    assert bias([100, 100], [110, 90]) == pytest.approx(0.0)
    assert bias([100], [110]) == pytest.approx(10.0)


def _write_runs(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@needs_data
def test_load_runs_and_the_workload_of_a_run():
    runs = load_runs(RUNS_CSV)
    assert len(runs) == 822
    run = next(r for r in runs if r.status == "ok" and r.served_adapters == 128 and r.rate_values == (0.4, 0.8, 1.6))
    workload = run_workload(run, seed=0)
    rates = sorted(a.rate_req_s for a in workload.adapters)
    assert [rates.count(v) for v in run.rate_values] == list(run.rate_counts)
    assert [a.rank for a in workload.adapters[: len(run.rank_cycle)]] == list(run.rank_cycle)
    # the layout of rates over adapters depends on the seed, the counts do not
    assert [a.rate_req_s for a in run_workload(run, 1).adapters] != [a.rate_req_s for a in workload.adapters]


@needs_data
def test_bad_runs_file_names_line_and_column(tmp_path):
    rows = list(csv.DictReader(RUNS_CSV.open()))[:3]
    rows[1]["max_loras"] = "lots"
    _write_runs(tmp_path / "runs.csv", rows)
    with pytest.raises(InputError, match=r"line 3: max_loras must be an integer"):
        load_runs(tmp_path / "runs.csv")
    with pytest.raises(InputError, match="does not exist"):
        load_runs(tmp_path / "missing.csv")


@needs_data
def test_replay_predicts_start_failures_and_reports_errors():
    runs = load_runs(RUNS_CSV)
    oom = [r for r in runs if r.status == "oom_at_start"][:2]
    ok = [r for r in runs if r.has_metrics and r.served_adapters <= 16][:2]
    results = replay_runs(ok + oom, load_profile, seeds=(0,), workers=1, duration_s=120)
    assert [r.started for r in results] == [True, True, False, False]
    assert all("does not start" in r.failure for r in results[2:])
    table = error_table(results)
    assert {row["start_agreement"] for row in table} == {1.0}
    for r in results[:2]:
        assert r.total_tok_s > 0 and r.mean_itl_ms > 0
        assert r.terms_per_token.shape == r.terms_per_step.shape == (len(STEP_TERM_FIELDS),)


@needs_data
def test_calibration_pieces_reproduce_the_measurements():
    model = "llama-3.1-8b-instruct"
    kv = fit_kv_capacity(CALIBRATION / "kv_capacity.csv", model)
    assert kv.tokens(32, 16) == 284_176
    loads = fit_adapter_loads(CALIBRATION / "adapter_loading.csv", model)
    assert loads.cpu_to_gpu(16, 8) == pytest.approx(7.772142)
    sched = fit_scheduler_overhead(CALIBRATION / "scheduler_overhead.csv")
    assert sched.per_waiting_ms > 0 and sched.per_running_ms > 0
    base = fit_base_step(CALIBRATION / "decode_latency.csv", model)
    # a decode step of 300 running requests costs about 21 ms on the base model
    assert 18 < base["base_ms"] + 300 * base["per_seq_ms"] < 25
    runs = [r for r in load_runs(RUNS_CSV) if r.model == model and r.source_set == "dt_modelling"]
    assert 0.97 < fit_output_ratio(runs) <= 1.0


KV_CSV = "model,max_loras,max_lora_rank,max_num_seqs,kv_cache_tokens,feasible\nm,8,8,2048,{tokens},1\nm,16,8,2048,300000,1\n"
LOADS_CSV = ("model,status,max_lora_rank,adapter_rank,load_ms_mean,disk_load_ms_mean\n"
             "m,ok,16,{rank},{load},90\n")
SCHEDULER_CSV = ("gpu_loras,cpu_loras,avg_batch_size,avg_waiting_queue,scheduling_time_per_step_ms\n"
                 "8,8,5.8,0,0.04\n8,16,6.1,0.09,0.041\n")
DECODE_CSV = ("model,status,experiment_set,mean_running,input_tokens,output_tokens,mean_itl_ms\n"
              "m,ok,default_latency_output,700,5,100,{itl}\nm,ok,default_latency_output,800,5,200,44\n"
              "m,ok,default_latency_output,900,5,400,48\n")


@pytest.mark.parametrize(("fit", "text", "expected"), [
    (fit_kv_capacity, KV_CSV.format(tokens=-5), "line 2: kv_cache_tokens: Input should be greater than 0, got '-5'"),
    (fit_kv_capacity, KV_CSV.format(tokens=0), "line 2: kv_cache_tokens: Input should be greater than 0"),
    (fit_kv_capacity, KV_CSV.format(tokens=1), "line 2: kv_cache_tokens: at max_lora_rank 8, max_loras 8: 1 token, "
                                               "fewer than 2 KV blocks"),
    (fit_kv_capacity, KV_CSV.format(tokens=8.5), "line 2: kv_cache_tokens: must be a whole number, got '8.5'"),
    (fit_kv_capacity, KV_CSV.format(tokens=99999999999), "line 2: kv_cache_tokens: Input should be less than or "
                                                         "equal to 1000000000"),
    (fit_kv_capacity, KV_CSV.format(tokens=300000).replace("m,8,8,", "m,-1,8,"),
     "line 2: max_loras: Input should be greater than 0, got '-1'"),
    (fit_kv_capacity, KV_CSV.format(tokens=300000).replace("max_loras,", "slots,"), ": missing column max_loras"),
    (fit_kv_capacity, KV_CSV.format(tokens=300000).replace("m,8,8,2048,300000,1", "m,8,8,2048,,1"),
     "line 2: kv_cache_tokens: expected a number, got ''"),
    (fit_adapter_loads, LOADS_CSV.format(rank=16, load=-3), "line 2: load_ms_mean: must be a finite number of ms "
                                                            "from 0 to 3,600,000"),
    (fit_adapter_loads, LOADS_CSV.format(rank=16, load=1e12), "line 2: load_ms_mean: must be a finite number of ms"),
    (fit_adapter_loads, LOADS_CSV.format(rank=0, load=6), "line 2: adapter_rank: Input should be greater than 0"),
    (fit_scheduler_overhead, "", ": the file is empty"),
    (fit_scheduler_overhead, SCHEDULER_CSV.split("\n")[0] + "\n", ": no rows"),
    (fit_base_step, DECODE_CSV.format(itl=-1), "line 2: mean_itl_ms: must be a finite number of ms from 0"),
    (fit_base_step, DECODE_CSV.format(itl=0), "line 2: mean_itl_ms: Input should be greater than 0"),
], ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", None))
def test_a_bad_calibration_value_names_the_file_line_and_column(tmp_path, fit, text, expected):
    path = tmp_path / "measured.csv"
    path.write_text(text)
    args = (path,) if fit is fit_scheduler_overhead else (path, "m")
    with pytest.raises(InputError) as err:
        fit(*args)
    assert str(err.value).startswith(str(path)) and expected in str(err.value), err.value


@needs_data
def test_calibrated_profile_carries_the_placement_section():
    profile, _ = calibrate("llama-3.1-8b-instruct", CALIBRATION)
    assert profile.placement == PlacementModel()
    assert "placement" in profile.model_dump(mode="json")


@needs_data
def test_twin_in_the_loop_fit_runs_and_keeps_coefficients_non_negative():
    model = "qwen-2.5-7b-instruct"
    runs = [r for r in load_runs(RUNS_CSV) if r.model == model and r.has_metrics and r.served_adapters <= 32][:6]
    profile = load_profile(model)
    fitted, history = fit_step_time_on_runs(profile, runs, rounds=1, workers=1, duration_s=120)
    assert len(history) == 2
    assert all(v >= 0 for k, v in fitted.step_time.model_dump().items() if k != "lora_factor_base")
    assert fitted is min(history, key=lambda r: r.score).profile


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loratwin.cli", *args], capture_output=True, text=True, timeout=600)


@needs_data
def test_validate_command_writes_table_and_files(tmp_path):
    rows = [r for r in csv.DictReader(RUNS_CSV.open()) if r["source_set"] == "dt_modelling"]
    picked = [r for r in rows if r["status"] == "ok" and int(r["served_adapters"]) <= 16][:3]
    picked += [r for r in rows if r["status"] == "oom_at_start"][:1]
    _write_runs(tmp_path / "runs.csv", picked)
    proc = run_cli("validate", str(tmp_path / "runs.csv"), "--seeds", "1", "--workers", "1", "--json",
                   "--out", str(tmp_path / "val"))
    assert proc.returncode == 0, proc.stderr
    # stderr is not a terminal here: progress comes as plain lines, never silence
    assert "replaying 4 runs x 1 seed: 4/4" in proc.stderr
    table = json.loads(proc.stdout)
    assert table[0]["total_tok_s"]["n"] == 3
    assert table[0]["start_agreement"] == 1.0
    assert (tmp_path / "val" / "errors.md").read_text().startswith("| model |")
    written = list(csv.DictReader((tmp_path / "val" / "runs.csv").open()))
    assert len(written) == 4
    assert np.isclose(float(written[0]["measured_total_tok_s"]), float(picked[0]["total_tok_s"]))
    for name in LATENCY_METRICS:  # the tails: measured from the file, predicted by the twin
        assert np.isclose(float(written[0][f"measured_{name}"]), float(picked[0][name]))
        assert float(written[0][f"twin_{name}"]) > 0
        assert table[0][name]["n"] == 3
    assert table[0]["latency_regime"]["runs"] == sum(float(r["mean_ttft_ms"]) <= 10_000 for r in picked[:3])
    assert "TTFT p99" in (tmp_path / "val" / "errors.md").read_text()
    assert "| throughput err % (ours / published) | throughput MAPE / bias % |" in (tmp_path / "val" / "errors.md").read_text()
