"""`loratwin simulate-cluster`: the GPUs of a placement behind a router, through the cluster twin."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from loratwin.cli.app import _out_console, app, check_threshold, err_console
from loratwin.cli.memory import MaxMemoryFlag, MaxTimeFlag, configure
from loratwin.cli.serving import MetricsPollFlag, WarmFlag, under_conditions
from loratwin.errors import InputError
from loratwin.grammar import plural

# loratwin.twin.cluster.ROUTERS and DEFAULT_SPILL_THRESHOLD, written out so that --help does not
# import the twin; tests/cli/test_cluster.py checks that they agree.
ROUTERS = ("weighted-random", "least-outstanding", "affinity")
DEFAULT_SPILL_THRESHOLD = 256
# what --out DIR holds: the cluster's report and one results folder per GPU
CLUSTER_FILES = ("cluster.json", "gpu-*")


@app.command("simulate-cluster")
def simulate_cluster_command(
    placement: Annotated[Path, typer.Argument(help="The placement: what place --out writes (.yaml or .json).")],
    workload: Annotated[Path, typer.Argument(help="Its adapters: CSV adapter_id,rank,rate, a workload YAML, or a trace directory (replayed).")],
    profile: Annotated[str | None, typer.Option(help="Built-in profile name or a profile YAML file. Default: the placement's.")] = None,
    router: Annotated[str, typer.Option(help=f"How requests pick a GPU among those holding their adapter: {', '.join(ROUTERS)}.")] = "weighted-random",
    spill_threshold: Annotated[int | None, typer.Option(help=f"With --router affinity: a request leaves its adapter's home GPU (largest weight) when that GPU has more than this many requests outstanding. Default: {DEFAULT_SPILL_THRESHOLD}.")] = None,
    duration: Annotated[float | None, typer.Option(help="Simulated window in seconds. Default: 3600, or a trace's own span. Only requests finished inside it count: a window of minutes can flag as starved a GPU whose requests take tens of seconds.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed for arrivals, lengths and the weighted-random draws.")] = 0,
    workers: Annotated[int, typer.Option(help="Processes for the weighted-random router's GPUs (0: all cores).")] = 0,
    ray: Annotated[bool, typer.Option("--ray", help="Run the weighted-random router's GPUs on Ray (pip install 'loratwin[ray]').")] = False,
    client_max_waiting: Annotated[int | None, typer.Option("--client-max-waiting", help="Cap each GPU's waiting queue as a saturated client would. Off by default.")] = None,
    starvation_threshold: Annotated[float, typer.Option(help="A GPU starves when 1 - throughput/offered >= this.")] = 0.1,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as one JSON document on stdout.")] = False,
    out: Annotated[Path | None, typer.Option(help="Also write cluster.json and one results folder per GPU (gpu-N/) here.")] = None,
    warm: WarmFlag = None,
    metrics_poll: MetricsPollFlag = None,
    max_memory: MaxMemoryFlag = None,
    max_time: MaxTimeFlag = None,
) -> None:
    """Simulate every GPU of a placement behind a router, on one arrival stream per adapter."""
    import json

    configure("simulate-cluster", max_memory, max_time, kind="simulate",
              simulated_s=3600.0 if duration is None else duration, window_from="--duration")
    _check_flags(router, workers, duration, seed, starvation_threshold, client_max_waiting)
    from loratwin.twin.cluster.spec import check_router

    if spill_threshold is not None and router != "affinity":
        raise InputError(f"--spill-threshold is for --router affinity (the {router} router spills nothing)")
    if spill_threshold is None:
        spill_threshold = DEFAULT_SPILL_THRESHOLD
    check_router(router, spill_threshold, ray)
    from loratwin.files import Output, check_outputs

    check_outputs(Output("--out", out, folder=True, own=CLUSTER_FILES), inputs=[placement, workload])
    from loratwin.plan import load_adapters
    from loratwin.plan.placement.read import placement_cluster, placement_profile, placement_serving, read_placement_doc
    from loratwin.profiles import load_profile
    from loratwin.twin.cluster import check_cluster_run, simulate_cluster
    from loratwin.workload import load_trace

    doc = read_placement_doc(placement)  # the placement first: its mistakes are named before the workload is priced
    requests = None
    if workload.is_dir():
        spec_workload, requests = load_trace(workload)
    else:
        spec_workload = load_adapters(workload)
    spec = placement_cluster(doc, spec_workload, str(placement), client_max_waiting=client_max_waiting)
    recorded = placement_serving(doc, str(placement))
    if recorded is not None:  # judged under these: simulated under them unless a flag says otherwise
        warm = recorded[0] if warm is None else warm
        metrics_poll = recorded[1] if metrics_poll is None else metrics_poll
    loaded = under_conditions(load_profile(profile or placement_profile(doc, str(placement))), warm, metrics_poll)
    check_cluster_run(spec, loaded, router=router, duration_s=duration, use_ray=ray, spill_threshold=spill_threshold,
                      requests=requests, source=str(placement))
    err_console.print(f"simulating {plural(len(spec.replicas), 'GPU')} behind the {router} router...")
    result = simulate_cluster(spec, loaded, router=router, duration_s=duration, seed=seed, workers=workers or None,
                              use_ray=ray, spill_threshold=spill_threshold, starvation_threshold=starvation_threshold,
                              requests=requests)
    doc = result.to_dict()
    from loratwin.profiles.serving import conditions

    doc["serving"] = conditions(loaded)  # what the latencies assumed (--warm, --metrics-poll)
    if out is not None:
        _write(result, doc, out)
        err_console.print(f"wrote {out}")
    if json_out:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    _print(doc, _out_console())


def check_router_flag(router: str | None, verify: bool = True) -> None:
    """--router: one of ROUTERS (place takes it only with --verify)."""
    if router is not None and router not in ROUTERS:
        raise InputError(f"--router must be one of {', '.join(ROUTERS)}, got {router!r}")
    if router is not None and not verify:
        raise InputError("--router is for --verify (place simulates nothing without it)")


def _check_flags(router, workers, duration, seed, starvation_threshold, client_max_waiting) -> None:
    check_router_flag(router)
    if workers < 0:
        raise InputError(f"--workers must be >= 0 (0: all cores), got {workers}")
    if duration is not None and not duration > 0:
        raise InputError(f"--duration must be > 0 seconds, got {duration:g}")
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    check_threshold(starvation_threshold, "--starvation-threshold")
    if client_max_waiting is not None:  # the server's rule for it, as simulate holds it
        from loratwin.cli.simulate import _flag_errors
        from loratwin.twin import ServerConfig

        try:
            ServerConfig(max_loras=1, client_max_waiting=client_max_waiting)
        except ValueError as exc:  # pydantic's ValidationError
            raise InputError(_flag_errors(exc)) from None


def _write(result, doc: dict, out: Path) -> None:
    import json

    from loratwin.files import written_whole

    with written_whole(out, CLUSTER_FILES) as tmp:
        (tmp / "cluster.json").write_text(json.dumps(doc, indent=2) + "\n")
        for replica, run in zip(result.spec.replicas, result.replicas):
            folder = tmp / f"gpu-{replica.name.removeprefix('GPU ')}"
            folder.mkdir()
            run.write_files(folder)


def _tok(value: float) -> str:
    """tok/s, whole above 10, else to a tenth (a light trace over a long window is not 0 tok/s)."""
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def _ms(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _print(doc: dict, console) -> None:
    from rich.table import Table

    from loratwin.profiles.serving import conditions_text

    c = doc["cluster"]
    table = Table(show_header=True, header_style="bold")
    for column in ("GPU", "adapters", "requests", "offered tok/s", "tok/s", "served", "TTFT ms mean", "TTFT ms p99",
                   "ITL ms mean", "ITL ms p99", "starved"):
        table.add_column(column, justify="left" if column in ("GPU", "starved") else "right")
    for g in doc["gpus"]:
        table.add_row(g["gpu"], str(g["adapters"]), f"{g['requests']:,}", _tok(g["offered_tok_s"]),
                      _tok(g["total_tok_s"]), f"{g['throughput_over_offered']:.1%}", _ms(g["mean_ttft_ms"]),
                      _ms(g["p99_ttft_ms"]), _ms(g["mean_itl_ms"]), _ms(g["p99_itl_ms"]),
                      "[red]STARVED[/]" if g["starved"] else "no")
    console.print(table)
    split = [a for a in doc["adapters"] if len(a["split"]) > 1]
    if split:
        console.print(f"adapters served by several GPUs ({len(split)}):", highlight=False)
        for a in split[:10]:
            parts = ", ".join(f"{gpu} {n:,}" for gpu, n in a["split"].items())
            console.print(f"  {a['adapter_id']}: {a['requests']:,} requests ({parts}), {a['completed_share']:.1%} "
                          f"completed, TTFT mean {_ms(a['mean_ttft_ms'])} ms, p99 {_ms(a['p99_ttft_ms'])} ms",
                          highlight=False, markup=False)
        if len(split) > 10:
            console.print(f"  ... (+{len(split) - 10}; --json lists every adapter)", highlight=False)
    starved = c["starved_gpus"]
    console.print(
        f"cluster ({c['router']}, {c['duration_s']:g} s): {_tok(c['total_tok_s'])} of {_tok(c['offered_tok_s'])} tok/s "
        f"offered ({c['served_share']:.1%} served), {c['completed']:,} of {c['requests']:,} requests completed; "
        + (f"starved GPUs: {', '.join(starved)}" if starved else "no GPU starves")
        + (f"; served by a {conditions_text(doc['serving'])}" if "serving" in doc else ""),
        highlight=False, markup=False,
    )
