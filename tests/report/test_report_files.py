"""HTML reports without a browser: kind detection, self-containment, the numbers behind the charts."""

from __future__ import annotations

import base64
import re
import subprocess
import sys

import numpy as np
import pytest

from loratwin.errors import InputError, LoratwinError
from loratwin.report import (
    detect_kind,
    write_report,
    write_simulation_report,
    write_sweep_report,
    write_validation_report,
)
from loratwin.report.simulation import (
    load_result,
    per_request_itl_ms,
    window_s,
    windowed_tok_s,
)
from loratwin.report.sweep import grids
from loratwin.validate import error_table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def assert_self_contained(html: str) -> list[bytes]:
    """No scripts, no external stylesheets or fonts, every image a data URI; returns the images."""
    assert "<script" not in html
    assert "<link" not in html or re.findall(r"<link[^>]*>", html) == ['<link rel="icon" href="data:,">']
    assert not re.search(r"url\(", html)
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r'(src|href)="(https?:)?//', html)
    return [base64.b64decode(s.split(",", 1)[1]) for s in srcs]


def test_simulation_report_embeds_its_charts_and_writes_them(sim_result, tmp_path):
    index = write_simulation_report(sim_result, tmp_path / "r")
    assert index == tmp_path / "r" / "index.html"
    html = index.read_text()
    images = assert_self_contained(html)
    names = ["throughput", "queues", "latency", "adapters"]
    assert sorted(p.stem for p in index.parent.glob("*.png")) == sorted(names)
    for name, data in zip(names, images, strict=True):
        assert data == (index.parent / f"{name}.png").read_bytes()
        width, height = png_size(data)
        assert width >= 1000 and height >= 400
    assert "Starved" in html and f"{sim_result.summary['total_tok_s']:,.0f} tok/s" in html
    for adapter in sim_result.starved_adapters:
        assert f"<td>{adapter}</td>" in html
    assert html.count('<tr class="bad">') >= len(sim_result.starved_adapters)


def test_simulation_result_read_back_from_its_directory(sim_result, sim_dir):
    loaded = load_result(sim_dir)
    assert loaded.summary == sim_result.summary and loaded.adapters == sim_result.adapters
    for name in ("arrival_s", "finish_s", "ttft_ms", "completed"):
        np.testing.assert_array_equal(loaded.requests[name], sim_result.requests[name])
    np.testing.assert_array_equal(loaded.timeseries["kv_usage"], sim_result.timeseries["kv_usage"])


@pytest.mark.slow
def test_write_report_detects_each_kind(sim_dir, validation_dir, sweep_dir, tmp_path):
    for path, kind in ((sim_dir, "simulation"), (validation_dir, "validation"), (sweep_dir, "sweep"),
                       (sweep_dir / "sweep.parquet", "sweep")):
        assert detect_kind(path) == kind
        index = write_report(path, tmp_path / kind)
        html = index.read_text()
        assert f"{kind} report" in html
        assert_self_contained(html)


def test_unknown_result_names_what_was_expected(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="summary.json"):
        write_report(tmp_path, tmp_path / "out")
    with pytest.raises(InputError, match="does not exist"):
        detect_kind(tmp_path / "missing")


def test_windowed_throughput_counts_each_event_once_and_divides_by_window():
    times = np.array([0.5, 0.9, 1.5, np.nan, 2.1, 2.5])
    tokens = np.array([10, 5, 20, 99, 4, 99])
    starts, rates = windowed_tok_s(times, tokens, duration_s=2.2, width_s=1.0)
    np.testing.assert_allclose(starts, [0, 1, 2])
    # the last window is 0.2 s long; NaN (never finished) and after-the-end events are left out
    np.testing.assert_allclose(rates, [15, 20, 4 / 0.2])
    assert window_s(600) == 5 and window_s(3600) == 30 and window_s(60) == 1


def test_per_request_itl_is_the_mean_gap_of_completed_multi_token_requests():
    req = {
        "completed": np.array([True, True, False, True]),
        "output_tokens": np.array([11, 1, 5, 3]),
        "first_token_s": np.array([1.0, 2.0, 3.0, 0.5]),
        "finish_s": np.array([2.0, 2.0, np.nan, 0.6]),
    }
    np.testing.assert_allclose(per_request_itl_ms(req), [100.0, 50.0])


