"""`loratwin sweep` and `loratwin labels`: grids of twin runs into a resumable store, and the optimum labels."""

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from loratwin.cli.app import app, check_threshold, stop_progress
from loratwin.cli.memory import MaxMemoryFlag, MaxTimeFlag, configure
from loratwin.errors import LoratwinError
from loratwin.files import Output, check_outputs

# user text (grid names, paths) prints literally; the tables style their own cells
stdout = Console(highlight=False, markup=False)
stderr = Console(stderr=True, highlight=False, markup=False)

LABEL_ROWS_SHOWN = 20
SLO_HELP = ("A latency SLO, KEY:MS (repeatable; keys ttft_mean, ttft_p99, itl_p99, tpot_p99): a point counts only "
            "when it does not starve and the twin's metric is at most MS, e.g. --slo ttft_p99:2000.")


@app.command("sweep")
def sweep(
    grid: Annotated[str, typer.Argument(help="Grid YAML file, or the name of a built-in grid: paper.")],
    out: Annotated[Path, typer.Option(help="Results directory (created; rerun the same command to resume).")] = ...,
    workers: Annotated[int | None, typer.Option(help="Parallel runs. Default: all cores (local), the cluster's CPUs (ray).")] = None,
    backend: Annotated[str, typer.Option(help="local (processes on this machine) or ray.")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (with --backend ray); default: a local Ray.")] = None,
    search: Annotated[bool, typer.Option("--search", help="Find each (workload, max_loras) frontier by bisection instead of running every served count.")] = False,
    threshold: Annotated[float, typer.Option(help="With --search: a run starves when 1 - throughput/offered >= this.")] = 0.1,
    profile: Annotated[str | None, typer.Option(help="Profile (built-in name or YAML file) instead of the grid's.")] = None,
    workloads: Annotated[str | None, typer.Option("--workloads", help="Only these workloads of the grid, in grid order: N (the first N) or START:STOP[:STEP].")] = None,
    max_configs: Annotated[int | None, typer.Option("--max-configs", help="Only the first N runs of the grid (full sweeps).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a summary as one JSON document on stdout.")] = False,
    report: Annotated[Path | None, typer.Option(help="Also write an HTML report of the results here.")] = None,
    max_memory: MaxMemoryFlag = None,
    max_time: MaxTimeFlag = None,
) -> None:
    """Run a grid of twin simulations in parallel into a resumable results store."""
    import json
    import shlex

    from loratwin.sweep.runners import clamp_workers

    workers, workers_note = clamp_workers(backend, workers)
    configure("sweep", max_memory, max_time, copies=workers)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from loratwin.report.html import REPORT_FILES
    from loratwin.sweep.execute import SweepProgress, check_sweep_args, run_sweep
    from loratwin.sweep.grid import expand, load_grid, parse_slice
    from loratwin.sweep.runners import check_runner_args

    check_sweep_args(search, threshold, max_configs)
    check_runner_args(backend, workers, address)
    workload_slice = parse_slice(workloads) if workloads else None
    # the store is written in place (a rerun resumes it); a report may go inside it
    from loratwin.sweep.store import STORE_MARKS

    check_outputs(Output("--out", out, folder=True, own=None, resumes=STORE_MARKS),
                  Output("--report", report, folder=True, own=REPORT_FILES))
    spec, source = load_grid(grid)
    if profile is not None:
        from loratwin.errors import InputError
        from loratwin.profiles import load_profile

        try:  # a mistake here is in the flag, not in the grid file
            load_profile(profile)
        except InputError as err:
            raise InputError(f"--profile: {err}") from None
        spec = spec.model_copy(update={"profile": profile})
    expansion = expand(spec, source, workload_slice=workload_slice)
    if not expansion.runs:
        raise LoratwinError(
            f"{source}: no run to do ({expansion.skipped_infeasible} configurations cannot start on profile "
            f"{expansion.profile.name}, and max_loras must be <= served)"
        )

    if workers_note:  # once the grid is accepted: a refusal prints alone
        stderr.print(workers_note, soft_wrap=True)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("runs {task.fields[runs]}  failed {task.fields[failed]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=stderr,
    )
    task = progress.add_task("sweep", total=None, runs=0, failed=0)

    def show(state: SweepProgress) -> None:
        progress.start()  # at the first report, once the store has accepted the grid: a refusal prints alone
        progress.update(
            task,
            description=f"sweep ({state.unit_name})",
            completed=state.units_done,
            total=state.units_total,
            runs=state.runs_done,
            failed=state.failed,
        )

    try:
        try:
            summary = run_sweep(
                spec, out, source=source, search=search, threshold=threshold, backend=backend, workers=workers,
                address=address, max_configs=max_configs, on_progress=show, expansion=expansion,
                on_warning=lambda line: stderr.print(f"warning: {line}", markup=False, soft_wrap=True),
            )
        finally:
            stop_progress(progress)
    except KeyboardInterrupt:
        stderr.print(f"interrupted: finished runs are stored in {out}; run the same command again to resume")
        raise typer.Exit(130) from None

    data = summary.to_dict()
    if report is not None:
        from loratwin.report import write_sweep_report
        from loratwin.sweep.store import read_results

        stderr.print(f"wrote report {write_sweep_report(read_results(out), report)}")
    if json_out:
        print(json.dumps(data, indent=2))
        return
    what = "search" if search else "sweep"
    stdout.print(f"{what} of grid {summary.grid} ({summary.profile}) into {summary.out}")
    considered = "runs in the grid" if max_configs is None else f"runs in the first {max_configs} of the grid"
    stdout.print(
        f"  {considered}: {summary.configs}  (configurations that cannot start, skipped: "
        f"{summary.skipped_infeasible})"
    )
    stdout.print(f"  already stored: {summary.already_done}  run now: {summary.ran}  failed: {summary.failed}")
    rate = f"{summary.runs_per_s:.2f} runs/s" if summary.runs_per_s else "-"
    stdout.print(f"  wall time: {summary.wall_s:.1f} s ({rate}, {summary.workers} workers, {summary.backend})")
    stdout.print(f"  stored: {summary.store_bytes / 1e6:.2f} MB;  next: {shlex.join(['loratwin', 'labels', str(summary.out)])}")


@app.command("labels")
def labels(
    results: Annotated[Path, typer.Argument(help="Results directory of a sweep.")],
    threshold: Annotated[float, typer.Option(help="A run starves when 1 - throughput/offered >= this.")] = 0.1,
    out: Annotated[Path | None, typer.Option(help="Where to write labels and frontiers (Parquet and CSV). Default: RESULTS/labels.")] = None,
    slo: Annotated[list[str] | None, typer.Option("--slo", help=SLO_HELP)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the labels as one JSON document on stdout.")] = False,
) -> None:
    """Optimum labels: per workload and max_loras the largest served count before starvation (or an SLO broken), and the best overall."""
    import json

    from rich.table import Table

    from loratwin.slo import parse_slos
    from loratwin.sweep.labels import LABEL_FILES, write_labels

    check_threshold(threshold, "--threshold")
    slos = parse_slos(slo)
    if not results.is_dir():
        what = "not a folder" if results.exists() else "does not exist"
        raise LoratwinError(f"{results}: {what} (expected the --out folder of a sweep)")
    check_outputs(Output("--out", out if out is not None else results / "labels", folder=True, own=LABEL_FILES),
                  inputs=[results])
    data = write_labels(results, threshold=threshold, out=out, slos=slos)
    for line in data["warnings"]:
        stderr.print(f"warning: {line}", markup=False, soft_wrap=True)
    if json_out:
        print(json.dumps(data, indent=2, allow_nan=False))
        return
    counts = ", ".join(f"{k}: {v}" for k, v in data["frontier_status"].items())
    stdout.print(
        f"{data['workloads']} workloads, {data['frontiers']} frontiers ({counts}) from {data['runs']} runs, "
        f"threshold {threshold:g}" + (f", SLOs {' '.join(data['slos'])}" if slos else "")
    )
    table = Table("workload", "ranks", "best max_loras", "best served", "total tok/s")
    for row in data["labels"][:LABEL_ROWS_SHOWN]:
        load = (
            "/".join(f"{r:g}" for r in row["rate_levels"]) + " req/s"
            if row["layout"] == "levels"
            else f"zipf {row['zipf_total_rate_req_s']:g} req/s, s={row['zipf_exponent']:g}"
        )
        table.add_row(
            f"{load}, seed {row['seed']}",
            "/".join(str(r) for r in row["rank_levels"]),
            _text(row["best_max_loras"]),
            _text(row["best_served"]),
            "-" if row["best_total_tok_s"] is None else f"{row['best_total_tok_s']:.0f}",
        )
    stdout.print(table)
    if len(data["labels"]) > LABEL_ROWS_SHOWN:
        stdout.print(f"... and {len(data['labels']) - LABEL_ROWS_SHOWN} more")
    for path in data["files"]:
        stdout.print(f"wrote {path}")


def _text(value: Any) -> str:
    return "-" if value is None else str(value)
