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
    sample_interval: Annotated[float, typer.Option(help="Seconds between time-series samples.")] = 2.0,
    starvation_threshold: Annotated[float, typer.Option(help="A run starves when 1 - throughput/offered >= this.")] = 0.1,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as one JSON document on stdout.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Also write summary.json and Parquet files (requests, adapters, time series, steps) here.")] = None,
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
    requests = None
    if workload is not None:
        spec = load_workload_yaml(workload)
    elif trace is not None:
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
    result = run_simulation(
        spec,
        server,
        profile,
        duration_s=duration,
        seed=seed,
        requests=requests,
        sample_interval_s=sample_interval,
        starvation_threshold=starvation_threshold,
    )
    if out is not None:
        paths = result.write(out)
        err_console.print(f"wrote {len(paths)} files to {out}")
    if json_out:
        sys.stdout.write(result.to_json() + "\n")
    else:
        print_run_result(result, Console())


def _flag_errors(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    lines = []
    for e in errors():
        field = str(e["loc"][0]) if e["loc"] else "?"
        lines.append(f"--{field.replace('_', '-')}: {e['msg']}, got {e.get('input')!r}")
    return "\n".join(lines)


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
        print_profiles(loaded, Console())


def main() -> None:
    """Entry point: user mistakes print one clear message and exit 2, without a traceback."""
    try:
        app(standalone_mode=True)
    except LoratwinError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