def test_sweep_frontier_and_optimum():
    table = {
        "workload_key": ["w"] * 9 + ["all-starve"] * 2,
        "max_loras": [1, 1, 1, 4, 4, 4, 4, 4, 4, 1, 2],
        "served": [8, 16, 32, 8, 16, 32, 32, 32, 64, 8, 8],
        "total_tok_s": [100, 150, 150, 100, 200, 390, 400, 410, 420, 5, 6],
        "starved": [False, True, True, False, False, False, True, False, True, True, True],
    }
    by_key = {g.workload_key: g for g in grids(table)}
    g = by_key["w"]
    assert g.frontier() == {1: 8, 4: 32}
    # three repeats at (4, 32): averaged, starved by one of three only
    assert g.optimum() == (4, 32)
    assert g.tok_s[1, 2] == pytest.approx(400)
    assert np.isnan(g.tok_s[0, 3])  # (1, 64) was not run
    assert by_key["all-starve"].optimum() is None
    assert by_key["all-starve"].frontier() == {1: None, 2: None}


def test_sweep_report_when_everything_starves(tmp_path):
    table = {"workload_key": ["w", "w"], "max_loras": [1, 2], "served": [8, 8], "total_tok_s": [5.0, 6.0],
             "starved": [True, True]}
    html = write_sweep_report(table, tmp_path).read_text()
    assert "Every configuration starves" in html
    assert len(assert_self_contained(html)) == 2


def test_sweep_table_without_its_columns_is_refused(tmp_path):
    with pytest.raises(InputError, match="served"):
        write_sweep_report({"workload_key": ["w"], "max_loras": [1], "total_tok_s": [1.0], "starved": [False]},
                           tmp_path)


def test_validation_report_is_the_same_from_memory_and_from_disk(validation_results, validation_dir, tmp_path):
    from_memory = write_validation_report(validation_results, error_table(validation_results), tmp_path / "a")
    from_disk = write_report(validation_dir, tmp_path / "b")
    assert from_memory.read_text() == from_disk.read_text()
    html = from_memory.read_text()
    assert len(assert_self_contained(html)) == 2
    assert "model-a" in html and "model-b" in html
    # the made-up runs: 15 per model start, one per model fails to start, and the twin agrees
    assert "real: out of memory at start" in html
    # the latency-regime rows and the tails table
    assert "model-a" in html and "mean TTFT &lt;= 10 s" in html and "TTFT p99" in html


def test_missing_matplotlib_says_how_to_install_it(sim_result, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(LoratwinError, match=r"pip install matplotlib"):
        write_simulation_report(sim_result, tmp_path)


def test_importing_the_report_package_stays_cheap():
    code = "import sys, loratwin.report, loratwin.report.console; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_run_where_nothing_arrives_still_renders(tmp_path):
    from loratwin import ServerConfig, reference_layout, simulate

    result = simulate(reference_layout(4, rates=[0.01], ranks=[8], seed=0), ServerConfig(max_loras=2),
                      "llama-3.1-8b-instruct", duration_s=2, seed=0)
    assert result.summary["arrived"] == 0
    html = write_simulation_report(result, tmp_path).read_text()
    assert len(assert_self_contained(html)) == 4
    assert "Keeps up" in html


def test_a_plan_report_lists_the_other_algorithms_when_compared(plan_file, tmp_path):
    import yaml

    from loratwin.report import write_plan_report

    plan = yaml.safe_load(plan_file.read_text())
    plain = write_plan_report(plan, tmp_path / "plain").read_text()
    assert "Other algorithms" not in plain
    compared = write_plan_report(plan | {"compare": {"round-robin": 3, "rank-grouped": "cannot place them"}},
                                 tmp_path / "compared").read_text()
    assert "Other algorithms" in compared and "round-robin" in compared and "cannot place them" in compared
    assert_self_contained(compared)


def test_a_plan_report_shows_the_notes_and_each_gpus_slos(plan_file, tmp_path):
    import yaml

    from loratwin.report import write_plan_report
    from loratwin.report.plan import plan_from_recommendation

    plan = yaml.safe_load(plan_file.read_text())
    assert "SLOs (value of limit)" not in write_plan_report(plan, tmp_path / "plain").read_text()
    row = {"slo": "ttft_p99", "metric": "p99_ttft_ms", "limit_ms": 1500.0, "value_ms": 242.0, "met": True}
    note = "the cost model does not predict p99 TTFT: the twin judges the SLOs"
    plan = plan | {"notes": [note], "gpus": [g | {"slos": [row]} for g in plan["gpus"]]}
    html = write_plan_report(plan, tmp_path / "slos").read_text()
    assert f"Note: {note}" in html and "SLOs (value of limit)" in html and "ttft_p99 242 of 1,500 ms (met)" in html
    rec = {"served_adapter_ids": ["a"], "max_loras": 1, "vllm_command": ["vllm", "serve"], "slos": [row],
           "notes": [note]}
    html = write_plan_report(plan_from_recommendation(rec), tmp_path / "rec").read_text()
    assert f"Note: {note}" in html and "ttft_p99 242 of 1,500 ms (met)" in html
