"""The report of one simulated run (`loratwin simulate`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from loratwin.grammar import plural
from loratwin.report import charts
from loratwin.report.html import Cell, Page, integer, num, pct

if TYPE_CHECKING:
    from loratwin.twin import RunResult

KIND = "simulation"
FILES = ("summary.json", "requests.parquet", "timeseries.parquet")
# Adapters beyond this count get no tick labels (they would overlap).
LABELLED_ADAPTERS = 48
# Beyond this many adapters, markers for "nothing completed" merge into a band: the title counts them.
MARKED_ADAPTERS = 120
# Windows of throughput over time: the smallest of these giving at most this many windows.
MAX_WINDOWS = 120
WINDOW_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)


def matches(path: Path) -> bool:
    return path.is_dir() and all((path / name).is_file() for name in FILES)


def missing(path: Path) -> list[str]:
    """For a folder that looks like a `simulate --out` one (it holds summary.json), the result files it
    lacks; [] otherwise."""
    if not (path.is_dir() and (path / FILES[0]).is_file()):
        return []
    return [name for name in FILES if not (path / name).is_file()]


def write_from_path(path: Path, out_dir: Path) -> Path:
    return write_simulation_report(load_result(path), out_dir)


def load_result(path: str | Path) -> RunResult:
    """A RunResult back from a `loratwin simulate --out` directory (steps may be absent)."""
    import pyarrow.parquet as pq

    from loratwin.twin import RunResult

    path = Path(path)
    doc = json.loads((path / "summary.json").read_text())

    def columns(name: str) -> dict[str, np.ndarray]:
        file = path / f"{name}.parquet"
        if not file.is_file():
            return {}
        table = pq.read_table(file)
        return {col: table.column(col).to_numpy(zero_copy_only=False) for col in table.column_names}

    return RunResult(
        config=doc["config"], summary=doc["summary"], adapters=doc["adapters"],
        requests=columns("requests"), timeseries=columns("timeseries"), steps=columns("steps"),
    )


def write_simulation_report(result: RunResult, out_dir: str | Path) -> Path:
    """index.html (self-contained) and one PNG per chart in out_dir; returns index.html's path."""
    cfg, s = result.config, result.summary
    srv, wl = cfg["server"], cfg["workload"]
    page = Page(
        title=f"{wl['served_adapters']} adapters on {cfg['profile']}, --max-loras {srv['max_loras']}",
        kind=KIND,
        subtitle=(cfg["gpu"], cfg["engine"],
                  (f"{cfg['duration_s']:g} s simulated, seed {cfg['seed']}; "
                   f"{wl['aggregate_rate_req_s']:.2f} req/s offered; request lengths: {wl['request_lengths']}")),
    )
    _verdict(page, result)
    page.cards([
        ("total throughput", f"{s['total_tok_s']:,.0f} tok/s", f"of {s['offered_tok_s']:,.0f} tok/s offered",
         "bad" if s["starved"] else "good"),
        ("throughput / offered", f"{s['throughput_over_offered']:.1%}",
         f"starving below {1 - s['starvation_threshold']:.0%}", "bad" if s["starved"] else "good"),
        ("TTFT p50 / p99", _ms_pair(s, "ttft"), f"mean {_ms(s['mean_ttft_ms'])}", "neutral"),
        ("ITL p50 / p99", _ms_pair(s, "itl"), f"mean {_ms(s['mean_itl_ms'])}", "neutral"),
        ("requests completed", f"{s['completed']:,}", f"of {s['arrived']:,} arrived", "neutral"),
        ("starved adapters", f"{s['starved_adapters']:,}", f"of {len(result.adapters):,}",
         "bad" if s["starved_adapters"] else "good"),
    ])

    page.section("Throughput over time",
                 "Tokens (prompt and output) of requests completed in each window, against the tokens "
                 "requested by the requests arriving in it.")
    page.chart("throughput", _throughput_chart(result),
               alt="Throughput and offered load in tokens per second over time",
               caption="A completed request counts all its tokens in the window where it finishes.")

    page.section("Queues and KV cache", "Requests running and waiting in the engine, and the share of "
                 "KV cache blocks in use, sampled over the run.")
    page.chart("queues", _queues_chart(result), alt="Running and waiting requests and KV cache usage over time")

    page.section("Latency", "Time to first token of each completed request (from when the client sent it) "
                 "and each completed request's mean inter-token latency.")
    page.chart("latency", _latency_chart(result), alt="Distributions of TTFT and ITL in milliseconds",
               caption="The run's ITL percentiles in the summary pool every gap; this chart shows one "
                       "mean per request, so its tails are narrower.")

    page.section("Adapters", "Share of each adapter's requests that completed and their mean TTFT, worst "
                 f"served first. Starved adapters (served tokens short of offered by at least "
                 f"{s['starvation_threshold']:.0%}) are red.")
    page.chart("adapters", _adapters_chart(result), alt="Per-adapter completion ratio and mean TTFT")
    _adapter_table(page, result)

    page.section("Summary")
    _summary_table(page, result)
    page.section("Configuration")
    page.facts([
        ("profile", cfg["profile"]),
        ("GPU", cfg["gpu"]),
        ("engine", cfg["engine"]),
        ("server flags", (f"--max-loras {srv['max_loras']} --max-cpu-loras {srv['max_cpu_loras']} "
                          f"--max-lora-rank {srv['max_lora_rank']} --max-num-seqs {srv['max_num_seqs']} "
                          f"--max-num-batched-tokens {srv['max_num_batched_tokens']}")),
        ("client queue cap", "none" if srv["client_max_waiting"] is None else f"{srv['client_max_waiting']:,} waiting"),
        ("KV cache", f"{srv['kv_cache_tokens']:,} tokens"),
        ("workload", (f"{wl['served_adapters']:,} adapters, ranks {', '.join(map(str, wl['ranks']))}, "
                      f"{wl['aggregate_rate_req_s']:.2f} req/s in all")),
        ("window", f"{cfg['duration_s']:g} s, seed {cfg['seed']}"),
    ])
    return page.write(out_dir)


