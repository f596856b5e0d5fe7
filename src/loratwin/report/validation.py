"""The report of a validation (`loratwin validate`): the twin against real vLLM runs."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from loratwin.report import charts
from loratwin.report.html import Cell, Page, integer, num

if TYPE_CHECKING:
    from loratwin.validate.replay import ReplayResult

KIND = "validation"
FILES = ("runs.csv", "errors.json")
INT_COLUMNS = ("max_loras", "served_adapters", "max_lora_rank")
BOOL_COLUMNS = ("twin_started", "measured_starved", "twin_starved")
TEXT_COLUMNS = ("run_id", "model", "source_set", "status")
# (title, measured column, twin column, published twin column or None, unit)
METRICS = (
    ("Total throughput", "measured_total_tok_s", "twin_total_tok_s", "published_total_tok_s", "tok/s"),
    ("Mean ITL", "measured_mean_itl_ms", "twin_mean_itl_ms", "published_itl_ms", "ms"),
    ("Mean TTFT", "measured_mean_ttft_ms", "twin_mean_ttft_ms", None, "ms"),
)
WORST_RUNS = 15


def matches(path: Path) -> bool:
    return path.is_dir() and all((path / name).is_file() for name in FILES)


def write_from_path(path: Path, out_dir: Path) -> Path:
    rows = read_run_rows(path / "runs.csv")
    table = json.loads((path / "errors.json").read_text())
    return _write(rows, table, out_dir)


def write_validation_report(results: Sequence[ReplayResult], table: list[dict], out_dir: str | Path) -> Path:
    """index.html (self-contained) and PNGs in out_dir from replayed runs and their error table."""
    from loratwin.validate.report import run_rows

    return _write(run_rows(results), table, Path(out_dir))


def read_run_rows(path: Path) -> list[dict]:
    """runs.csv as written by `validate --out`, with its numbers and flags typed back."""

    def value(name: str, text: str):
        if name in TEXT_COLUMNS:
            return text
        if text == "":
            return None
        if name in BOOL_COLUMNS:
            return text == "True"
        if name in INT_COLUMNS:
            return int(text)
        return float(text)

    with path.open(newline="") as f:
        return [{k: value(k, v or "") for k, v in row.items()} for row in csv.DictReader(f)]


def _pairs(rows: list[dict], measured: str, predicted: str) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    keep = [r for r in rows if r["twin_started"] and r.get(measured) is not None and r.get(predicted) is not None]
    return (np.array([r[measured] for r in keep], float), np.array([r[predicted] for r in keep], float), keep)


def _half_smape(y: np.ndarray, p: np.ndarray) -> float | None:
    from loratwin.validate.errors import half_smape

    return half_smape(y, p) if y.size else None


def _write(rows: list[dict], table: list[dict], out_dir: Path) -> Path:
    models = sorted({r["model"] for r in rows})
    sets = sorted({r["source_set"] for r in rows})
    page = Page(
        title=f"The twin against {len(rows):,} real vLLM runs",
        kind=KIND,
        subtitle=(f"models: {', '.join(models) or '-'}", f"source sets: {', '.join(sets) or '-'}"),
    )
    page.text("Errors are half-SMAPE, 100·mean(|y−p| / (|y|+|p|)) in %, the published method's measure: "
              "lower is better; 50% means off by an order of magnitude or more. \"Published\" is the "
              "published twin's prediction for the same runs, where the runs file has it.")
    _cards(page, rows)

    page.section("Error table", "One row per model and source set.")
    _error_table(page, table)

    page.section("Predicted against measured",
                 "Each point is one run that started both for real and in the twin; on the dashed line "
                 "the prediction is exact, the band is ±10%.")
    page.chart("scatter", _scatter_chart(rows, models), alt="Twin against measured throughput, ITL and TTFT")

    page.section("Where the twin errs", "Relative error of the twin, (twin − measured) / measured, against "
                 "the number of adapters served and the GPU adapter slots.")
    page.chart("errors", _error_chart(rows, models), alt="Relative error against served adapters and max_loras")

    page.section("Starvation and start failures")
    _agreement_tables(page, rows)
    _worst_runs(page, rows)
    return page.write(out_dir)


def _cards(page: Page, rows: list[dict]) -> None:
    cards = []
    for title, measured, twin, published, _unit in METRICS:
        y, p, _ = _pairs(rows, measured, twin)
        ours = _half_smape(y, p)
        note = f"{y.size:,} runs"
        if published:
            py, pp, _ = _pairs(rows, measured, published)
            theirs = _half_smape(py, pp)
            if theirs is not None:
                note += f"; published {theirs:.2f}%"
        cards.append((f"{title[0].lower()}{title[1:]} error", "-" if ours is None else f"{ours:.2f}%", note, "neutral"))
    flagged = [r for r in rows if r["twin_started"] and r["measured_starved"] is not None and r["twin_starved"] is not None]
    agree = np.mean([r["measured_starved"] == r["twin_starved"] for r in flagged]) if flagged else None
    cards.append(("starvation agreement", "-" if agree is None else f"{agree:.1%}", f"{len(flagged):,} runs",
                  "neutral" if agree is None else ("good" if agree >= 0.95 else "bad")))
    start = _start_rows(rows)
    s_agree = np.mean([r["twin_started"] == (r["status"] != "oom_at_start") for r in start]) if start else None
    cards.append(("start-failure agreement", "-" if s_agree is None else f"{s_agree:.1%}", f"{len(start):,} runs",
                  "neutral" if s_agree is None else ("good" if s_agree >= 0.95 else "bad")))
    page.cards(cards)


def _start_rows(rows: list[dict]) -> list[dict]:
    from loratwin.validate.runs import FAILED_TO_START, STARTED

    return [r for r in rows if r["status"] in STARTED or r["status"] in FAILED_TO_START]


def _error_table(page: Page, table: list[dict]) -> None:
    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    def pair(first: float | None, second: float | None) -> Cell:
        return Cell(f"{fmt(first)} / {fmt(second)}", numeric=True)

    def share(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    from loratwin.validate.errors import metric_title, regime_views, tail_cell
    from loratwin.validate.runs import LATENCY_METRICS

    rows, tails = [], []
    for row in table:
        for label, r in regime_views(row):
            t, i, f = r["total_tok_s"], r["mean_itl_ms"], r["mean_ttft_ms"]
            regime = r is not row
            rows.append([
                row["model"], f"{row['source_set']}, {label}" if regime else row["source_set"], integer(t["n"]),
                pair(t["half_smape"], r["published_total_tok_s"]["half_smape"]), pair(t["mape"], t["bias"]),
                pair(i["half_smape"], r["published_mean_itl_ms"]["half_smape"]), pair(i["mape"], i["bias"]),
                num(f["half_smape"], 2),
                Cell("-" if regime else f"{share(row['starvation_agreement'])} / "
                     f"{share(row['published_starvation_agreement'])}", True),
                Cell("-" if regime or row["start_agreement"] is None
                     else f"{share(row['start_agreement'])} ({row['start_runs']:,})", True),
            ])
            tails.append([row["model"], row["source_set"], f"{label} ({r['mean_ttft_ms']['n']:,})",
                          *(Cell(tail_cell(r[m]), True) for m in LATENCY_METRICS)])
    page.table(["model", "set", "runs", "throughput: ours / published", "MAPE / bias", "ITL: ours / published",
                "MAPE / bias", "TTFT: ours", "starvation agreement: ours / published", "start failures agree (runs)"],
               rows, caption="Errors in % (half-SMAPE unless MAPE; bias: signed mean relative error, positive "
               "when the twin predicts too high); agreement: share of runs flagged alike. The second row of "
               "each model and set keeps only the runs in the latency regime (measured mean TTFT within the bound).")
    page.table(["model", "set", "over (runs)", *(metric_title(m) for m in LATENCY_METRICS)], tails,
               caption="Latency tails: half-SMAPE in % and, after x, the median of twin / measured over the runs "
               "(below 1: the twin predicts too low).")


def _wants_log(values: np.ndarray) -> bool:
    values = values[values > 0]
    return bool(values.size and values.max() / values.min() > 20)


def _scatter_chart(rows: list[dict], models: list[str]) -> bytes:
    colours = {m: charts.SERIES[i % len(charts.SERIES)] for i, m in enumerate(models)}
    with charts.figure(1, 3, height_in=3.9) as (fig, axes):
        for ax, (title, measured, twin, published, unit) in zip(axes, METRICS, strict=True):
            ax.set_title(title)
            y_all, p_all, _ = _pairs(rows, measured, twin)
            if y_all.size == 0:
                charts.no_data(ax)
                continue
            everything = [y_all, p_all]
            if published:
                py, pp, _ = _pairs(rows, measured, published)
                if py.size:
                    ax.scatter(py, pp, s=16, facecolors="none", edgecolors=charts.GREY, linewidths=0.8,
                               alpha=0.7, label="published twin", zorder=2)
                    everything.append(pp)
            for model in models:
                y, p, _ = _pairs([r for r in rows if r["model"] == model], measured, twin)
                if y.size:
                    ax.scatter(y, p, s=14, color=colours[model], alpha=0.75, label=model, zorder=3,
                               edgecolors="none")
            values = np.concatenate(everything)
            values = values[np.isfinite(values)]
            lo, hi = float(values.min()), float(values.max())
            log = _wants_log(values)
            if log:
                lo, hi = max(lo, 1e-9) / 1.3, hi * 1.3
            else:
                pad = 0.05 * (hi - lo or 1.0)
                lo, hi = max(0.0, lo - pad), hi + pad
            line = np.geomspace(lo, hi, 50) if log else np.linspace(lo, hi, 50)
            ax.plot(line, line, color="#111827", linestyle="--", linewidth=1, zorder=1)
            ax.fill_between(line, line * 0.9, line * 1.1, color=charts.LIGHT_GREY, alpha=0.45, zorder=0,
                            linewidth=0)
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
            ax.set_aspect("equal", adjustable="box")
            ax.set_xlabel(f"measured ({unit})")
            ax.set_ylabel(f"twin ({unit})")
            if log:
                charts.log_axis(ax, "x")
                charts.log_axis(ax, "y")
            else:
                charts.thousands(ax, "x")
                charts.thousands(ax, "y")
        handles, labels = axes[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside lower center", ncols=len(handles))
        return charts.png_bytes(fig)


def _error_chart(rows: list[dict], models: list[str]) -> bytes:
    colours = {m: charts.SERIES[i % len(charts.SERIES)] for i, m in enumerate(models)}
    with charts.figure(2, 2, height_in=6.2, sharey="row") as (fig, axes):
        for row_axes, (title, measured, twin, _pub, _unit) in zip(axes, METRICS[:2], strict=True):
            for ax, (column, xlabel) in zip(row_axes, (("served_adapters", "adapters served"),
                                                        ("max_loras", "--max-loras")), strict=True):
                ax.set_title(f"{title}: relative error" if column == "served_adapters" else f"{title}: by --max-loras",
                             fontsize=11)
                any_points = False
                for i, model in enumerate(models):
                    y, p, kept = _pairs([r for r in rows if r["model"] == model], measured, twin)
                    if not y.size:
                        continue
                    any_points = True
                    x = np.array([r[column] for r in kept], float)
                    # spread the models sideways so equal configurations do not hide each other
                    jitter = 1 + 0.06 * (i - (len(models) - 1) / 2)
                    ax.scatter(x * jitter, (p - y) / y, s=14, alpha=0.7, color=colours[model], label=model,
                               edgecolors="none")
                if not any_points:
                    charts.no_data(ax)
                    continue
                ax.axhline(0, color="#111827", linewidth=1)
                ax.axhspan(-0.1, 0.1, color=charts.LIGHT_GREY, alpha=0.45, linewidth=0, zorder=0)
                ax.set_xscale("log", base=2)
                charts.thousands(ax, "x")
                charts.percent(ax)
                ax.set_xlabel(xlabel)
            row_axes[0].set_ylabel("(twin − measured) / measured")
        handles, labels = axes[0][0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside lower center", ncols=len(handles))
        return charts.png_bytes(fig)


def _agreement_tables(page: Page, rows: list[dict]) -> None:
    flagged = [r for r in rows if r["twin_started"] and r["measured_starved"] is not None and r["twin_starved"] is not None]
    count = {(a, b): sum(1 for r in flagged if r["measured_starved"] is a and r["twin_starved"] is b)
             for a in (True, False) for b in (True, False)}
    page.table(
        ["", "twin: starved", "twin: not starved"],
        [["measured: starved", integer(count[True, True]), integer(count[True, False])],
         ["measured: not starved", integer(count[False, True]), integer(count[False, False])]],
        caption=f"Starvation flags of the {len(flagged):,} runs with both (diagonal: agreement).",
        compact=True,
    )
    start = _start_rows(rows)
    real = [r["status"] != "oom_at_start" for r in start]
    count = {(a, b): sum(1 for r, started in zip(start, real, strict=True) if started is a and r["twin_started"] is b)
             for a in (True, False) for b in (True, False)}
    page.table(
        ["", "twin: starts", "twin: does not start"],
        [["real: started", integer(count[True, True]), integer(count[True, False])],
         ["real: out of memory at start", integer(count[False, True]), integer(count[False, False])]],
        caption=f"Whether the server starts, over the {len(start):,} runs where that is known.",
        compact=True,
    )


def _worst_runs(page: Page, rows: list[dict]) -> None:
    y, p, kept = _pairs(rows, "measured_total_tok_s", "twin_total_tok_s")
    if not kept:
        return
    rel = (p - y) / y
    order = np.argsort(-np.abs(rel))[:WORST_RUNS]
    table_rows, tones = [], []
    for i in order:
        r = kept[i]
        disagree = r["measured_starved"] is not None and r["measured_starved"] != r["twin_starved"]
        table_rows.append([
            _short_run_id(r["run_id"]), r["model"], integer(r["max_loras"]), integer(r["served_adapters"]),
            integer(r["max_lora_rank"]), num(r["measured_total_tok_s"]), num(r["twin_total_tok_s"]),
            Cell(f"{100 * rel[i]:+.1f}%", True),
            _flag(r["measured_starved"]), _flag(r["twin_starved"]),
        ])
        tones.append("bad" if disagree else None)
    page.table(
        ["run", "model", "max_loras", "served", "max rank", "measured (tok/s)", "twin (tok/s)", "error",
         "starved (real)", "starved (twin)"],
        table_rows, row_tones=tones,
        caption="Runs with the largest throughput error; red where the starvation flags disagree.",
        collapsed=f"The {len(order)} runs with the largest throughput error",
    )


def _flag(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _short_run_id(run_id: str) -> str:
    # reference ids are long paths; their last two parts name the configuration
    parts = [p for p in run_id.split("/") if p]
    return "/".join(parts[-2:]) if len(parts) > 2 else run_id
