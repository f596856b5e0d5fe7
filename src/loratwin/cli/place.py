"""`loratwin place`: adapters over the fewest GPUs, one `vllm serve` command per GPU."""

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from loratwin.cli.app import app, err_console
from loratwin.cli.cluster import ROUTERS, check_router_flag
from loratwin.cli.judging import (
    DEFAULT_ADAPTER_DIR,
    DEFAULT_STARVATION_THRESHOLD,
    DEFAULT_WINDOW_S,
    AdapterDirFlag,
    CheckFlag,
    MaxWaitFlag,
    ModelsFlag,
    SloFlag,
    ThresholdFlag,
    build_rule,
    check_models_dir,
    pick_window,
)
from loratwin.cli.memory import MaxMemoryFlag, MaxTimeFlag, configure
from loratwin.cli.serving import MetricsPollFlag, WarmFlag, under_conditions
from loratwin.errors import InputError
from loratwin.grammar import plural
from loratwin.slo import slo_line

# loratwin.plan.placement.search.DEFAULT_SEARCH_MOVES, written out so that start-up does not import the planner;
# tests/cli/test_startup.py checks that the two agree.
DEFAULT_SEARCH_MOVES = 50
MAX_LISTED_ADAPTERS = 6
OUT_SUFFIXES = (".json", ".yaml", ".yml")


