"""Error measures and the error table of a replay."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from loratwin.validate.replay import ReplayResult
from loratwin.validate.runs import LATENCY_METRICS, LATENCY_REGIME_MAX_TTFT_MS


def half_smape(measured: Sequence[float], predicted: Sequence[float]) -> float:
    """The published method's error measure: 100 * mean(|y - p| / (|y| + |p|)), in %."""
    y, p = np.asarray(measured, float), np.asarray(predicted, float)
    return float(100 * np.mean(np.abs(y - p) / (np.abs(y) + np.abs(p))))


def mape(measured: Sequence[float], predicted: Sequence[float]) -> float:
    y, p = np.asarray(measured, float), np.asarray(predicted, float)
    return float(100 * np.mean(np.abs(y - p) / np.abs(y)))


def bias(measured: Sequence[float], predicted: Sequence[float]) -> float:
    """Signed mean relative error in %: positive when the twin predicts too high."""
    y, p = np.asarray(measured, float), np.asarray(predicted, float)
    return float(100 * np.mean((p - y) / np.abs(y)))


def median_ratio(measured: Sequence[float], predicted: Sequence[float]) -> float:
    """Median of twin / real over runs: below 1 when the twin mostly predicts too low."""
    y, p = np.asarray(measured, float), np.asarray(predicted, float)
    return float(np.median(p / y))


def _metric_errors(pairs: list[tuple[float, float]]) -> dict[str, float | int | None]:
    if not pairs:
        return {"n": 0, "half_smape": None, "mape": None, "bias": None, "median_ratio": None}
    y, p = zip(*pairs)
    return {"n": len(pairs), "half_smape": half_smape(y, p), "mape": mape(y, p), "bias": bias(y, p),
            "median_ratio": median_ratio(y, p)}


# metric name (runs-file column, twin attribute) -> (published twin column, measured column to compare it with)
PUBLISHED = {
    "total_tok_s": ("paper_dt_total_tok_s", "total_tok_s"),
    "mean_itl_ms": ("paper_dt_itl_ms", "mean_itl_ms"),
    # the published twin charged unfinished requests the whole window: compare it with the
    # measurement treated the same way
    "mean_ttft_ms": ("paper_dt_ttft_ms", "ttft_with_unfinished_ms"),
}
# every metric of the error table: throughput, then the latency statistics
METRICS = ("total_tok_s", *LATENCY_METRICS)


def in_latency_regime(run) -> bool:
    """Whether a run's measured mean TTFT is at most LATENCY_REGIME_MAX_TTFT_MS (not swamped by queueing)."""
    ttft = run.measured.get("mean_ttft_ms")
    return ttft is not None and ttft <= LATENCY_REGIME_MAX_TTFT_MS


def _errors_over(comparable: Sequence[ReplayResult]) -> dict:
    """The errors of every metric (and of the published twin where the file has it) over these runs."""
    row: dict = {}
    for metric in METRICS:
        ours = [(r.run.measured[metric], getattr(r, metric)) for r in comparable
                if r.run.measured.get(metric) is not None and getattr(r, metric) is not None]
        row[metric] = _metric_errors(ours)
        if metric in PUBLISHED:
            paper_col, paper_measured_col = PUBLISHED[metric]
            paper = [(r.run.measured[paper_measured_col], r.run.measured[paper_col]) for r in comparable
                     if r.run.measured.get(paper_col) is not None and r.run.measured.get(paper_measured_col) is not None]
            row[f"published_{metric}"] = _metric_errors(paper)
    return row


def _paper_starved(run) -> bool | None:
    paper = run.measured.get("paper_dt_total_tok_s")
    offered = run.measured.get("sent_offered_tok_s") or run.measured.get("approx_offered_tok_s")
    if paper is None or not offered:
        return None
    return bool(1 - paper / offered >= 0.1)


