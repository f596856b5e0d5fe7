"""The budget: sizes and durations, the limits, the estimates, and the checks that refuse work before it
allocates or starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loratwin import budget
from loratwin.budget import OverBudgetError, parse_size
from loratwin.errors import InputError


@pytest.fixture(autouse=True)
def fresh_budget(monkeypatch):
    """No limit from the environment and the default job, before and after each test."""
    for name in (budget.ENV_VAR, budget.TIME_ENV_VAR):
        monkeypatch.setenv(name, "x")  # recorded, so that whatever a test sets is undone
        monkeypatch.delenv(name)
    monkeypatch.setattr(budget, "_job", budget.Job())
    monkeypatch.setattr(budget, "_notify", None)
    monkeypatch.setattr(budget, "_announced_s", 0.0)
    monkeypatch.setattr(budget, "_memory_setting", budget.ENV_VAR)
    monkeypatch.setattr(budget, "_time_setting", budget.TIME_ENV_VAR)


# --- sizes and the limit ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["1e308", "99999999999999999999T", "1e400", "9223372036854775808"])
def test_sizes_beyond_int64_are_refused_as_too_large(text):
    with pytest.raises(InputError, match=r"^--max-memory: .* is too large: the largest size is .* \(2\^63 bytes\)"):
        parse_size(text)


def test_the_refusal_names_the_setting_the_user_used(monkeypatch):
    job = budget.Job("simulate", "simulate", 3600.0)
    monkeypatch.setenv(budget.ENV_VAR, "1G")  # so that what configure writes there is undone
    budget.configure("simulate", "10")
    with pytest.raises(OverBudgetError, match=r"\(limit 10 B, from --max-memory: raise it to allow this\)$"):
        budget.require(budget.adapters_estimate(10, 1.0, job=job), job)
    budget.configure("simulate")  # the variable --max-memory set is now the user's own
    with pytest.raises(OverBudgetError, match=r"\(limit 10 B, from LORATWIN_MAX_MEMORY: raise it to allow this\)$"):
        budget.require(budget.adapters_estimate(10, 1.0, job=job), job)


@pytest.mark.parametrize(("text", "expected"), [
    ("8G", 8_000_000_000), ("500M", 500_000_000), ("1.5GB", 1_500_000_000), ("12GiB", 12 * 2**30),
    (" 2g ", 2_000_000_000), ("1024", 1024), ("1e9", 1_000_000_000), ("64k", 64_000), ("3MiB", 3 * 2**20),
    ("1T", 10**12), ("100b", 100),
])
def test_sizes_parse(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "x", "8x", "-1G", "0", "0.1", "inf", "nan", "8i", "G", "1.2.3G", "8 G B"])
def test_bad_sizes_are_refused_naming_the_flag(text):
    with pytest.raises(InputError, match=r"^--max-memory: expected a size"):
        parse_size(text)
    with pytest.raises(InputError, match=r"^LORATWIN_MAX_MEMORY: "):
        parse_size(text, budget.ENV_VAR)


def test_the_limit_defaults_to_half_the_machine(monkeypatch):
    limit = budget.memory_limit()
    assert limit.bytes == pytest.approx(budget.machine_memory() / 2)
    assert "half of this machine's" in limit.source and not limit.from_setting
    monkeypatch.setattr(budget, "machine_memory", lambda: None)
    assert budget.memory_limit().bytes == budget.FALLBACK_MACHINE_BYTES / 2


def test_the_environment_sets_the_limit_and_a_bad_value_is_named(monkeypatch):
    monkeypatch.setenv(budget.ENV_VAR, "3G")
    limit = budget.memory_limit()
    assert limit.bytes == 3e9 and limit.from_setting
    monkeypatch.setenv(budget.ENV_VAR, "lots")
    with pytest.raises(InputError, match="LORATWIN_MAX_MEMORY: expected a size .* got 'lots'"):
        budget.memory_limit()
    with pytest.raises(InputError, match="LORATWIN_MAX_MEMORY"):
        budget.configure("simulate")  # named before any work


def test_the_flag_goes_into_the_environment_for_worker_processes(monkeypatch):
    monkeypatch.setenv(budget.ENV_VAR, "1M")
    job = budget.configure("simulate", "2G", kind="simulate", simulated_s=600, copies=3)
    assert budget.memory_limit().bytes == 2e9
    assert job == budget.current_job() == budget.Job("simulate", "simulate", 600.0, 3)
    with pytest.raises(InputError, match="^--max-memory: expected a size"):
        budget.configure("simulate", "2 gigs")


# --- estimates --------------------------------------------------------------------------------------


def test_estimates_grow_with_every_count():
    base = dict(adapters=100, requests=1e5, duration_s=3600, steps=1e4, samples=1800, periods=0)
    reference = budget.simulation_estimate(**base)
    for name in ("adapters", "requests", "steps", "samples", "periods"):
        bigger = budget.simulation_estimate(**(base | {name: base[name] * 10 + 1000}))
        assert bigger.bytes > reference.bytes and bigger.seconds >= reference.seconds, name
    assert budget.simulation_estimate(**base, copies=2).bytes > reference.bytes
    for estimate in (budget.layout_estimate, budget.recommendation_estimate,
                     lambda n: budget.placement_estimate(n, n * 0.1)):
        sizes = [estimate(n) for n in (1, 10, 10**3, 10**6, 10**9)]
        assert all(a.bytes < b.bytes and a.seconds < b.seconds for a, b in zip(sizes, sizes[1:], strict=False))


def test_a_command_prices_adapters_for_what_it_does_with_them():
    loaded = budget.adapters_estimate(10**6, 100.0)
    assert loaded.bytes == budget.layout_estimate(10**6).bytes
    simulated = budget.adapters_estimate(10**6, 100.0, job=budget.Job("simulate", "simulate", 3600.0))
    placed = budget.adapters_estimate(10**6, 100.0, job=budget.Job("place", "place"))
    assert simulated.bytes > loaded.bytes and placed.bytes > loaded.bytes
    assert simulated.what == "1e6 adapters and ~363,000 requests over 3600 s"  # 360,000 and 5 sigma
    # a file's adapters priced before their rates are read: no requests named (not "~0 requests")
    unread = budget.adapters_estimate(3, job=budget.Job("simulate-cluster", "simulate", 600.0, window_from="--duration"))
    assert unread.what == "3 adapters over 600 s (--duration)"


def test_the_refusal_is_one_line_with_the_estimate_and_the_limit(monkeypatch):
    monkeypatch.setenv(budget.ENV_VAR, "1G")
    budget.require(budget.layout_estimate(1000))  # well under
    job = budget.Job("simulate", "simulate", 3600.0)
    with pytest.raises(OverBudgetError) as refused:
        budget.require(budget.adapters_estimate(10**9, 10**9, job=job), job)
    message = str(refused.value)
    assert "\n" not in message and "[" not in message  # the CLI's printer reads brackets as markup
    assert message.startswith("simulate: about ") and " of memory and roughly " in message
    assert "needed for 1e9 adapters and ~3.6e12 requests over 3600 s" in message
    assert message.endswith("(limit 1.0 GB, from LORATWIN_MAX_MEMORY: raise it to allow this)")
    monkeypatch.delenv(budget.ENV_VAR)
    with pytest.raises(OverBudgetError, match=r"half of this machine's .*: set --max-memory or LORATWIN_MAX_MEMORY"):
        budget.require(budget.layout_estimate(1e15))
    with pytest.raises(OverBudgetError, match="^unbounded memory and roughly forever needed for"):
        budget.require(budget.simulation_estimate(1, float("inf"), 60))


def test_a_refusal_names_what_dominates_the_memory():
    samples = budget.simulation_estimate(4, None, 3600, samples=3.6e12, sample_interval_s=1e-9)
    assert samples.what == ("3.6e12 time-series samples, one every 1e-09 s (--sample-interval) over 3600 s, "
                            "for 4 adapters")
    traced = budget.simulation_estimate(1, 2, 1e9, samples=5e8, sample_interval_s=2.0,
                                        window_from="to the last arrival in t/trace.csv, at 1e+09 s")
    assert "over 1e9 s (to the last arrival in t/trace.csv, at 1e+09 s), for 1 adapter and ~2 requests" in traced.what
    assert budget.simulation_estimate(8, 1e6, 3600, steps=1e9).what.startswith("up to 1e9 engine steps over 3600 s")
    assert budget.simulation_estimate(8, 1e6, 3600, steps=1e3, samples=1800).what == "8 adapters and ~1e6 requests over 3600 s"


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("30min", 1800), ("2h", 7200),
                                               ("1.5h", 5400), ("1d", 86400), (" 2H ", 7200), ("1e4", 10_000)])
def test_durations_parse(text, seconds):
    assert budget.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "x", "2x", "-1h", "0", "0.5s", "inf", "nan", "1e400", "h", "2 h m"])
def test_bad_durations_are_refused_naming_the_flag(text):
    with pytest.raises(InputError, match=r"^--max-time: expected a duration"):
        budget.parse_duration(text)
    with pytest.raises(InputError, match=r"^LORATWIN_MAX_TIME: "):
        budget.parse_duration(text, budget.TIME_ENV_VAR)


def test_work_over_the_time_limit_is_refused_in_one_line(monkeypatch):
    assert budget.time_limit() == budget.TimeLimit(3600.0, "the default")
    job = budget.Job("place", "place")
    long = budget.placement_estimate(10**6, 600.0)  # memory within the limit; 45 hours
    with pytest.raises(OverBudgetError) as refused:
        budget.require(long, job)
    assert str(refused.value) == ("place: roughly 45 h of work estimated for placing 1e6 adapters "
                                  "(limit 1 h, the default: set --max-time or LORATWIN_MAX_TIME to raise it)")
    budget.configure("place", max_time="2d", kind="place")
    assert budget.time_limit().seconds == 2 * 86400 and os.environ[budget.TIME_ENV_VAR] == "2d"
    budget.require(long, job)
    monkeypatch.setenv(budget.TIME_ENV_VAR, "10m")
    with pytest.raises(OverBudgetError, match=r"\(limit 10 min, from --max-time: raise it"):
        budget.require(long, job)
    monkeypatch.setenv(budget.TIME_ENV_VAR, "soon")
    with pytest.raises(InputError, match="^LORATWIN_MAX_TIME: expected a duration"):
        budget.configure("place")  # named before any work
    with pytest.raises(InputError, match="^--max-time: expected a duration"):
        budget.configure("place", max_time="2 weeks")


def test_long_work_is_announced_once_and_a_sweep_is_announced_not_refused():
    notes: list[str] = []
    budget.configure("place", kind="place", notify=notes.append)
    budget.require(budget.placement_estimate(10, 1.0))  # seconds: nothing to say
    twenty = budget.placement_estimate(20_000, 600.0)
    budget.require(twenty)
    budget.require(twenty)  # the exact check after the early one
    assert notes == ["note: place: roughly 84 s of work estimated for placing 20,000 adapters (limit 1 h: --max-time)"]
    run = budget.simulation_estimate(384, 2e6, 3600)
    grid = budget.sweep_estimate(40_000, run, 2)
    assert grid.seconds > 3600 and grid.resumable
    budget.require(grid)
    assert notes[-1].startswith("note: place: roughly 17 h of work estimated for 40,000 runs on 2 workers")
    assert notes[-1].endswith("(stopped, it keeps what it finished and resumes)")


@pytest.mark.parametrize(("value", "words"), [(999, "999 B"), (1234567, "1.2 MB"), (12.6e9, "12.6 GB"),
                                              (1.2e15, "1.2 PB"), (3e20, "3e20 bytes")])
def test_sizes_in_words(value, words):
    assert budget.format_bytes(value) == words


def test_counts_and_durations_in_words():
    assert [budget.format_count(n) for n in (3600, 1e9, 3.6e12)] == ["3,600", "1e9", "3.6e12"]
    assert [budget.format_seconds(s) for s in (90, 7200, 86400 * 5, 1e10)] == ["90 s", "2 h", "5 days", "317 years"]
    assert [budget.format_seconds(s) for s in (60, 3600, 86400, 5400)] == ["1 min", "1 h", "1 day", "90 min"]
    assert [budget.format_window(s) for s in (3600, 1e9)] == ["3600 s", "1e9 s"]


def test_rows_are_counted_or_extrapolated_from_the_first_megabyte(tmp_path):
    small = tmp_path / "small.csv"
    small.write_text("a,b\n1,2\n3,4")
    assert budget.estimate_rows(small) == 3
    assert budget.estimate_rows(tmp_path / "missing.csv") == 0
    big = tmp_path / "big.csv"
    big.write_text("adapter_id,rank,rate\n" + "".join(f"adapter-{i},8,0.5\n" for i in range(300_000)))
    assert budget.estimate_rows(big) == pytest.approx(300_001, rel=0.1)


# --- the checks refuse before allocating --------------------------------------------------------------


def test_layouts_are_refused_before_any_adapter_is_built():
    from loratwin.workload import reference_layout, zipf_layout

    started = time.perf_counter()
    with pytest.raises(OverBudgetError, match="needed for 1e9 adapters"):
        reference_layout(10**9, [1.0], [8], 0)
    with pytest.raises(OverBudgetError, match="needed for 1e8 adapters"):
        zipf_layout(10**8, 40.0)
    assert time.perf_counter() - started < 1.0


def test_a_simulate_job_refuses_adapters_that_would_fit_as_a_layout_alone(monkeypatch):
    from loratwin.workload import reference_layout

    monkeypatch.setenv(budget.ENV_VAR, "1G")
    reference_layout(10_000, [1.0], [8], 0)  # 7 MB as a layout
    budget.configure("simulate", kind="simulate", simulated_s=3600)
    with pytest.raises(OverBudgetError, match=r"^simulate: .* 10,000 adapters and ~3.6e7 requests over 3600 s"):
        reference_layout(10_000, [1.0], [8], 0)


def test_workload_files_are_priced_before_their_adapters_are_built(tmp_path, monkeypatch):
    from loratwin.workload import load_workload_yaml

    layout = tmp_path / "zipf.yaml"
    layout.write_text("layout: {kind: zipf, served: 100000000, total_rate_req_s: 40, ranks: [8, 16]}\n")
    with pytest.raises(OverBudgetError, match="needed for 1e8 adapters"):
        load_workload_yaml(layout)
    listed = tmp_path / "listed.yaml"
    listed.write_text("adapters:\n" + "".join(f"  - {{id: a{i}, rank: 8, rate_req_s: 1}}\n" for i in range(2000)))
    # parsing its 80 kB takes about 9 MB above the process, its 2,000 adapters 1.4 MB
    monkeypatch.setenv(budget.ENV_VAR, "320M")
    assert len(load_workload_yaml(listed).adapters) == 2000
    budget.configure("simulate", kind="simulate", simulated_s=3600)
    with pytest.raises(OverBudgetError, match="2,000 adapters and ~7.2e6 requests over 3600 s"):
        load_workload_yaml(listed)
    monkeypatch.setenv(budget.ENV_VAR, "305M")
    with pytest.raises(OverBudgetError, match=r"needed for reading .*listed.yaml \(.* of YAML\)"):
        load_workload_yaml(listed)


def test_the_adapters_csv_is_priced_before_reading_and_stops_early(tmp_path, monkeypatch):
    from loratwin.plan import inputs

    path = tmp_path / "adapters.csv"
    # the first megabyte holds long ids, the rest short ones: the count extrapolated from it is far too low
    path.write_text("adapter_id,rank,rate\n" + "".join(f"{'x' * 5000}{i},8,0.1\n" for i in range(300))
                    + "".join(f"a{i},8,0.1\n" for i in range(60_000)))
    monkeypatch.setenv(budget.ENV_VAR, "310M")  # 14,285 adapters' worth above the process
    monkeypatch.setattr(inputs, "CHECK_EVERY", 1000)
    with pytest.raises(OverBudgetError, match="needed for 15,000 adapters"):
        inputs.read_adapters_csv(path)
    monkeypatch.setenv(budget.ENV_VAR, "300.1M")  # not even the ~440 rows extrapolated

    def read_rows(*args):
        raise AssertionError("the file was read")

    monkeypatch.setattr(inputs, "_read_rows", read_rows)
    with pytest.raises(OverBudgetError, match=r"needed for 4\d\d adapters"):
        inputs.read_adapters_csv(path)


def test_a_trace_is_priced_before_it_is_read(tmp_path, monkeypatch):
    from loratwin.workload import load_trace

    (tmp_path / "adapters.csv").write_text("adapter_id,rank\na,8\nb,16\n")
    (tmp_path / "trace.csv").write_text("arrival_time_s,adapter_id,input_tokens,output_tokens\n"
                                        + "".join(f"{i / 10},{'ab'[i % 2]},100,50\n" for i in range(20_000)))
    assert len(load_trace(tmp_path)[1]) == 20_000
    monkeypatch.setenv(budget.ENV_VAR, "305M")
    with pytest.raises(OverBudgetError, match="needed for a trace of ~20,000 requests on 2 adapters"):
        load_trace(tmp_path)


def exact_check(workload, monkeypatch) -> budget.Estimate:
    """The estimate simulate checks before it draws the requests of `workload` over an hour."""
    from loratwin.profiles import load_profile
    from loratwin.twin.simulation import _check_size

    seen: list[budget.Estimate] = []
    with monkeypatch.context() as patched:
        patched.setattr(budget, "require", lambda estimate, job=None: seen.append(estimate))
        _check_size(workload, load_profile("llama-3.1-8b-instruct"), 3600.0, 2.0, None)
    return seen[-1]


def test_simulate_prices_the_expected_requests_with_their_schedules(monkeypatch):
    from loratwin.twin import ServerConfig, simulate
    from loratwin.workload import PoissonArrival, ScheduleSegment, reference_layout

    calm = reference_layout(8, [5.0], [8], 0)  # 144,000 requests expected in an hour
    surge = reference_layout(8, [5.0], [8], 0, arrival=PoissonArrival(schedule=(ScheduleSegment(scale=10.0),)))
    assert "8 adapters and ~145,897 requests over 3600 s" == exact_check(calm, monkeypatch).what
    assert "~1.4e6 requests" in exact_check(surge, monkeypatch).what
    monkeypatch.setenv(budget.ENV_VAR, "400M")  # room for ~300,000 requests above the process
    with pytest.raises(OverBudgetError, match=r"8 adapters and ~1.4e6 requests over 3600 s"):
        simulate(surge, ServerConfig(max_loras=8), "llama-3.1-8b-instruct", duration_s=3600)


def test_the_early_check_never_exceeds_the_exact_one(monkeypatch):
    """A layout refused before it is built would be refused by simulate too."""
    from loratwin.workload import reference_layout

    job = budget.Job("simulate", "simulate", 3600.0)
    for served, rate in ((16, 0.5), (300, 0.05), (2000, 0.001), (100, 0.0)):
        early = budget.adapters_estimate(served, served * rate, job=job)
        assert early.bytes <= exact_check(reference_layout(served, [rate], [8], 0), monkeypatch).bytes


def test_grids_are_priced_before_they_are_expanded(monkeypatch):
    from loratwin.sweep.grid import expand, grid_from_yaml

    with pytest.raises(OverBudgetError, match="needed for a grid axis of 1e9 values"):
        grid_from_yaml("served: {start: 1, stop: 1000000000}\nmax_loras: [8]\nrates: [[1.0]]\nranks: [[8]]\n", "g")
    huge = grid_from_yaml("served: [16, 1000000]\nmax_loras: [8]\nrates: [[1.0]]\nranks: [[8]]\n", "g")
    with pytest.raises(OverBudgetError, match=r"2 runs on 1 workers, the largest of 1e6 adapters and ~3.6e9 requests"):
        expand(huge)
    many = grid_from_yaml("served: {start: 8, stop: 100000}\nmax_loras: {start: 8, stop: 10000}\n"
                          "rates: [[0.01]]\nranks: [[8]]\nduration_s: 60\n", "g")
    with pytest.raises(OverBudgetError, match="needed for 9.5e8 runs"):
        expand(many)


@pytest.mark.slow
def test_the_estimate_is_within_a_factor_of_two_of_a_measured_run():
    """Peak resident memory of a fresh process that simulates 1.2 million requests, against the
    estimate simulate checks (which counts the process itself; the largest of the checks made, the
    draw of arrivals checks its own share too)."""
    script = """