def _verdict(page: Page, result: RunResult) -> None:
    s = result.summary
    n_starved, n = s["starved_adapters"], len(result.adapters)
    share = f"{s['throughput_over_offered']:.1%} of the offered load is served"
    if s["starved"]:
        page.verdict(f"Starved: only {share}; {n_starved} of {plural(n, 'adapter')} starve.", "bad")
    elif n_starved:
        page.verdict(f"Keeps up overall ({share}), but {n_starved} of {plural(n, 'adapter')} starve.", "bad")
    else:
        page.verdict(f"Keeps up: {share}, and no adapter starves.", "good")


def _ms(value: float | None) -> str:
    """A latency for the cards: ms below ten seconds, seconds above (queueing delays are long)."""
    if value is None:
        return "-"
    if value >= 10_000:
        return f"{_short(value / 1000)} s"
    return f"{_short(value)} ms"


def _ms_pair(s: dict, name: str) -> str:
    p50, p99 = s[f"p50_{name}_ms"], s[f"p99_{name}_ms"]
    if p50 is None:
        return "-"
    if p99 >= 10_000:
        return f"{_short(p50 / 1000)} / {_short(p99 / 1000)} s"
    return f"{_short(p50)} / {_short(p99)} ms"


def _short(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def window_s(duration_s: float) -> float:
    for step in WINDOW_STEPS_S:
        if duration_s / step <= MAX_WINDOWS:
            return float(step)
    return float(np.ceil(duration_s / MAX_WINDOWS))


def windowed_tok_s(times_s: np.ndarray, tokens: np.ndarray, duration_s: float, width_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Tokens per second in consecutive windows of width_s over [0, duration_s]: (window starts, rates).
    Events outside the run (NaN times, after its end) are left out; a last partial window is
    divided by its own length."""
    edges = np.arange(0.0, duration_s, width_s)
    edges = np.append(edges, duration_s)
    keep = np.isfinite(times_s) & (times_s >= 0) & (times_s <= duration_s)
    sums, _ = np.histogram(times_s[keep], bins=edges, weights=tokens[keep].astype(np.float64))
    return edges[:-1], sums / np.diff(edges)


def _throughput_chart(result: RunResult) -> bytes:
    req, s = result.requests, result.summary
    duration = float(result.config["duration_s"])
    width = window_s(duration)
    prompt = req["prompt_tokens"].astype(np.int64)
    served_tokens = np.where(req["completed"], prompt + req["output_tokens"], 0)
    offered_tokens = prompt + req["requested_output_tokens"]
    with charts.figure(height_in=4.0) as (fig, ax):
        t, offered = windowed_tok_s(req["arrival_s"], offered_tokens, duration, width)
        _, served = windowed_tok_s(req["finish_s"], served_tokens, duration, width)
        ax.step(t, offered, where="post", color=charts.GREY, linewidth=1.6,
                label=f"offered (mean {s['offered_tok_s']:,.0f} tok/s)")
        ax.step(t, served, where="post", color=charts.RED if s["starved"] else charts.BLUE, linewidth=2,
                label=f"throughput (mean {s['total_tok_s']:,.0f} tok/s)")
        ax.fill_between(t, served, step="post", color=charts.RED if s["starved"] else charts.BLUE, alpha=0.12)
        ax.set_xlim(0, duration)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("tokens per second")
        charts.thousands(ax)
        ax.set_title(f"Throughput and offered load ({width:g} s windows)")
        ax.legend(loc="lower right" if not s["starved"] else "center right")
        return charts.png_bytes(fig)


def _queues_chart(result: RunResult) -> bytes:
    ts = result.timeseries
    duration = float(result.config["duration_s"])
    with charts.figure(3, 1, height_in=6.4, sharex=True) as (fig, axes):
        if not ts or len(ts.get("t_s", ())) == 0:
            for ax in axes:
                charts.no_data(ax)
            return charts.png_bytes(fig)
        t = ts["t_s"]
        series = [
            (axes[0], ts["running"], "requests", "Running requests", charts.BLUE),
            (axes[1], ts["waiting"], "requests", "Waiting requests", charts.ORANGE),
            (axes[2], ts["kv_usage"], "share of blocks", "KV cache usage", charts.PURPLE),
        ]
        for ax, y, unit, title, colour in series:
            ax.plot(t, y, color=colour, linewidth=1.5, drawstyle="steps-post")
            ax.fill_between(t, y, step="post", color=colour, alpha=0.12)
            ax.set_title(title, fontsize=11)
            ax.set_ylabel(unit)
            ax.set_ylim(bottom=0)
        charts.thousands(axes[0])
        charts.thousands(axes[1])
        charts.percent(axes[2])
        axes[2].set_ylim(0, max(0.05, min(1.0, float(np.max(ts["kv_usage"])) * 1.15)))
        axes[2].set_xlim(0, duration)
        axes[2].set_xlabel("time (s)")
        return charts.png_bytes(fig)


def per_request_itl_ms(req: dict[str, np.ndarray]) -> np.ndarray:
    """Each completed request's mean gap between output tokens, in ms (requests with one output
    token have no gap and are left out)."""
    done = req["completed"].astype(bool) & (req["output_tokens"] > 1)
    span = req["finish_s"][done] - req["first_token_s"][done]
    return 1000.0 * span / (req["output_tokens"][done] - 1)


def _histogram(ax, values: np.ndarray, colour: str, title: str, xlabel: str) -> None:
    values = values[np.isfinite(values) & (values > 0)]
    ax.set_title(title)
    if values.size == 0:
        charts.no_data(ax, "no completed request")
        return
    lo, hi = float(values.min()), float(values.max())
    p50, p99 = np.percentile(values, [50, 99])
    # heavy tails (queueing) read better on a log axis
    log = hi / lo > 30
    bins = np.geomspace(lo, hi, 50) if log and hi > lo else 50
    ax.hist(values, bins=bins, color=colour, alpha=0.85, edgecolor="white", linewidth=0.4)
    if log:
        charts.log_axis(ax, "x")
    for value, name, style in ((p50, "p50", "-"), (p99, "p99", "--")):
        ax.axvline(value, color="#111827", linestyle=style, linewidth=1.2, label=f"{name} {value:,.0f} ms" if value >= 100 else f"{name} {value:.1f} ms")
    ax.legend(loc="upper right", frameon=True, facecolor="white", edgecolor="none", framealpha=0.9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("requests")
    charts.thousands(ax)


def _latency_chart(result: RunResult) -> bytes:
    req = result.requests
    done = req["completed"].astype(bool)
    with charts.figure(1, 2, height_in=3.8) as (fig, (left, right)):
        _histogram(left, req["ttft_ms"][done], charts.BLUE, "Time to first token", "TTFT (ms)")
        _histogram(right, per_request_itl_ms(req), charts.GREEN, "Inter-token latency, mean per request",
                   "ITL (ms)")
        return charts.png_bytes(fig)


def _adapter_order(adapters: list[dict]) -> list[int]:
    return sorted(range(len(adapters)), key=lambda i: (adapters[i]["completion_ratio"], -adapters[i]["rate_req_s"], i))


def _adapters_chart(result: RunResult) -> bytes:
    from matplotlib.patches import Patch
    from matplotlib.transforms import blended_transform_factory

    adapters = result.adapters
    order = _adapter_order(adapters)
    with charts.figure(2, 1, height_in=6.0, sharex=True) as (fig, (top, bottom)):
        if not adapters:
            charts.no_data(top)
            charts.no_data(bottom)
            return charts.png_bytes(fig)
        x = np.arange(len(order))
        starved = np.array([adapters[i]["starved"] for i in order])
        colours = np.where(starved, charts.RED, charts.BLUE)
        ratio = np.array([adapters[i]["completion_ratio"] for i in order])
        ttft = np.array([np.nan if adapters[i]["mean_ttft_ms"] is None else adapters[i]["mean_ttft_ms"] for i in order])
        width = 0.8 if len(order) <= 200 else 1.0
        top.bar(x, ratio, color=colours, width=width)
        top.set_ylim(0, 1.05)
        charts.percent(top)
        top.set_ylabel("completed / arrived")
        top.set_title("Completion ratio per adapter")
        has = np.isfinite(ttft)
        bottom.bar(x[has], ttft[has], color=colours[has], width=width)
        if has.any() and np.nanmax(ttft) / max(np.nanmin(ttft[has]), 1e-9) > 50:
            charts.log_axis(bottom, "y")
        else:
            charts.thousands(bottom)
        missing = ~has
        marked = missing.any() and len(order) <= MARKED_ADAPTERS
        if marked:
            # adapters with nothing completed have no TTFT: mark them on the axis
            trans = blended_transform_factory(bottom.transData, bottom.transAxes)
            bottom.scatter(x[missing], np.full(missing.sum(), 0.03), marker="x", color=charts.RED, s=18,
                           transform=trans, clip_on=False, zorder=3)
        bottom.set_ylabel("mean TTFT (ms)")
        title = "Mean time to first token per adapter"
        if missing.any():
            title += f" ({int(missing.sum()):,} completed nothing)"
        bottom.set_title(title)
        if len(order) <= LABELLED_ADAPTERS:
            bottom.set_xticks(x, [str(adapters[i]["adapter_id"]) for i in order], rotation=60, ha="right",
                              fontsize=8)
        else:
            bottom.set_xticks([])
        bottom.set_xlim(-0.7, len(order) - 0.3)
        bottom.set_xlabel(f"{len(order):,} adapters, worst served first")
        handles = [Patch(color=charts.RED, label=f"starved ({int(starved.sum()):,})"),
                   Patch(color=charts.BLUE, label=f"not starved ({int((~starved).sum()):,})")]
        if marked:
            from matplotlib.lines import Line2D

            handles.append(Line2D([], [], marker="x", color=charts.RED, linestyle="none",
                                  label=f"nothing completed ({int(missing.sum()):,})"))
        # above the axes: bars can fill any corner
        top.legend(handles=handles, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=len(handles),
                   borderaxespad=0.2)
        return charts.png_bytes(fig)


def _adapter_table(page: Page, result: RunResult) -> None:
    adapters = result.adapters
    order = _adapter_order(adapters)
    rows, tones = [], []
    for i in order:
        a = adapters[i]
        rows.append([
            a["adapter_id"], integer(a["rank"]), num(a["rate_req_s"], 3), integer(a["arrived"]),
            integer(a["completed"]), pct(a["completion_ratio"]), num(a["offered_tok_s"]),
            num(a["total_tok_s"]), num(a["mean_ttft_ms"]), integer(a["loads_cpu_to_gpu"]),
            "starved" if a["starved"] else "",
        ])
        tones.append("bad" if a["starved"] else None)
    page.table(
        ["adapter", "rank", "rate (req/s)", "arrived", "completed", "completed share", "offered (tok/s)",
         "served (tok/s)", "mean TTFT (ms)", "loads CPU→GPU", ""],
        rows, row_tones=tones,
        collapsed=f"All {len(adapters):,} adapters, worst served first" if len(adapters) > 12 else None,
    )


def _summary_table(page: Page, result: RunResult) -> None:
    s = result.summary

    def triplet(name: str) -> Cell:
        values = [s[f"{k}_{name}_ms"] for k in ("mean", "p50", "p99")]
        return Cell(" / ".join("-" if v is None else f"{v:,.1f}" for v in values), numeric=True)

    rows = [
        ("throughput input / output / total (tok/s)",
         Cell(f"{s['input_tok_s']:,.1f} / {s['output_tok_s']:,.1f} / {s['total_tok_s']:,.1f}", True)),
        ("offered load (tok/s)", num(s["offered_tok_s"])),
        ("throughput / offered", Cell(f"{s['throughput_over_offered']:.3f}", True)),
        (f"starved (1 - throughput/offered ≥ {s['starvation_threshold']:g})", Cell("yes" if s["starved"] else "no", True)),
        ("request throughput (req/s)", num(s["request_throughput_req_s"], 2)),
        ("TTFT mean / p50 / p99 (ms)", triplet("ttft")),
        ("ITL mean / p50 / p99 (ms)", triplet("itl")),
        ("requests arrived / sent / completed",
         Cell(f"{s['arrived']:,} / {s['sent']:,} / {s['completed']:,}", True)),
        ("preemptions", integer(s["preemptions"])),
        ("adapter loads CPU→GPU / disk→CPU",
         Cell(f"{s['adapter_loads_cpu_to_gpu']:,} / {s['adapter_loads_disk_to_cpu']:,}", True)),
        ("mean running / mean waiting / max waiting",
         Cell(f"{s['mean_running']:,.1f} / {s['mean_waiting']:,.1f} / {s['max_waiting']:,}", True)),
        ("KV cache usage mean / max", Cell(f"{s['kv_usage_mean']:.1%} / {s['kv_usage_max']:.1%}", True)),
        ("engine steps", integer(s["steps"])),
    ]
    page.table(["metric", "value"], rows, row_tones=[None, None, None, "bad" if s["starved"] else "good"]
               + [None] * (len(rows) - 4), compact=True)
