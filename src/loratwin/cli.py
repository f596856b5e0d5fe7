"""Command line: `loratwin <verb>`. Flags use vLLM's names where they mean the same thing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from loratwin.errors import LoratwinError
from loratwin.report.console import print_run_result, print_profiles

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="A digital twin of multi-LoRA vLLM serving: how many adapters per GPU, with how many slots.",
)
err_console = Console(stderr=True)


def _out_console() -> Console:
    # rich assumes 80 columns when stdout is not a terminal, which squeezes the tables
    return Console() if sys.stdout.isatty() else Console(width=120)


def _parse_list(text: str, flag: str, kind: type) -> list:
    values = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            values.append(kind(part))
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise LoratwinError(f"{flag}: {part!r} is not {what} (expected a comma-separated list, e.g. 1.6,0.8,0.4)")
    if not values:
        raise LoratwinError(f"{flag}: expected a comma-separated list of values, got {text!r}")
    return values


@app.command()
def simulate(
    profile: Annotated[str, typer.Option(help="Built-in profile name or a profile YAML file.")] = "llama-3.1-8b-instruct",
    served: Annotated[Optional[int], typer.Option(help="Number of adapters served (reference layout).")] = None,
    rates: Annotated[Optional[str], typer.Option(help="Per-adapter Poisson rate levels in req/s, assigned round-robin then shuffled, e.g. 1.6,0.8,0.4.")] = None,
    ranks: Annotated[Optional[str], typer.Option(help="Adapter ranks, assigned round-robin then shuffled, e.g. 8,16.")] = None,
    workload: Annotated[Optional[Path], typer.Option(help="Workload YAML file (instead of --served/--rates/--ranks).")] = None,
    trace: Annotated[Optional[Path], typer.Option(help="Directory with trace.csv and adapters.csv to replay.")] = None,
    max_loras: Annotated[int, typer.Option("--max-loras", help="GPU adapter slots (vLLM --max-loras).")] = ...,
    max_cpu_loras: Annotated[Optional[int], typer.Option("--max-cpu-loras", help="CPU adapter cache size. Default: the number of served adapters.")] = None,
    max_lora_rank: Annotated[Optional[int], typer.Option("--max-lora-rank", help="Largest adapter rank the server accepts. Default: the largest rank served.")] = None,
    max_num_seqs: Annotated[int, typer.Option("--max-num-seqs", help="Most requests running at once. Default 2048, as in the reference measurements.")] = 2048,
    max_num_batched_tokens: Annotated[int, typer.Option("--max-num-batched-tokens", help="Token budget per engine step (chunked prefill).")] = 2048,
    client_max_waiting: Annotated[Optional[int], typer.Option("--client-max-waiting", help="Cap the waiting queue as a saturated client would (the reference runs' client: about 25500). Off by default.")] = None,
    duration: Annotated[float, typer.Option(help="Simulated window in seconds.")] = 3600.0,
    seed: Annotated[int, typer.Option(help="Random seed for arrivals, lengths and the adapter layout.")] = 0,
    seeds: Annotated[int, typer.Option(help="Run this many seeds (seed, seed+1, ...) and report each and their mean.")] = 1,
    engine: Annotated[str, typer.Option(help="fast (compiled) or reference (plain step-by-step Python, same results, slow).")] = "fast",
    workers: Annotated[int, typer.Option(help="Processes for several seeds (0: all cores).")] = 0,
    sample_interval: Annotated[float, typer.Option(help="Seconds between time-series samples.")] = 2.0,
    starvation_threshold: Annotated[float, typer.Option(help="A run starves when 1 - throughput/offered >= this.")] = 0.1,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as one JSON document on stdout.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Also write summary.json and Parquet files (requests, adapters, time series, steps) here.")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Also write an HTML report (with PNG charts) here.")] = None,
) -> None:
    """Simulate one vLLM replica serving LoRA adapters and print what it achieves."""
    from loratwin.twin import ServerConfig
    from loratwin.twin import simulate as run_simulation
    from loratwin.workload import load_trace, load_workload_yaml, reference_layout

    sources = [name for name, given in (("--served/--rates/--ranks", served is not None or rates or ranks),
                                        ("--workload", workload), ("--trace", trace)) if given]
    if len(sources) != 1:
        raise LoratwinError(
            "give exactly one workload: --served N --rates R1,R2,.. --ranks K1,K2,.., or --workload FILE, or --trace DIR"
            + (f" (got {', '.join(sources)})" if sources else "")
        )
    if seeds < 1:
        raise LoratwinError(f"--seeds must be >= 1, got {seeds}")
    requests = None
    if workload is not None:
        spec = load_workload_yaml(workload)
    elif trace is not None:
        if seeds > 1:
            raise LoratwinError("--seeds replays a trace identically each time: use it with generated workloads")
        spec, requests = load_trace(trace)
    else:
        if served is None or rates is None or ranks is None:
            raise LoratwinError("--served, --rates and --ranks go together: give all three")
        spec = reference_layout(served, _parse_list(rates, "--rates", float), _parse_list(ranks, "--ranks", int), seed)
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
    if seeds > 1:
        _simulate_seeds(spec, server, profile, duration, range(seed, seed + seeds), workers,
                        sample_interval, starvation_threshold, json_out, out)
        return
    result = run_simulation(
        spec,
        server,
        profile,
        duration_s=duration,
        seed=seed,
        requests=requests,
        sample_interval_s=sample_interval,
        starvation_threshold=starvation_threshold,
        engine_mode=engine,
    )
    if out is not None:
        paths = result.write(out)
        err_console.print(f"wrote {len(paths)} files to {out}")
    if report is not None:
        from loratwin.report import write_simulation_report

        err_console.print(f"wrote report {write_simulation_report(result, report)}")
    if json_out:
        sys.stdout.write(result.to_json() + "\n")
    else:
        print_run_result(result, _out_console())


def _simulate_seeds(spec, server, profile, duration, seed_values, workers, sample_interval, threshold, json_out, out):
    """The same configuration over several seeds, in parallel: each run and their mean."""
    import json

    from loratwin.profiles import load_profile
    from loratwin.report.console import print_seed_runs
    from loratwin.twin.batch import SimulationTask, simulate_many

    profile_obj = load_profile(profile)
    tasks = [SimulationTask(spec, server, profile_obj, duration, s, sample_interval, threshold) for s in seed_values]
    progress, advance = _progress(len(tasks), f"simulating {len(tasks)} seeds")
    with progress:
        results = simulate_many(tasks, workers=workers or None, on_done=advance)
    if out is not None:
        for s, result in zip(seed_values, results, strict=True):
            result.write(out / f"seed-{s}")
        err_console.print(f"wrote {len(results)} runs to {out}")
    numeric = [k for k, v in results[0].summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    mean = {k: sum(r.summary[k] or 0 for r in results) / len(results) for k in numeric}
    mean["starved_share"] = sum(r.starved for r in results) / len(results)
    if json_out:
        doc = {"runs": [r.to_dict() for r in results], "mean": mean}
        sys.stdout.write(json.dumps(doc, indent=2, default=float) + "\n")
    else:
        print_seed_runs(results, mean, _out_console())


def _flag_errors(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    lines = []
    for e in errors():
        field = str(e["loc"][0]) if e["loc"] else "?"
        lines.append(f"--{field.replace('_', '-')}: {e['msg']}, got {e.get('input')!r}")
    return "\n".join(lines)


@app.command("report")
def report_command(
    result: Annotated[Path, typer.Argument(help="A result: a `simulate --out` or `validate --out` directory, or a sweep's Parquet file or directory.")],
    out: Annotated[Path, typer.Option(help="Directory for index.html and the PNG charts.")],
) -> None:
    """Write a self-contained HTML report (opens offline) with PNG charts for a result."""
    from loratwin.report import write_report

    err_console.print(f"wrote {write_report(result, out)}")


workload_app = typer.Typer(no_args_is_help=True, help="Inspect workloads.")
app.add_typer(workload_app, name="workload")


@workload_app.command("describe")
def workload_describe(
    file: Annotated[Path, typer.Argument(help="Workload YAML file, or a trace directory (trace.csv + adapters.csv).")],
    duration: Annotated[float, typer.Option(help="Window in seconds for expected counts.")] = 3600.0,
    profile: Annotated[str, typer.Option(help="Profile whose tokenizer counts ShareGPT lengths.")] = "llama-3.1-8b-instruct",
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Summarise a workload: adapters, rate and rank mix, arrival processes, offered load, lengths."""
    import json

    from loratwin.profiles import load_profile
    from loratwin.report.console import print_workload_summary
    from loratwin.workload import load_trace, load_workload_yaml
    from loratwin.workload.describe import describe_workload

    prof = load_profile(profile)
    if file.is_dir():
        spec, requests = load_trace(file)
        summary = describe_workload(spec, duration, model_name=prof.tokenizer or prof.name)
        summary["trace"] = {
            "requests": len(requests),
            "span_s": float(requests.arrival_s[-1] - requests.arrival_s[0]) if len(requests) else 0.0,
            "mean_prompt_tokens": float(requests.prompt_tokens.mean()) if len(requests) else None,
            "mean_output_tokens": float(requests.output_tokens.mean()) if len(requests) else None,
        }
    else:
        spec = load_workload_yaml(file)
        summary = describe_workload(spec, duration, model_name=prof.tokenizer or prof.name)
    if json_out:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    else:
        print_workload_summary(summary, _out_console())


