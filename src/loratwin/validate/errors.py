"""Error measures and the error table of a replay."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from loratwin.validate.replay import ReplayResult


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


def _metric_errors(pairs: list[tuple[float, float]]) -> dict[str, float | int | None]:
    if not pairs:
        return {"n": 0, "half_smape": None, "mape": None, "bias": None}
    y, p = zip(*pairs)
    return {"n": len(pairs), "half_smape": half_smape(y, p), "mape": mape(y, p), "bias": bias(y, p)}


# metric name -> (measured column, twin attribute, published twin column, measured column to compare it with)
METRICS = {
    "total_tok_s": ("total_tok_s", "total_tok_s", "paper_dt_total_tok_s", "total_tok_s"),
    "mean_itl_ms": ("mean_itl_ms", "mean_itl_ms", "paper_dt_itl_ms", "mean_itl_ms"),
    # the published twin charged unfinished requests the whole window: compare it with the
    # measurement treated the same way
    "mean_ttft_ms": ("mean_ttft_ms", "mean_ttft_ms", "paper_dt_ttft_ms", "ttft_with_unfinished_ms"),
}


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
        for metric, (measured_col, attr, paper_col, paper_measured_col) in METRICS.items():
            ours = [(r.run.measured[measured_col], getattr(r, attr)) for r in comparable
                    if r.run.measured.get(measured_col) is not None and getattr(r, attr) is not None]
            paper = [(r.run.measured[paper_measured_col], r.run.measured[paper_col]) for r in comparable
                     if r.run.measured.get(paper_col) is not None and r.run.measured.get(paper_measured_col) is not None]
            row[metric] = _metric_errors(ours)
            row[f"published_{metric}"] = _metric_errors(paper)
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


def error_table_markdown(rows: Sequence[dict]) -> str:
    """The table as Markdown: ours beside the published twin's (half-SMAPE, %; lower is better)."""

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = [
        "| model | set | runs | throughput err (ours / published) | throughput MAPE / bias | "
        "ITL err (ours / published) | ITL MAPE / bias | TTFT err (ours) | starvation agreement (ours / published) | "
        "start-failure agreement |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t, i, f = r["total_tok_s"], r["mean_itl_ms"], r["mean_ttft_ms"]
        lines.append(
            f"| {r['model']} | {r['source_set']} | {t['n']} | {pct(t['half_smape'])} / "
            f"{pct(r['published_total_tok_s']['half_smape'])} | {pct(t['mape'])} / {pct(t['bias'])} | "
            f"{pct(i['half_smape'])} / {pct(r['published_mean_itl_ms']['half_smape'])} | "
            f"{pct(i['mape'])} / {pct(i['bias'])} | {pct(f['half_smape'])} | "
            f"{format_share(r['starvation_agreement'])} / {format_share(r['published_starvation_agreement'])} | "
            f"{format_share(r['start_agreement'])} ({r['start_runs']} runs) |"
        )
    return "\n".join(lines) + "\n"


def format_share(value: float | None) -> str:
    """A share (0-1) as a percentage with one decimal; "-" when missing."""
    return "-" if value is None else f"{100 * value:.1f}%"
