"""`loratwin workload ...`: inspect workloads."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from loratwin.cli.app import _out_console, app
from loratwin.cli.memory import MaxMemoryFlag, MaxTimeFlag, configure

workload_app = typer.Typer(no_args_is_help=True, help="Inspect workloads.")
app.add_typer(workload_app, name="workload")


@workload_app.command("describe")
def workload_describe(
    file: Annotated[Path, typer.Argument(help="Workload YAML file, adapters CSV (adapter_id,rank,rate, as recommend and place read), or a trace directory (trace.csv + adapters.csv).")],
    duration: Annotated[float | None, typer.Option(help="Window in seconds for expected counts. Default: 3600, or a trace's own span.")] = None,
    profile: Annotated[str, typer.Option(help="Profile whose tokenizer counts ShareGPT lengths.")] = "llama-3.1-8b-instruct",
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    max_memory: MaxMemoryFlag = None,
    max_time: MaxTimeFlag = None,
) -> None:
    """Summarise a workload: adapters, rate and rank mix, arrival processes, offered load, lengths."""
    import json


    configure("workload describe", max_memory, max_time)
    from loratwin.profiles import load_profile
    from loratwin.report.console import print_workload_summary
    from loratwin.workload import load_trace, load_workload_yaml
    from loratwin.workload.describe import describe_trace, describe_workload

    if duration is not None:
        from loratwin.plan.judge.rule import check_window

        check_window(duration, "--duration")
    prof = load_profile(profile)
    if file.is_dir():
        spec, requests = load_trace(file)
        summary = describe_trace(spec, requests, duration)
    else:
        if file.suffix.lower() == ".csv":
            from loratwin.plan.inputs import read_adapters_csv

            spec = read_adapters_csv(file)
        else:
            spec = load_workload_yaml(file)
        summary = describe_workload(spec, 3600.0 if duration is None else duration, model_name=prof.tokenizer or prof.name)
    if json_out:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    else:
        print_workload_summary(summary, _out_console())
