"""Terminal rendering of results with rich.

Text that comes from the user's files (adapter ids, model and GPU names, paths) is printed literally:
cells get it as `Text`, styled lines `escape` it, so square brackets in it are never read as markup."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from loratwin.grammar import plural
from loratwin.profiles.serving import conditions_text
from loratwin.twin.result import ADAPTER_CHECK_TAIL_FRACTION

if TYPE_CHECKING:
    from loratwin.profiles import Profile
    from loratwin.twin import RunResult

MAX_LISTED_ADAPTERS = 20


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _ms_triplet(summary: dict, name: str) -> str:
    return " / ".join(_num(summary[f"{k}_{name}_ms"]) for k in ("mean", "p50", "p99"))


def print_run_result(result: RunResult, console: Console) -> None:
    cfg, s = result.config, result.summary
    srv, wl = cfg["server"], cfg["workload"]
    console.print(
        f"[bold]{escape(str(cfg['profile']))}[/] on {escape(str(cfg['gpu']))}\n"
        f"{wl['served_adapters']} adapters (ranks {', '.join(map(str, wl['ranks']))}), "
        f"{wl['aggregate_rate_req_s']:.2f} req/s offered; request lengths: {escape(str(wl['request_lengths']))}\n"
        f"--max-loras {srv['max_loras']} --max-cpu-loras {srv['max_cpu_loras']} "
        f"--max-lora-rank {srv['max_lora_rank']} --max-num-seqs {srv['max_num_seqs']} "
        f"--max-num-batched-tokens {srv['max_num_batched_tokens']}"
        + (f" (client cap {srv['client_max_waiting']} waiting)" if srv["client_max_waiting"] is not None else "")
        + f"; KV cache {srv['kv_cache_tokens']:,} tokens; {cfg['duration_s']:g} s, seed {cfg['seed']}"
        + (f"\n{conditions_text(cfg['serving'])}" if "serving" in cfg else ""),
        highlight=False,
    )
    table = Table(show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("throughput input / output / total (tok/s)",
                  f"{_num(s['input_tok_s'])} / {_num(s['output_tok_s'])} / {_num(s['total_tok_s'])}")
    table.add_row("offered load (tok/s)", _num(s["offered_tok_s"]))
    table.add_row("throughput / offered", f"{s['throughput_over_offered']:.3f}")
    verdict = "[bold red]STARVED[/]" if s["starved"] else "[green]not starved[/]"
    table.add_row(f"starvation (1 - throughput/offered >= {s['starvation_threshold']:g})", verdict)
    table.add_row("TTFT mean / p50 / p99, completed requests (ms)", _ms_triplet(s, "ttft"))
    if "p99_ttft_all_sent_ms" in s:  # what the TTFT SLOs judge (loratwin.slo)
        table.add_row("TTFT mean / p99, every request sent (ms)",
                      f"{_num(s['mean_ttft_all_sent_ms'])} / {_num(s['p99_ttft_all_sent_ms'])}")
        table.add_row("requests sent without a first token at the end", f"{s['no_first_token_at_end']:,}")
    table.add_row("ITL mean / p50 / p99 (ms)", _ms_triplet(s, "itl"))
    table.add_row("TPOT mean / p50 / p99 (ms)", _ms_triplet(s, "tpot"))
    table.add_row("requests arrived / sent / completed",
                  f"{s['arrived']:,} / {s['sent']:,} / {s['completed']:,}")
    table.add_row("preemptions", f"{s['preemptions']:,}")
    table.add_row("adapter loads CPU->GPU / disk->CPU",
                  f"{s['adapter_loads_cpu_to_gpu']:,} / {s['adapter_loads_disk_to_cpu']:,}")
    table.add_row("mean running / mean waiting / max waiting",
                  f"{_num(s['mean_running'])} / {_num(s['mean_waiting'])} / {s['max_waiting']:,}")
    table.add_row("KV cache usage mean / max", f"{s['kv_usage_mean']:.1%} / {s['kv_usage_max']:.1%}")
    table.add_row("engine steps", f"{s['steps']:,}")
    console.print(table)

    starved = [a for a in result.adapters if a["starved"]]
    if not starved:
        console.print("No adapter starves individually.")
        return
    console.print(f"[bold]{len(starved)} of {plural(len(result.adapters), 'adapter')} starve individually[/] "
                  f"(served tokens short of offered by >= {s['starvation_threshold']:.0%}):")
    shown = Table(show_header=True, header_style="bold")
    for col in ("adapter", "rank", "rate (req/s)", "arrived", "completed", "mean TTFT (ms)"):
        shown.add_column(col, justify="right")
    for a in sorted(starved, key=lambda a: a["completion_ratio"])[:MAX_LISTED_ADAPTERS]:
        shown.add_row(Text(str(a["adapter_id"])), str(a["rank"]), f"{a['rate_req_s']:g}", f"{a['arrived']:,}",
                      f"{a['completed']:,}", _num(a["mean_ttft_ms"], 0))
    console.print(shown)
    if len(starved) > MAX_LISTED_ADAPTERS:
        console.print(f"... and {len(starved) - MAX_LISTED_ADAPTERS} more (see --json or --out).")


def print_profiles(profiles: list[Profile], console: Console) -> None:
    """The profiles, their names whole (they are typed as --profile) however narrow the terminal, and
    nothing cut: a value too long for its column folds onto the next line."""
    table = Table(show_header=True, header_style="bold")
    table.add_column("name", no_wrap=True, overflow="fold", min_width=max((len(p.name) for p in profiles), default=4))
    for col in ("model", "GPU", "engine", "fitted"):
        table.add_column(col, overflow="fold")
    for p in profiles:
        table.add_row(*(Text(str(v)) for v in (p.name, p.model, p.gpu, p.engine, p.fitted)))
    console.print(table)


def print_error_table(rows: list[dict], console: Console) -> None:
    """The validation error table: ours beside the published twin's (lower is better), each
    (model, set) also over its latency regime; then a second table of the latency tails."""

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}%"

    from loratwin.validate.errors import format_share as share
    from loratwin.validate.errors import metric_title, regime_views, tail_cell
    from loratwin.validate.runs import LATENCY_METRICS

    table = Table(show_header=True, header_style="bold", title="twin vs real runs (error: 100·mean|y-p|/(|y|+|p|))")
    for col in ("model", "set", "runs", "throughput err\nours / published", "ITL err\nours / published",
                "TTFT err\nours", "starvation agreement\nours / published", "start-failure\nagreement"):
        table.add_column(col, justify="right")
    for row in rows:
        for label, r in regime_views(row):
            t, i, f = r["total_tok_s"], r["mean_itl_ms"], r["mean_ttft_ms"]
            regime = r is not row
            table.add_row(
                Text(str(row["model"])), Text(f"{row['source_set']}\n{label}" if regime else str(row["source_set"])),
                str(t["n"]),
                f"{pct(t['half_smape'])} / {pct(r['published_total_tok_s']['half_smape'])}",
                f"{pct(i['half_smape'])} / {pct(r['published_mean_itl_ms']['half_smape'])}",
                pct(f["half_smape"]),
                "-" if regime else f"{share(row['starvation_agreement'])} / {share(row['published_starvation_agreement'])}",
                "-" if regime else f"{share(row['start_agreement'])} ({row['start_runs']})",
            )
    console.print(table)
    tails = Table(show_header=True, header_style="bold",
                  title="tails (half-SMAPE, x median twin/real)")
    for col in ("model", "set", "over (runs)", *(metric_title(m) for m in LATENCY_METRICS)):
        tails.add_column(col, justify="right")
    for row in rows:
        for label, r in regime_views(row):
            tails.add_row(Text(str(row["model"])), Text(str(row["source_set"])),
                          Text(f"{label} ({r['mean_ttft_ms']['n']})"),
                          *(tail_cell(r[m]) for m in LATENCY_METRICS))
    console.print(tails)


def print_seed_runs(results: list[RunResult], mean: dict, console: Console) -> None:
    """One row per seed and their mean."""
    table = Table(show_header=True, header_style="bold", title=f"{len(results)} seeds")
    for col in ("seed", "tok/s", "served/offered", "starved", "TTFT ms", "ITL ms", "done", "preempt", "starved adapters"):
        table.add_column(col, justify="right")
    for r in results:
        s = r.summary
        table.add_row(str(r.config["seed"]), _num(s["total_tok_s"]), f"{s['throughput_over_offered']:.3f}",
                      "yes" if s["starved"] else "no", _num(s["mean_ttft_ms"], 0), _num(s["mean_itl_ms"]),
                      f"{s['completed']:,}", f"{s['preemptions']:,}", str(s["starved_adapters"]))
    table.add_row("mean", _num(mean["total_tok_s"]), f"{mean['throughput_over_offered']:.3f}",
                  f"{mean['starved_share']:.0%}", _num(mean["mean_ttft_ms"], 0), _num(mean["mean_itl_ms"]),
                  _num(mean["completed"], 0), _num(mean["preemptions"], 0), _num(mean["starved_adapters"], 1),
                  style="bold")
    console.print(table)


def print_slos(rows: list[dict], goodput_req_s: float, completed_req_s: float, console: Console,
               title: str = "SLOs", no_first_token: float | None = None) -> None:
    """Each SLO (`loratwin.slo.slo_status` rows): its value, its limit and whether it is met; then what
    a TTFT SLO judges (every request sent, `no_first_token` of them still without a first token at
    the end) and the goodput (completed requests per second that met every SLO) and its share of the
    completed."""
    table = Table(show_header=True, header_style="bold", title=title)
    for col in ("SLO", "metric", "value ms", "limit ms", "met"):
        table.add_column(col, justify="left" if col in ("SLO", "metric") else "right")
    for r in rows:
        met = "-" if r["met"] is None else "yes" if r["met"] else "[bold red]NO[/]"
        table.add_row(r["slo"], r["metric"], _num(r["value_ms"], 1), _num(r["limit_ms"], 0), met)
    console.print(table)
    if any(r["metric"].endswith("ttft_all_sent_ms") for r in rows):
        waiting = (f"; {no_first_token:,.0f} still without a first token at the end count their wait so far"
                   if no_first_token else "")
        console.print(f"TTFT SLOs judge every request sent (those of the last {ADAPTER_CHECK_TAIL_FRACTION:.0%} of "
                      f"the window left out){waiting}", highlight=False)
    share = goodput_req_s / completed_req_s if completed_req_s > 0 else 0.0
    console.print(f"goodput {goodput_req_s:.3f} req/s: {share:.1%} of the {completed_req_s:.3f} req/s completed met "
                  "every SLO", highlight=False)


def print_workload_summary(summary: dict, console: Console) -> None:
    table = Table(show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    rates = summary["rate_req_s"]
    table.add_row("adapters (idle)", f"{summary['adapters']} ({summary['idle_adapters']})")
    table.add_row("aggregate rate (req/s)", f"{summary['aggregate_rate_req_s']:.3f}")
    table.add_row("expected rate over the window (req/s)", f"{summary['expected_aggregate_rate_req_s']:.3f}")
    table.add_row("per-adapter rate min / median / mean / max",
                  f"{rates['min']:g} / {rates['median']:g} / {rates['mean']:.4g} / {rates['max']:g}")
    table.add_row("ranks", Text(", ".join(f"{k}: {v}" for k, v in summary["ranks"].items())))
    table.add_row("arrival processes", Text(", ".join(f"{k}: {v}" for k, v in summary["arrival_processes"].items())))
    lengths = summary["lengths"]
    table.add_row("request lengths", Text(str(lengths["name"])))
    table.add_row("mean prompt / output tokens", f"{_num(lengths['mean_prompt_tokens'])} / {_num(lengths['mean_output_tokens'])}")
    table.add_row("offered load (tok/s)", _num(summary["offered_tok_s"]))
    table.add_row(f"expected requests in {summary['duration_s']:g} s", f"{summary['expected_requests']:,.0f}")
    if "trace" in summary:
        t = summary["trace"]
        table.add_row("trace requests / span (s)", f"{t['requests']:,} / {t['span_s']:.1f}")
        table.add_row("trace mean prompt / output tokens", f"{_num(t['mean_prompt_tokens'])} / {_num(t['mean_output_tokens'])}")
    console.print(table)
