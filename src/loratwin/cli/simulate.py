"""`loratwin simulate`: one vLLM replica serving LoRA adapters, through the twin."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from loratwin.cli.app import _out_console, _parse_list, _progress, app, check_threshold, err_console
from loratwin.cli.memory import MaxMemoryFlag, MaxTimeFlag, configure
from loratwin.cli.serving import MetricsPollFlag, WarmFlag, under_conditions
from loratwin.errors import InputError, LoratwinError
from loratwin.grammar import plural

ENGINES = ("fast", "reference")
# what `--seeds N --out DIR` writes: one results folder per seed
SEEDS_FILES = ("seed-*",)


@app.command()
def simulate(
    profile: Annotated[str, typer.Option(help="Built-in profile name or a profile YAML file.")] = "llama-3.1-8b-instruct",
    served: Annotated[int | None, typer.Option(help="Number of adapters served (reference layout).")] = None,
    rates: Annotated[str | None, typer.Option(help="Per-adapter Poisson rate levels in req/s, assigned round-robin then shuffled, e.g. 1.6,0.8,0.4.")] = None,
    ranks: Annotated[str | None, typer.Option(help="Adapter ranks, assigned round-robin then shuffled, e.g. 8,16.")] = None,
    workload: Annotated[Path | None, typer.Option(help="Workload YAML file (instead of --served/--rates/--ranks).")] = None,
    trace: Annotated[Path | None, typer.Option(help="Directory with trace.csv and adapters.csv to replay.")] = None,
    max_loras: Annotated[int, typer.Option("--max-loras", help="GPU adapter slots (vLLM --max-loras).")] = ...,
    max_cpu_loras: Annotated[int | None, typer.Option("--max-cpu-loras", help="CPU adapter cache size. Default: the number of served adapters.")] = None,
    max_lora_rank: Annotated[int | None, typer.Option("--max-lora-rank", help="Largest adapter rank the server accepts (vLLM: 8, 16, 32, 64, 128, 256, 320 or 512). Default: the smallest of those that serves the largest rank.")] = None,
    max_num_seqs: Annotated[int | None, typer.Option("--max-num-seqs", help="Most requests running at once. Default: the profile's (2048 for the built-in ones, as in the reference measurements; a derived profile's own).")] = None,
    max_num_batched_tokens: Annotated[int | None, typer.Option("--max-num-batched-tokens", help="Token budget per engine step (chunked prefill). Default: the profile's (2048 for the built-in ones).")] = None,
    client_max_waiting: Annotated[int | None, typer.Option("--client-max-waiting", help="Cap the waiting queue as a saturated client would (the reference runs' client: about 25500). Off by default.")] = None,
    duration: Annotated[float | None, typer.Option(help="Simulated window in seconds. Default: 3600, or a replayed trace's own span.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed for arrivals, lengths and the adapter layout.")] = 0,
    seeds: Annotated[int, typer.Option(help="Run this many seeds (seed, seed+1, ...) and report each and their mean.")] = 1,
    engine: Annotated[str, typer.Option(help="fast (compiled) or reference (plain step-by-step Python, same results, slow).")] = "fast",
    workers: Annotated[int, typer.Option(help="Processes for several seeds (0: all cores).")] = 0,
    sample_interval: Annotated[float, typer.Option(help="Seconds between time-series samples.")] = 2.0,
    starvation_threshold: Annotated[float, typer.Option(help="A run starves when 1 - throughput/offered >= this.")] = 0.1,
    slo: Annotated[list[str] | None, typer.Option("--slo", help="A latency SLO, KEY:MS, repeatable (keys ttft_mean, ttft_p99, itl_p99, tpot_p99): reports whether each is met and the goodput (completed req/s that met every SLO, per request as vllm bench serve --goodput counts it). TTFT SLOs count every request sent, one still waiting at the end at its wait so far.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as one JSON document on stdout.")] = False,
    out: Annotated[Path | None, typer.Option(help="Also write summary.json and Parquet files (requests, adapters, time series, steps) here.")] = None,
    report: Annotated[Path | None, typer.Option(help="Also write an HTML report (with PNG charts) here.")] = None,
    bench_json: Annotated[Path | None, typer.Option("--bench-json", help="Also write the run as a vLLM benchmark result JSON (benchmark_serving.py --save-result keys).")] = None,
    warm: WarmFlag = None,
    metrics_poll: MetricsPollFlag = None,
    max_memory: MaxMemoryFlag = None,
    max_time: MaxTimeFlag = None,
) -> None:
    """Simulate one vLLM replica serving LoRA adapters and print what it achieves."""
    from loratwin.workload import load_trace, load_workload_yaml, reference_layout
    from loratwin.workload.trace import replay_window, with_trace_rates

    # a generated workload runs 3600 s unless told; a trace runs over its own span (priced as it loads)
    configure("simulate", max_memory, max_time, kind="simulate", simulated_s=3600.0 if duration is None and trace is None else duration,
              copies=seeds, window_from=_window_from(duration))

    generated = [flag for flag, value in (("--served", served), ("--rates", rates), ("--ranks", ranks))
                 if value is not None]
    given = [*generated, *(flag for flag, value in (("--workload", workload), ("--trace", trace)) if value is not None)]
    if sum((bool(generated), workload is not None, trace is not None)) != 1:
        raise LoratwinError(
            "give exactly one workload: --served N --rates R1,R2,.. --ranks K1,K2,.., or --workload FILE, or --trace DIR"
            + (f" (got {', '.join(given)})" if given else "")
        )
    _check_flags(seeds, duration, sample_interval, starvation_threshold, engine, workers)
    from loratwin.slo import parse_slos

    slos = parse_slos(slo)
    if seeds > 1 and trace is not None:
        raise LoratwinError("--seeds replays a trace identically each time: use it with generated workloads")
    if seeds > 1 and report is not None:
        raise LoratwinError("--report reports on one run: use it without --seeds (each seed's results: --out)")
    if seeds > 1 and bench_json is not None:
        raise LoratwinError("--bench-json writes one run: use it without --seeds")
    if seeds > 1 and engine != "fast":
        raise LoratwinError("--engine reference runs one seed: use it without --seeds")
    layout = None
    if workload is None and trace is None:
        if served is None or rates is None or ranks is None:
            raise LoratwinError("--served, --rates and --ranks go together: give all three")
        layout = (_parse_list(rates, "--rates", float), _parse_list(ranks, "--ranks", int))
    from loratwin.twin import ServerConfig

    try:
        server = ServerConfig(
            max_loras=max_loras,
            max_cpu_loras=max_cpu_loras,
            max_lora_rank=max_lora_rank,
            max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens,
            client_max_waiting=client_max_waiting,
        )
    except ValueError as exc:  # pydantic's ValidationError
        raise LoratwinError(_flag_errors(exc)) from None
    _check_output_places(out, report, inputs=(workload, trace), bench_json=bench_json)
    if bench_json is not None and bench_json.suffix.lower() != ".json":
        # the file is replaced whole: a name of another kind is more likely a mistake than a wish
        raise InputError(f"--bench-json {bench_json}: expected a .json file name")
    requests = None
    window_note = None
    window_from = _window_from(duration)
    ranks_from = "--ranks" if layout is not None else str(workload if workload is not None else trace / "adapters.csv")
    if workload is not None:
        spec = load_workload_yaml(workload)
    elif trace is not None:
        spec, requests = load_trace(trace)
        if duration is None and len(requests):
            window_from = f"to the last arrival in {trace / 'trace.csv'}, at {float(requests.arrival_s[-1]):.6g} s"
        duration, note = replay_window(requests, duration)
        spec = with_trace_rates(spec, requests, duration)  # offered: what the trace holds, not adapters.csv's rates
        window_note = note  # printed once the run is done: a refusal prints alone
    else:
        spec = reference_layout(served, *layout, seed)
    if duration is None:
        duration = 3600.0
    from loratwin.profiles import load_profile

    profile_obj = under_conditions(load_profile(profile), warm, metrics_poll)
    if seeds > 1:
        _simulate_seeds(spec, server, profile_obj, duration, range(seed, seed + seeds), workers,
                        sample_interval, starvation_threshold, json_out, out, slos)
        return
    from loratwin.twin import simulate as run_simulation

    result = run_simulation(
        spec,
        server,
        profile_obj,
        duration_s=duration,
        seed=seed,
        requests=requests,
        sample_interval_s=sample_interval,
        starvation_threshold=starvation_threshold,
        engine_mode=engine,
        window_from=window_from,
        ranks_from=ranks_from,
    )
    if window_note:
        err_console.print(window_note, markup=False, highlight=False, soft_wrap=True)
    _add_slos(result, slos)
    if out is not None:
        from loratwin.files import written_whole
        from loratwin.twin.result import RESULT_FILES

        with written_whole(out, _out_files()) as tmp:  # replaces a previous result of one seed or several
            result.write_files(tmp)
        err_console.print(f"wrote {len(RESULT_FILES)} files to {out}")
    if report is not None:
        from loratwin.report import write_simulation_report

        err_console.print(f"wrote report {write_simulation_report(result, report)}")
    if bench_json is not None:
        _write_bench_json(result, profile, bench_json)
    if json_out:
        if slos:
            import json

            doc = result.to_dict() | {"slos": result.summary["slos"], "goodput_req_s": result.summary["goodput_req_s"]}
            sys.stdout.write(json.dumps(doc, indent=2, allow_nan=False, default=float) + "\n")
        else:
            sys.stdout.write(result.to_json() + "\n")
    else:
        from loratwin.report.console import print_run_result, print_slos

        print_run_result(result, _out_console())
        if slos:
            s = result.summary
            print_slos(s["slos"], s["goodput_req_s"], s["request_throughput_req_s"], _out_console(),
                       no_first_token=s.get("no_first_token_at_end"))


def _add_slos(result, slos) -> None:
    """Each SLO against the run (value, limit, met) and the goodput, into its summary (so into
    --json and summary.json too)."""
    if not slos:
        return
    from loratwin.slo import slo_status

    s = result.summary
    s["slos"] = slo_status(slos, s)
    s["goodput_req_s"] = result.goodput_req_s(slos)
    s["goodput_share"] = s["goodput_req_s"] / s["request_throughput_req_s"] if s["request_throughput_req_s"] else 0.0


def _simulate_seeds(spec, server, profile_obj, duration, seed_values, workers, sample_interval, threshold, json_out, out,
                    slos=()):
    """The same configuration over several seeds, in parallel: each run and their mean."""
    import json

    from loratwin.report.console import print_seed_runs, print_slos
    from loratwin.slo import slo_status
    from loratwin.twin.batch import SimulationTask, mean_summary, simulate_many

    tasks = [SimulationTask(spec, server, profile_obj, duration, s, sample_interval, threshold) for s in seed_values]
    progress, advance = _progress(len(tasks), f"simulating {len(tasks)} seeds")
    with progress:
        results = simulate_many(tasks, workers=workers or None, on_done=advance)
    for result in results:
        _add_slos(result, slos)
    if out is not None:
        from loratwin.files import written_whole

        with written_whole(out, _out_files()) as tmp:
            for s, result in zip(seed_values, results, strict=True):
                (tmp / f"seed-{s}").mkdir()
                result.write_files(tmp / f"seed-{s}")
        err_console.print(f"wrote {plural(len(results), 'run')} to {out}")
    mean = mean_summary(results)
    if slos:  # the mean's SLOs: each metric averaged over the seeds, against its limit
        mean["slos"] = slo_status(slos, mean)
    if json_out:
        doc = {"runs": [r.to_dict() for r in results], "mean": mean}
        if slos:
            doc |= {"slos": mean["slos"], "goodput_req_s": mean["goodput_req_s"]}
        sys.stdout.write(json.dumps(doc, indent=2, default=float) + "\n")
    else:
        console = _out_console()
        print_seed_runs(results, mean, console)
        if slos:
            for r in results:
                s = r.summary
                print_slos(s["slos"], s["goodput_req_s"], s["request_throughput_req_s"], console,
                           f"SLOs, seed {r.config['seed']}", no_first_token=s.get("no_first_token_at_end"))
            print_slos(mean["slos"], mean["goodput_req_s"], mean["request_throughput_req_s"], console,
                       f"SLOs, mean of {len(results)} seeds", no_first_token=mean.get("no_first_token_at_end"))


def _window_from(duration: float | None) -> str:
    """Where a generated workload's window comes from, for a refusal that it causes (a trace's: its last arrival)."""
    return "--duration" if duration is not None else "the default; --duration sets another"


def _check_flags(seeds: int, duration: float | None, sample_interval: float, threshold: float, engine: str,
                 workers: int) -> None:
    if seeds < 1:
        raise LoratwinError(f"--seeds must be >= 1, got {seeds}")
    if duration is not None and not 0 < duration < float("inf"):
        raise LoratwinError(f"--duration must be a positive number of seconds, got {duration:g}")
    if not 0 < sample_interval < float("inf"):
        raise LoratwinError(f"--sample-interval must be a positive number of seconds, got {sample_interval:g}")
    check_threshold(threshold, "--starvation-threshold")
    if engine not in ENGINES:
        raise LoratwinError(f"--engine: unknown {engine!r} (known: {', '.join(ENGINES)})")
    if workers < 0:
        raise LoratwinError(f"--workers must be >= 0 (0: all cores), got {workers}")


def _check_output_places(out: Path | None, report: Path | None, inputs, bench_json: Path | None = None) -> None:
    from loratwin.files import Output, check_outputs
    from loratwin.report.html import REPORT_FILES

    check_outputs(Output("--out", out, folder=True, own=_out_files()),
                  Output("--report", report, folder=True, own=REPORT_FILES), Output("--bench-json", bench_json),
                  inputs=inputs)


def _write_bench_json(result, profile: str, path: Path) -> None:
    """The run as `vllm bench serve --save-result` would have saved it (loratwin.lab.bench_json)."""
    import json

    from loratwin.files import atomic_write
    from loratwin.lab.bench_json import bench_doc_from_run
    from loratwin.profiles import load_profile

    doc = bench_doc_from_run(result, load_profile(profile).model)
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(doc) + "\n"))
    err_console.print(f"wrote {path}")


def _out_files() -> tuple[str, ...]:
    """What --out may replace: a previous run's results, of one seed or of several."""
    from loratwin.twin.result import RESULT_FILES

    return RESULT_FILES + SEEDS_FILES


def _flag_errors(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    lines = []
    for e in errors():
        field = str(e["loc"][0]) if e["loc"] else "?"
        lines.append(f"--{field.replace('_', '-')}: {e['msg']}, got {e.get('input')!r}")
    return "; ".join(lines)
