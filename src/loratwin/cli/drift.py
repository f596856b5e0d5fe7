"""`loratwin replay-drift`: a drifting workload re-placed and simulated period by period."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from loratwin.cli.app import app, err_console
from loratwin.cli.cluster import ROUTERS
from loratwin.cli.judging import (
    DEFAULT_MAX_WAIT_S,
    DEFAULT_STARVATION_THRESHOLD,
    DEFAULT_WINDOW_S,
    CheckFlag,
    MaxWaitFlag,
    ThresholdFlag,
    build_rule,
)
from loratwin.cli.memory import MaxMemoryFlag, MaxTimeFlag, configure
from loratwin.cli.serving import MetricsPollFlag, WarmFlag, under_conditions
from loratwin.errors import InputError
from loratwin.grammar import plural

DEFAULT_PERIOD_S = 300.0  # the published unpredictable workloads change every adapter's rate every 5 minutes
OWN = ("period-*.json", "periods.csv", "summary.json")
COLUMNS = ("index", "start_s", "simulated_s", "adapters", "gpus", "moves", "added", "dropped", "load_ms", "restarts",
           "refused_before", "fresh_moves", "starved_gpus", "offered_tok_s", "served_tok_s", "served_share")


@app.command("replay-drift")
def replay_drift_command(
    rates: Annotated[Path, typer.Argument(help="CSV period,adapter_id,rank,rate (rate in req/s, period k starts at k x --period), a trace directory, or a workload YAML (its requests drawn over --duration); a trace's or workload's rates are counted per period.")],
    profile: Annotated[str, typer.Option(help="Built-in profile name or a profile YAML file.")] = "llama-3.1-8b-instruct",
    period: Annotated[float, typer.Option("--period", help="Seconds per period (period k starts at k x --period): each is re-placed, then simulated for --window seconds.")] = DEFAULT_PERIOD_S,
    duration: Annotated[float, typer.Option(help="For a workload YAML: the seconds its requests are drawn over.")] = 3600.0,
    window: Annotated[float, typer.Option("--window", help="Seconds the twin simulates each period's placement at the period's rates (default: the window the starvation rule judges, an hour; --window equal to --period counts requests still queued at the period's end as unserved).")] = DEFAULT_WINDOW_S,
    router: Annotated[str, typer.Option(help=f"How the cluster twin's requests pick a GPU among those holding their adapter: {', '.join(ROUTERS)}.")] = "weighted-random",
    check: CheckFlag = "auto",
    max_wait: MaxWaitFlag = DEFAULT_MAX_WAIT_S,
    starvation_threshold: ThresholdFlag = DEFAULT_STARVATION_THRESHOLD,
    seed: Annotated[int, typer.Option(help="Seed of a workload YAML's requests and of period 0's simulation (period k: seed + k).")] = 0,
    workers: Annotated[int, typer.Option(help="Processes simulating the GPUs of a period (0: 2).")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the periods as one JSON document on stdout.")] = False,
    out: Annotated[Path | None, typer.Option(help="Folder for the results: period-K.json (placement, moves, twin) per period as it finishes, periods.csv, summary.json.")] = None,
    warm: WarmFlag = None,
    metrics_poll: MetricsPollFlag = None,
    max_memory: MaxMemoryFlag = None,
    max_time: MaxTimeFlag = None,
) -> None:
    """Re-place a drifting workload period by period (fewest adapters moved) and simulate each period."""
    import json

    configure("replay-drift", max_memory, max_time, kind="place")
    if workers < 0:
        raise InputError(f"--workers must be >= 0, got {workers}")
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    from loratwin.twin.cluster import DEFAULT_SPILL_THRESHOLD
    from loratwin.twin.cluster.spec import check_router

    check_router(router, DEFAULT_SPILL_THRESHOLD)
    from loratwin.files import Output, check_outputs

    check_outputs(Output("--out", out, folder=True, own=OWN), inputs=[rates])
    from loratwin import budget
    from loratwin.plan import make_check
    from loratwin.plan.drift import read_periods, replay_drift
    from loratwin.profiles import load_profile

    rule = build_rule(max_wait, starvation_threshold, window)
    loaded = under_conditions(load_profile(profile), warm, metrics_poll)
    periods = read_periods(rates, period, duration, seed, model_name=loaded.tokenizer or loaded.name)
    from loratwin.plan.judge.twin import TWIN_SLOT_CANDIDATES

    # each period is placed (by the twin too, with --check twin) and then simulated, as place --verify prices it
    runs = len(TWIN_SLOT_CANDIDATES) if check == "twin" else 0
    estimates = [budget.twin_placement_estimate(len(p.workload.adapters), p.workload.aggregate_rate_req_s,
                                                window, slot_candidates=runs, verify=True, workers=workers or 2,
                                                verify_flag="the cluster twin of each period")
                 for p in periods]
    budget.require(budget.Estimate(max(e.bytes for e in estimates), sum(e.seconds for e in estimates),
                                   f"{len(periods)} periods: " + estimates[0].what))
    judge = make_check(check, loaded, periods[0].workload.lengths, rule=rule)
    writer = _Writer(out, len(periods)) if out is not None else None
    finished = []

    def done(result) -> None:
        finished.append(result)
        err_console.print(_line(result), markup=False, highlight=False, soft_wrap=True)
        if writer is not None:
            writer.add(result)

    try:
        replay_drift(periods, loaded, judge, rule, seed=seed, workers=workers or None, window_s=window,
                     router=router, on_period=done)
    except KeyboardInterrupt:
        if writer is not None:
            writer.finish(complete=False)
        where = "" if out is None else f"; they are in {out}" if finished else f"; {out} is left as it was"
        err_console.print(f"interrupted after {len(finished)} of {len(periods)} periods{where}", markup=False,
                          highlight=False, soft_wrap=True)
        if json_out:  # the finished periods, marked incomplete
            sys.stdout.write(json.dumps(_summary(finished, len(periods), False), indent=2) + "\n")
        elif finished:
            _print_table(finished)
        raise typer.Exit(130) from None
    if writer is not None:
        writer.finish(complete=True)
        err_console.print(f"wrote {out}")
    if json_out:
        sys.stdout.write(json.dumps(_summary(finished, len(periods), True), indent=2) + "\n")
        return
    _print_table(finished)


def _starved(r) -> str:
    """The starved GPUs by index ("GPU 0", "GPUs 0, 3"), or "none": never a bare index read as a count."""
    if not r.starved_gpus:
        return "none"
    return ("GPU " if len(r.starved_gpus) == 1 else "GPUs ") + ", ".join(map(str, r.starved_gpus))


def _line(r) -> str:
    return (f"period {r.index}: {plural(r.gpus, 'GPU')}, {r.moves} moved ({r.fresh_moves} afresh), {r.added} added, "
            f"loads {r.load_ms / 1000:.2f} s, starved: {_starved(r)}, served {r.served_share:.1%}")


def _summary(results, total: int, complete: bool) -> dict:
    return {
        "complete": complete, "periods_done": len(results), "periods": total,
        "total_moves": sum(r.moves for r in results), "total_fresh_moves": sum(r.fresh_moves for r in results),
        "total_load_ms": sum(r.load_ms for r in results),
        "starved_periods": sum(1 for r in results if r.starved_gpus),
        "rows": [r.row() for r in results],
    }


class _Writer:
    """The --out folder, each file written whole as its period finishes. A previous result there is
    replaced only once a period of this run has finished: stopped before that, the folder keeps it."""

    def __init__(self, out: Path, total: int) -> None:
        self.out, self.total, self.results = out, total, []

    def _clear(self) -> None:
        self.out.mkdir(exist_ok=True)
        for pattern in OWN:  # a previous result of this command (check_outputs allowed nothing else)
            for old in self.out.glob(pattern):
                old.unlink()

    def add(self, result) -> None:
        import json

        from loratwin.files import atomic_write

        if not self.results:
            self._clear()
        self.results.append(result)
        doc = {**result.row(), "placement": result.placement}
        text = json.dumps(doc, indent=2) + "\n"
        atomic_write(self.out / f"period-{result.index:04d}.json", lambda tmp: tmp.write_text(text))
        self._table()
        self.finish(complete=False)

    def _table(self) -> None:
        import csv
        import io

        from loratwin.files import atomic_write

        buffer = io.StringIO()
        table = csv.writer(buffer, lineterminator="\n")
        table.writerow(COLUMNS)
        for r in self.results:
            row = r.row()
            table.writerow([" ".join(map(str, row[c])) if c == "starved_gpus" else row[c] for c in COLUMNS])
        atomic_write(self.out / "periods.csv", lambda tmp: tmp.write_text(buffer.getvalue()))

    def finish(self, complete: bool) -> None:
        import json

        from loratwin.files import atomic_write

        if not self.results:  # nothing finished: what the folder held stays as it was
            return
        text = json.dumps(_summary(self.results, self.total, complete), indent=2) + "\n"
        atomic_write(self.out / "summary.json", lambda tmp: tmp.write_text(text))


def _print_table(results) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=200)
    table = Table(show_header=True, header_style="bold")
    for column in ("period", "start s", "adapters", "GPUs", "moved", "afresh", "added", "dropped", "loads s",
                   "restarts", "refused before", "starved", "served"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(str(r.index), f"{r.start_s:g}", str(r.adapters), str(r.gpus), str(r.moves), str(r.fresh_moves),
                      str(r.added), str(r.dropped), f"{r.load_ms / 1000:.2f}", str(r.restarts), str(r.refused_before),
                      _starved(r), f"{r.served_share:.1%}")
    console.print(table)
    console.print(f"{plural(sum(r.moves for r in results), 'adapter')} moved in all ({sum(r.fresh_moves for r in results)} "
                  f"with a fresh placement every period); periods with a starved GPU: "
                  f"{sum(1 for r in results if r.starved_gpus)} of {len(results)}", highlight=False)
