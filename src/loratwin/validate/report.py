"""Files a validation writes: per-run comparison, error table (Markdown, JSON), scatter plot."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from loratwin.validate.errors import error_table_markdown
from loratwin.validate.replay import ReplayResult
from loratwin.validate.runs import LATENCY_METRICS

# what write_validation puts in its folder
VALIDATION_FILES = ("runs.csv", "errors.md", "errors.json", "scatter.png")
RUN_COLUMNS = (
    "run_id", "model", "source_set", "status", "max_loras", "served_adapters", "max_lora_rank",
    "twin_started", "measured_total_tok_s", "twin_total_tok_s",
    *(f"{side}_{name}" for name in LATENCY_METRICS for side in ("measured", "twin")),
    "measured_throughput_over_offered",
    "twin_throughput_over_offered", "measured_starved", "twin_starved", "published_total_tok_s",
    "published_itl_ms",
)


def run_rows(results: Sequence[ReplayResult]) -> list[dict]:
    rows = []
    for r in results:
        m = r.run.measured
        rows.append({
            "run_id": r.run.run_id, "model": r.run.model, "source_set": r.run.source_set, "status": r.run.status,
            "max_loras": r.run.max_loras, "served_adapters": r.run.served_adapters, "max_lora_rank": r.run.max_lora_rank,
            "twin_started": r.started,
            "measured_total_tok_s": m.get("total_tok_s"), "twin_total_tok_s": r.total_tok_s,
            **{f"measured_{name}": m.get(name) for name in LATENCY_METRICS},
            **{f"twin_{name}": getattr(r, name) for name in LATENCY_METRICS},
            "measured_throughput_over_offered": m.get("throughput_over_offered"),
            "twin_throughput_over_offered": r.throughput_over_offered,
            "measured_starved": r.run.starved, "twin_starved": r.starved,
            "published_total_tok_s": m.get("paper_dt_total_tok_s"), "published_itl_ms": m.get("paper_dt_itl_ms"),
        })
    return rows


def write_scatter(results: Sequence[ReplayResult], path: Path) -> bool:
    """Measured against twin throughput and ITL, one colour per model; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ok = [r for r in results if r.started and r.run.has_metrics]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, (label, measured_key, attr) in zip(
        axes, [("total throughput (tok/s)", "total_tok_s", "total_tok_s"), ("mean ITL (ms)", "mean_itl_ms", "mean_itl_ms")],
        strict=True,
    ):
        for model in sorted({r.run.model for r in ok}):
            pts = [(r.run.measured[measured_key], getattr(r, attr)) for r in ok
                   if r.run.model == model and r.run.measured.get(measured_key) is not None and getattr(r, attr) is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.scatter(xs, ys, s=12, alpha=0.7, label=model)
        lims = [min(ax.get_xlim()[0], ax.get_ylim()[0]), max(ax.get_xlim()[1], ax.get_ylim()[1])]
        ax.plot(lims, lims, color="grey", linewidth=1, linestyle="--")
        ax.set_xlabel(f"measured {label}")
        ax.set_ylabel(f"twin {label}")
        ax.set_title(label)
        ax.legend(fontsize=8)
    fig.suptitle("loratwin against real vLLM runs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_validation(results: Sequence[ReplayResult], table: list[dict], out: Path) -> list[Path]:
    """runs.csv, errors.md, errors.json and (with matplotlib) scatter.png in `out`, whole or not at all
    (loratwin.files.written_whole)."""
    from loratwin.files import written_whole

    with written_whole(out, VALIDATION_FILES) as tmp:
        with (tmp / "runs.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=RUN_COLUMNS)
            writer.writeheader()
            writer.writerows(run_rows(results))
        (tmp / "errors.md").write_text(error_table_markdown(table))
        (tmp / "errors.json").write_text(json.dumps(table, indent=2))
        scatter = write_scatter(results, tmp / "scatter.png")
    return [Path(out) / name for name in VALIDATION_FILES if name != "scatter.png" or scatter]