@app.command("place")
def place_command(
    adapters: Annotated[Path, typer.Argument(help="CSV adapter_id,rank,rate (req/s), a workload YAML, or a trace directory.")],
    profile: Annotated[str, typer.Option(help="Built-in profile name or a profile YAML file.")] = "llama-3.1-8b-instruct",
    gpus: Annotated[int | None, typer.Option(help="Place on exactly this many GPUs (error if not enough). Default: as few as possible.")] = None,
    algorithm: Annotated[str, typer.Option(help="greedy, round-robin, least-loaded, rank-grouped or exact (at most 12 adapters).")] = "greedy",
    check: CheckFlag = "auto",
    models: ModelsFlag = None,
    verify: Annotated[bool, typer.Option(help="Simulate every GPU with the twin and judge its numbers by the same rule.")] = False,
    compare: Annotated[bool, typer.Option(help="Also give the fewest GPUs of the other algorithms (greedy, round-robin, least-loaded, rank-grouped) under the same check.")] = False,
    window: Annotated[float | None, typer.Option("--window", help=f"The window the rule judges starvation over: simulated seconds per GPU for --verify and per run of the twin check, and the cost model's window (default {DEFAULT_WINDOW_S:g}: the reference runs lasted an hour).")] = None,
    verify_duration: Annotated[float | None, typer.Option("--verify-duration", help="The same as --window.")] = None,
    max_wait: MaxWaitFlag = None,
    slo: SloFlag = None,
    starvation_threshold: ThresholdFlag = DEFAULT_STARVATION_THRESHOLD,
    search_moves: Annotated[int, typer.Option(help="After the greedy, move adapters between GPUs up to this many times to free GPUs (0: the greedy alone).")] = DEFAULT_SEARCH_MOVES,
    workers: Annotated[int, typer.Option(help="Processes for --verify (0: 2).")] = 0,
    router: Annotated[str | None, typer.Option(help=f"--verify the GPUs as one cluster behind this router ({', '.join(ROUTERS)}; see simulate-cluster). Default: each GPU on its own.")] = None,
    adapter_dir: AdapterDirFlag = DEFAULT_ADAPTER_DIR,
    from_placement: Annotated[Path | None, typer.Option("--from", help="A placement written by place --out: keep every adapter where the rule still accepts it and move the fewest (prints the moves and what a fresh placement would move).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the placement as one JSON document on stdout.")] = False,
    out: Annotated[Path | None, typer.Option(help="Also write the placement here (.yaml, or .json).")] = None,
    routing_out: Annotated[Path | None, typer.Option("--routing-out", help="Also write the routing table alone here (.yaml, or .json): adapter -> GPU -> share of its requests.")] = None,
    report: Annotated[Path | None, typer.Option(help="Also write an HTML report of the placement here.")] = None,
    warm: WarmFlag = None,
    metrics_poll: MetricsPollFlag = None,
    max_memory: MaxMemoryFlag = None,
    max_time: MaxTimeFlag = None,
) -> None:
    """Place adapters on the fewest GPUs without starving requests; print each GPU's vLLM command."""
    import json


    configure("place", max_memory, max_time, kind="place")
    from loratwin.plan import load_adapters, make_check
    from loratwin.plan.placement import compare_algorithms, place, verify_placement
    from loratwin.profiles import load_profile

    window, window_flag = pick_window(window, verify_duration, "--verify-duration")
    rule = build_rule(max_wait, starvation_threshold, window, window_flag, slo)
    from loratwin.plan.placement.result import check_adapter_dir

    check_adapter_dir(adapter_dir)
    if models is not None and check != "learned":
        raise InputError(f"--models {models}: place reads the models only with --check learned (got --check {check})")
    _check_flags(gpus, search_moves, workers)
    if gpus is not None:
        from loratwin import budget

        budget.require(budget.requested_gpus_estimate(gpus))
    check_router_flag(router, verify)
    _check_output_places(out, report, adapters, routing_out)
    workload = load_adapters(adapters)
    loaded = under_conditions(load_profile(profile), warm, metrics_poll)
    check_models_dir(models, profile=loaded.name)
    judge = make_check(check, loaded, workload.lengths, rule=rule, arrival=workload.arrival, models_dir=models)
    handover = getattr(judge, "note", None) is not None  # the twin judges the SLOs the estimator does not predict
    if check == "twin" or verify or handover:
        from loratwin import budget
        from loratwin.plan.judge.handover import TWIN_RUNS_PER_SHARE
        from loratwin.plan.judge.twin import TWIN_SLOT_CANDIDATES

        runs = len(TWIN_SLOT_CANDIDATES) if check == "twin" else TWIN_RUNS_PER_SHARE if handover else 0
        budget.require(budget.twin_placement_estimate(
            len(workload.adapters), workload.aggregate_rate_req_s, window, slot_candidates=runs, verify=verify,
            workers=workers or 2, screened=handover,
            flag="the twin check (--check twin)" if check == "twin" else "the twin judging the SLOs (--slo)"))
    replaced = None
    if from_placement is not None:
        from loratwin.cli.moves import replace_from

        replaced = replace_from(from_placement, workload, loaded, judge, search_moves, gpus, algorithm, compare)
        placement = replaced.placement
    else:
        placement = place(workload, loaded, gpus=gpus, algorithm=algorithm, check=judge, search_moves=search_moves)
    placement.adapter_dir = adapter_dir
    doc = placement.to_dict() if replaced is None else replaced.to_dict()
    from loratwin.profiles.serving import conditions

    doc["serving"] = conditions(loaded)  # what the twin's latencies assumed (--warm, --metrics-poll)
    if compare:
        doc["compare"] = compare_algorithms(workload, loaded, check=judge, skip=algorithm)
    verification = None
    if verify:
        if out is not None:  # kept if the verification is interrupted
            _write(doc, out)
            err_console.print(f"wrote {out} (the verification is added when it ends)")
        err_console.print(f"verifying {plural(placement.gpu_count, 'GPU')} with the twin ({window:g} s each)...")
        verification = verify_placement(placement, loaded, duration_s=window, rule=rule, workers=workers or None,
                                        router=router, workload=workload)
        doc["verification"] = verification.to_dict()
    if out is not None:
        _write(doc, out)
        err_console.print(f"wrote {out}")
    if routing_out is not None:
        _write(doc["routing"], routing_out)
        err_console.print(f"wrote {routing_out}")
    if report is not None:
        from loratwin.report import write_plan_report

        err_console.print(f"wrote report {write_plan_report(doc, report)}")
    if json_out:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    console = Console() if sys.stdout.isatty() else Console(width=200)
    if replaced is not None:
        from loratwin.cli.moves import print_moves

        print_moves(replaced, console)
    _print_placement(placement, verification, console, doc.get("compare"), doc["serving"])


