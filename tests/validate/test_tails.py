"""The latency tails of a validation: ReplayResult fields, runs.csv columns, error-table rows."""

from __future__ import annotations

import dataclasses

import pytest

from loratwin.profiles import load_profile
from loratwin.validate import ReplayResult, error_table, replay_runs
from loratwin.validate.errors import error_table_markdown, half_smape, median_ratio, metric_title
from loratwin.validate.replay import summary_key
from loratwin.validate.report import RUN_COLUMNS, run_rows
from loratwin.validate.runs import LATENCY_METRICS, LATENCY_REGIME_MAX_TTFT_MS

from .test_fit_profile import make_run


def _replay(run_id: str, measured: dict[str, float], twin: dict[str, float]) -> ReplayResult:
    run = make_run(run_id, 8, 8, 16, (0.1, 0.2), total_tok_s=1000.0, **measured)
    return ReplayResult(run=run, started=True, seeds=1, total_tok_s=1000.0, throughput_over_offered=1.0,
                        starved=False, **twin)


def _latencies(scale: float, ttft_ms: float) -> dict[str, float]:
    """Every latency metric at `scale` times a base value (the mean TTFT's base: `ttft_ms`)."""
    base = {name: 10.0 * (i + 1) for i, name in enumerate(LATENCY_METRICS)} | {"mean_ttft_ms": ttft_ms}
    return {name: scale * value for name, value in base.items()}


@pytest.fixture
def replays() -> list[ReplayResult]:
    """Three runs: two in the latency regime (one exactly at the bound) where the twin predicts half of
    every latency, one swamped by queueing where it predicts double."""
    at_bound = LATENCY_REGIME_MAX_TTFT_MS
    return [
        _replay("fast", _latencies(1.0, 500.0), _latencies(0.5, 500.0)),
        _replay("at-bound", _latencies(1.0, at_bound), _latencies(0.5, at_bound)),
        _replay("queued", _latencies(1.0, 60_000.0), _latencies(2.0, 60_000.0)),
    ]


def test_replay_fills_every_latency_metric_from_the_twin_summary():
    assert set(LATENCY_METRICS) <= {f.name for f in dataclasses.fields(ReplayResult)}
    assert summary_key("median_itl_ms") == "p50_itl_ms" and summary_key("p99_ttft_ms") == "p99_ttft_ms"
    run = make_run("light", 8, 8, 16, (0.2, 0.4, 0.8))
    (r,) = replay_runs([run], load_profile, seeds=(0,), workers=1, duration_s=60)
    values = {name: getattr(r, name) for name in LATENCY_METRICS}
    assert all(v is not None and v > 0 for v in values.values()), values
    assert values["median_ttft_ms"] <= values["p99_ttft_ms"]
    assert values["median_itl_ms"] <= values["p99_itl_ms"]


def test_runs_csv_carries_measured_and_twin_columns_of_every_latency_metric(replays):
    for name in LATENCY_METRICS:
        assert f"measured_{name}" in RUN_COLUMNS and f"twin_{name}" in RUN_COLUMNS
    assert len(RUN_COLUMNS) == len(set(RUN_COLUMNS))
    row = run_rows(replays[:1])[0]
    assert set(row) == set(RUN_COLUMNS)
    assert row["measured_p99_itl_ms"] == 60.0 and row["twin_p99_itl_ms"] == 30.0
    assert row["measured_median_ttft_ms"] == 20.0 and row["twin_median_ttft_ms"] == 10.0


def test_error_table_has_tail_errors_and_a_latency_regime_row(replays):
    (row,) = error_table(replays)
    # over all three runs: two at half, one at double -> median ratio 0.5
    p99 = row["p99_ttft_ms"]
    assert p99["n"] == 3 and p99["median_ratio"] == pytest.approx(0.5)
    assert p99["half_smape"] == pytest.approx(half_smape([30, 30, 30], [15, 15, 60]))
    regime = row["latency_regime"]
    assert regime["runs"] == 2 and regime["max_measured_mean_ttft_ms"] == LATENCY_REGIME_MAX_TTFT_MS
    for name in LATENCY_METRICS:
        assert regime[name]["n"] == 2
        assert regime[name]["median_ratio"] == pytest.approx(0.5)
        assert regime[name]["half_smape"] == pytest.approx(100 / 3)  # |y - y/2| / (y + y/2)
    assert regime["total_tok_s"]["n"] == 2


def test_latency_regime_leaves_out_runs_without_a_measured_ttft():
    no_ttft = _replay("no-ttft", {"p99_itl_ms": 50.0}, {"p99_itl_ms": 40.0})
    (row,) = error_table([no_ttft])
    assert row["p99_itl_ms"]["n"] == 1 and row["latency_regime"]["runs"] == 0
    assert row["latency_regime"]["p99_itl_ms"] == {"n": 0, "half_smape": None, "mape": None, "bias": None,
                                                   "median_ratio": None}


def test_median_ratio():
    assert median_ratio([10, 10, 10], [5, 10, 40]) == 1.0
    assert median_ratio([100], [27]) == pytest.approx(0.27)


def test_markdown_has_the_regime_row_and_a_tails_table(replays):
    text = error_table_markdown(error_table(replays))
    assert "| llama-3.1-8b-instruct | lab, mean TTFT <= 10 s | 2 |" in text
    header = next(line for line in text.splitlines() if line.startswith("| model | set | over (runs) |"))
    assert [metric_title(m) for m in LATENCY_METRICS] == header.strip("| ").split(" | ")[3:]
    assert "| llama-3.1-8b-instruct | lab | mean TTFT <= 10 s (2) | 33.3% x0.50 | 33.3% x0.50 |" in text
    assert metric_title("median_ttft_ms") == "TTFT median"