import json, resource
from loratwin import budget, ServerConfig, reference_layout, simulate
seen = []
real = budget.require
budget.require = lambda e, job=None: (seen.append(e), real(e, job))
simulate(reference_layout(8, [40.0], [8, 16], 0), ServerConfig(max_loras=8), "llama-3.1-8b-instruct", duration_s=3600)
print(json.dumps({"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "estimate": max(e.bytes for e in seen)}))
"""
    env = {k: v for k, v in os.environ.items() if k != budget.ENV_VAR}
    env["PYTHONPATH"] = str(Path(budget.__file__).parents[1])
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    measured = json.loads(proc.stdout.splitlines()[-1])
    assert measured["peak"] / 2 <= measured["estimate"] <= measured["peak"] * 2, measured


def test_the_twin_judging_slos_after_a_screen_costs_a_few_shares_per_later_gpu():
    # 2,000 adapters at 519 req/s over 300 s: 24 GPUs and 63 shares simulated (twice) in the measurement
    full = budget.twin_placement_estimate(2000, 519.1, 300, slot_candidates=2, flag="--slo")
    screened = budget.twin_placement_estimate(2000, 519.1, 300, slot_candidates=2, screened=True, flag="--slo")
    assert screened.seconds < full.seconds / 2
    assert "~431 GPU shares" in screened.what  # 2 x (log2(2000) + 1 + 51 x 4), above the 126 measured
    one = budget.twin_placement_estimate(2000, 519.1, 300, slot_candidates=2, gpus_judged=1, flag="--slo")
    assert budget.twin_placement_estimate(2000, 519.1, 300, slot_candidates=2, gpus_judged=1, screened=True,
                                          flag="--slo").seconds == one.seconds  # recommend: one GPU's bisection


def test_place_prices_the_gpus_it_is_asked_for():
    few, many = budget.requested_gpus_estimate(10), budget.requested_gpus_estimate(1e23)
    assert few.bytes < 1e9 and many.bytes > 1e24
    assert many.what == "placing on 1e23 GPUs (--gpus)"


def test_verify_holds_a_run_per_gpu_at_most_whatever_the_workers():
    some = budget.twin_placement_estimate(3, 3.7, 10, verify=True, workers=2)
    huge = budget.twin_placement_estimate(3, 3.7, 10, verify=True, workers=10**23)
    assert huge.bytes == some.bytes


def test_drift_periods_are_priced_before_they_are_counted():
    """replay-drift: a --period so short that the periods alone outgrow memory is refused (it was a
    numpy MemoryError when the per-period counts were allocated)."""
    small = budget.drift_periods_estimate(12, 200, 300)
    huge = budget.drift_periods_estimate(6e11, 40, 1e-9)
    assert small.bytes < 1e9 and small.seconds < 1
    assert huge.bytes > 1e15 and "6e11 periods of 1e-09 s (--period) of 40 adapters" in huge.what