def error_table(results: Sequence[ReplayResult]) -> list[dict]:
    """One row per (model, source set): errors of the twin and, where the file has its replays,
    of the published twin on the same runs."""
    rows = []
    groups = sorted({(r.run.model, r.run.source_set) for r in results})
    for model, source_set in groups:
        group = [r for r in results if (r.run.model, r.run.source_set) == (model, source_set)]
        row: dict = {"model": model, "source_set": source_set}
        comparable = [r for r in group if r.started and r.run.has_metrics]
        row.update(_errors_over(comparable))
        regime = [r for r in comparable if in_latency_regime(r.run)]
        row["latency_regime"] = {"max_measured_mean_ttft_ms": LATENCY_REGIME_MAX_TTFT_MS, "runs": len(regime),
                                 **_errors_over(regime)}
        flagged = [r for r in comparable if r.run.starved is not None]
        row["starvation_agreement"] = (
            float(np.mean([r.starved == r.run.starved for r in flagged])) if flagged else None
        )
        row["starvation_runs"] = len(flagged)
        paper_flags = [(r.run.starved, _paper_starved(r.run)) for r in flagged if _paper_starved(r.run) is not None]
        row["published_starvation_agreement"] = (
            float(np.mean([a == b for a, b in paper_flags])) if paper_flags else None
        )
        row["published_starvation_runs"] = len(paper_flags)
        start = [r for r in group if r.run.start_known]
        row["start_agreement"] = float(np.mean([r.started == r.run.started for r in start])) if start else None
        row["start_runs"] = len(start)
        rows.append(row)
    return rows


def regime_views(row: dict) -> list[tuple[str, dict]]:
    """A table row's two views: (label, errors) over all its runs and over its latency regime."""
    return [("all runs", row), (f"mean TTFT <= {LATENCY_REGIME_MAX_TTFT_MS / 1000:g} s", row["latency_regime"])]


def metric_title(metric: str) -> str:
    """A latency metric's column title: "median_ttft_ms" -> "TTFT median"."""
    stat, quantity, _unit = metric.split("_")
    return f"{quantity.upper()} {stat}"


def tail_cell(errors: dict) -> str:
    """One metric's half-SMAPE (%) and median twin/real ratio, as the tails tables show them."""
    if errors["n"] == 0:
        return "-"
    return f"{errors['half_smape']:.1f}% x{errors['median_ratio']:.2f}"


def error_table_markdown(rows: Sequence[dict]) -> str:
    """The table as Markdown: ours beside the published twin's (half-SMAPE, %; lower is better),
    each (model, set) also over its latency regime; then the latency tails."""

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = [
        "| model | set | runs | throughput err % (ours / published) | throughput MAPE / bias % | "
        "ITL err % (ours / published) | ITL MAPE / bias % | TTFT err % (ours) | starvation agreement (ours / published) | "
        "start-failure agreement |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for label, r in regime_views(row):
            t, i, f = r["total_tok_s"], r["mean_itl_ms"], r["mean_ttft_ms"]
            regime = r is not row
            lines.append(
                f"| {row['model']} | {row['source_set']}{f', {label}' if regime else ''} | {t['n']} | "
                f"{pct(t['half_smape'])} / {pct(r['published_total_tok_s']['half_smape'])} | "
                f"{pct(t['mape'])} / {pct(t['bias'])} | "
                f"{pct(i['half_smape'])} / {pct(r['published_mean_itl_ms']['half_smape'])} | "
                f"{pct(i['mape'])} / {pct(i['bias'])} | {pct(f['half_smape'])} | "
                + ("- | - |" if regime else
                   f"{format_share(row['starvation_agreement'])} / "
                   f"{format_share(row['published_starvation_agreement'])} | "
                   f"{format_share(row['start_agreement'])} ({row['start_runs']} runs) |")
            )
    lines += [
        "",
        "Tails: half-SMAPE (%) and x the median twin/real ratio, per latency statistic.",
        "",
        "| model | set | over (runs) | " + " | ".join(metric_title(m) for m in LATENCY_METRICS) + " |",
        "|---|---|---|" + "---|" * len(LATENCY_METRICS),
    ]
    for row in rows:
        for label, r in regime_views(row):
            lines.append(f"| {row['model']} | {row['source_set']} | {label} ({r['mean_ttft_ms']['n']}) | "
                         + " | ".join(tail_cell(r[m]) for m in LATENCY_METRICS) + " |")
    return "\n".join(lines) + "\n"


def format_share(value: float | None) -> str:
    """A share (0-1) as a percentage with one decimal; "-" when missing."""
    return "-" if value is None else f"{100 * value:.1f}%"