def _check_flags(gpus: int | None, search_moves: int, workers: int) -> None:
    if gpus is not None and gpus < 1:
        raise InputError(f"--gpus must be >= 1, got {gpus}")
    if search_moves < 0:
        raise InputError(f"--search-moves must be >= 0 (0: the greedy alone), got {search_moves}")
    if workers < 0:
        raise InputError(f"--workers must be >= 0, got {workers}")


def _check_output_places(out: Path | None, report: Path | None, adapters: Path, routing_out: Path | None = None) -> None:
    from loratwin.files import Output, check_outputs
    from loratwin.report.html import REPORT_FILES

    for flag, path in (("--out", out), ("--routing-out", routing_out)):
        if path is not None and path.suffix.lower() not in OUT_SUFFIXES:
            raise InputError(f"{flag} {path}: expected a .yaml or .json file name")
    check_outputs(Output("--out", out), Output("--routing-out", routing_out),
                  Output("--report", report, folder=True, own=REPORT_FILES), inputs=[adapters])


def _write(doc: dict, path: Path) -> None:
    import json

    from loratwin.files import atomic_write

    if path.suffix.lower() == ".json":
        text = json.dumps(doc, indent=2) + "\n"
    else:
        import yaml

        text = yaml.safe_dump(doc, sort_keys=False, width=1_000_000)
    atomic_write(path, lambda tmp: tmp.write_text(text))  # a file the user had is never half written


def _adapter_list(adapters) -> str:
    ids = [a.id for a in adapters]
    shown = ", ".join(ids[:MAX_LISTED_ADAPTERS])
    return shown + (f", ... (+{len(ids) - MAX_LISTED_ADAPTERS})" if len(ids) > MAX_LISTED_ADAPTERS else "")


def _print_placement(placement, verification, console: Console, compared: dict | None = None,
                     serving: dict | None = None) -> None:
    from rich.table import Table

    from loratwin.profiles.serving import conditions_text

    console.print(
        f"[bold]{placement.gpu_count} GPU{'s' if placement.gpu_count != 1 else ''}[/] for {plural(len(placement.routing), 'adapter')} "
        f"({placement.algorithm}, judged by the {placement.check} check, {placement.elapsed_s:.2f} s); "
        f"lower bound {placement.lower_bound} GPU{'s' if placement.lower_bound != 1 else ''}"
        f"{' (no placement this check accepts uses fewer)' if placement.proven_fewest else ''}; profile "
        f"{escape(placement.profile)}",
        highlight=False,
    )
    if serving is not None:
        console.print(f"served by a {conditions_text(serving)}", highlight=False, markup=False)
    if compared:
        console.print(_comparison(placement, compared), highlight=False, markup=False)
    for note in placement.notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    table = Table(show_header=True, header_style="bold")
    for column, justify in (("GPU", "right"), ("adapters", "right"), ("ranks", "left"), ("req/s", "right"),
                            ("--max-loras", "right"), ("--max-cpu-loras", "right"), ("--max-lora-rank", "right"),
                            ("offered tok/s", "right"), ("predicted tok/s", "right"), ("wait s", "right"), ("KV queue s", "right"),
                            ("tightest limit", "left")):
        table.add_column(column, justify=justify, no_wrap=column == "tightest limit")
    if verification is not None:
        table.add_column("twin tok/s", justify="right")
        table.add_column("twin TTFT s", justify="right")
        table.add_column("twin wait s", justify="right")
        table.add_column("twin", justify="left")
    verified = {g.index: g for g in verification.gpus} if verification is not None else {}
    for g in placement.gpus:
        ranks = ",".join(str(r) for r in sorted({a.rank for a in g.adapters}))
        limit = escape(f"{g.pressure:.2f} {g.tightest}") if g.accepted else f"[red]REFUSED {escape(f'{g.pressure:.2f} {g.tightest}')}[/]"
        row = [str(g.index), str(len(g.adapters)), ranks, f"{g.rate_req_s:.2f}", str(g.max_loras),
               str(g.max_cpu_loras), str(g.max_lora_rank), f"{g.offered_tok_s:,.0f}", f"{g.predicted_tok_s:,.0f}", f"{g.wait_s:.1f}",
               f"{g.queue_s:.1f}", limit]
        if verification is not None:
            v = verified[g.index]
            state = "[green]accepted[/]" if v.accepted else "[bold red]REFUSED[/]"
            row += [f"{v.total_tok_s:,.0f}", _seconds_cell(v.mean_ttft_s), _seconds_cell(v.idle_start_ttft_s), state]
        table.add_row(*row)
    console.print(table)
    console.print("Each GPU's tightest limit (pressure = value over limit; above 1 the rule refuses):", highlight=False)
    for g in placement.gpus:
        line = f"  GPU {g.index}: {g.deciding}"
        if g.slos:
            line += f" [SLOs: {slo_line(g.slos)}]"
        if verification is not None:
            v = verified[g.index]
            line += f"; the twin: {v.deciding}"
            if v.slos:
                line += f" [SLOs: {slo_line(v.slos)}]"
            if v.starved_adapters:
                n = len(v.starved_adapters)
                line += f" ({plural(n, 'adapter')} {'starves' if n == 1 else 'starve'} by the per-adapter rule)"
        console.print(line, highlight=False, markup=False)
    console.print(
        f"total offered {placement.offered_tok_s:,.0f} tok/s, predicted {placement.predicted_tok_s:,.0f} tok/s",
        highlight=False,
    )
    if verification is not None:
        refused = verification.refused_gpus
        console.print(
            f"twin ({verification.duration_s:g} s per GPU): {verification.total_tok_s:,.0f} tok/s in total; "
            + (f"[bold red]the rule refuses {_gpu_list(refused)} on the twin's numbers[/]" if refused
               else "[green]the rule accepts every GPU on the twin's numbers[/]")
            + (f"; starved by the published rule: {_gpu_list(verification.starved_gpus)}"
               if verification.starved_gpus else ""),
            highlight=False,
        )
        if verification.cluster is not None:
            c = verification.cluster
            console.print(f"the GPUs as one cluster ({c['router']} router): {c['served_share']:.1%} of the offered "
                          f"{c['offered_tok_s']:,.0f} tok/s served", highlight=False, markup=False)
    where = ("adapter paths are placeholders: --adapter-dir DIR gives yours" if placement.adapter_dir == DEFAULT_ADAPTER_DIR
             else f"adapters in {escape(placement.adapter_dir)}")
    console.print(f"\n[bold]One command per GPU[/] ({where}):")
    for g, command in zip(placement.gpus, placement.vllm_serve_commands()):
        console.print(f"# GPU {g.index}: {_adapter_list(g.adapters)}", highlight=False, markup=False)
        console.print(command, highlight=False, soft_wrap=True, markup=False)
    _print_routes(placement, console)