@app.command()
def profiles(
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the built-in profiles (model x GPU cost models)."""
    import json

    from loratwin.profiles import builtin_profiles, load_profile

    loaded = [load_profile(name) for name in builtin_profiles()]
    if json_out:
        rows = [{"name": p.name, "model": p.model, "gpu": p.gpu, "engine": p.engine, "fitted": p.fitted} for p in loaded]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    else:
        print_profiles(loaded, _out_console())


def _progress(total: int, description: str):
    """A progress bar on stderr; returns (context manager, advance callback)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err_console, transient=True,
    )
    task = progress.add_task(description, total=total)
    return progress, lambda: progress.advance(task)


@app.command()
def validate(
    runs_file: Annotated[Path, typer.Argument(help="Real runs in the reference format (runs.csv).")],
    source_set: Annotated[Optional[list[str]], typer.Option("--set", help="Only runs of this source set (repeatable).")] = None,
    model: Annotated[Optional[list[str]], typer.Option(help="Only runs of this model (repeatable).")] = None,
    profile: Annotated[Optional[str], typer.Option(help="Profile for every run. Default: the built-in profile named like each run's model.")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per run (arrivals and the rate layout were not recorded).")] = 3,
    workers: Annotated[int, typer.Option(help="Processes (0: all cores).")] = 0,
    client_max_waiting: Annotated[int, typer.Option("--client-max-waiting", help="The reference client's queue cap.")] = 25_500,
    out: Annotated[Optional[Path], typer.Option(help="Write runs.csv, errors.md, errors.json and scatter.png here.")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Also write an HTML report here.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the error table as JSON.")] = False,
) -> None:
    """Replay real vLLM runs through the twin and report its errors beside the published twin's."""
    from loratwin.profiles import load_profile
    from loratwin.report.console import print_error_table
    from loratwin.validate import error_table, load_runs, replay_runs
    from loratwin.validate.report import write_validation

    runs = [r for r in load_runs(runs_file)
            if (not source_set or r.source_set in source_set) and (not model or r.model in model)]
    runs = [r for r in runs if r.start_known]
    if not runs:
        raise LoratwinError(f"{runs_file}: no runs match the --set/--model filters")
    profiles: dict[str, object] = {}

    def profile_for(name: str):
        if name not in profiles:
            profiles[name] = load_profile(profile or name)
        return profiles[name]

    for name in sorted({r.model for r in runs}):
        profile_for(name)  # fail early on a missing profile
    progress, advance = _progress(len(runs) * seeds, f"replaying {len(runs)} runs x {seeds} seeds")
    with progress:
        results = replay_runs(runs, profile_for, seeds=tuple(range(seeds)), workers=workers or None,
                              client_max_waiting=client_max_waiting, on_done=advance)
    table = error_table(results)
    if out is not None:
        paths = write_validation(results, table, out)
        err_console.print(f"wrote {', '.join(p.name for p in paths)} to {out}")
    if report is not None:
        from loratwin.report import write_validation_report

        err_console.print(f"wrote report {write_validation_report(results, table, report)}")
    if json_out:
        import json

        sys.stdout.write(json.dumps(table, indent=2) + "\n")
    else:
        print_error_table(table, _out_console())


@app.command()
def calibrate(
    model: Annotated[str, typer.Option(help="Model name as written in the measurement files.")],
    calibration_dir: Annotated[Path, typer.Option("--calibration-dir", help="Directory with decode_latency.csv, scheduler_overhead.csv, adapter_loading.csv, kv_capacity.csv.")],
    out: Annotated[Path, typer.Option(help="Profile YAML to write.")],
    runs: Annotated[Optional[Path], typer.Option(help="Real runs (runs.csv) to fit the LoRA and prefill step terms on.")] = None,
    fit_set: Annotated[Optional[list[str]], typer.Option("--fit-set", help="Only runs of this source set are fitted on (repeatable).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Profile name. Default: the model name.")] = None,
    model_id: Annotated[Optional[str], typer.Option("--model-id", help="Model identifier, e.g. a Hugging Face id.")] = None,
    gpu: Annotated[str, typer.Option(help="GPU description.")] = "unknown GPU",
    rounds: Annotated[int, typer.Option(help="Rounds of the twin-in-the-loop fit.")] = 5,
    workers: Annotated[int, typer.Option(help="Processes (0: all cores).")] = 0,
) -> None:
    """Fit a profile (cost model) from measurements and write it as YAML."""
    import shlex

    import yaml

    from loratwin.validate import load_runs
    from loratwin.validate.calibrate import calibrate as fit_profile

    fit_runs = None
    if runs is not None:
        fit_runs = [r for r in load_runs(runs) if r.model == model and (not fit_set or r.source_set in fit_set)]
        if not fit_runs:
            raise LoratwinError(f"{runs}: no runs of model {model!r} in the --fit-set")

    progress, advance = _progress(len(fit_runs or ()) * (rounds + 1), f"fitting on {len(fit_runs or ())} runs")

    def on_round(i, fit_round):
        progress.console.print(
            f"round {i}: throughput err {fit_round.throughput_error:.2f}%, ITL err {fit_round.itl_error:.2f}%, "
            f"starvation agreement {100 * fit_round.starvation_agreement:.1f}%"
        )

    with progress:
        profile_obj, history = fit_profile(
            model, calibration_dir, fit_runs, name=name, gpu=gpu, model_id=model_id, rounds=rounds,
            workers=workers or None, on_round=on_round, on_replay_done=advance,
        )
    command = "loratwin " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    header = f"# Written by: {command}\n"
    if history:
        best = min(history, key=lambda r: r.score)
        header += (f"# Fit on {len(fit_runs)} runs: throughput err {best.throughput_error:.2f}%, "
                   f"ITL err {best.itl_error:.2f}%, starvation agreement {100 * best.starvation_agreement:.1f}%\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + yaml.safe_dump(profile_obj.model_dump(mode="json"), sort_keys=False))
    err_console.print(f"wrote {out}")


def _register_plugins() -> None:
    # commands of the later stages live next to their code
    from loratwin.plan.place_commands import register as register_place
    from loratwin.learn.commands import register as register_learn
    from loratwin.sweep.commands import register as register_sweep

    register_sweep(app)
    register_learn(app)
    register_place(app)


_register_plugins()


def main() -> None:
    """Entry point: user mistakes print one clear message and exit 2, without a traceback."""
    try:
        app(standalone_mode=True)
    except LoratwinError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