def _print_routes(placement, console: Console) -> None:
    """The replicated adapters' routes: the share of each one's requests every GPU of it gets."""
    routes = placement.replicated
    if not routes:
        return
    console.print(f"\n[bold]Routing[/] ({plural(len(routes), 'adapter')} served from several GPUs; every other "
                  "adapter goes to its one GPU):")
    for adapter, gpus in routes.items():
        shares = ", ".join(f"GPU {g} {w:.1%}" for g, w in gpus.items())
        console.print(f"  {adapter}: {shares}", highlight=False, markup=False)


def _comparison(placement, compared: dict) -> str:
    """One line: each other algorithm's fewest GPUs under the same check, against this placement's."""
    mine, parts = placement.gpu_count, []
    for algorithm, count in compared.items():
        if not isinstance(count, int):  # the algorithm could not place them: its reason
            parts.append(f"{algorithm}: {count}")
        elif count > mine:
            parts.append(f"{algorithm} {plural(count, 'GPU')} ({placement.algorithm} uses {1 - mine / count:.0%} fewer than {algorithm})")
        elif count < mine:
            parts.append(f"{algorithm} {plural(count, 'GPU')} ({1 - count / mine:.0%} fewer than {placement.algorithm})")
        else:
            parts.append(f"{algorithm} {plural(count, 'GPU')}")
    return "the same adapters under the same check: " + "; ".join(parts)


def _seconds_cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _gpu_list(indices) -> str:
    """GPU indices in words: "GPU 0", "GPUs 1, 3" (a bare "0" reads as a count)."""
    return ("GPU " if len(indices) == 1 else "GPUs ") + ", ".join(map(str, indices))
